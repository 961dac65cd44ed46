package equiv

import (
	"context"
	"fmt"
	"net/netip"
	"testing"

	"github.com/nfintercept/nfintercept"
	"github.com/nfintercept/nfintercept/compat"
	"github.com/nfintercept/nfintercept/integration/harness"
	"github.com/nfintercept/nfintercept/internal/libtest"
	"github.com/nfintercept/nfintercept/translate"
)

// The twin method for the ambient in-pod profile (AMBIENT.md §3, §8): the
// nft twin gets nfintercept.ApplyAmbientPod, the iptables twins the
// iptables view of the same model plus the ip rule and route Istio's node
// agent adds (derived from the configuration, not the model). ztunnel is
// played by listeners on its ports and by clients with SO_MARK 0x539.

// Listener tags of ztunnel's stand-ins besides TagOutbound (15001),
// TagInbound (15006) and TagDNS (15053).
const TagHBONE = "hbone"

const (
	ambientAppTCP = 8080
	ambientAppUDP = 5353
	ztunnelMark   = 0x539
	replyMark     = 0x111
)

// AmbientCase is one in-pod configuration to compare.
type AmbientCase struct {
	Name   string
	Config translate.AmbientPodConfig
}

// CompareAmbient installs c in one twin per backend (the nft and the two
// iptables ones), runs AmbientFlows through all of them and reports where
// they decide differently.
func CompareAmbient(t *testing.T, c AmbientCase, opts RunOptions) *Result {
	t.Helper()
	opts = opts.withDefaults()
	rs := translate.BuildAmbientPod(c.Config)
	text := map[translate.Family]string{
		translate.IPv4: compat.Restore(rs, translate.IPv4),
		translate.IPv6: compat.Restore(rs, translate.IPv6),
	}
	// The listed virtual interfaces, and one interface that is not listed
	// (its traffic is inbound).
	var topo Topology
	for i, v := range c.Config.Pod.VirtualInterfaces {
		topo.Ifaces = append(topo.Ifaces, Iface{Name: string(v), K: i + 1})
	}
	topo.Ifaces = append(topo.Ifaces, Iface{Name: "unlisted0", K: len(topo.Ifaces) + 1})
	flows := AmbientFlows(c.Config, topo)

	twins := make([]*Twin, len(opts.Backends))
	for i, b := range opts.Backends {
		tw := NewTwin(t, b, topo)
		if err := tw.installAmbient(c.Config, text, opts); err != nil {
			t.Fatalf("%s: installing the %s twin: %v", c.Name, b, err)
		}
		startZtunnelListeners(t, tw)
		twins[i] = tw
	}
	res := &Result{Case: Case{Name: c.Name}, Backends: opts.Backends, Flows: flows,
		Plan: &Plan{Ruleset: rs, Iptables: text}}
	res.decide(t, twins, opts)
	return res
}

func (tw *Twin) installAmbient(cfg translate.AmbientPodConfig, text map[translate.Family]string, opts RunOptions) error {
	// The peer owns the probe addresses: kubelet probes arrive from there.
	for _, a := range []netip.Addr{cfg.Node.ProbeSNATv4, cfg.Node.ProbeSNATv6} {
		if out, err := runIn(tw.Name(FromPeer), "", "ip", "addr", "add", netip.PrefixFrom(a, a.BitLen()).String(), "dev", "lo"); err != nil {
			return fmt.Errorf("probe address on the peer: %v\n%s", err, out)
		}
	}
	if tw.Backend == BackendNft {
		return libtest.With(tw.Path(FromPod), func(ctx context.Context, ns *nfintercept.Namespace) error {
			if _, err := nfintercept.ApplyAmbientPod(ctx, ns, cfg); err != nil {
				return fmt.Errorf("nfintercept.ApplyAmbientPod: %w", err)
			}
			return nil
		})
	}
	if err := tw.restore(text, opts); err != nil {
		return err
	}
	// Istio's node agent routing (A§5): fwmark 0x111/0xfff pref 32764
	// lookup 100, local default via lo in table 100, IPv6 when enabled.
	fams := [][2]string{{"-4", "0.0.0.0/0"}}
	if cfg.Node.EnableIPv6 {
		fams = append(fams, [2]string{"-6", "::/0"})
	}
	for _, f := range fams {
		for _, args := range [][]string{
			{f[0], "rule", "add", "fwmark", "0x111/0xfff", "pref", "32764", "lookup", "100"},
			{f[0], "route", "add", "local", f[1], "dev", "lo", "table", "100"},
		} {
			if out, err := runIn(tw.Name(FromPod), "", "ip", args...); err != nil {
				return fmt.Errorf("ip %v: %v\n%s", args, err, out)
			}
		}
	}
	return nil
}

