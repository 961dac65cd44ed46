package integration

import (
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nfintercept/nfintercept/integration/equiv"
	"github.com/nfintercept/nfintercept/integration/harness"
	"github.com/nfintercept/nfintercept/translate"
)

// The equivalence suite (issue 5): nfintercept's nftables rules must make
// the same decision as their iptables view, loaded with iptables-nft and
// with iptables-legacy, for the same packets. See package equiv.
//
// Owner and group names: the corpus names groups that exist nowhere (java,
// ftp); equiv.Case.Options replaces every group name by a fixed number
// (equiv.GroupID) in the option strings before anything is built, so the
// library and both iptables tools match the same gid.

const corpusDir = "../compat/testdata/istio"

var modes = []translate.Mode{translate.ModeRedirect, translate.ModeTProxy}

// shortCorpus is the subset -short runs: one case per area.
var shortCorpus = map[string]bool{
	"tproxy": true, "dns-uid-gid": true, "ipv6-ipnets": true, "outbound-owner-groups": true,
	"kube-virt-interfaces": true, "loopback-outbound-iprange": true,
}

func equivOptions() equiv.RunOptions {
	return equiv.RunOptions{Timeout: time.Second, Parallel: 16, Retries: 2}
}

// TestEquivalenceCorpus runs every conformance case in REDIRECT and in
// TPROXY mode.
func TestEquivalenceCorpus(t *testing.T) {
	harness.RequireRoot(t)
	cases, err := equiv.LoadCorpus(corpusDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) != 27 {
		t.Fatalf("corpus has %d cases, want 27", len(cases))
	}
	for _, c := range cases {
		if testing.Short() && !shortCorpus[c.Name] {
			continue
		}
		for _, m := range modes {
			c := c.WithMode(m)
			t.Run(c.Name, func(t *testing.T) {
				t.Parallel()
				report(t, equiv.Compare(t, c, equivOptions()))
			})
		}
	}
}

// TestEquivalenceGenerated runs seeded random configurations in both
// modes. NFI_EQ_SEED and NFI_EQ_COUNT choose other ones; a failure names
// the case (gen-SEED-N) and prints its options.
func TestEquivalenceGenerated(t *testing.T) {
	harness.RequireRoot(t)
	seed, n := uint64(20260801), 40
	if testing.Short() {
		n = 3
	}
	if s := os.Getenv("NFI_EQ_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("NFI_EQ_SEED: %v", err)
		}
		seed = v
	}
	if s := os.Getenv("NFI_EQ_COUNT"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("NFI_EQ_COUNT: %v", err)
		}
		n = v
	}
	for _, c := range equiv.Generate(seed, n) {
		for _, m := range modes {
			c := c.WithMode(m)
			t.Run(c.Name, func(t *testing.T) {
				t.Parallel()
				report(t, equiv.Compare(t, c, equivOptions()))
			})
		}
	}
}

// TestEquivalenceDetectsDifference proves the suite can fail: one rule
// dropped from the iptables-legacy twin's input must show up as flows that
// twin decides differently, while the other two still agree.
func TestEquivalenceDetectsDifference(t *testing.T) {
	harness.RequireRoot(t)
	cases, err := equiv.LoadCorpus(corpusDir)
	if err != nil {
		t.Fatal(err)
	}
	var c equiv.Case
	for _, cc := range cases {
		if cc.Name == "ipnets" {
			c = cc
		}
	}
	if c.Name == "" {
		t.Fatal("corpus case ipnets not found")
	}
	const victim = "-A ISTIO_OUTPUT -d 10.0.0.0/8 -j ISTIO_REDIRECT"
	dropped := false
	opts := equivOptions()
	opts.Retries = 0
	opts.Mutate = func(b equiv.Backend, fam translate.Family, text string) string {
		if b != equiv.BackendIptablesLegacy || fam != translate.IPv4 {
			return text
		}
		var kept []string
		for _, line := range strings.Split(text, "\n") {
			if line == victim {
				dropped = true
				continue
			}
			kept = append(kept, line)
		}
		return strings.Join(kept, "\n")
	}
	res := equiv.Compare(t, c, opts)
	if !dropped {
		t.Fatalf("the iptables view of ipnets has no line %q:\n%s", victim, res.Plan.Iptables[translate.IPv4])
	}
	if len(res.Differences) == 0 {
		t.Fatalf("dropping %q from one twin went unnoticed (%s)", victim, res.Summary())
	}
	for _, d := range res.Differences {
		nft, ipn, ipl := d.Decisions[equiv.BackendNft], d.Decisions[equiv.BackendIptablesNft], d.Decisions[equiv.BackendIptablesLegacy]
		if nft != ipn || nft == ipl {
			t.Errorf("expected only the mutated twin to differ:\n%s", d)
		}
		if !netip.MustParsePrefix("10.0.0.0/8").Contains(d.Flow.Dst.Addr()) {
			t.Errorf("difference outside the dropped rule's CIDR:\n%s", d)
		}
	}
	t.Logf("dropping one rule changed %d of %d flows, e.g.\n%s", len(res.Differences), len(res.Flows), res.Differences[0])
}

