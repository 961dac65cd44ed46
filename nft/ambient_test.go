package nft

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"github.com/nfintercept/nfintercept/kernel"
	"github.com/nfintercept/nfintercept/translate"
)

// ambientConfigs are the in-pod and node configurations of the ambient
// profiles, covering every rule their builders emit.
func ambientRulesets() map[string]*translate.Ruleset {
	node := translate.AmbientNode{ProbeSNATv4: translate.DefaultProbeSNATv4, ProbeSNATv6: translate.DefaultProbeSNATv6}
	dual := node
	dual.EnableIPv6, dual.DNSCapture = true, true
	vifs := []translate.Iface{"fake1s0f0", "net1"}
	return map[string]*translate.Ruleset{
		"pod-default":      translate.BuildAmbientPod(translate.AmbientPodConfig{Node: node}),
		"pod-dual-dns":     translate.BuildAmbientPod(translate.AmbientPodConfig{Node: dual}),
		"pod-dual-vif-ing": translate.BuildAmbientPod(translate.AmbientPodConfig{Node: dual, Pod: translate.PodOverrides{IngressMode: true, VirtualInterfaces: vifs}}),
		"pod-dns-on-vif":   translate.BuildAmbientPod(translate.AmbientPodConfig{Node: node, Pod: translate.PodOverrides{DNS: translate.DNSEnabled, VirtualInterfaces: vifs}}),
		"node-empty":       translate.BuildAmbientNode(translate.AmbientNodeConfig{Node: dual}),
		"node-addrs": translate.BuildAmbientNode(translate.AmbientNodeConfig{Node: dual, ProbeAddrs: []netip.Addr{
			netip.MustParseAddr("10.1.0.6"), netip.MustParseAddr("10.1.0.5"), netip.MustParseAddr("10.1.0.5"),
			netip.MustParseAddr("fd00:1::5"), netip.MustParseAddr("255.255.255.255")}}),
	}
}

// TestOracleAmbient: our netlink messages and our nft text list the same
// ruleset for the ambient profiles.
func TestOracleAmbient(t *testing.T) {
	requireRoot(t)
	for name, rs := range ambientRulesets() {
		t.Run(name, func(t *testing.T) { checkOracle(t, rs) })
	}
}

// TestVerifyAmbientInSync: what Apply installed reads back as in sync
// (the kernel's echo of the new expressions canonicalises like ours).
func TestVerifyAmbientInSync(t *testing.T) {
	requireRoot(t)
	for name, rs := range ambientRulesets() {
		t.Run(name, func(t *testing.T) {
			name, path := newNetns(t)
			ipOut(t, "-n", name, "link", "set", "lo", "up")
			if err := Apply(rs, path); err != nil {
				t.Fatal(err)
			}
			if _, err := ApplyRouting(rs, path); err != nil {
				t.Fatal(err)
			}
			d, err := Verify(rs, path)
			if err != nil {
				t.Fatal(err)
			}
			if !d.InSync() {
				t.Fatalf("drift right after Apply:\n%s", d)
			}
		})
	}
}

// TestAmbientRouting: the in-pod profile's policy routing is Istio's
// (fwmark 0x111/0xfff, pref 32764, table 100 with a local default via lo).
func TestAmbientRouting(t *testing.T) {
	requireRoot(t)
	name, path := newNetns(t)
	ipOut(t, "-n", name, "link", "set", "lo", "up")
	rs := ambientRulesets()["pod-dual-dns"]
	if _, err := ApplyRouting(rs, path); err != nil {
		t.Fatal(err)
	}
	for _, fam := range []string{"-4", "-6"} {
		rules := ipOut(t, "-n", name, fam, "rule", "show")
		if !strings.Contains(rules, "32764:\tfrom all fwmark 0x111/0xfff lookup 100 proto 201") {
			t.Errorf("ip %s rule:\n%s", fam, rules)
		}
		routes := ipOut(t, "-n", name, fam, "route", "show", "table", "100")
		if !strings.Contains(routes, "local default dev lo proto 201") {
			t.Errorf("ip %s route table 100:\n%s", fam, routes)
		}
	}
	// Re-applying changes nothing.
	undo, err := ApplyRouting(rs, path)
	if err != nil {
		t.Fatal(err)
	}
	if err := undo(); err != nil {
		t.Fatal(err)
	}
	if rules := ipOut(t, "-n", name, "rule", "show"); !strings.Contains(rules, "fwmark 0x111/0xfff") {
		t.Errorf("re-apply's undo removed the rule:\n%s", rules)
	}
}

