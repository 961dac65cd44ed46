package integration

import (
	"errors"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/nfintercept/nfintercept"
	"github.com/nfintercept/nfintercept/integration/harness"
	"github.com/nfintercept/nfintercept/internal/libtest"
	"github.com/nfintercept/nfintercept/nft"
	"github.com/nfintercept/nfintercept/translate"
)

// Reliability: atomicity of apply under faults (a batch refused midway, a
// killed applier, a vanishing namespace, racing appliers, re-applies under
// traffic) and verify's drift report through the CLI.

var (
	rlCounter atomic.Int32
	rlSweep   sync.Once
)

// rlPrefix names the reliability suites' namespaces: rlPrefix<pid>-<n>, so
// a run killed before its cleanups leaves names the next run can sweep.
const rlPrefix = "nfi-rl-"

// rlNS creates a throwaway namespace with lo up, deleted when the test ends.
func rlNS(t testing.TB) (name, path string) {
	t.Helper()
	harness.RequireRoot(t)
	rlSweep.Do(func() { harness.SweepNamespaces(rlPrefix) })
	name = fmt.Sprintf("%s%d-%d", rlPrefix, os.Getpid(), rlCounter.Add(1))
	return name, harness.AddNS(t, name)
}

// manyCIDRs returns n distinct, non-adjacent /24s under first.0.0.0/8, so
// each is its own interval in the set.
func manyCIDRs(first, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%d.%d.%d.0/24", first, i/128, 2*(i%128))
	}
	return out
}

// rlOptions is a REDIRECT sidecar with an exclude list of n CIDRs under
// first.0.0.0/8 and the given outbound proxy port: two calls with different
// values differ in every table.
func rlOptions(first, n int, proxyPort string) translate.Options {
	o := translate.DefaultOptions()
	o.EnvoyPort = proxyPort
	o.ProxyUID = "1337"
	o.InboundInterceptionMode = "REDIRECT"
	o.OutboundIPRangesInclude = "*"
	o.OutboundIPRangesExclude = strings.Join(manyCIDRs(first, n), ",")
	o.InboundPortsInclude = "*"
	o.InboundPortsExclude = "15090,15021"
	o.RedirectDNS = true
	return o
}

// rlReq uses this host's users and resolv.conf, as the CLI does, so
// library and CLI applies of the same options install the same ruleset.
func rlReq(o translate.Options, path string) libtest.Request {
	return libtest.Request{Options: o, NetNSPath: path}
}

func rlApply(t testing.TB, o translate.Options, path string) *nfintercept.Result {
	t.Helper()
	res, err := libtest.Apply(rlReq(o, path))
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return res
}

// rlPlan builds the ruleset the options describe for the namespace.
func rlPlan(t testing.TB, o translate.Options, path string) *translate.Ruleset {
	t.Helper()
	res, err := libtest.Plan(rlReq(o, path))
	if err != nil {
		t.Fatalf("Plan: %v", err)
	}
	return res.Ruleset
}

func verifyRS(t testing.TB, rs *translate.Ruleset, path string) *nft.Drift {
	t.Helper()
	ds, err := libtest.VerifyRulesets(path, rs)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return ds[0]
}

// whichOf says which of the rulesets one snapshot of the namespace holds
// exactly: the index, or -1 with the drift from each.
func whichOf(t testing.TB, path string, rss ...*translate.Ruleset) (int, string) {
	t.Helper()
	i, report, err := rlWhich(path, rss...)
	if err != nil {
		t.Fatal(err)
	}
	return i, report
}

// rlWhich is whichOf for goroutines other than the test's.
func rlWhich(path string, rss ...*translate.Ruleset) (int, string, error) {
	ds, err := libtest.VerifyRulesets(path, rss...)
	if err != nil {
		return -1, "", err
	}
	var report strings.Builder
	found := -1
	for i, d := range ds {
		if d.InSync() {
			if found >= 0 {
				return -1, "", fmt.Errorf("in sync with rulesets %d and %d: they must differ", found, i)
			}
			found = i
			continue
		}
		fmt.Fprintf(&report, "against ruleset %d: %s", i, d)
	}
	return found, report.String(), nil
}