// report fails the test with every difference, the configuration and what
// was installed.
func report(t *testing.T, res *equiv.Result) {
	t.Helper()
	t.Log(res.Summary())
	if os.Getenv("NFI_EQ_VERBOSE") != "" {
		for i, f := range res.Flows {
			t.Logf("%-60s %-50v -> %s", f.Name, f, res.Decisions[i][res.Backends[0]])
		}
	}
	for _, d := range res.Flaky {
		t.Logf("flaky, not reproduced on retry (not counted):\n%s", d)
	}
	if len(res.Differences) == 0 {
		return
	}
	const maxShown = 30
	t.Errorf("%s: %d of %d flows decided differently; configuration:\n%s", res.Case.Name, len(res.Differences), len(res.Flows), res.Case)
	for i, d := range res.Differences {
		if i == maxShown {
			t.Errorf("... and %d more", len(res.Differences)-maxShown)
			break
		}
		t.Errorf("%s", d)
	}
	t.Logf("iptables view (IPv4):\n%s\niptables view (IPv6):\n%s\nnft twin:\n%s",
		res.Plan.Iptables[translate.IPv4], res.Plan.Iptables[translate.IPv6], res.State)
}

// TestEquivalenceLargeLists runs lists long enough for nftables sets to be
// loaded in chunks and for iptables to get thousands of rules. 1200
// non-adjacent inbound ports need a named set (more than one netlink
// message of elements).
func TestEquivalenceLargeLists(t *testing.T) {
	harness.RequireRoot(t)
	ports := 1200
	for _, m := range modes {
		if testing.Short() && m == translate.ModeTProxy {
			continue
		}
		c := equiv.LargeCase(ports).WithMode(m)
		t.Run(c.Name, func(t *testing.T) {
			t.Parallel()
			report(t, equiv.Compare(t, c, equivOptions()))
		})
	}
}

// TestEquivalenceClient checks the suite's in-process client (fsuid/fsgid
// on a thread switched into the namespace) against the harness' client
// (a process per flow with real uid/gid): on a twin with owner-matching
// rules installed, both must decide every plain flow from the pod alike.
func TestEquivalenceClient(t *testing.T) {
	harness.RequireRoot(t)
	cases, err := equiv.LoadCorpus(corpusDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		if c.Name != "dns-uid-gid" && c.Name != "outbound-owner-groups" {
			continue
		}
		t.Run(c.Name, func(t *testing.T) {
			_, flows, twins := equiv.Prepare(t, c, []equiv.Backend{equiv.BackendNft}, equiv.RunOptions{})
			tw := twins[0]
			n := 0
			for _, f := range flows {
				if f.From != equiv.FromPod || f.Mark != 0 || f.Transparent || (f.Proto != "tcp" && f.Proto != "udp") {
					continue
				}
				n++
				got, err := tw.Run(f, time.Second)
				if err != nil {
					t.Fatal(err)
				}
				f.Timeout = time.Second
				want := tw.RunHarness(t, f)
				if got != want {
					t.Errorf("%s (%s):\n  in-process client: %s\n  harness.Run:       %s", f, f.Name, got, want)
				}
			}
			if n < 20 {
				t.Fatalf("only %d flows compared", n)
			}
		})
	}
}
