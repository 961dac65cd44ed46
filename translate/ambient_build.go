package translate

import (
	"net/netip"
	"strconv"
)

// Fixed values of ambient mode (A§0): nothing here can be configured.
var (
	ztunnelOutbound = fixedPort(15001)
	ztunnelInbound  = fixedPort(15006)
	ztunnelHBONE    = fixedPort(15008)
	ztunnelDNS      = fixedPort(15053)
	// ztunnelMark is on every socket ztunnel opens in the pod.
	ztunnelMark = Mark{Raw: "0x539/0xfff", Value: 0x539, Mask: 0xfff}
	// replyMark is the connmark of connections ztunnel opened towards the
	// app, and the fwmark sending the app's replies back to ztunnel.
	replyMark      = Mark{Raw: "0x111/0xfff", Value: 0x111, Mask: 0xfff}
	ambientLoV4    = mustPrefix("127.0.0.1/32")
	ambientLoV6    = mustPrefix("::1/128")
	ambientZoneDNS = uint16(1)
)

// Ambient policy routing (A§5): fwmark 0x111/0xfff → table 100, whose
// default route is local via lo.
const (
	AmbientRouteTable   = 100
	AmbientRulePriority = 32764
	ambientRestoreMask  = 0xffffffff
	ProbeSetV4          = "istio-inpod-probes-v4"
	ProbeSetV6          = "istio-inpod-probes-v6"
)

func fixedPort(n uint16) Port {
	return Port{Raw: strconv.Itoa(int(n)), From: n, To: n}
}

// probePrefix is a probe SNAT address as Istio writes it: no prefix length.
func probePrefix(a netip.Addr) Prefix {
	return Prefix{Raw: a.String(), Prefix: netip.PrefixFrom(a, a.BitLen())}
}

// BuildAmbientPod builds the in-pod capture for ztunnel, following the
// emission order of Istio's iptables backend (A§3.1) so the iptables view
// prints in its order; the nft rendering follows the same model. Where
// Istio's nft backend differs (A§7.4), the iptables backend is followed:
// nothing for IPv6 unless enabled, routing in the same change.
func BuildAmbientPod(cfg AmbientPodConfig) *Ruleset {
	b := &builder{fams: cfg.Node.Families(), tables: map[TableKind]*tableBuilder{}}
	dns := cfg.DNSEnabled()
	ing := cfg.Pod.IngressMode
	ps4, ps6 := probePrefix(cfg.Node.ProbeSNATv4), probePrefix(cfg.Node.ProbeSNATv6)
	const prert, out = "istio-prert", "istio-output"

	// 1–5. Entry jumps, appended after whatever the primary CNI put there.
	b.append(TableMangle, "prerouting", b.both(), rule().do(jump(prert)))
	b.append(TableMangle, "output", b.both(), rule().do(jump(out)))
	b.append(TableNAT, "output", b.both(), rule().do(jump(out)))
	if dns {
		b.append(TableRaw, "prerouting", b.both(), rule().do(jump(prert)))
		b.append(TableRaw, "output", b.both(), rule().do(jump(out)))
	}
	b.append(TableNAT, "prerouting", b.both(), rule().do(jump(prert)))
	b.chain(TableNAT, prert) // declared even when empty (ingress, no VIFs)

	// 6. Virtual interfaces: their inbound TCP is the pod's outbound.
	for _, v := range cfg.Pod.VirtualInterfaces {
		b.append(TableNAT, prert, b.both(), rule(iif(v), proto(TCP)).do(redirect(ztunnelOutbound)))
		b.append(TableNAT, prert, b.both(), rule(iif(v), proto(TCP)).do(ret()))
	}

	// 7. Connections ztunnel opens get the reply connmark.
	b.append(TableMangle, prert, b.both(), rule(mark(ztunnelMark, false)).do(setConnMark(replyMark)))

	// 8–9. Kubelet probes (SNATed on the node) reach the app directly.
	if !ing {
		b.appendVer(TableNAT, prert,
			rule(saddr(ps4), proto(TCP), protoModule(TCP)).do(accept()),
			rule(saddr(ps6), proto(TCP), protoModule(TCP)).do(accept()))
	}
	b.appendVer(TableNAT, out,
		rule(daddr(ps4, false), proto(TCP), protoModule(TCP)).do(accept()),
		rule(daddr(ps6, false), proto(TCP), protoModule(TCP)).do(accept()))

	// 10. Inbound TCP to ztunnel's inbound listener, except HBONE.
	if !ing {
		b.appendVer(TableNAT, prert,
			rule(daddr(ambientLoV4, true), proto(TCP), ndport(ztunnelHBONE), mark(ztunnelMark, true)).do(redirect(ztunnelInbound)),
			rule(daddr(ambientLoV6, true), proto(TCP), ndport(ztunnelHBONE), mark(ztunnelMark, true)).do(redirect(ztunnelInbound)))
	}

	// 11. Replies of connections ztunnel opened carry the reply mark,
	// which routes them back to the local stack (A§5).
	b.append(TableMangle, out, b.both(), rule(connMark(replyMark)).do(restoreMark(ambientRestoreMask, ambientRestoreMask)))

	// 12. DNS to ztunnel's proxy; ztunnel's own queries and their answers
	// in their own conntrack zone.
	if dns {
		b.append(TableNAT, out, b.both(),
			rule(noif("lo"), proto(UDP), mark(ztunnelMark, true), protoModule(UDP), dport(dnsPort)).do(redirect(ztunnelDNS)))
		b.appendVer(TableNAT, out,
			rule(daddr(ambientLoV4, true), proto(TCP), dport(dnsPort), mark(ztunnelMark, true)).do(redirect(ztunnelDNS)),
			rule(daddr(ambientLoV6, true), proto(TCP), dport(dnsPort), mark(ztunnelMark, true)).do(redirect(ztunnelDNS)))
		b.append(TableRaw, out, b.both(),
			rule(proto(UDP), mark(ztunnelMark, false), protoModule(UDP), dport(dnsPort)).do(ctZone(ambientZoneDNS)))
		b.append(TableRaw, prert, b.both(),
			rule(proto(UDP), mark(ztunnelMark, true), protoModule(UDP), sport(dnsPort)).do(ctZone(ambientZoneDNS)))
	}

	// 13–15. ztunnel's transparent connections to the app, traffic over lo
	// to a non-localhost address, then everything else outbound to ztunnel.
	b.append(TableNAT, out, b.both(), rule(proto(TCP), mark(replyMark, false)).do(accept()))
	b.appendVer(TableNAT, out,
		rule(daddr(ambientLoV4, true), oif("lo")).do(accept()),
		rule(daddr(ambientLoV6, true), oif("lo")).do(accept()))
	b.appendVer(TableNAT, out,
		rule(daddr(ambientLoV4, true), proto(TCP), mark(ztunnelMark, true)).do(redirect(ztunnelOutbound)),
		rule(daddr(ambientLoV6, true), proto(TCP), mark(ztunnelMark, true)).do(redirect(ztunnelOutbound)))

	for _, f := range []Family{IPv4, IPv6} {
		if b.fams.Has(f) {
			b.routes = append(b.routes, PolicyRoute{
				Family: f, Mark: replyMark.Value, Mask: replyMark.Mask,
				Table: AmbientRouteTable, Priority: AmbientRulePriority,
				RouteNeedsLoIPv6: f == IPv6,
			})
		}
	}
	return b.finish()
}