// kernelSnapshot is everything a failed operation must leave unchanged:
// the ruleset (without counters) and the policy routing.
func kernelSnapshot(t testing.TB, ns string) string {
	t.Helper()
	return harness.InNS(t, ns, "nft", "--stateless", "-a", "list", "ruleset") +
		harness.InNS(t, ns, "ip", "rule", "show") + harness.InNS(t, ns, "ip", "-6", "rule", "show") +
		harness.InNS(t, ns, "ip", "route", "show", "table", "all") +
		harness.InNS(t, ns, "ip", "-6", "route", "show", "table", "all") +
		harness.InNS(t, ns, "ip", "addr", "show", "dev", "lo")
}

// TestBatchFailsMidway: a batch the kernel refuses after thousands of valid
// messages (an invalid rule injected after a 4,000-CIDR set and every other
// table) leaves the previous ruleset exactly as it was.
func TestBatchFailsMidway(t *testing.T) {
	ns, path := rlNS(t)
	a := rlOptions(10, 500, "15001")
	rlApply(t, a, path)
	before := kernelSnapshot(t, ns)

	bad := rlPlan(t, rlOptions(11, 4000, "15101"), path)
	last := bad.Tables[len(bad.Tables)-1]
	if last.Kind == translate.TableNAT {
		t.Fatalf("want a non-nat table last, got %v", last.Kind)
	}
	c := last.Chains[len(last.Chains)-1]
	// redirect is only valid in nat chains: the kernel refuses this rule,
	// the last message of the batch.
	c.Rules = append(c.Rules, &translate.Rule{Family: translate.IPv4,
		Matches: []translate.Match{{Kind: translate.MatchProto, Proto: translate.TCP}},
		Action:  translate.Action{Kind: translate.ActRedirect, Port: translate.Port{Raw: "1", From: 1, To: 1}}})
	err := libtest.ApplyRuleset(path, bad)
	if err == nil {
		t.Fatal("Apply of a batch with a redirect in a filter chain succeeded")
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("error does not name the namespace: %v", err)
	}
	if after := kernelSnapshot(t, ns); after != before {
		t.Errorf("failed batch changed the namespace:\n--- before\n%s\n--- after\n%s", before, after)
	}
	if d := verifyRS(t, rlPlan(t, a, path), path); !d.InSync() {
		t.Errorf("previous ruleset no longer verifies:\n%s", d)
	}
}

// nftTableFOwner is NFT_TABLE_F_OWNER (Linux 5.12), missing from x/sys.
const nftTableFOwner = 0x2

// ownedTable creates `table inet NAME` with the owner flag
// (NFT_TABLE_F_OWNER) from a socket kept open until the test ends: the
// kernel then refuses every other process's change to it with EPERM.
func ownedTable(t *testing.T, path, name string) {
	t.Helper()
	h, err := netns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: int(h)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	attrs, err := netlink.MarshalAttributes([]netlink.Attribute{
		{Type: unix.NFTA_TABLE_NAME, Data: []byte(name + "\x00")},
		{Type: unix.NFTA_TABLE_FLAGS, Data: []byte{0, 0, 0, nftTableFOwner}},
	})
	if err != nil {
		t.Fatal(err)
	}
	batch := func(typ uint16) netlink.Message {
		return netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(typ), Flags: netlink.Request},
			Data: []byte{unix.AF_UNSPEC, 0, 0, unix.NFNL_SUBSYS_NFTABLES}}
	}
	msgs := []netlink.Message{
		batch(unix.NFNL_MSG_BATCH_BEGIN),
		{Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWTABLE),
			Flags: netlink.Request | netlink.Acknowledge | netlink.Create}, Data: append([]byte{unix.NFPROTO_INET, 0, 0, 0}, attrs...)},
		batch(unix.NFNL_MSG_BATCH_END),
	}
	if _, err := c.SendMessages(msgs); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Receive(); err != nil {
		t.Fatalf("create owned table %s: %v", name, err)
	}
}

