package integration

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nfintercept/nfintercept"
	"github.com/nfintercept/nfintercept/integration/harness"
	"github.com/nfintercept/nfintercept/internal/libtest"
	"github.com/nfintercept/nfintercept/translate"
)

// Ambient mode with stand-ins for ztunnel (AMBIENT.md §8): listeners on
// its ports inside the pod, clients with SO_MARK 0x539 acting as ztunnel.

const (
	tagZOut   = "ztunnel-outbound" // pod :15001
	tagZIn    = "ztunnel-inbound"  // pod :15006
	tagZHBONE = "ztunnel-hbone"    // pod :15008
	tagZDNS   = "ztunnel-dns"      // pod :15053 (TCP wildcard, UDP on loopback)
	ztMark    = 0x539
)

var (
	probeV4 = translate.DefaultProbeSNATv4
	probeV6 = translate.DefaultProbeSNATv6
	// The "vm" behind the pod's virtual interface fake1s0f0.
	vifPodV4 = netip.MustParseAddr("10.1.0.1")
	vifVMV4  = netip.MustParseAddr("10.1.0.2")
)

// ambientPod is a pod namespace (with peer) and a "vm" namespace behind a
// virtual interface of the pod. The peer also owns the probe addresses.
type ambientPod struct {
	*harness.Pair
	VM, VMPath string
}

func newAmbientPod(t *testing.T) *ambientPod {
	t.Helper()
	p := harness.NewPair(t, harness.PairOptions{PeerAddrs: []netip.Addr{probeV4, probeV6}})
	a := &ambientPod{Pair: p}
	a.VM, a.VMPath = p.AddNS(t, "vm")
	pod := func(args ...string) { harness.MustRun(t, "ip", append([]string{"-n", p.Pod}, args...)...) }
	vm := func(args ...string) { harness.MustRun(t, "ip", append([]string{"-n", a.VM}, args...)...) }
	pod("link", "add", "fake1s0f0", "type", "veth", "peer", "name", "eth0", "netns", a.VM)
	pod("link", "set", "fake1s0f0", "up")
	pod("addr", "add", vifPodV4.String()+"/24", "dev", "fake1s0f0")
	vm("link", "set", "eth0", "up")
	vm("addr", "add", vifVMV4.String()+"/24", "dev", "eth0")
	vm("route", "add", "default", "via", vifPodV4.String())
	// Replies to the probe addresses go back through the peer.
	pod("route", "add", probeV4.String(), "via", harness.PeerV4.String())
	pod("-6", "route", "add", probeV6.String(), "via", harness.PeerV6.String())

	harness.ListenBoth(t, p.PodPath, "tcp", 15001, tagZOut)
	harness.ListenBoth(t, p.PodPath, "tcp", 15006, tagZIn)
	harness.ListenBoth(t, p.PodPath, "tcp", 15008, tagZHBONE)
	harness.ListenBoth(t, p.PodPath, "tcp", 15053, tagZDNS)
	// UDP: bound to loopback so that replies are un-NATed (A§8).
	harness.ListenUDP(t, p.PodPath, "127.0.0.1:15053", tagZDNS, harness.ListenOptions{})
	harness.ListenUDP(t, p.PodPath, "[::1]:15053", tagZDNS, harness.ListenOptions{})
	harness.ListenBoth(t, p.PodPath, "tcp", appPort, tagApp)
	for _, port := range []uint16{80, 53} {
		harness.ListenBoth(t, p.PeerPath, "tcp", port, tagPeer)
	}
	harness.ListenBoth(t, p.PeerPath, "udp", 53, tagPeer)
	waitDAD(t, p.Pod, p.Peer, a.VM)
	return a
}