// startZtunnelListeners puts ztunnel's stand-ins and the app in the pod.
// The UDP DNS stand-in is bound to loopback so its replies are un-NATed.
func startZtunnelListeners(t *testing.T, tw *Twin) {
	t.Helper()
	path := tw.Path(FromPod)
	for _, host := range []string{"0.0.0.0", "[::]"} {
		for port, tag := range map[uint16]string{15001: TagOutbound, 15006: TagInbound, 15008: TagHBONE, DNSAgentPort: TagDNS,
			ambientAppTCP: fmt.Sprintf("app:%d", ambientAppTCP)} {
			harness.ListenTCP(t, path, fmt.Sprintf("%s:%d", host, port), tag, harness.ListenOptions{})
		}
		harness.ListenUDP(t, path, fmt.Sprintf("%s:%d", host, ambientAppUDP), fmt.Sprintf("app:%d", ambientAppUDP), harness.ListenOptions{})
	}
	harness.ListenUDP(t, path, fmt.Sprintf("127.0.0.1:%d", DNSAgentPort), TagDNS, harness.ListenOptions{})
	harness.ListenUDP(t, path, fmt.Sprintf("[::1]:%d", DNSAgentPort), TagDNS, harness.ListenOptions{})
}

// AmbientFlows are the flows of A§8 for both families (IPv6 also when the
// configuration leaves it alone: both twins must then leave it alone).
func AmbientFlows(cfg translate.AmbientPodConfig, topo Topology) []Flow {
	var out []Flow
	add := func(from Origin, name string, f harness.Flow) {
		out = append(out, Flow{Name: name, From: from, Flow: f})
	}
	for _, v6 := range []bool{false, true} {
		dst, pod, peer, lo := defaultDst(v6), podAddr(v6), peerAddr(v6), loopback(v6)
		probe := cfg.Node.ProbeSNATv4
		if v6 {
			probe = cfg.Node.ProbeSNATv6
		}
		app := ident{uid: 1000, gid: 1000}
		fl := func(id ident, proto string, a netip.Addr, port uint16) harness.Flow {
			return id.flow(proto, addrPort(a, port))
		}
		marked := func(f harness.Flow, mark uint32) harness.Flow { f.Mark = mark; return f }

		add(FromPod, "app outbound TCP", fl(app, "tcp", dst, 80))
		add(FromPod, "app outbound UDP", fl(app, "udp", dst, 5000))
		add(FromPod, "app TCP to the probe address", fl(app, "tcp", probe, 80))
		add(FromPod, "app UDP DNS", fl(app, "udp", dst, 53))
		add(FromPod, "app TCP DNS", fl(app, "tcp", dst, 53))
		add(FromPod, "app to its own pod address", fl(app, "tcp", pod, ambientAppTCP))
		add(FromPod, "app to localhost", fl(app, "tcp", lo, ambientAppTCP))
		if !v6 {
			stub := netip.MustParseAddr("127.0.0.53")
			add(FromPod, "app TCP DNS to a loopback resolver", fl(app, "tcp", stub, 53))
			add(FromPod, "app UDP DNS to a loopback resolver", fl(app, "udp", stub, 53))
		}
		add(FromPod, "ztunnel TCP (mark 0x539)", marked(fl(ident{}, "tcp", dst, 80), ztunnelMark))
		add(FromPod, "ztunnel UDP DNS (mark 0x539)", marked(fl(ident{}, "udp", dst, 53), ztunnelMark))
		add(FromPod, "ztunnel HBONE out (mark 0x539)", marked(fl(ident{}, "tcp", dst, 15008), ztunnelMark))
		add(FromPod, "TCP with the reply mark 0x111", marked(fl(app, "tcp", dst, 80), replyMark))
		zt := marked(fl(ident{}, "tcp", pod, ambientAppTCP), ztunnelMark)
		zt.Src, zt.Transparent = peer, true
		add(FromPod, "ztunnel to the app from the client's address (transparent, mark 0x539)", zt)

		add(FromPeer, "inbound TCP", fl(ident{}, "tcp", pod, ambientAppTCP))
		add(FromPeer, "inbound HBONE", fl(ident{}, "tcp", pod, 15008))
		add(FromPeer, "inbound TCP to a VIP", fl(ident{}, "tcp", vip(v6), ambientAppTCP))
		add(FromPeer, "inbound UDP", fl(ident{}, "udp", pod, ambientAppUDP))
		probeFlow := fl(ident{}, "tcp", pod, ambientAppTCP)
		probeFlow.Src = probe
		add(FromPeer, "kubelet probe from the probe address", probeFlow)
		probeFlow.Dst = addrPort(pod, 15008)
		add(FromPeer, "kubelet probe to the HBONE port", probeFlow)

		for _, i := range topo.Ifaces {
			add(FromSide, "TCP in on "+i.Name, fl(ident{}, "tcp", i.PodAddr(v6), ambientAppTCP))
			add(FromSide, "TCP in on "+i.Name+" to the HBONE port", fl(ident{}, "tcp", i.PodAddr(v6), 15008))
			add(FromSide, "TCP in on "+i.Name+" to a remote address", fl(ident{}, "tcp", dst, 80))
			add(FromSide, "UDP in on "+i.Name, fl(ident{}, "udp", i.PodAddr(v6), ambientAppUDP))
		}
	}
	return out
}

func vip(v6 bool) netip.Addr {
	if v6 {
		return VIPV6
	}
	return VIPV4
}