// TestCLIBatchFailsMidway: another process owns a table of ours, so the
// kernel refuses the batch after the nat and mangle parts: the CLI exits
// non-zero naming the namespace, and nothing changed, including the TPROXY
// policy routing the CLI installs before the batch.
func TestCLIBatchFailsMidway(t *testing.T) {
	ns, path := rlNS(t)
	a := rlOptions(10, 50, "15001")
	a.RedirectDNS = false // no raw table: another process creates it
	rlApply(t, a, path)
	if tables := ownTables(t, ns); strings.Contains(strings.Join(tables, " "), "raw") {
		t.Fatalf("the REDIRECT config must not use the raw table: %v", tables)
	}
	ownedTable(t, path, translate.TablePrefix+"raw")
	before := kernelSnapshot(t, ns)

	b := rlOptions(11, 2000, "15101")
	b.InboundInterceptionMode = "TPROXY"
	r := runCLI(t, "", append(istioIptablesArgs(b), "--network-namespace", path)...)
	if r.code == 0 {
		t.Fatalf("apply succeeded over a table another process owns\nstderr: %s", r.stderr)
	}
	if !strings.Contains(r.stderr, path) {
		t.Errorf("error does not name the namespace: %s", r.stderr)
	}
	t.Logf("exit %d: %s", r.code, r.stderr)
	if after := kernelSnapshot(t, ns); after != before {
		t.Errorf("failed apply changed the namespace:\n--- before\n%s\n--- after\n%s", before, after)
	}
}

// TestKillDuringApply kills the CLI at random moments of applying a large
// ruleset over another: the kernel always holds one of the two complete
// rulesets, never a mix. Both ways of applying are killed: an update (only
// the difference) and, with more set items than an update reads back, a
// full replace.
func TestKillDuringApply(t *testing.T) {
	for _, c := range []struct {
		name        string
		cidrs       int
		incremental bool
	}{{"update", 3000, true}, {"replace", nft.MaxUpdateSetItems + 1000, false}} {
		t.Run(c.name, func(t *testing.T) { killDuringApply(t, c.cidrs, c.incremental) })
	}
}

func killDuringApply(t *testing.T, cidrs int, incremental bool) {
	_, path := rlNS(t)
	iterations := 100
	if testing.Short() {
		iterations = 20
	}
	a, b := rlOptions(10, cidrs, "15001"), rlOptions(11, cidrs, "15101")
	ra, rb := rlPlan(t, a, path), rlPlan(t, b, path)
	rlApply(t, a, path)
	if res := rlApply(t, b, path); res.Change.Incremental != incremental {
		t.Fatalf("apply of B over A: %+v, want incremental %v", res.Change, incremental)
	}
	bin := cliBinary(t)
	unshare := lookPath(t, "unshare")
	args := append([]string{"-n", bin}, append(istioIptablesArgs(b), "--network-namespace", path)...)
	start := func() *exec.Cmd {
		cmd := exec.Command(unshare, args...) // unshare execs the binary: same pid
		cmd.Env = []string{"PATH=/nonexistent"}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}

	// The time a full apply takes bounds the kill delays.
	var full time.Duration
	for range 3 {
		rlApply(t, a, path)
		t0 := time.Now()
		if err := start().Wait(); err != nil {
			t.Fatalf("apply B: %v", err)
		}
		full = max(full, time.Since(t0))
	}
	t.Logf("a full CLI apply takes up to %v", full)

	r := rand.New(rand.NewSource(time.Now().UnixNano()))
	var old, neu int
	for i := 0; i < iterations; i++ {
		rlApply(t, a, path)
		delay := time.Duration(r.Int63n(int64(full)))
		cmd := start()
		time.Sleep(delay)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		switch got, report := whichOf(t, path, ra, rb); got {
		case 0:
			old++
		case 1:
			neu++
		default:
			t.Fatalf("iteration %d (killed after %v): neither ruleset:\n%s", i, delay, report)
		}
	}
	t.Logf("%d kills: %d left the old ruleset, %d the new one", iterations, old, neu)
	if old == 0 || neu == 0 {
		t.Errorf("the kills never landed on one side (old %d, new %d): the delays do not cover the apply", old, neu)
	}
}