// BuildAmbientNode builds the node namespace's probe SNAT (A§6): locally
// generated TCP to an enrolled pod IP leaves with the probe address as
// source, so the pod lets it through uncaptured. "Locally generated" is
// decided as Istio's iptables backend does, by the packet having a local
// socket, not by the kubelet's uid (Istio's nft backend): forwarded
// traffic keeps its source whatever user the kubelet runs as.
func BuildAmbientNode(cfg AmbientNodeConfig) *Ruleset {
	b := &builder{fams: cfg.Node.Families(), tables: map[TableKind]*tableBuilder{}}
	const postrt = "istio-postrt"
	v4 := &Set{Name: ProbeSetV4, Type: SetIPv4Addrs}
	v6 := &Set{Name: ProbeSetV6, Type: SetIPv6Addrs}
	for _, a := range cfg.ProbeAddrs {
		a = a.Unmap()
		switch {
		case a.Is4():
			v4.Prefixes = append(v4.Prefixes, hostPrefix(a))
		case b.fams.Has(IPv6):
			// Like Istio's nft manager: IPv6 pod IPs are skipped with IPv6 off.
			v6.Prefixes = append(v6.Prefixes, hostPrefix(a))
		}
	}
	// Before the node's own SNAT/MASQUERADE rules.
	b.insert(TableNAT, "postrouting", 1, b.both(), rule().do(jump(postrt)))
	b.appendVer(TableNAT, postrt,
		rule(socketExists(), proto(TCP), daddrSet(v4)).do(snat(cfg.Node.ProbeSNATv4)),
		rule(socketExists(), proto(TCP), daddrSet(v6)).do(snat(cfg.Node.ProbeSNATv6)))
	return b.finish()
}

// ProbeSet returns the name of the probe set for an address's family.
func ProbeSet(a netip.Addr) string {
	if a.Unmap().Is4() {
		return ProbeSetV4
	}
	return ProbeSetV6
}

func noif(name Iface) Match     { return Match{Kind: MatchOutIface, Iface: name, Negate: true} }
func protoModule(p Proto) Match { return Match{Kind: MatchProtoModule, Proto: p} }
func socketExists() Match       { return Match{Kind: MatchSocketExists} }
func setConnMark(m Mark) Action { return Action{Kind: ActSetConnMark, Mark: m} }
func snat(a netip.Addr) Action  { return Action{Kind: ActSNAT, Addr: a} }
func restoreMark(nf, ct uint32) Action {
	return Action{Kind: ActRestoreMark, NfMask: nf, CtMask: ct}
}