// waitDAD waits until no IPv6 address in the namespaces is tentative:
// while a link-local address is, the first packets of a flow can be lost
// and a short flow times out.
func waitDAD(t *testing.T, namespaces ...string) {
	t.Helper()
	for _, ns := range namespaces {
		for i := 0; ; i++ {
			if strings.TrimSpace(harness.InNS(t, ns, "ip", "-6", "addr", "show", "tentative")) == "" {
				break
			}
			if i == 100 {
				t.Fatalf("IPv6 addresses in %s still tentative", ns)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func ambientNode(v6, dns bool) translate.AmbientNode {
	return translate.AmbientNode{DNSCapture: dns, EnableIPv6: v6, ProbeSNATv4: probeV4, ProbeSNATv6: probeV6}
}

// ambientFlow is one flow and where it must land.
type ambientFlow struct {
	name    string
	ns      string // namespace path the client runs in
	flow    harness.Flow
	tag     string
	origDst bool
	// remote: the address the listener must see as the client's.
	remote netip.Addr
}

func runAmbientFlows(t *testing.T, flows []ambientFlow) {
	t.Helper()
	for _, c := range flows {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			r := runFlowTo(t, c.ns, c.flow, c.tag, c.origDst)
			if c.remote.IsValid() {
				if ap, err := netip.ParseAddrPort(r.Remote); err != nil || ap.Addr() != c.remote {
					t.Errorf("%v: listener saw the client as %s, want %s", c.flow, r.Remote, c.remote)
				}
			}
		})
	}
}

// podFlows are A§8's rows for one family.
func podFlows(a *ambientPod, v6, dns, ingress bool) []ambientFlow {
	dst, resolver, pod, peer, probe := harness.DstV4, harness.DNSV4, harness.PodV4, harness.PeerV4, probeV4
	if v6 {
		dst, resolver, pod, peer, probe = harness.DstV6, harness.DNSV6, harness.PodV6, harness.PeerV6, probeV6
	}
	tcp := func(d netip.Addr, port uint16) harness.Flow {
		return harness.Flow{Proto: "tcp", Dst: netip.AddrPortFrom(d, port), UID: appUID, GID: appUID}
	}
	udp := func(d netip.Addr, port uint16) harness.Flow {
		return harness.Flow{Proto: "udp", Dst: netip.AddrPortFrom(d, port), UID: appUID, GID: appUID}
	}
	marked := func(f harness.Flow) harness.Flow { f.UID, f.GID, f.Mark = 0, 0, ztMark; return f }
	from := func(f harness.Flow, src netip.Addr) harness.Flow { f.UID, f.GID, f.Src = 0, 0, src; return f }
	dnsTag := func(on, off string) string {
		if dns {
			return on
		}
		return off
	}
	inbound, inboundOrig := tagZIn, true
	if ingress {
		inbound, inboundOrig = tagApp, false
	}
	flows := []ambientFlow{
		{name: "app outbound to ztunnel with original destination", ns: a.PodPath, flow: tcp(dst, 80), tag: tagZOut, origDst: true},
		{name: "app to the probe address is not captured", ns: a.PodPath, flow: tcp(probe, 80), tag: tagPeer},
		{name: "ztunnel mark goes direct", ns: a.PodPath, flow: marked(tcp(dst, 80)), tag: tagPeer},
		{name: "app UDP DNS", ns: a.PodPath, flow: udp(resolver, 53), tag: dnsTag(tagZDNS, tagPeer)},
		{name: "app TCP DNS", ns: a.PodPath, flow: tcp(resolver, 53), tag: dnsTag(tagZDNS, tagZOut), origDst: true},
		{name: "ztunnel UDP DNS goes to the resolver", ns: a.PodPath, flow: marked(udp(resolver, 53)), tag: tagPeer},
		{name: "app to own pod address is not captured", ns: a.PodPath, flow: tcp(pod, appPort), tag: tagApp},
		{name: "inbound", ns: a.PeerPath, flow: from(tcp(pod, appPort), peer), tag: inbound, origDst: inboundOrig},
		{name: "inbound HBONE reaches ztunnel directly", ns: a.PeerPath, flow: from(tcp(pod, 15008), peer), tag: tagZHBONE},
		{name: "probe address reaches the app directly", ns: a.PeerPath, flow: from(tcp(pod, appPort), probe),
			tag: tagApp, remote: probe},
	}
	if !v6 {
		flows = append(flows,
			ambientFlow{name: "virtual interface to ztunnel outbound", ns: a.VMPath, flow: from(tcp(pod, appPort), netip.Addr{}),
				tag: tagZOut, origDst: true},
			ambientFlow{name: "virtual interface HBONE port to ztunnel outbound", ns: a.VMPath,
				flow: from(tcp(vifPodV4, 15008), netip.Addr{}), tag: tagZOut, origDst: true})
	}
	return flows
}

// TestAmbientPodFlows applies the in-pod profile through the library and
// checks A§8's packet walk with real connections.
func TestAmbientPodFlows(t *testing.T) {
	for _, c := range []struct {
		name    string
		v6, dns bool
		pod     translate.PodOverrides
	}{
		{name: "default-dualstack", v6: true, dns: true, pod: translate.PodOverrides{VirtualInterfaces: []translate.Iface{"fake1s0f0"}}},
		{name: "dns-off-by-annotation", v6: true, dns: true, pod: translate.PodOverrides{DNS: translate.DNSDisabled}},
		{name: "dns-on-by-annotation-ipv4", dns: false, pod: translate.PodOverrides{DNS: translate.DNSEnabled, VirtualInterfaces: []translate.Iface{"fake1s0f0"}}},
		{name: "ingress", v6: true, pod: translate.PodOverrides{IngressMode: true, VirtualInterfaces: []translate.Iface{"fake1s0f0"}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := newAmbientPod(t)
			cfg := translate.AmbientPodConfig{Node: ambientNode(c.v6, c.dns), Pod: c.pod}
			if _, err := applyAmbientPod(a.PodPath, cfg); err != nil {
				t.Fatalf("ApplyAmbientPod: %v", err)
			}
			dns := cfg.DNSEnabled()
			flows := podFlows(a, false, dns, c.pod.IngressMode)
			if len(c.pod.VirtualInterfaces) == 0 {
				flows = flows[:len(flows)-2]
			}
			if c.v6 {
				flows = append(flows, podFlows(a, true, dns, c.pod.IngressMode)...)
			}
			runAmbientFlows(t, flows)
			if !c.v6 {
				// IPv6 is left alone (unlike Istio's nft backend, A§7.4).
				runAmbientFlows(t, []ambientFlow{
					{name: "ipv6 off: app outbound untouched", ns: a.PodPath,
						flow: harness.Flow{Proto: "tcp", Dst: netip.AddrPortFrom(harness.DstV6, 80)}, tag: tagPeer},
					{name: "ipv6 off: app UDP DNS untouched", ns: a.PodPath,
						flow: harness.Flow{Proto: "udp", Dst: netip.AddrPortFrom(harness.DNSV6, 53)}, tag: tagPeer},
				})
			}
			d, err := verifyRuleset(a.PodPath, translate.BuildAmbientPod(cfg))
			if err != nil || !d.InSync() {
				t.Errorf("verify after apply: %v %v", d, err)
			}
		})
	}
}

// TestAmbientTransparentReplies is A§8 row 15: "ztunnel" (mark 0x539,
// IP_TRANSPARENT, bound to the peer's address) connects to the app; the
// app's replies to that foreign address are brought back over lo by
// connmark 0x111 and the table-100 policy route. Without the ip rule they
// leave by eth0 and the connection fails.
func TestAmbientTransparentReplies(t *testing.T) {
	a := newAmbientPod(t)
	if _, err := applyAmbientPod(a.PodPath, translate.AmbientPodConfig{Node: ambientNode(true, true)}); err != nil {
		t.Fatal(err)
	}
	for _, fam := range []struct {
		name      string
		pod, peer netip.Addr
		flag      string
	}{{"ipv4", harness.PodV4, harness.PeerV4, "-4"}, {"ipv6", harness.PodV6, harness.PeerV6, "-6"}} {
		ztunnel := harness.Flow{Proto: "tcp", Dst: netip.AddrPortFrom(fam.pod, appPort), Src: fam.peer,
			Mark: ztMark, Transparent: true, Timeout: time.Second}
		runAmbientFlows(t, []ambientFlow{{name: fam.name + " transparent connection to the app", ns: a.PodPath,
			flow: ztunnel, tag: tagApp, remote: fam.peer}})
		rules := harness.InNS(t, a.Pod, "ip", fam.flag, "rule", "show")
		if !strings.Contains(rules, "32764:\tfrom all fwmark 0x111/0xfff lookup 100") {
			t.Fatalf("%s: policy rule missing:\n%s", fam.name, rules)
		}
		harness.InNS(t, a.Pod, "ip", fam.flag, "rule", "del", "pref", "32764")
		if r := harness.Run(t, a.PodPath, ztunnel); r.Err == nil {
			t.Errorf("%s: without the policy rule the transparent connection still worked (%+v): the test proves nothing", fam.name, r.Reply)
		}
	}
}

// TestAmbientNodeProbes: in a "node" namespace, locally generated TCP to
// an enrolled pod IP leaves with the probe address as source; traffic the
// node forwards to the pod keeps its source; pod IPs join and leave the
// probe set one by one.
func TestAmbientNodeProbes(t *testing.T) {
	// The pair's "pod" side plays the node; its "peer" side the enrolled pod.
	p := harness.NewPair(t, harness.PairOptions{})
	node, pod := p.Pod, p.Peer
	enrolledV4, enrolledV6 := harness.PeerV4, harness.PeerV6
	clientNS, clientPath := p.AddNS(t, "client")
	ip := func(ns string, args ...string) { harness.MustRun(t, "ip", append([]string{"-n", ns}, args...)...) }
	ip(node, "link", "add", "cli0", "type", "veth", "peer", "name", "eth0", "netns", clientNS)
	ip(node, "link", "set", "cli0", "up")
	ip(node, "addr", "add", "10.3.0.1/24", "dev", "cli0")
	ip(clientNS, "link", "set", "eth0", "up")
	ip(clientNS, "addr", "add", "10.3.0.2/24", "dev", "eth0")
	ip(clientNS, "route", "add", "default", "via", "10.3.0.1")
	harness.InNS(t, node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	ip(pod, "route", "add", "10.3.0.0/24", "via", harness.PodV4.String())
	ip(pod, "route", "add", probeV4.String(), "via", harness.PodV4.String())
	ip(pod, "-6", "route", "add", probeV6.String(), "via", harness.PodV6.String())
	harness.ListenBoth(t, p.PeerPath, "tcp", appPort, tagApp)
	waitDAD(t, node, pod)

	cfg := translate.AmbientNodeConfig{Node: ambientNode(true, false)}
	if _, err := applyAmbientNode(p.PodPath, cfg); err != nil {
		t.Fatalf("ApplyAmbientNode: %v", err)
	}
	kubelet := func(a netip.Addr) harness.Flow {
		return harness.Flow{Proto: "tcp", Dst: netip.AddrPortFrom(a, appPort), UID: 4242, GID: 4242}
	}
	forwarded := ambientFlow{name: "forwarded traffic keeps its source", ns: clientPath,
		flow: harness.Flow{Proto: "tcp", Dst: netip.AddrPortFrom(enrolledV4, appPort)}, tag: tagApp,
		remote: netip.MustParseAddr("10.3.0.2")}

	// Not enrolled yet: the node's own address.
	runAmbientFlows(t, []ambientFlow{
		{name: "before enrolment ipv4", ns: p.PodPath, flow: kubelet(enrolledV4), tag: tagApp, remote: harness.PodV4},
	})
	if err := addProbeAddrs(p.PodPath, enrolledV4, enrolledV6); err != nil {
		t.Fatal(err)
	}
	runAmbientFlows(t, []ambientFlow{
		{name: "enrolled ipv4 probe is SNATed", ns: p.PodPath, flow: kubelet(enrolledV4), tag: tagApp, remote: probeV4},
		{name: "enrolled ipv6 probe is SNATed", ns: p.PodPath, flow: kubelet(enrolledV6), tag: tagApp, remote: probeV6},
		forwarded,
	})

	// Re-applying keeps the enrolled pods (nil ProbeAddrs).
	if _, err := applyAmbientNode(p.PodPath, cfg); err != nil {
		t.Fatal(err)
	}
	runAmbientFlows(t, []ambientFlow{
		{name: "after re-apply ipv4 probe is SNATed", ns: p.PodPath, flow: kubelet(enrolledV4), tag: tagApp, remote: probeV4},
	})
	if err := removeProbeAddrs(p.PodPath, enrolledV4); err != nil {
		t.Fatal(err)
	}
	runAmbientFlows(t, []ambientFlow{
		{name: "removed ipv4 keeps the node source", ns: p.PodPath, flow: kubelet(enrolledV4), tag: tagApp, remote: harness.PodV4},
		{name: "ipv6 still enrolled", ns: p.PodPath, flow: kubelet(enrolledV6), tag: tagApp, remote: probeV6},
	})
	if got := fmt.Sprint(mustProbeAddrs(t, p.PodPath)); got != "["+enrolledV6.String()+"]" {
		t.Errorf("probe set holds %s", got)
	}

	// The node's own SNAT (an iptables-nft nat POSTROUTING rule, at
	// srcnat) comes after the probe SNAT, as Istio's "-I POSTROUTING 1".
	nodeSNAT := netip.MustParseAddr("192.0.2.99")
	ip(node, "addr", "add", nodeSNAT.String()+"/32", "dev", "eth0")
	harness.InNS(t, node, "iptables-nft", "-t", "nat", "-A", "POSTROUTING", "-o", "eth0", "-p", "tcp", "-j", "SNAT", "--to-source", nodeSNAT.String())
	if err := addProbeAddrs(p.PodPath, enrolledV4); err != nil {
		t.Fatal(err)
	}
	runAmbientFlows(t, []ambientFlow{
		{name: "probe SNAT before the node's SNAT", ns: p.PodPath, flow: kubelet(enrolledV4), tag: tagApp, remote: probeV4},
	})
	if err := removeProbeAddrs(p.PodPath, enrolledV4); err != nil {
		t.Fatal(err)
	}
	runAmbientFlows(t, []ambientFlow{
		{name: "not enrolled: the node's SNAT", ns: p.PodPath, flow: kubelet(enrolledV4), tag: tagApp, remote: nodeSNAT},
	})
}

func mustProbeAddrs(t *testing.T, ns string) []netip.Addr {
	t.Helper()
	var out []netip.Addr
	err := libtest.With(ns, func(ctx context.Context, n *nfintercept.Namespace) error {
		var err error
		out, err = nfintercept.ProbeAddrs(ctx, n)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestCLIAmbientPod drives the in-pod profile through the binary: apply
// with a Pod manifest's annotations, traffic, verify, drift in the policy
// routing found and reconciled, cleanup of rules and routing.
func TestCLIAmbientPod(t *testing.T) {
	a := newAmbientPod(t)
	manifest := filepath.Join(t.TempDir(), "pod.yaml")
	if err := os.WriteFile(manifest, []byte(`apiVersion: v1
kind: Pod
metadata:
  name: app
  annotations:
    ambient.istio.io/dns-capture: "false"
    istio.io/reroute-virtual-interfaces: fake1s0f0
spec:
  containers: []
`), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"--profile", "ambient-pod", "--ambient-dns-capture", "--ambient-ipv6",
		"--pod-annotations", manifest, "--network-namespace", a.PodPath}
	mustCLI(t, "", append([]string{"apply"}, args...)...)
	runAmbientFlows(t, []ambientFlow{
		{name: "outbound", ns: a.PodPath, flow: harness.Flow{Proto: "tcp", Dst: netip.AddrPortFrom(harness.DstV6, 80)}, tag: tagZOut, origDst: true},
		{name: "DNS off by annotation", ns: a.PodPath, flow: harness.Flow{Proto: "udp", Dst: netip.AddrPortFrom(harness.DNSV4, 53)}, tag: tagPeer},
		{name: "virtual interface", ns: a.VMPath, flow: harness.Flow{Proto: "tcp", Dst: netip.AddrPortFrom(harness.PodV4, appPort)}, tag: tagZOut},
	})
	mustCLI(t, "", append([]string{"verify"}, args...)...)

	harness.InNS(t, a.Pod, "ip", "-6", "rule", "del", "pref", "32764")
	if r := runCLI(t, "", append([]string{"verify"}, args...)...); r.code != 1 || !strings.Contains(r.stdout, "- policy rule: ip -6 rule fwmark 0x111/0xfff lookup 100 pref 32764") {
		t.Fatalf("verify after deleting the IPv6 rule: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	mustCLI(t, "", append([]string{"verify", "--reconcile"}, args...)...)
	if rules := harness.InNS(t, a.Pod, "ip", "-6", "rule", "show"); !strings.Contains(rules, "32764:\tfrom all fwmark 0x111/0xfff lookup 100") {
		t.Fatalf("reconcile did not restore the rule:\n%s", rules)
	}

	mustCLI(t, "", "cleanup", "--profile", "ambient-pod", "--network-namespace", a.PodPath)
	if tables := ownTables(t, a.Pod); len(tables) != 0 {
		t.Errorf("tables left after cleanup: %v", tables)
	}
	for _, fam := range []string{"-4", "-6"} {
		if rules := harness.InNS(t, a.Pod, "ip", fam, "rule", "show"); strings.Contains(rules, "fwmark 0x111") {
			t.Errorf("policy rule left after cleanup:\n%s", rules)
		}
	}
	runAmbientFlows(t, []ambientFlow{
		{name: "after cleanup outbound is direct", ns: a.PodPath, flow: harness.Flow{Proto: "tcp", Dst: netip.AddrPortFrom(harness.DstV4, 80)}, tag: tagPeer},
	})
}

// Path-taking forms of the ambient library calls.

func applyAmbientPod(path string, cfg translate.AmbientPodConfig) (*translate.Ruleset, error) {
	var rs *translate.Ruleset
	err := libtest.With(path, func(ctx context.Context, ns *nfintercept.Namespace) (err error) {
		rs, err = nfintercept.ApplyAmbientPod(ctx, ns, cfg)
		return err
	})
	return rs, err
}

func applyAmbientNode(path string, cfg translate.AmbientNodeConfig) (*translate.Ruleset, error) {
	var rs *translate.Ruleset
	err := libtest.With(path, func(ctx context.Context, ns *nfintercept.Namespace) (err error) {
		rs, err = nfintercept.ApplyAmbientNode(ctx, ns, cfg)
		return err
	})
	return rs, err
}

func verifyRuleset(path string, rs *translate.Ruleset) (*nfintercept.Report, error) {
	var rep *nfintercept.Report
	err := libtest.With(path, func(ctx context.Context, ns *nfintercept.Namespace) (err error) {
		rep, err = nfintercept.VerifyRuleset(ctx, ns, rs)
		return err
	})
	return rep, err
}

func addProbeAddrs(path string, addrs ...netip.Addr) error {
	return libtest.With(path, func(ctx context.Context, ns *nfintercept.Namespace) error {
		return nfintercept.AddProbeAddrs(ctx, ns, addrs...)
	})
}

func removeProbeAddrs(path string, addrs ...netip.Addr) error {
	return libtest.With(path, func(ctx context.Context, ns *nfintercept.Namespace) error {
		return nfintercept.RemoveProbeAddrs(ctx, ns, addrs...)
	})
}