// TestNamespaceGone: a namespace that no longer exists gives a clear error
// naming it, from the library and the CLI, for apply, verify and cleanup.
func TestNamespaceGone(t *testing.T) {
	harness.RequireRoot(t)
	t.Run("deleted", func(t *testing.T) {
		name := fmt.Sprintf("%s%d-gone", rlPrefix, os.Getpid())
		harness.MustRun(t, "ip", "netns", "add", name)
		harness.MustRun(t, "ip", "netns", "del", name)
		checkGone(t, filepath.Join(harness.NetNSDir, name))
	})
	t.Run("process exited", func(t *testing.T) {
		cmd, path := netnsProcess(t)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		checkGone(t, path)
	})
	t.Run("vanishes during applies", func(t *testing.T) {
		// The namespace of a process killed while applies run: each one
		// either lands in it or fails naming it; nothing else is touched.
		for round := 0; round < 5; round++ {
			cmd, path := netnsProcess(t)
			go func() {
				time.Sleep(time.Duration(round) * 5 * time.Millisecond)
				_ = cmd.Process.Kill()
			}()
			for i := 0; i < 20; i++ {
				if _, err := libtest.Apply(rlReq(rlOptions(10, 100, "15001"), path)); err != nil && !strings.Contains(err.Error(), path) {
					t.Errorf("error does not name the namespace: %v", err)
				}
			}
			_ = cmd.Wait()
		}
		// This test process runs in a throwaway namespace of its own: had
		// an apply fallen back to the current namespace, it would show here.
		if out := harness.MustRun(t, "nft", "list", "tables"); strings.Contains(out, translate.TablePrefix) {
			t.Errorf("tables appeared in the test's own namespace:\n%s", out)
		}
	})
}

// netnsProcess starts a process in a new network namespace and returns it
// with the namespace's /proc path, once the process has entered it.
func netnsProcess(t *testing.T) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(lookPath(t, "unshare"), "-n", lookPath(t, "sleep"), "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	path := fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid)
	self, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		// Until unshare has run, the child is still in our namespace.
		if l, err := os.Readlink(path); err == nil && l != self {
			return cmd, path
		}
	}
	t.Fatalf("process %d never entered a new network namespace", cmd.Process.Pid)
	return nil, ""
}

func checkGone(t *testing.T, path string) {
	t.Helper()
	req := rlReq(rlOptions(10, 10, "15001"), path)
	_, err := libtest.Apply(req)
	wantGone(t, "Apply", err, path)
	_, err = libtest.Verify(req, false)
	wantGone(t, "Verify", err, path)
	wantGone(t, "Cleanup", libtest.Cleanup(path), path)
	for _, cmd := range []string{"apply", "verify", "cleanup"} {
		r := runCLI(t, "", cmd, "-p", "15001", "--network-namespace", path)
		if r.code == 0 || !strings.Contains(r.stderr, path) || !strings.Contains(r.stderr, "no such file") {
			t.Errorf("CLI %s: exit %d, stderr %q: want a failure naming %s and saying it does not exist", cmd, r.code, r.stderr, path)
		}
	}
}

func wantGone(t *testing.T, what string, err error, path string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s on a vanished namespace succeeded", what)
		return
	}
	if !strings.Contains(err.Error(), path) || !errors.Is(err, syscall.ENOENT) {
		t.Errorf("%s: %v: want an error naming %s that says it does not exist", what, err, path)
	}
}

// TestRacingAppliers: two appliers with different configurations race on
// one namespace while a reader watches. Every snapshot the reader takes,
// and the final state, is one complete ruleset.
func TestRacingAppliers(t *testing.T) {
	_, path := rlNS(t)
	rounds := 60
	if testing.Short() {
		rounds = 20
	}
	opts := []translate.Options{rlOptions(10, 1000, "15001"), rlOptions(11, 1000, "15101")}
	rss := []*translate.Ruleset{rlPlan(t, opts[0], path), rlPlan(t, opts[1], path)}
	rlApply(t, opts[0], path)

	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan error, 100)
	for i := range opts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				if _, err := libtest.Apply(rlReq(opts[i], path)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	var snapshots atomic.Int32
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for {
			select {
			case <-stop:
				return
			default:
			}
			i, report, err := rlWhich(path, rss...)
			if err != nil {
				errs <- err
				return
			}
			if i < 0 {
				errs <- fmt.Errorf("a snapshot holds neither ruleset:\n%s", report)
				return
			}
			snapshots.Add(1)
		}
	}()
	wg.Wait()
	close(stop)
	<-readerDone
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if i, report := whichOf(t, path, rss...); i < 0 {
		t.Errorf("final state is neither ruleset:\n%s", report)
	}
	t.Logf("%d applies, %d snapshots checked", 2*rounds, snapshots.Load())

	// The same through the CLI, one process per configuration, with the
	// final state checked by `nfintercept verify`.
	for round := 0; round < 5; round++ {
		var cwg sync.WaitGroup
		codes := make([]int, 2)
		for i := range opts {
			cwg.Add(1)
			go func() {
				defer cwg.Done()
				codes[i] = runCLI(t, "", append(istioIptablesArgs(opts[i]), "--network-namespace", path)...).code
			}()
		}
		cwg.Wait()
		if codes[0] != 0 || codes[1] != 0 {
			t.Fatalf("CLI applies: exit codes %v", codes)
		}
		in := 0
		for i := range opts {
			if runCLI(t, "", append([]string{"verify"}, append(istioIptablesArgs(opts[i]), "--network-namespace", path)...)...).code == 0 {
				in++
			}
		}
		if in != 1 {
			t.Errorf("round %d: verify says in sync for %d of the 2 configurations, want 1", round, in)
		}
	}
}

