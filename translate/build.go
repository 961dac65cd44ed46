package translate

import (
	"fmt"
	"net/netip"
	"sort"
)

// Fixed values of istio-iptables that have no option.
var (
	passthroughV4 = mustPrefix("127.0.0.6/32") // inbound passthrough source (proxy → app)
	passthroughV6 = mustPrefix("::6/128")
	loopbackV6    = mustPrefix("::1/128") // IPv6 has no loopback knob
	outboundMark  = Mark{Raw: "1338", Value: 1338}
	dnsPort       = Port{Raw: "53", From: 53, To: 53}
	agentDNSPort  = Port{Raw: "15053", From: 15053, To: 15053}
)

// Conntrack zones separating app↔agent from agent↔upstream DNS flows.
const (
	zoneUpstream = 1
	zoneClient   = 2
)

// Build turns a validated configuration into the rule model, following
// istio-iptables' emission algorithm step by step (SPEC §2.1), so the
// iptables view can be printed from the result in Istio's order.
func Build(cfg Config) *Ruleset {
	b := newBuilder(&cfg)
	b.build()
	rs := b.finish()
	if rs.Families.Has(IPv6) {
		// The proxy binds ::6 for inbound passthrough; IPv4's 127.0.0.6 is local already.
		rs.LoopbackAddrs = []netip.Prefix{passthroughV6.Prefix}
	}
	return rs
}

type builder struct {
	cfg    *Config
	fams   Family // families programmed: IPv4, or both with IPv6 enabled
	step   int
	tables map[TableKind]*tableBuilder
	order  []TableKind
	routes []PolicyRoute
}

type tableBuilder struct {
	table  *Table
	chains map[string]*chainBuilder
}

// chainBuilder keeps one rule list per family, as istio-iptables does, so
// positional inserts land where they land in iptables; finish merges them.
type chainBuilder struct {
	chain *Chain
	v4    []*Rule
	v6    []*Rule
}

func newBuilder(cfg *Config) *builder {
	return &builder{cfg: cfg, fams: cfg.Families(), tables: map[TableKind]*tableBuilder{}}
}

// Scope tags of SPEC §2.1: a rule for every programmed family, or one family.
func (b *builder) both() Family { return b.fams }

func (b *builder) v6() Family { return b.fams & IPv6 }

func (b *builder) nextStep() int {
	b.step++
	return b.step
}

// baseChain is the hook of a base chain, or nil for a regular chain (a
// function rather than a package-level map: nothing to build at start-up).
func baseChain(kind TableKind, name string) *BaseChain {
	var hook Hook
	switch name {
	case "prerouting":
		hook = HookPrerouting
	case "output":
		hook = HookOutput
	case "postrouting":
		if kind != TableNAT {
			return nil
		}
		// Only the ambient node profile uses it: srcnat - 1, so the probe
		// SNAT comes before the node's own SNAT/MASQUERADE chains at srcnat
		// (iptables' nat POSTROUTING among them), as Istio's "-I
		// POSTROUTING 1" does; the first NAT of a connection wins.
		return &BaseChain{ChainTypeNAT, HookPostrouting, 99}
	default:
		return nil
	}
	switch kind {
	case TableNAT:
		return &BaseChain{ChainTypeNAT, hook, -100}
	case TableMangle:
		if hook == HookOutput {
			return &BaseChain{ChainTypeRoute, hook, -150}
		}
		return &BaseChain{ChainTypeFilter, hook, -150}
	case TableRaw:
		return &BaseChain{ChainTypeFilter, hook, -300}
	}
	return nil
}

func (b *builder) chain(kind TableKind, name string) *chainBuilder {
	tb := b.tables[kind]
	if tb == nil {
		tb = &tableBuilder{table: &Table{Kind: kind}, chains: map[string]*chainBuilder{}}
		b.tables[kind] = tb
		b.order = append(b.order, kind)
	}
	cb := tb.chains[name]
	if cb == nil {
		c := &Chain{Name: name}
		c.Base = baseChain(kind, name)
		cb = &chainBuilder{chain: c}
		tb.chains[name] = cb
		tb.table.Chains = append(tb.table.Chains, c)
	}
	return cb
}