// TestProbeAddrsUpdate: pod IPs join and leave the probe sets in batches
// holding only what changes, and the kernel set is what the rules match.
func TestProbeAddrsUpdate(t *testing.T) {
	requireRoot(t)
	name, path := newNetns(t)
	node := translate.AmbientNode{ProbeSNATv4: translate.DefaultProbeSNATv4, ProbeSNATv6: translate.DefaultProbeSNATv6}
	a := func(s string) netip.Addr { return netip.MustParseAddr(s) }
	change := func(add bool, addrs ...netip.Addr) (int, error) {
		n := 0
		err := withNFT(path, func(c *kernel.NFTablesConn) error {
			s, err := Read(c)
			if err != nil {
				return err
			}
			msgs, err := ProbeAddrsChange(s, addrs, add)
			if err != nil {
				return err
			}
			n = len(msgs)
			if n == 0 {
				return nil
			}
			return c.CommitAt(context.Background(), s.Generation, msgs)
		})
		return n, err
	}
	current := func() string {
		var out []netip.Addr
		if err := withNFT(path, func(c *kernel.NFTablesConn) error {
			s, err := Read(c)
			out = ProbeAddrs(s)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(out)
	}

	if _, err := change(true, a("10.1.0.5")); !errors.Is(err, ErrNoProbeSet) {
		t.Fatalf("add before apply: %v", err)
	}
	if err := Apply(translate.BuildAmbientNode(translate.AmbientNodeConfig{Node: node}), path); err != nil {
		t.Fatal(err)
	}
	// Adjacent addresses, a repeat, and an IPv6 address (IPv6 off: skipped).
	if _, err := change(true, a("10.1.0.5"), a("10.1.0.6"), a("10.1.0.5"), a("fd00::5")); err != nil {
		t.Fatal(err)
	}
	if n, err := change(true, a("10.1.0.5")); err != nil || n != 0 {
		t.Fatalf("adding an address already there: %d messages, %v", n, err)
	}
	if got := current(); got != "[10.1.0.5 10.1.0.6]" {
		t.Fatalf("after adds: %v", got)
	}
	// Removing one of two, plus one never added.
	if _, err := change(false, a("10.1.0.5"), a("10.1.0.99")); err != nil {
		t.Fatal(err)
	}
	if got := current(); got != "[10.1.0.6]" {
		t.Fatalf("after remove: %v", got)
	}
	list := nftIn(t, name, "", "list", "set", "inet", "nfintercept-nat", translate.ProbeSetV4)
	if !strings.Contains(list, "elements = { 10.1.0.6 }") {
		t.Fatalf("nft lists:\n%s", list)
	}
	d, err := Verify(translate.BuildAmbientNode(translate.AmbientNodeConfig{Node: node, ProbeAddrs: []netip.Addr{a("10.1.0.6")}}), path)
	if err != nil || !d.InSync() {
		t.Fatalf("verify: %v %v", d, err)
	}
}

func ipOut(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestAmbientRoutingLoIPv6Disabled: with lo's disable_ipv6 set, the IPv6
// local route is left out and the IPv6 rule still installed (A§5), and
// Verify agrees; once IPv6 is back on lo, re-applying adds the route.
func TestAmbientRoutingLoIPv6Disabled(t *testing.T) {
	requireRoot(t)
	name, path := newNetns(t)
	ipOut(t, "-n", name, "link", "set", "lo", "up")
	sysctl := func(v string) {
		if out, err := exec.Command("ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv6.conf.lo.disable_ipv6="+v).CombinedOutput(); err != nil {
			t.Fatalf("sysctl: %v\n%s", err, out)
		}
	}
	sysctl("1")
	rs := ambientRulesets()["pod-dual-dns"]
	if _, err := ApplyRouting(rs, path); err != nil {
		t.Fatal(err)
	}
	if rules := ipOut(t, "-n", name, "-6", "rule", "show"); !strings.Contains(rules, "fwmark 0x111/0xfff lookup 100") {
		t.Errorf("IPv6 rule missing:\n%s", rules)
	}
	if routes := ipOut(t, "-n", name, "-6", "route", "show", "table", "100"); strings.TrimSpace(routes) != "" {
		t.Errorf("IPv6 route installed although lo has IPv6 disabled:\n%s", routes)
	}
	if routes := ipOut(t, "-n", name, "-4", "route", "show", "table", "100"); !strings.Contains(routes, "local default dev lo") {
		t.Errorf("IPv4 route missing:\n%s", routes)
	}
	if err := Apply(rs, path); err != nil {
		t.Fatal(err)
	}
	if d, err := Verify(rs, path); err != nil || !d.InSync() {
		t.Fatalf("verify: %v %v", d, err)
	}
	sysctl("0")
	if _, err := ApplyRouting(rs, path); err != nil {
		t.Fatal(err)
	}
	if routes := ipOut(t, "-n", name, "-6", "route", "show", "table", "100"); !strings.Contains(routes, "local default dev lo") {
		t.Errorf("IPv6 route not added once lo has IPv6:\n%s", routes)
	}
}