// TestRacingModes: a TPROXY and a REDIRECT applier race; the final state
// must be one configuration's routing and tables together.
func TestRacingModes(t *testing.T) {
	_, path := rlNS(t)
	tp := rlOptions(10, 10, "15001")
	tp.InboundInterceptionMode = "TPROXY"
	opts := []translate.Options{tp, rlOptions(10, 10, "15001")}
	rss := []*translate.Ruleset{rlPlan(t, opts[0], path), rlPlan(t, opts[1], path)}
	for round := 0; round < 30; round++ {
		var wg sync.WaitGroup
		for i := range opts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 5 {
					if _, err := libtest.Apply(rlReq(opts[i], path)); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		if i, report := whichOf(t, path, rss...); i < 0 {
			t.Fatalf("round %d: final state mixes the two configurations:\n%s", round, report)
		}
	}
}

// TestKillDuringModeSwitch: the CLI switching from REDIRECT to TPROXY is
// killed at random moments. Routing and nftables are separate kernel
// subsystems, so apply adds the new policy routing before the batch and
// removes stale routing after it: the namespace must hold one mode's tables
// completely, at most with extra policy routing of ours (harmless: the
// other mode marks no packet), never tables without their routes.
func TestKillDuringModeSwitch(t *testing.T) {
	_, path := rlNS(t)
	a := rlOptions(10, 2000, "15001")
	b := rlOptions(11, 2000, "15001")
	b.InboundInterceptionMode = "TPROXY"
	ra, rb := rlPlan(t, a, path), rlPlan(t, b, path)
	args := append([]string{"-n", cliBinary(t)}, append(istioIptablesArgs(b), "--network-namespace", path)...)
	r := rand.New(rand.NewSource(time.Now().UnixNano()))
	for i := 0; i < 50; i++ {
		rlApply(t, a, path)
		cmd := exec.Command(lookPath(t, "unshare"), args...)
		cmd.Env = []string{"PATH=/nonexistent"}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(r.Int63n(int64(40 * time.Millisecond))))
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		ds, err := libtest.VerifyRulesets(path, ra, rb)
		if err != nil {
			t.Fatal(err)
		}
		if !onlyExtraRouting(ds[0]) && !onlyExtraRouting(ds[1]) {
			t.Fatalf("iteration %d: neither configuration (plus at most extra routing):\nagainst REDIRECT: %s\nagainst TPROXY: %s", i, ds[0], ds[1])
		}
	}
}

// onlyExtraRouting: the namespace holds the ruleset's tables exactly, and
// at most policy rules/routes it does not want.
func onlyExtraRouting(d *nft.Drift) bool {
	for _, it := range d.Items {
		if it.Kind != nft.Extra || (it.Object != "policy rule" && it.Object != "route") {
			return false
		}
	}
	return true
}