// add places rule r, for families fam, into kind/chain: appended when
// order.Insert is 0, else inserted at that 1-based position of each family's
// list. Rules for no family (IPv6 disabled) are dropped.
func (b *builder) add(kind TableKind, chain string, fam Family, order Order, r *Rule) {
	if fam == 0 {
		return
	}
	r.Family = fam
	r.Order = order
	cb := b.chain(kind, chain)
	if r.Action.Kind == ActJump {
		b.chain(kind, r.Action.Chain)
	}
	if fam.Has(IPv4) {
		cb.v4 = place(cb.v4, order.Insert, r)
	}
	if fam.Has(IPv6) {
		cb.v6 = place(cb.v6, order.Insert, r)
	}
}

func place(list []*Rule, insert int, r *Rule) []*Rule {
	if insert <= 0 || insert > len(list) {
		return append(list, r)
	}
	list = append(list, nil)
	copy(list[insert:], list[insert-1:])
	list[insert-1] = r
	return list
}

// append adds a rule at the end of a chain as its own emission step.
func (b *builder) append(kind TableKind, chain string, fam Family, r *Rule) {
	b.add(kind, chain, fam, Order{Step: b.nextStep()}, r)
}

// insert adds a rule at a 1-based position as its own emission step.
func (b *builder) insert(kind TableKind, chain string, pos int, fam Family, r *Rule) {
	b.add(kind, chain, fam, Order{Step: b.nextStep(), Insert: pos}, r)
}

// appendVer adds the IPv4 and the IPv6 variant of a rule ("[ver]" in SPEC).
func (b *builder) appendVer(kind TableKind, chain string, r4, r6 *Rule) {
	b.append(kind, chain, IPv4, r4)
	b.append(kind, chain, b.v6(), r6)
}

func (b *builder) finish() *Ruleset {
	rs := &Ruleset{Families: b.fams, Routes: b.routes}
	for _, kind := range TableKinds {
		tb := b.tables[kind]
		if tb == nil {
			continue
		}
		for _, c := range tb.table.Chains {
			cb := tb.chains[c.Name]
			c.Rules = mergeFamilies(cb.v4, cb.v6)
		}
		// Base chains first, then regular chains in order of first use:
		// the order a reader follows a packet in.
		sort.SliceStable(tb.table.Chains, func(i, j int) bool {
			return tb.table.Chains[i].Base != nil && tb.table.Chains[j].Base == nil
		})
		tb.table.Sets = collectNamedSets(tb.table)
		rs.Tables = append(rs.Tables, tb.table)
	}
	return rs
}

// mergeFamilies interleaves the IPv4 and IPv6 lists of a chain into one inet
// chain, keeping each family's order. Rules for both families appear in both
// lists in the same relative order (the emission algorithm guarantees it).
func mergeFamilies(v4, v6 []*Rule) []*Rule {
	out := make([]*Rule, 0, len(v4)+len(v6))
	i, j := 0, 0
	for i < len(v4) || j < len(v6) {
		switch {
		case i < len(v4) && v4[i].Family == IPv4:
			out = append(out, v4[i])
			i++
		case j < len(v6) && v6[j].Family == IPv6:
			out = append(out, v6[j])
			j++
		case i < len(v4) && j < len(v6) && v4[i] == v6[j]:
			out = append(out, v4[i])
			i++
			j++
		default:
			panic(fmt.Sprintf("translate: rules for both families out of order (step %d)", firstStep(v4, v6, i, j)))
		}
	}
	return out
}

