package nfintercept

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/nfintercept/nfintercept/kernel"
	"github.com/nfintercept/nfintercept/nft"
	"github.com/nfintercept/nfintercept/translate"
)

type noSystem struct{}

func (noSystem) LookupUser(string) (uint32, error)  { return 0, errInjected }
func (noSystem) LookupGroup(string) (uint32, error) { return 0, errInjected }
func (noSystem) ReadResolvConf() ([]byte, error)    { return nil, nil }

// testConfig is -u 1337 -b * -i *, in TPROXY mode (mark 0x600, table
// 150) when tproxy, dual-stack.
func testConfig(t *testing.T, tproxy bool) translate.Config {
	t.Helper()
	o := translate.DefaultOptions()
	o.ProxyUID, o.InboundPortsInclude, o.OutboundIPRangesInclude, o.DualStack = "1337", "*", "*", true
	if tproxy {
		o.InboundInterceptionMode, o.InboundTProxyMark, o.InboundTProxyRouteTable = "TPROXY", "0x600", "150"
	}
	c, err := o.Config(noSystem{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func rulesets(t *testing.T) (redirect, tproxy *translate.Ruleset) {
	return translate.Build(testConfig(t, false)), translate.Build(testConfig(t, true))
}

// ambientPodRuleset is the dual-stack ambient pod profile with DNS
// capture; it must want policy routing for the fault tests to mean
// anything.
func ambientPodRuleset(t *testing.T) *translate.Ruleset {
	t.Helper()
	rs := translate.BuildAmbientPod(translate.AmbientPodConfig{Node: translate.AmbientNode{
		DNSCapture: true, EnableIPv6: true,
		ProbeSNATv4: translate.DefaultProbeSNATv4, ProbeSNATv6: translate.DefaultProbeSNATv6}})
	if len(rs.Routes) == 0 {
		t.Fatal("ambient pod ruleset wants no policy routing")
	}
	return rs
}

// checkState fails when the fake holds capture rules without their routing
// or not the ruleset wanted.
func checkState(t *testing.T, k *fakeKernel, what string, want ...*translate.Ruleset) {
	t.Helper()
	if m := k.captureWithoutRouting(); m != "" {
		t.Errorf("%s: capture rules without their routing (%s); calls %v", what, m, k.log)
	}
	for _, rs := range want {
		if k.rs == rs {
			return
		}
	}
	if len(want) > 0 {
		t.Errorf("%s: tables hold another ruleset; calls %v", what, k.log)
	}
}

// TestChangeOrder: routing is added before the batch and pruned after it.
func TestChangeOrder(t *testing.T) {
	redirect, tproxy := rulesets(t)
	k := newFake(redirect, tproxy)
	for _, rs := range []*translate.Ruleset{tproxy, redirect, tproxy} {
		k.log = nil
		if _, err := change(context.Background(), k, rs, nil); err != nil {
			t.Fatal(err)
		}
		if got, want := strings.Join(k.log, " "), "begin-routing update commit prune-routing"; got != want {
			t.Errorf("operations %q, want %q", got, want)
		}
		checkState(t, k, "after change", rs)
		if d, _ := k.RoutingDiff(rs); len(d) != 0 {
			t.Errorf("routing differs after change: %v", d)
		}
	}
}

// TestChangeFaults: a fault at every step of a mode switch, each way,
// leaves one configuration's tables with their routing; a batch known not
// to be committed leaves the routing as it was, and one committed despite
// a lost verdict is kept.
// The ambient pod profile (its own routes and lo address) goes through the
// same path (ApplyAmbientPod → ApplyRuleset → change), so switches to and
// from it are faulted too.
func TestChangeFaults(t *testing.T) {
	redirect, tproxy := rulesets(t)
	ambient := ambientPodRuleset(t)
	for _, sw := range [][2]*translate.Ruleset{{redirect, tproxy}, {tproxy, redirect}, {tproxy, ambient}, {ambient, redirect}} {
		from, to := sw[0], sw[1]
		for call := 1; call <= 8; call++ {
			for _, fault := range []string{"error", "ambiguous-applied", "ambiguous-lost"} {
				k := newFake(redirect, tproxy, ambient)
				if _, err := change(context.Background(), k, from, nil); err != nil {
					t.Fatal(err)
				}
				before := routingKeys(from)
				k.calls, k.log = 0, nil
				k.fail[call] = fault
				_, err := change(context.Background(), k, to, nil)
				checkState(t, k, fault, from, to)
				committedNow := k.rs == to
				switch {
				case err == nil && !committedNow:
					t.Errorf("call %d %s: no error, but the batch was not committed; calls %v", call, fault, k.log)
				case k.rs == from && fault == "error" && k.log[len(k.log)-1] == "commit":
					// A refused batch: routing back to exactly before.
					if d, _ := k.RoutingDiff(from); len(d) != 0 {
						t.Errorf("call %d: refused batch left routing changed: %v (had %v)", call, d, before)
					}
				}
			}
		}
	}
}

// TestAmbiguousVerdict: a lost verdict is settled from the kernel: an
// unchanged generation means not committed (routing rolled back), a
// committed batch is kept (no error), and when the kernel cannot be read
// the routing is kept and the error says so.
func TestAmbiguousVerdict(t *testing.T) {
	redirect, tproxy := rulesets(t)
	ctx := context.Background()

	k := newFake(redirect, tproxy)
	k.fail[3] = "ambiguous-applied" // begin-routing, update, commit
	if _, err := change(ctx, k, tproxy, nil); err != nil {
		t.Errorf("committed batch with a lost verdict: %v", err)
	}
	checkState(t, k, "applied", tproxy)

	k = newFake(redirect, tproxy)
	k.fail[3] = "ambiguous-lost"
	_, err := change(ctx, k, tproxy, nil)
	if err == nil {
		t.Error("lost batch reported as success")
	}
	checkState(t, k, "lost", nil)
	if len(k.routing) != 0 {
		t.Errorf("routing of a batch known lost kept: %v", k.routing)
	}

	k = newFake(redirect, tproxy)
	k.fail[3], k.fail[4], k.fail[5] = "ambiguous-applied", "error", "error" // generation and read back fail
	_, err = change(ctx, k, tproxy, nil)
	if err == nil || !strings.Contains(err.Error(), "policy routing kept") {
		t.Errorf("undecidable outcome: %v", err)
	}
	checkState(t, k, "undecidable", tproxy)
}

// TestCleanupOrder: tables go first and routing after; a failed batch
// leaves the routing, a failed routing cleanup leaves no capture rules.
func TestCleanupOrder(t *testing.T) {
	redirect, tproxy := rulesets(t)
	ctx := context.Background()
	k := newFake(redirect, tproxy)
	if _, err := change(ctx, k, tproxy, nil); err != nil {
		t.Fatal(err)
	}
	k.log = nil
	if err := cleanup(ctx, k); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(k.log, " "), "tables generation commit cleanup-routing"; got != want {
		t.Errorf("operations %q, want %q", got, want)
	}
	if k.rs != nil || len(k.routing) != 0 {
		t.Errorf("left tables %v, routing %v", tableNames(k.rs), k.routing)
	}
	for call := 1; call <= 6; call++ {
		for _, fault := range []string{"error", "ambiguous-applied", "ambiguous-lost"} {
			k := newFake(redirect, tproxy)
			if _, err := change(ctx, k, tproxy, nil); err != nil {
				t.Fatal(err)
			}
			k.calls, k.log = 0, nil
			k.fail[call] = fault
			err := cleanup(ctx, k)
			checkState(t, k, "cleanup "+fault, tproxy, nil)
			if err == nil && (k.rs != nil || len(k.routing) != 0) {
				t.Errorf("call %d %s: no error but left tables %v routing %v", call, fault, tableNames(k.rs), k.routing)
			}
		}
	}
}

// TestDetectIgnoresOwnAddress: the ::6 nfintercept adds to lo does not
// make a namespace IPv6 (repro 2: detection depended on what was applied
// before), tagged or, on kernels without IFA_PROTO, untagged.
func TestDetectIgnoresOwnAddress(t *testing.T) {
	pod := []addrCase{
		{"v4 pod", []addrSpec{{2, "10.99.0.2/24", false}}, false},
		{"v4 pod, our ::6 tagged", []addrSpec{{1, "::6/128", true}, {2, "10.99.0.2/24", false}}, false},
		{"v4 pod, our ::6 untagged", []addrSpec{{1, "::6/128", false}, {2, "10.99.0.2/24", false}}, false},
		{"v6 only", []addrSpec{{2, "fd00::2/64", false}}, true},
	}
	for _, c := range pod {
		k := newFake()
		for _, a := range c.addrs {
			k.addrs = append(k.addrs, ifAddr(a.index, a.prefix, a.ours))
		}
		got, err := detectIPv6(k, false)
		if err != nil || got != c.want {
			t.Errorf("%s: IPv6 %v, %v; want %v", c.name, got, err, c.want)
		}
	}
}

type addrSpec struct {
	index  int
	prefix string
	ours   bool
}

type addrCase struct {
	name  string
	addrs []addrSpec
	want  bool
}

// TestUpdateDecisions: when the tables are in sync nothing is sent; a
// batch the kernel refuses as stale (a foreign commit after the read) is
// computed again from a new read; the tables are replaced whole when no
// update can be computed, the kernel keeps refusing it as stale, or
// refuses it for another reason; a lost verdict of an update is settled
// by the generation it was computed at.
func TestUpdateDecisions(t *testing.T) {
	redirect, tproxy := rulesets(t)
	ctx := context.Background()
	ops := func(k *fakeKernel) string { return strings.Join(k.log, " ") }

	k := newFake(redirect, tproxy)
	if _, err := change(ctx, k, tproxy, nil); err != nil {
		t.Fatal(err)
	}
	gen := k.gen
	k.log = nil
	ch, err := change(ctx, k, tproxy, nil)
	if err != nil || !ch.InSync || ch.Summary != "already in sync" {
		t.Errorf("re-apply: %+v, %v", ch, err)
	}
	if got, want := ops(k), "begin-routing update prune-routing"; got != want || k.gen != gen {
		t.Errorf("in-sync re-apply: operations %q (want %q), generation %d → %d", got, want, gen, k.gen)
	}

	cases := []struct {
		name        string
		setup       func(k *fakeKernel)
		ops         string
		incremental bool
		summary     string
	}{
		{"foreign commit once", func(k *fakeKernel) {
			k.afterRead = func(k *fakeKernel) { k.foreignCommit(); k.afterRead = nil }
		}, "begin-routing update commit update commit prune-routing", true, ""},
		{"always stale", func(k *fakeKernel) { k.afterRead = (*fakeKernel).foreignCommit },
			"begin-routing" + strings.Repeat(" update commit", staleRetries+1) + " generation commit prune-routing", false, "replaced (the ruleset changed between read and commit 5 times"},
		{"not incremental", func(k *fakeKernel) { k.fail[2] = "not-incremental" },
			"begin-routing update generation commit prune-routing", false, "replaced (fake: not expressible"},
		{"read fails", func(k *fakeKernel) { k.fail[2] = "error" },
			"begin-routing update generation commit prune-routing", false, "replaced (injected fault)"},
		{"update refused", func(k *fakeKernel) { k.fail[3] = "error" },
			"begin-routing update commit generation commit prune-routing", false, "replaced (kernel refused message 1"},
	}
	for _, c := range cases {
		for _, sw := range [][2]*translate.Ruleset{{redirect, tproxy}, {tproxy, redirect}} {
			k := newFake(redirect, tproxy)
			if _, err := change(ctx, k, sw[0], nil); err != nil {
				t.Fatal(err)
			}
			k.calls, k.log = 0, nil
			c.setup(k)
			ch, err := change(ctx, k, sw[1], nil)
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
				continue
			}
			checkState(t, k, c.name, sw[1])
			if got := ops(k); got != c.ops {
				t.Errorf("%s: operations %q, want %q", c.name, got, c.ops)
			}
			if wantStale := map[string]int{"foreign commit once": 1, "always stale": staleRetries + 1}[c.name]; ch.Stale != wantStale {
				t.Errorf("%s: %d stale updates counted, want %d", c.name, ch.Stale, wantStale)
			}
			if ch.Incremental != c.incremental || ch.InSync || !strings.HasPrefix(ch.Summary, c.summary) {
				t.Errorf("%s: change %+v", c.name, ch)
			}
		}
	}

	// A lost verdict at an unchanged generation: not committed, routing
	// rolled back, no replace attempted.
	k = newFake(redirect, tproxy)
	k.fail[3] = "ambiguous-lost"
	if _, err := change(ctx, k, tproxy, nil); err == nil || !strings.Contains(err.Error(), "update nfintercept tables") {
		t.Errorf("lost update: %v", err)
	}
	checkState(t, k, "lost update", nil)
	if len(k.routing) != 0 || ops(k) != "begin-routing update commit generation undo-routing" {
		t.Errorf("lost update: routing %v, operations %q", k.routing, ops(k))
	}
}

// TestLargeSetsReplaced: a ruleset with more set items than an update
// pays for is replaced without reading the tables.
func TestLargeSetsReplaced(t *testing.T) {
	o := translate.DefaultOptions()
	o.ProxyUID, o.OutboundIPRangesInclude = "1337", "*"
	var cidrs []string
	for i := range nft.MaxUpdateSetItems + 1 {
		cidrs = append(cidrs, fmt.Sprintf("10.%d.%d.0/24", i/256, i%256))
	}
	o.OutboundIPRangesExclude = strings.Join(cidrs, ",")
	cfg, err := o.Config(noSystem{})
	if err != nil {
		t.Fatal(err)
	}
	rs := translate.Build(cfg)
	k := newFake(rs)
	ch, err := change(context.Background(), k, rs, nil)
	if err != nil || ch.Incremental || !strings.Contains(ch.Summary, "reading them back costs more") {
		t.Fatalf("change %+v, %v", ch, err)
	}
	if got, want := strings.Join(k.log, " "), "begin-routing generation commit prune-routing"; got != want {
		t.Errorf("operations %q, want %q", got, want)
	}
	checkState(t, k, "large sets", rs)
}

// TestProbeAddrsChange: the probe set change is computed from one read and
// sent at its generation; a foreign commit in between makes the kernel
// refuse it, and it is read and sent again, up to probeRetries times. A
// node without the probe sets is bad input; addresses already in place
// send nothing.
func TestProbeAddrsChange(t *testing.T) {
	ctx := context.Background()
	a, b := netip.MustParseAddr("10.0.0.5"), netip.MustParseAddr("fd00::5")

	k := newFake()
	var ierr *InputError
	if err := probeAddrsChange(ctx, k, []netip.Addr{a}, true); !errors.As(err, &ierr) {
		t.Errorf("no probe sets: %v, want an *InputError", err)
	}
	if k.updates != 0 {
		t.Errorf("no probe sets: %d batches sent", k.updates)
	}

	k = newFake()
	k.probes = map[netip.Addr]bool{}
	foreign := 2
	k.afterRead = func(k *fakeKernel) {
		if foreign > 0 {
			foreign--
			k.foreignCommit()
		}
	}
	if err := probeAddrsChange(ctx, k, []netip.Addr{a, b}, true); err != nil {
		t.Fatalf("add after 2 foreign commits: %v", err)
	}
	if !k.probes[a] || !k.probes[b] || k.updates != 3 {
		t.Errorf("add after 2 foreign commits: probes %v after %d batches, want both after 3", k.probes, k.updates)
	}

	k.updates = 0
	if err := probeAddrsChange(ctx, k, []netip.Addr{a}, true); err != nil || k.updates != 0 {
		t.Errorf("add of an address in place: %v, %d batches sent", err, k.updates)
	}

	k.afterRead = func(k *fakeKernel) { k.foreignCommit() }
	err := probeAddrsChange(ctx, k, []netip.Addr{a}, false)
	if !kernel.Stale(err) || k.updates != probeRetries+1 {
		t.Errorf("remove under endless foreign commits: %v after %d batches, want stale after %d", err, k.updates, probeRetries+1)
	}
	if !k.probes[a] {
		t.Error("refused removal removed the address")
	}

	k.afterRead, k.updates = nil, 0
	if err := probeAddrsChange(ctx, k, []netip.Addr{a}, false); err != nil || k.probes[a] || !k.probes[b] {
		t.Errorf("remove: %v, probes %v", err, k.probes)
	}
}

// TestReconcileAmbientNodeKeepsProbeAddrs: with nil ProbeAddrs the probe
// sets are read under the lock, so an address a node agent added just
// before the lock is taken stays; reading them before the lock would have
// re-applied the older sets and removed it as drift.
func TestReconcileAmbientNodeKeepsProbeAddrs(t *testing.T) {
	node := translate.AmbientNode{EnableIPv6: true,
		ProbeSNATv4: translate.DefaultProbeSNATv4, ProbeSNATv6: translate.DefaultProbeSNATv6}
	a, b := netip.MustParseAddr("10.0.0.5"), netip.MustParseAddr("10.0.0.6")
	nodeRS := func(addrs ...netip.Addr) *translate.Ruleset {
		return translate.BuildAmbientNode(translate.AmbientNodeConfig{Node: node, ProbeAddrs: addrs})
	}
	before, after := nodeRS(a), nodeRS(a, b)
	k := newFake(before, after)
	k.rs, k.probes = before, map[netip.Addr]bool{a: true}
	for _, key := range routingKeys(before) {
		k.routing[key] = true
	}
	k.onLock = func(k *fakeKernel) { // AddProbeAddrs by the node agent
		k.probes[b], k.rs = true, after
		k.foreignCommit()
	}
	rep, err := reconcileAmbientNode(context.Background(), k, translate.AmbientNodeConfig{Node: node})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.InSync() || rep.Reconciled {
		t.Errorf("drift reported and repaired: %v", rep.Drift)
	}
	checkState(t, k, "reconcile", after)
}

// TestProbeAddrsBadInput: an address that cannot be a pod IP is refused as
// input, naming it, before the namespace is touched (nil here: any kernel
// access would fail otherwise).
func TestProbeAddrsBadInput(t *testing.T) {
	zoned := netip.MustParseAddr("fe80::1%eth0")
	for _, f := range []func(context.Context, *Namespace, ...netip.Addr) error{AddProbeAddrs, RemoveProbeAddrs} {
		err := f(context.Background(), nil, netip.MustParseAddr("10.0.0.1"), zoned)
		var ierr *InputError
		if !errors.As(err, &ierr) || !strings.Contains(err.Error(), `"fe80::1%eth0"`) {
			t.Errorf("zoned pod IP: %v, want an *InputError naming it", err)
		}
		if err := f(context.Background(), nil, netip.Addr{}); !errors.As(err, &ierr) {
			t.Errorf("zero pod IP: %v, want an *InputError", err)
		}
	}
}