// TestReapplyUnderTraffic: an app (uid 1000) connects continuously while
// the ruleset is re-applied 1,000 times, alternating two configurations
// that both capture it: every connection reaches the proxy, none the peer.
func TestReapplyUnderTraffic(t *testing.T) {
	p := harness.NewPair(t, harness.PairOptions{})
	harness.ListenBoth(t, p.PodPath, "tcp", 15001, "proxy")
	harness.ListenBoth(t, p.PeerPath, "tcp", 80, "peer")
	applies := 1000
	if testing.Short() {
		applies = 200
	}
	opts := []translate.Options{rlOptions(10, 200, "15001"), rlOptions(11, 300, "15001")}
	rlApply(t, opts[0], p.PodPath)

	dst := harness.Flow{Proto: "tcp", Dst: mustAddrPort(harness.DstV4.String() + ":80"), UID: 1000, GID: 1000}
	applied := make(chan error, 1)
	go func() {
		for i := 0; i < applies; i++ {
			if _, err := libtest.Apply(rlReq(opts[i%2], p.PodPath)); err != nil {
				applied <- fmt.Errorf("apply %d: %w", i, err)
				return
			}
		}
		applied <- nil
	}()
	var n, proxy int
	var bad []string
	for running := true; running; {
		select {
		case err := <-applied:
			if err != nil {
				t.Fatal(err)
			}
			running = false
			continue
		default:
		}
		res := harness.Run(t, p.PodPath, dst)
		n++
		if res.Err == nil && res.Tag == "proxy" {
			proxy++
		} else if len(bad) < 10 {
			bad = append(bad, fmt.Sprintf("%+v", res))
		}
	}
	t.Logf("%d applies, %d connections during them, %d reached the proxy", applies, n, proxy)
	if n < 20 {
		t.Errorf("only %d connections during the applies: too few to tell", n)
	}
	if proxy != n {
		t.Errorf("%d of %d connections did not reach the proxy, e.g. %v", n-proxy, n, bad)
	}
}