func firstStep(v4, v6 []*Rule, i, j int) int {
	if i < len(v4) {
		return v4[i].Order.Step
	}
	return v6[j].Order.Step
}

func collectNamedSets(t *Table) []*Set {
	var sets []*Set
	seen := map[*Set]bool{}
	for _, c := range t.Chains {
		for _, r := range c.Rules {
			if s := r.SetMatch(); s != nil && !s.Anonymous && !seen[s] {
				seen[s] = true
				sets = append(sets, s)
			}
		}
	}
	return sets
}

func (b *builder) build() {
	c := b.cfg
	tproxy := c.Mode == ModeTProxy
	dns := c.DNSEnabled()

	// 1. Exclude interfaces: never capture traffic in or out of them.
	for _, x := range c.ExcludeInterfaces {
		b.append(TableNAT, "prerouting", b.both(), rule(iif(x)).do(ret()))
		b.append(TableNAT, "output", b.both(), rule(oif(x)).do(ret()))
	}
	if tproxy {
		for _, x := range c.ExcludeInterfaces {
			b.append(TableMangle, "prerouting", b.both(), rule(iif(x)).do(ret()))
			b.append(TableMangle, "output", b.both(), rule(oif(x)).do(ret()))
		}
	}

	// 2. Virtual interfaces: their inbound traffic is not inbound capture.
	for _, v := range c.RerouteVirtualInterfaces {
		b.insert(TableNAT, "prerouting", 1, b.both(), rule(iif(v)).do(ret()))
	}

	// 3. Drop conntrack-invalid packets.
	if c.DropInvalid {
		b.append(TableMangle, "prerouting", b.both(), rule(ctState(CtInvalid)).do(jump("istio-drop")))
		b.append(TableMangle, "istio-drop", b.both(), rule().do(drop()))
	}

	// 4–6. HBONE exemption and the two redirect chains.
	b.append(TableNAT, "istio-inbound", b.both(), rule(proto(TCP), dport(c.InboundTunnelPort)).do(ret()))
	b.append(TableNAT, "istio-redirect", b.both(), rule(proto(TCP)).do(redirect(c.ProxyPort)))
	b.append(TableNAT, "istio-in-redirect", b.both(), rule(proto(TCP)).do(redirect(c.InboundCapturePort)))

	// 7. Inbound capture.
	if !c.InboundPorts.Empty() {
		b.inbound(tproxy)
	}

	// 8–9. Outbound entry and excluded outbound ports (TCP and UDP).
	b.append(TableNAT, "output", b.both(), rule().do(jump("istio-output")))
	if len(c.OutboundPortsExclude) > 0 {
		set := portSet("outbound-ports-exclude", c.OutboundPortsExclude)
		step := b.nextStep()
		b.add(TableNAT, "istio-output", b.both(), Order{Step: step}, rule(proto(TCP), dportSet(set)).do(ret()))
		b.add(TableNAT, "istio-output", b.both(), Order{Step: step, Sub: 1}, rule(proto(UDP), dportSet(set)).do(ret()))
	}

	// 10. Inbound passthrough: the proxy talking to the app from 127.0.0.6.
	b.appendVer(TableNAT, "istio-output",
		rule(oif("lo"), saddr(passthroughV4)).do(ret()),
		rule(oif("lo"), saddr(passthroughV6)).do(ret()))

	// 11–12. The proxy's own traffic: loop back to inbound when it targets a
	// local address other than localhost, otherwise leave it alone.
	for _, u := range c.ProxyUIDs {
		b.proxyOwner(MatchUID, u, dns, dns)
	}
	for _, g := range c.ProxyGIDs {
		// istio-iptables never uses the multiport form for groups.
		b.proxyOwner(MatchGID, g, false, dns)
	}

	// 13. Owner groups: only members of the included groups are captured.
	if c.OwnerGroupsInclude.All {
		for _, g := range c.OwnerGroupsExclude {
			b.append(TableNAT, "istio-output", b.both(), rule(owner(MatchGID, g, false)).do(ret()))
		}
	} else {
		r := rule()
		for _, g := range c.OwnerGroupsInclude.Owners {
			r.Matches = append(r.Matches, owner(MatchGID, g, true))
		}
		b.append(TableNAT, "istio-output", b.both(), r.do(ret()))
	}

	// 14. DNS capture.
	if dns {
		b.dns()
	}

	// 15. Localhost is never captured.
	b.appendVer(TableNAT, "istio-output",
		rule(daddr(c.HostIPv4Loopback, false)).do(ret()),
		rule(daddr(loopbackV6, false)).do(ret()))

	// 16. Excluded destinations.
	b.cidrRule(IPv4, "exclude-v4", c.OutboundIPRangesExclude.V4, nil, ret())
	b.cidrRule(b.v6(), "exclude-v6", c.OutboundIPRangesExclude.V6, nil, ret())

	// 17. Outbound ports always captured.
	if len(c.OutboundPortsInclude) > 0 {
		b.append(TableNAT, "istio-output", b.both(),
			rule(proto(TCP), dportSet(portSet("outbound-ports", c.OutboundPortsInclude))).do(jump("istio-redirect")))
	}

	// 18. Captured destinations, and traffic arriving from virtual interfaces.
	inc := c.OutboundIPRangesInclude
	if inc.All {
		b.append(TableNAT, "istio-output", b.both(), rule().do(jump("istio-redirect")))
		for _, v := range c.RerouteVirtualInterfaces {
			b.insert(TableNAT, "prerouting", 1, b.both(), rule(iif(v)).do(jump("istio-redirect")))
		}
	} else {
		b.cidrRule(IPv4, "include-v4", inc.V4, c.RerouteVirtualInterfaces, jump("istio-redirect"))
		b.cidrRule(b.v6(), "include-v6", inc.V6, c.RerouteVirtualInterfaces, jump("istio-redirect"))
	}

	// 19. TPROXY marks, conntrack marks and policy routing.
	if tproxy {
		b.tproxyTail()
	}
}

