package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/nfintercept/nfintercept/integration/harness"
	"github.com/nfintercept/nfintercept/kernel"
	"github.com/nfintercept/nfintercept/translate"
)

// Incremental apply through the CLI and the library: a re-apply in sync
// sends no batch, and updates under foreign commits end exact.

// generationOf reads the namespace's ruleset generation.
func generationOf(t testing.TB, path string) uint32 {
	t.Helper()
	ns, err := kernel.OpenNamespace(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	c, err := kernel.DialNFTables(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	g, err := c.Generation()
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// batchesSent runs the CLI under strace and counts the nf_tables batches
// it sent (NFNL_MSG_BATCH_BEGIN, netlink type 0x10, in sendto/sendmsg).
func batchesSent(t *testing.T, args ...string) (int, cliResult) {
	t.Helper()
	trace := filepath.Join(t.TempDir(), "strace")
	r := runWrapped(t, []string{lookPath(t, "strace"), "-f", "-qq", "-o", trace, "-e", "trace=sendto,sendmsg"}, args...)
	out, err := os.ReadFile(trace)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(out), "nlmsg_type=0x10 "), r
}

// TestReapplyInSyncSendsNothing: the same options applied again send no
// nf_tables batch (strace), leave the ruleset generation as it was, exit 0
// and say "already in sync"; a changed option sends exactly one batch.
func TestReapplyInSyncSendsNothing(t *testing.T) {
	requireStrace(t)
	_, path := faultNS(t)
	args := append(append([]string{}, tproxyArgs...), "--network-namespace", path)
	if n, r := batchesSent(t, args...); r.code != 0 || n != 1 {
		t.Fatalf("first apply: exit %d, %d batches (want 1): %s", r.code, n, r.stderr)
	}
	gen := generationOf(t, path)
	n, r := batchesSent(t, args...)
	if r.code != 0 || n != 0 || !strings.Contains(r.stderr, "already in sync") {
		t.Errorf("re-apply in sync: exit %d, %d batches (want 0): %s", r.code, n, r.stderr)
	}
	if g := generationOf(t, path); g != gen {
		t.Errorf("re-apply in sync changed the ruleset generation %d → %d", gen, g)
	}
	changed := append(append([]string{}, args...), "-d", "15020")
	if n, r := batchesSent(t, changed...); r.code != 0 || n != 1 || strings.Contains(r.stderr, "already in sync") {
		t.Errorf("changed apply: exit %d, %d batches (want 1): %s", r.code, n, r.stderr)
	}
	if g := generationOf(t, path); g != gen+1 {
		t.Errorf("one update moved the generation %d → %d", gen, g)
	}
}

// TestUpdatesUnderForeignCommits: while another process keeps committing
// (a table of its own added and deleted), applies alternating between two
// rulesets (exclude list, ports and mode all differ) each end with exactly
// the ruleset asked for, with its routing; the foreign table is never
// touched.
func TestUpdatesUnderForeignCommits(t *testing.T) {
	ns, path := faultNS(t)
	a := rlOptions(10, 300, "15001")
	b := rlOptions(11, 310, "15101")
	b.InboundInterceptionMode, b.InboundTProxyMark, b.InboundTProxyRouteTable = "TPROXY", "0x600", "150"
	ra, rb := rlPlan(t, a, path), rlPlan(t, b, path)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var foreign int
	// Stopped before the namespace is deleted, also when an apply fails
	// the test (rlApply's Fatal): a committer left running would report
	// into a finished test.
	stop := func() { cancel(); wg.Wait() }
	t.Cleanup(stop)
	wg.Add(1)
	go func() {
		defer wg.Done()
		script := "add table inet foreign\nadd chain inet foreign c\ndelete table inet foreign\nadd table inet keep\n"
		for ctx.Err() == nil {
			cmd := exec.Command("ip", "netns", "exec", ns, "nft", "-f", "-")
			cmd.Stdin = strings.NewReader(script)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("foreign commit: %v: %s", err, out)
				return
			}
			foreign++
		}
	}()
	kinds := map[string]int{}
	stale := 0
	for i := range 40 {
		o, want := a, 0
		if i%2 == 1 {
			o, want = b, 1
		}
		res := rlApply(t, o, path)
		stale += res.Change.Stale
		switch {
		case res.Change.Incremental:
			kinds["incremental"]++
		case res.Change.InSync:
			kinds["in sync"]++
		default:
			kinds[res.Change.Summary]++
		}
		if got, report := whichOf(t, path, ra, rb); got != want {
			t.Fatalf("apply %d: ruleset %d, want %d:\n%s", i, got, want, report)
		}
		if m := captureWithoutRouting(t, ns); m != "" {
			t.Fatalf("apply %d: TPROXY rules without %s", i, m)
		}
	}
	stop()
	if foreign == 0 {
		t.Error("no foreign commit ran during the applies: the test proves nothing")
	}
	t.Logf("%d foreign commits; applies: %v; %d updates refused as stale and computed again", foreign, kinds, stale)
	if kinds["incremental"] == 0 {
		t.Errorf("no apply was incremental: %v", kinds)
	}
	if !strings.Contains(harness.InNS(t, ns, "nft", "list", "tables"), "table inet keep") {
		t.Error("the foreign table was removed")
	}
}

// TestUpdateEqualsFreshApply: through the library, switching between
// REDIRECT and TPROXY and changing the exclude list and ports leaves what a
// fresh apply of the same options leaves (nft list ruleset, rules in
// order, sets and chains by name), and the update is incremental.
func TestUpdateEqualsFreshApply(t *testing.T) {
	steps := []func(o *translate.Options){
		func(o *translate.Options) {},
		func(o *translate.Options) {
			o.InboundInterceptionMode, o.InboundTProxyMark, o.InboundTProxyRouteTable = "TPROXY", "0x600", "150"
		},
		func(o *translate.Options) { o.OutboundIPRangesExclude += ",192.168.77.0/24" },
		func(o *translate.Options) { o.InboundPortsExclude = "15090" },
		func(o *translate.Options) { o.InboundInterceptionMode = "REDIRECT" },
	}
	nsA, pathA := faultNS(t)
	o := rlOptions(10, 200, "15001")
	rlApply(t, o, pathA)
	for i, step := range steps[1:] {
		step(&o)
		res := rlApply(t, o, pathA)
		if !res.Change.Incremental {
			t.Errorf("step %d: not incremental: %+v", i+1, res.Change)
		}
		nsB, pathB := faultNS(t)
		rlApply(t, o, pathB)
		got, want := sortedRuleset(t, nsA), sortedRuleset(t, nsB)
		if got != want {
			t.Errorf("step %d: update and fresh apply differ:\n--- update\n%s\n--- fresh\n%s", i+1, got, want)
		}
		if a, b := routingOf(t, nsA), routingOf(t, nsB); a != b {
			t.Errorf("step %d: routing differs:\n--- update\n%s\n--- fresh\n%s", i+1, a, b)
		}
	}
}

// routingOf is the namespace's policy rules, its routes in table 150 and
// the addresses of lo (what nfintercept's routing touches).
func routingOf(t testing.TB, ns string) string {
	var keep []string
	all := harness.InNS(t, ns, "ip", "route", "show", "table", "all") + harness.InNS(t, ns, "ip", "-6", "route", "show", "table", "all") +
		harness.InNS(t, ns, "ip", "addr", "show", "dev", "lo")
	for _, l := range strings.Split(all, "\n") {
		if strings.Contains(l, "table 150") || strings.Contains(l, "inet") {
			keep = append(keep, strings.TrimSpace(l))
		}
	}
	return harness.InNS(t, ns, "ip", "rule", "show") + harness.InNS(t, ns, "ip", "-6", "rule", "show") + strings.Join(keep, "\n")
}

// sortedRuleset is `nft --stateless list ruleset` with the tables, and the
// chains and sets inside each, in name order: an update appends what it
// adds, a fresh apply declares in model order.
func sortedRuleset(t testing.TB, ns string) string {
	listing := harness.InNS(t, ns, "nft", "--stateless", "list", "ruleset")
	var tables, blocks, cur []string
	var head string
	depth := 0
	for _, line := range strings.Split(listing, "\n") {
		l := strings.TrimSpace(line)
		switch {
		case l == "":
		case depth == 0:
			head, depth = l, 1
		case depth == 1 && l == "}":
			slices.Sort(blocks)
			tables = append(tables, head+"\n"+strings.Join(blocks, "\n")+"\n}")
			blocks, depth = nil, 0
		case depth == 1:
			cur, depth = []string{l}, 2
		default:
			cur = append(cur, l)
			if strings.HasSuffix(l, "{") {
				depth++
			}
			if strings.HasPrefix(l, "}") {
				depth--
			}
			if depth == 1 {
				blocks = append(blocks, strings.Join(cur, "\n"))
			}
		}
	}
	slices.Sort(tables)
	return strings.Join(tables, "\n")
}