// TestCLIVerify: `verify` exits 0 in sync, 1 with a readable diff after a
// rule is changed behind its back, and --reconcile repairs it.
func TestCLIVerify(t *testing.T) {
	ns, path := rlNS(t)
	o := rlOptions(10, 20, "15001")
	args := append(istioIptablesArgs(o), "--network-namespace", path)
	verify := func(extra ...string) cliResult {
		return runCLI(t, "", append(append([]string{"verify"}, args...), extra...)...)
	}
	if r := verify(); r.code != 1 || !strings.Contains(r.stdout, "- table inet "+translate.TablePrefix+"nat") {
		t.Errorf("before apply: exit %d, want 1 with the nat table missing\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	mustCLI(t, "", args...)
	if r := verify(); r.code != 0 || r.stdout != "" {
		t.Errorf("after apply: exit %d, want 0 and nothing on stdout\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}

	// Change the redirect port of istio-redirect behind nfintercept's back.
	listing := harness.InNS(t, ns, "nft", "-a", "list", "chain", "inet", translate.TablePrefix+"nat", "istio-redirect")
	var handle string
	for _, l := range strings.Split(listing, "\n") {
		if strings.Contains(l, "redirect to :15001") {
			_, handle, _ = strings.Cut(l, "# handle ")
		}
	}
	if handle == "" {
		t.Fatalf("no redirect rule:\n%s", listing)
	}
	harness.InNS(t, ns, "nft", "replace", "rule", "inet", translate.TablePrefix+"nat", "istio-redirect",
		"handle", strings.TrimSpace(handle), "meta l4proto tcp counter redirect to :15002")
	r := verify()
	if r.code != 1 || !strings.Contains(r.stdout, "~ rule inet "+translate.TablePrefix+"nat chain istio-redirect rule 1") ||
		!strings.Contains(r.stdout, "redirect to :15001") {
		t.Errorf("after tampering: exit %d, want 1 and the changed rule\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	t.Logf("verify reports:\n%s", r.stdout)
	if r := verify("--reconcile"); r.code != 0 || !strings.Contains(r.stdout, "istio-redirect") {
		t.Errorf("--reconcile: exit %d, want 0 with the drift it repaired\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	if r := verify(); r.code != 0 {
		t.Errorf("after --reconcile: exit %d\nstdout: %s", r.code, r.stdout)
	}
}

// TestHugeListApplyVerify: 100,000 exclude CIDRs apply through the library,
// verify in sync, and one element removed behind nfintercept's back is
// reported as exactly that element.
func TestHugeListApplyVerify(t *testing.T) {
	ns, path := rlNS(t)
	n := 100000
	if testing.Short() {
		n = 20000
	}
	cidrs := make([]string, n)
	for i := range cidrs {
		cidrs[i] = fmt.Sprintf("%d.%d.%d.0/24", 11+i/32768, (i/128)%256, 2*(i%128))
	}
	o := rlOptions(10, 1, "15001")
	o.OutboundIPRangesExclude = strings.Join(cidrs, ",")
	t0 := time.Now()
	res := rlApply(t, o, path)
	t1 := time.Now()
	if d := verifyRS(t, res.Ruleset, path); !d.InSync() {
		t.Fatalf("right after applying %d CIDRs:\n%s", n, d)
	}
	t.Logf("%d CIDRs: apply %v, verify %v", n, t1.Sub(t0), time.Since(t1))
	victim := cidrs[n/2]
	var set string
	for _, s := range res.Ruleset.Table(translate.TableNAT).Sets {
		for _, p := range s.Prefixes {
			if p.Raw == victim {
				set = s.Name
			}
		}
	}
	if set == "" {
		t.Fatalf("no set of the model holds %s", victim)
	}
	harness.InNS(t, ns, "nft", "delete", "element", "inet", translate.TablePrefix+"nat", set, "{ "+victim+" }")
	d := verifyRS(t, res.Ruleset, path)
	if len(d.Items) != 1 || d.Items[0].Kind != nft.Missing || d.Items[0].Want != victim {
		t.Errorf("after deleting %s from %s:\n%s", victim, set, d)
	}
}

// TestHostileCLI: unknown user names are refused by apply with an error
// naming the option and the name (the namespace untouched), while the
// iptables view still prints them; paths that are not network namespaces
// are refused before anything is touched.
func TestHostileCLI(t *testing.T) {
	ns, path := rlNS(t)
	r := runCLI(t, "", "-u", "nfi-ghost-user", "-b", "*", "--network-namespace", path)
	if r.code == 0 || !strings.Contains(r.stderr, "-u/--proxy-uid") || !strings.Contains(r.stderr, "nfi-ghost-user") {
		t.Errorf("apply with an unknown user: exit %d, stderr %q", r.code, r.stderr)
	}
	if tables := ownTables(t, ns); len(tables) != 0 {
		t.Errorf("a refused apply installed %v", tables)
	}
	r = runCLI(t, "", "render", "--format", "iptables", "-u", "nfi-ghost-user", "-b", "*")
	if r.code != 0 || !strings.Contains(r.stdout, "--uid-owner nfi-ghost-user") {
		t.Errorf("render --format iptables with an unknown user: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	r = runCLI(t, "", "verify", "-u", "nfi-ghost-user", "--network-namespace", path)
	if r.code == 0 || !strings.Contains(r.stderr, "nfi-ghost-user") {
		t.Errorf("verify with an unknown user: exit %d, stderr %q", r.code, r.stderr)
	}

	file := filepath.Join(t.TempDir(), "not-a-netns")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ path, want string }{
		{file, "is not a namespace file"},
		{t.TempDir(), "is not a namespace file"},
		{"/dev/null", "is not a namespace file"},
		{"/proc/self/ns/uts", "not a network namespace"},
	} {
		req := rlReq(rlOptions(10, 1, "15001"), c.path)
		_, perr := libtest.Plan(req)
		_, aerr := libtest.Apply(req)
		_, verr := libtest.Verify(req, true)
		cerr := libtest.Cleanup(c.path)
		for what, err := range map[string]error{"Plan": perr, "Apply": aerr, "Verify": verr, "Cleanup": cerr} {
			if err == nil || !strings.Contains(err.Error(), c.path) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%s(%s): %v, want an error naming it and saying %q", what, c.path, err, c.want)
			}
		}
		for _, cmd := range []string{"apply", "verify", "cleanup"} {
			if r := runCLI(t, "", cmd, "--network-namespace", c.path); r.code == 0 || !strings.Contains(r.stderr, c.want) {
				t.Errorf("CLI %s --network-namespace %s: exit %d, stderr %q", cmd, c.path, r.code, r.stderr)
			}
		}
	}
	// The test process's own (throwaway) namespace stays empty.
	if out := harness.MustRun(t, "nft", "list", "tables"); strings.Contains(out, translate.TablePrefix) {
		t.Errorf("tables appeared in the test's own namespace:\n%s", out)
	}
}