func (b *builder) inbound(tproxy bool) {
	c := b.cfg
	table := TableNAT
	if tproxy {
		table = TableMangle
		b.append(TableMangle, "istio-divert", b.both(), rule().do(setMark(c.TProxyMark)))
		b.append(TableMangle, "istio-divert", b.both(), rule().do(accept()))
		b.appendVer(TableMangle, "istio-tproxy",
			rule(daddr(c.HostIPv4Loopback, true), proto(TCP)).do(tproxyTo(c.InboundCapturePort, c.TProxyMark)),
			rule(daddr(loopbackV6, true), proto(TCP)).do(tproxyTo(c.InboundCapturePort, c.TProxyMark)))
	}
	b.append(table, "prerouting", b.both(), rule(proto(TCP)).do(jump("istio-inbound")))
	established := ctState(CtRelated | CtEstablished)
	if c.InboundPorts.All {
		if len(c.InboundPortsExclude) > 0 {
			b.append(table, "istio-inbound", b.both(),
				rule(proto(TCP), dportSet(portSet("inbound-ports-exclude", c.InboundPortsExclude))).do(ret()))
		}
		if tproxy {
			b.append(TableMangle, "istio-inbound", b.both(), rule(proto(TCP), established).do(jump("istio-divert")))
			b.append(TableMangle, "istio-inbound", b.both(), rule(proto(TCP)).do(jump("istio-tproxy")))
		} else {
			b.append(TableNAT, "istio-inbound", b.both(), rule(proto(TCP)).do(jump("istio-in-redirect")))
		}
		return
	}
	if len(c.InboundPorts.Ports) == 0 {
		return // "-b ," : the jump above, nothing to capture
	}
	set := portSet("inbound-ports", c.InboundPorts.Ports)
	step := b.nextStep()
	if tproxy {
		b.add(TableMangle, "istio-inbound", b.both(), Order{Step: step},
			rule(proto(TCP), dportSet(set), established).do(jump("istio-divert")))
		b.add(TableMangle, "istio-inbound", b.both(), Order{Step: step, Sub: 1},
			rule(proto(TCP), dportSet(set)).do(jump("istio-tproxy")))
	} else {
		b.add(TableNAT, "istio-inbound", b.both(), Order{Step: step},
			rule(proto(TCP), dportSet(set)).do(jump("istio-in-redirect")))
	}
}

