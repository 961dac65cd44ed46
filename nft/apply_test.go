package nft

import (
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/nfintercept/nfintercept/translate"
)

// foreignTable creates tables nfintercept must never touch, and returns a
// function listing them byte for byte (with handles).
func foreignTable(t *testing.T, ns string) func() string {
	t.Helper()
	nftIn(t, ns, `
table ip foreign {
	chain out {
		type filter hook output priority 0; policy accept;
		ip daddr 192.0.2.1 counter drop
	}
}
table inet nfintercept {
	chain c {
		counter
	}
}
table ip nfintercept-nat {
	chain c {
		counter
	}
}
`, "-f", "-")
	return func() string {
		return nftIn(t, ns, "", "-a", "list", "table", "ip", "foreign") +
			nftIn(t, ns, "", "-a", "list", "table", "inet", "nfintercept") +
			nftIn(t, ns, "", "-a", "list", "table", "ip", "nfintercept-nat")
	}
}

func TestApplyTwiceIdentical(t *testing.T) {
	requireRoot(t)
	ns, path := newNetns(t)
	rs := fullRuleset()
	if err := Apply(rs, path); err != nil {
		t.Fatal(err)
	}
	first := listRuleset(t, ns)
	if err := Apply(rs, path); err != nil {
		t.Fatal(err)
	}
	if second := listRuleset(t, ns); second != first {
		t.Errorf("second Apply changed the ruleset\nfirst:\n%s\nsecond:\n%s", first, second)
	}
}

// TestApplyReplacesAllKinds: tables of kinds the new ruleset does not use
// are removed; foreign tables are untouched.
func TestApplyReplacesAllKinds(t *testing.T) {
	requireRoot(t)
	ns, path := newNetns(t)
	foreign := foreignTable(t, ns)
	before := foreign()

	if err := Apply(fullRuleset(), path); err != nil {
		t.Fatal(err)
	}
	small := fullRuleset()
	small.Tables = small.Tables[:1] // nat only
	small.Tables[0].Chains[3].Rules = small.Tables[0].Chains[3].Rules[:1]
	if err := Apply(small, path); err != nil {
		t.Fatal(err)
	}
	got, err := Tables(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Name != "nfintercept-nat" {
		t.Fatalf("tables after Apply(nat only): %+v", got)
	}
	if n := got[0].Chains[3].Rules; got[0].Chains[3].Name != "istio-redirect" || n != 1 {
		t.Errorf("chain %s has %d rules", got[0].Chains[3].Name, n)
	}
	if after := foreign(); after != before {
		t.Errorf("foreign tables changed by Apply\nbefore:\n%s\nafter:\n%s", before, after)
	}
	// The text's preamble does the same replacement.
	txt, err := Text(small)
	if err != nil {
		t.Fatal(err)
	}
	nsB, _ := newNetns(t)
	if err := Apply(fullRuleset(), "/var/run/netns/"+nsB); err != nil {
		t.Fatal(err)
	}
	nftIn(t, nsB, txt, "-f", "-")
	if a, b := listRuleset(t, nsB), nftIn(t, ns, "", "list", "table", "inet", "nfintercept-nat"); a != b {
		t.Errorf("nft -f Text over the full ruleset\n%s\nwant\n%s", a, b)
	}
}

func TestCleanup(t *testing.T) {
	requireRoot(t)
	ns, path := newNetns(t)
	foreign := foreignTable(t, ns)
	before := foreign()
	if err := Apply(fullRuleset(), path); err != nil {
		t.Fatal(err)
	}
	// A table of a kind we do not know yet, with our prefix: ours too.
	nftIn(t, ns, "table inet nfintercept-future { chain c { counter; }; }\n", "-f", "-")

	removed, err := Cleanup(path)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(removed)
	want := []string{"nfintercept-future", "nfintercept-mangle", "nfintercept-nat", "nfintercept-raw"}
	if !slices.Equal(removed, want) {
		t.Errorf("Cleanup removed %v, want %v", removed, want)
	}
	if got, err := Tables(path); err != nil || len(got) != 0 {
		t.Errorf("tables after Cleanup: %+v, %v", got, err)
	}
	removed, err = Cleanup(path)
	if err != nil || len(removed) != 0 {
		t.Errorf("second Cleanup: %v, %v", removed, err)
	}
	if after := foreign(); after != before {
		t.Errorf("foreign tables changed by Cleanup\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// TestApplyFailureKeepsOldState: a batch the kernel rejects, and a ruleset
// refused before sending, both leave the previous ruleset as it was.
func TestApplyFailureKeepsOldState(t *testing.T) {
	requireRoot(t)
	ns, path := newNetns(t)
	if err := Apply(fullRuleset(), path); err != nil {
		t.Fatal(err)
	}
	before := listRuleset(t, ns)

	// Rejected by the kernel: redirect is only valid in nat chains. The
	// batch also holds the deletes of every old table and a valid raw table.
	bad := fullRuleset()
	mangle := bad.Tables[1]
	mangle.Chains[2].Rules = append(mangle.Chains[2].Rules, rule(both, aRedirect(1), mProto(translate.TCP)))
	err := Apply(bad, path)
	if err == nil {
		t.Fatal("Apply of a redirect in a filter chain succeeded")
	}
	t.Logf("kernel refused as expected: %v", err)
	if !strings.Contains(err.Error(), path) {
		t.Errorf("error does not name the namespace: %v", err)
	}
	if after := listRuleset(t, ns); after != before {
		t.Errorf("failed Apply changed the ruleset\nbefore:\n%s\nafter:\n%s", before, after)
	}

	// Refused before anything is sent: a jump to a missing chain.
	bad = fullRuleset()
	bad.Tables[2].Chains[0].Rules[0] = rule(both, aJump("missing"))
	if err := Apply(bad, path); err == nil || !strings.Contains(err.Error(), `"missing"`) {
		t.Errorf("Apply with a jump to a missing chain: %v", err)
	}
	if after := listRuleset(t, ns); after != before {
		t.Errorf("refused Apply changed the ruleset")
	}
}

func TestBadNamespace(t *testing.T) {
	if err := Apply(fullRuleset(), "/nonexistent/netns"); err == nil || !strings.Contains(err.Error(), "/nonexistent/netns") {
		t.Errorf("Apply: %v", err)
	}
	if _, err := Cleanup("/nonexistent/netns"); err == nil {
		t.Error("Cleanup succeeded")
	}
	if _, err := Tables("/nonexistent/netns"); err == nil {
		t.Error("Tables succeeded")
	}
}

// TestApplyCurrentNamespace: nsPath "" programs the caller's namespace.
// The test re-runs itself inside a fresh namespace (unshare -n) so the
// root namespace is never touched.
func TestApplyCurrentNamespace(t *testing.T) {
	requireRoot(t)
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("needs unshare")
	}
	if !insideUnshare() {
		cmd := exec.Command("unshare", "-n", testBinary(), "-test.run", "^TestApplyCurrentNamespace$")
		cmd.Env = append(cmd.Environ(), "NFI_NFT_IN_UNSHARE=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("in unshare: %v\n%s", err, out)
		}
		return
	}
	if err := Apply(fullRuleset(), ""); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("nft", "list", "tables").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "table inet nfintercept-nat") {
		t.Errorf("tables in the current namespace: %s", out)
	}
	if names, err := Cleanup(""); err != nil || len(names) != 3 {
		t.Errorf("Cleanup: %v, %v", names, err)
	}
}