// proxyOwner emits istio-iptables' three rules for one proxy uid or gid.
func (b *builder) proxyOwner(kind MatchKind, o Owner, multiport, dns bool) {
	c := b.cfg
	var notTunnel Match
	if multiport {
		notTunnel = multiDport(true, dnsPort, c.InboundTunnelPort)
	} else {
		notTunnel = ndport(c.InboundTunnelPort)
	}
	// a. The proxy reaching a local, non-localhost address goes to inbound.
	b.appendVer(TableNAT, "istio-output",
		rule(oif("lo"), daddr(c.HostIPv4Loopback, true), proto(TCP), notTunnel, owner(kind, o, false)).do(jump("istio-in-redirect")),
		rule(oif("lo"), daddr(loopbackV6, true), proto(TCP), notTunnel, owner(kind, o, false)).do(jump("istio-in-redirect")))
	// b. Anyone else's traffic over lo is not captured (unless -i names a
	// loopback range); DNS over lo still is.
	if !c.OutboundIPRangesInclude.HasLoopback {
		r := rule(oif("lo"), owner(kind, o, true))
		if dns {
			r = rule(oif("lo"), proto(TCP), ndport(dnsPort), owner(kind, o, true))
		}
		b.append(TableNAT, "istio-output", b.both(), r.do(ret()))
	}
	// c. Everything else the proxy sends goes direct.
	b.append(TableNAT, "istio-output", b.both(), rule(owner(kind, o, false)).do(ret()))
}

func (b *builder) dns() {
	c := b.cfg
	all := c.CaptureAllDNS
	b.append(TableRaw, "output", b.both(), rule().do(jump("istio-output-dns")))
	if all || len(c.DNSServersV4) > 0 {
		b.append(TableNAT, "istio-output", IPv4, rule().do(jump("istio-output-dns")))
	}
	if all || len(c.DNSServersV6) > 0 {
		b.append(TableNAT, "istio-output", b.v6(), rule().do(jump("istio-output-dns")))
	}
	for _, p := range []Proto{TCP, UDP} {
		if all {
			b.append(TableNAT, "istio-output-dns", b.both(), rule(proto(p), dport(dnsPort)).do(redirect(agentDNSPort)))
			continue
		}
		for _, s := range c.DNSServersV4 {
			b.append(TableNAT, "istio-output-dns", IPv4, rule(proto(p), dport(dnsPort), daddr(hostPrefix(s), false)).do(redirect(agentDNSPort)))
		}
		for _, s := range c.DNSServersV6 {
			b.append(TableNAT, "istio-output-dns", b.v6(), rule(proto(p), dport(dnsPort), daddr(hostPrefix(s), false)).do(redirect(agentDNSPort)))
		}
	}
	// Conntrack zones: the proxy's upstream queries and its answers to
	// clients must not share conntrack entries with the clients' queries.
	zones := func(kind MatchKind, owners []Owner) {
		for _, o := range owners {
			b.append(TableRaw, "istio-output-dns", b.both(), rule(proto(UDP), dport(dnsPort), owner(kind, o, false)).do(ctZone(zoneUpstream)))
			b.append(TableRaw, "istio-output-dns", b.both(), rule(proto(UDP), sport(agentDNSPort), owner(kind, o, false)).do(ctZone(zoneClient)))
		}
	}
	zones(MatchUID, c.ProxyUIDs)
	zones(MatchGID, c.ProxyGIDs)
	if all {
		b.append(TableRaw, "prerouting", b.both(), rule().do(jump("istio-inbound")))
		b.append(TableRaw, "istio-output-dns", b.both(), rule(proto(UDP), dport(dnsPort)).do(ctZone(zoneClient)))
		b.append(TableRaw, "istio-inbound", b.both(), rule(proto(UDP), sport(dnsPort)).do(ctZone(zoneUpstream)))
		return
	}
	for _, fs := range []struct {
		fam     Family
		servers []netip.Addr
	}{{IPv4, c.DNSServersV4}, {b.v6(), c.DNSServersV6}} {
		if len(fs.servers) == 0 {
			continue
		}
		b.append(TableRaw, "prerouting", fs.fam, rule().do(jump("istio-inbound")))
		for _, s := range fs.servers {
			p := hostPrefix(s)
			b.append(TableRaw, "istio-output-dns", fs.fam, rule(proto(UDP), dport(dnsPort), daddr(p, false)).do(ctZone(zoneClient)))
			b.append(TableRaw, "istio-inbound", fs.fam, rule(proto(UDP), sport(dnsPort), saddr(p)).do(ctZone(zoneUpstream)))
		}
	}
}

// cidrRule emits one rule matching a named set of destinations for one
// family, preceded (for include lists) by the virtual-interface redirects
// that istio-iptables inserts per CIDR and interface.
func (b *builder) cidrRule(fam Family, name string, prefixes []Prefix, virt []Iface, a Action) {
	if fam == 0 || len(prefixes) == 0 {
		return
	}
	typ := SetIPv4Prefixes
	if fam == IPv6 {
		typ = SetIPv6Prefixes
	}
	set := &Set{Name: name, Type: typ, Prefixes: prefixes}
	step := b.nextStep()
	for i, v := range virt {
		b.add(TableNAT, "prerouting", fam, Order{Step: step, Sub: i, Insert: 1}, rule(iif(v), daddrSet(set)).do(a))
	}
	b.add(TableNAT, "istio-output", fam, Order{Step: step, Sub: len(virt)}, rule(daddrSet(set)).do(a))
}

func (b *builder) tproxyTail() {
	c := b.cfg
	m := c.TProxyMark
	b.append(TableMangle, "prerouting", b.both(), rule(proto(TCP), mark(m, false)).do(Action{Kind: ActSaveMark}))
	b.append(TableMangle, "output", b.both(), rule(proto(TCP), oif("lo"), mark(m, false)).do(ret()))
	for _, kind := range []MatchKind{MatchUID, MatchGID} {
		owners := c.ProxyUIDs
		if kind == MatchGID {
			owners = c.ProxyGIDs
		}
		for _, o := range owners {
			b.appendVer(TableMangle, "output",
				rule(daddr(c.HostIPv4Loopback, true), proto(TCP), oif("lo"), owner(kind, o, false)).do(setMark(outboundMark)),
				rule(daddr(loopbackV6, true), proto(TCP), oif("lo"), owner(kind, o, false)).do(setMark(outboundMark)))
		}
	}
	b.append(TableMangle, "output", b.both(), rule(proto(TCP), connMark(m)).do(Action{Kind: ActRestoreMark}))
	b.insert(TableMangle, "istio-inbound", 1, b.both(), rule(proto(TCP), mark(m, false)).do(ret()))
	step := b.nextStep()
	b.add(TableMangle, "istio-inbound", IPv4, Order{Step: step, Insert: 2}, rule(proto(TCP), saddr(passthroughV4), iif("lo")).do(ret()))
	b.add(TableMangle, "istio-inbound", b.v6(), Order{Step: step, Sub: 1, Insert: 2}, rule(proto(TCP), saddr(passthroughV6), iif("lo")).do(ret()))
	b.insert(TableMangle, "istio-inbound", 3, b.both(), rule(proto(TCP), iif("lo"), mark(outboundMark, true)).do(ret()))

	// Policy routing delivers marked packets locally; only needed when
	// something is captured inbound.
	if !c.InboundPorts.Empty() {
		for _, f := range []Family{IPv4, IPv6} {
			if b.fams.Has(f) {
				b.routes = append(b.routes, PolicyRoute{Family: f, Mark: m.Value, Table: c.TProxyRouteTable})
			}
		}
	}
}

// Rule and match constructors, named after what they express.

func rule(ms ...Match) *Rule { return &Rule{Matches: ms} }

func (r *Rule) do(a Action) *Rule {
	r.Action = a
	return r
}

func proto(p Proto) Match            { return Match{Kind: MatchProto, Proto: p} }
func iif(name Iface) Match           { return Match{Kind: MatchInIface, Iface: name} }
func oif(name Iface) Match           { return Match{Kind: MatchOutIface, Iface: name} }
func saddr(p Prefix) Match           { return Match{Kind: MatchSaddr, Prefix: p} }
func daddr(p Prefix, neg bool) Match { return Match{Kind: MatchDaddr, Prefix: p, Negate: neg} }
func daddrSet(s *Set) Match          { return Match{Kind: MatchDaddr, Set: s} }
func dport(p Port) Match             { return Match{Kind: MatchDport, Ports: []Port{p}} }
func ndport(p Port) Match            { return Match{Kind: MatchDport, Ports: []Port{p}, Negate: true} }
func sport(p Port) Match             { return Match{Kind: MatchSport, Ports: []Port{p}} }
func dportSet(s *Set) Match          { return Match{Kind: MatchDport, Set: s} }
func ctState(s CtState) Match        { return Match{Kind: MatchCtState, State: s} }
func mark(m Mark, neg bool) Match    { return Match{Kind: MatchMark, Mark: m, Negate: neg} }
func connMark(m Mark) Match          { return Match{Kind: MatchConnMark, Mark: m} }

func multiDport(neg bool, ports ...Port) Match {
	return Match{Kind: MatchMultiDport, Ports: ports, Negate: neg}
}

func owner(kind MatchKind, o Owner, neg bool) Match {
	return Match{Kind: kind, Owner: o, Negate: neg}
}

func ret() Action                    { return Action{Kind: ActReturn} }
func accept() Action                 { return Action{Kind: ActAccept} }
func drop() Action                   { return Action{Kind: ActDrop} }
func jump(chain string) Action       { return Action{Kind: ActJump, Chain: chain} }
func redirect(p Port) Action         { return Action{Kind: ActRedirect, Port: p} }
func setMark(m Mark) Action          { return Action{Kind: ActSetMark, Mark: m} }
func ctZone(z uint16) Action         { return Action{Kind: ActCtZone, Zone: z} }
func tproxyTo(p Port, m Mark) Action { return Action{Kind: ActTProxy, Port: p, Mark: m} }

// maxInlinePorts is the longest port list written inline as an anonymous
// set; longer lists become a named set, which the kernel accepts at any
// size (an anonymous set must fit one netlink message) and which nft shows
// apart from the rule.
const maxInlinePorts = 64

func portSet(name string, ports []Port) *Set {
	if len(ports) > maxInlinePorts {
		return &Set{Name: name, Type: SetPorts, Ports: ports}
	}
	return &Set{Type: SetPorts, Ports: ports, Anonymous: true}
}

// hostPrefix is a resolver address as a host prefix, spelled canonically.
func hostPrefix(a netip.Addr) Prefix {
	p := netip.PrefixFrom(a, a.BitLen())
	return Prefix{Raw: p.String(), Prefix: p}
}

func mustPrefix(s string) Prefix {
	return Prefix{Raw: s, Prefix: netip.MustParsePrefix(s)}
}
