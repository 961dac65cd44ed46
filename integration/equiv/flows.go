package equiv

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/nfintercept/nfintercept/integration/harness"
	"github.com/nfintercept/nfintercept/translate"
)

// Ports and addresses flows use besides those of the configuration.
const (
	appPort  = 8080 // an application port (unless a list names it, which is fine)
	httpPort = 80
	dnsPort  = 53
	altDNS   = 5353
	// closedPort has no listener anywhere: the invalid-packet probe's
	// destination.
	closedPort = 9
	appID      = 1000 // uid and gid of "the application"
	// maxListItems bounds how many items of one list get flows.
	maxListItems = 6
	// maxIdentities bounds the identities that get the full set of flows.
	maxIdentities = 12
)

var (
	// Default destinations: outside every list unless a list covers them.
	DefaultV4 = netip.MustParseAddr("203.0.113.10")
	DefaultV6 = netip.MustParseAddr("fd00:99::10")
	// Well-known inbound ports of a sidecar (status, health, metrics).
	sidecarPorts = []uint16{15020, 15021, 15090}
)

// TopologyFor gives the pod one extra interface per name in -c and -k
// other than eth0 and lo; a wildcard "x+" becomes interface "x0".
func TopologyFor(cfg translate.Config) Topology {
	var topo Topology
	seen := map[string]bool{"eth0": true, "lo": true}
	for _, list := range [][]translate.Iface{cfg.ExcludeInterfaces, cfg.RerouteVirtualInterfaces} {
		for _, i := range list {
			name := concreteIface(i)
			if seen[name] {
				continue
			}
			seen[name] = true
			topo.Ifaces = append(topo.Ifaces, Iface{Name: name, K: len(topo.Ifaces) + 1})
		}
	}
	return topo
}

func concreteIface(i translate.Iface) string {
	s := strings.TrimSpace(string(i))
	if strings.HasSuffix(s, "+") {
		return strings.TrimSuffix(s, "+") + "0"
	}
	return s
}

// target is a destination every identity connects to.
type target struct {
	what  string
	proto string
	dst   netip.AddrPort
}

// ident is who makes a flow.
type ident struct {
	name     string
	uid, gid uint32
	groups   []uint32
}

func (id ident) flow(proto string, dst netip.AddrPort) harness.Flow {
	return harness.Flow{Proto: proto, Dst: dst, UID: id.uid, GID: id.gid, Groups: id.groups}
}

// flowSet collects flows, dropping duplicates (the first name wins).
type flowSet struct {
	flows []Flow
	seen  map[string]bool
}

func (s *flowSet) add(from Origin, name string, f harness.Flow) {
	s.addFlow(Flow{Name: name, From: from, Flow: f})
}

func (s *flowSet) addFlow(f Flow) {
	if !f.Dst.Addr().IsValid() || f.Dst.Port() == 0 {
		return
	}
	key := f.String()
	if s.seen[key] {
		return
	}
	s.seen[key] = true
	s.flows = append(s.flows, f)
}

// Flows derives the flows to run for a configuration, deterministically:
// outbound TCP to the first, last, middle and neighbouring addresses of every
// include/exclude CIDR and to the default destinations; to included and
// excluded ports; as root, the application, every proxy uid and gid, owner
// group members and a member of the proxy group by supplementary groups
// only; loopback flows (127.0.0.1, ::1, the pod's addresses, the tunnel and
// DNS ports, the inbound passthrough sources 127.0.0.6 and ::6); DNS over
// UDP and TCP to the resolv.conf servers and elsewhere; inbound TCP to
// included, excluded and sidecar ports, to the tunnel port and to a VIP
// routed to the pod; per extra interface, inbound flows, flows of a VM
// behind it and pod flows leaving through it; invalid packets (drop
// invalid); and Envoy's TPROXY upstream connections (mark, connmark and
// policy routing). Both families always get flows: with IPv6 disabled they
// prove IPv6 is left alone.
func Flows(cfg translate.Config, resolv []byte, topo Topology) []Flow {
	d := &deriver{
		cfg: cfg, topo: topo, resolv: resolv,
		set:   &flowSet{seen: map[string]bool{}},
		app:   ident{name: "app", uid: appID, gid: appID},
		proxy: proxyIdent(cfg),
		// Representative addresses inside the lists.
		inc: [2]netip.Addr{firstMiddle(cfg.OutboundIPRangesInclude.V4), firstMiddle(cfg.OutboundIPRangesInclude.V6)},
		exc: [2]netip.Addr{firstMiddle(cfg.OutboundIPRangesExclude.V4), firstMiddle(cfg.OutboundIPRangesExclude.V6)},
	}
	for _, v6 := range []bool{false, true} {
		d.outbound(v6)
		d.outboundPorts(v6)
		d.perIdentity(v6)
		d.passthrough(v6)
		d.inbound(v6)
		d.interfaces(v6)
		d.invalidPackets(v6)
		d.tproxyUpstream(v6)
	}
	return d.set.flows
}

// deriver holds what every group of flows needs.
type deriver struct {
	cfg        translate.Config
	topo       Topology
	resolv     []byte
	set        *flowSet
	app, proxy ident
	inc, exc   [2]netip.Addr // per family (fam(v6)); invalid when the list has none
}

func fam(v6 bool) int {
	if v6 {
		return 1
	}
	return 0
}

func defaultDst(v6 bool) netip.Addr {
	if v6 {
		return DefaultV6
	}
	return DefaultV4
}

func podAddr(v6 bool) netip.Addr {
	if v6 {
		return PodV6
	}
	return PodV4
}

func peerAddr(v6 bool) netip.Addr {
	if v6 {
		return PeerV6
	}
	return PeerV4
}

// outbound: the app to the default destination and to every point of
// every include and exclude CIDR.
func (d *deriver) outbound(v6 bool) {
	s := d.set
	s.add(FromPod, "app to the default destination", d.app.flow("tcp", addrPort(defaultDst(v6), httpPort)))
	s.add(FromPod, "app UDP to the default destination", d.app.flow("udp", addrPort(defaultDst(v6), httpPort)))
	lists := []struct {
		what     string
		prefixes []translate.Prefix
	}{
		{"include", pick(d.cfg.OutboundIPRangesInclude, v6)},
		{"exclude", pick(d.cfg.OutboundIPRangesExclude, v6)},
	}
	for _, l := range lists {
		for _, p := range capPrefixes(l.prefixes) {
			for _, pt := range cidrPoints(p) {
				s.add(FromPod, fmt.Sprintf("app to the %s of %s CIDR %s", pt.what, l.what, p.Raw),
					d.app.flow("tcp", addrPort(pt.addr, httpPort)))
			}
		}
	}
	if a := d.inc[fam(v6)]; a.IsValid() {
		s.add(FromPod, "app UDP into the first include CIDR", d.app.flow("udp", addrPort(a, httpPort)))
	}
}

// outboundPorts: included and excluded outbound ports, to the default
// destination and into the lists.
func (d *deriver) outboundPorts(v6 bool) {
	lists := []struct {
		what  string
		ports []translate.Port
		udp   bool
	}{
		{"included outbound port", d.cfg.OutboundPortsInclude, false},
		{"excluded outbound port", d.cfg.OutboundPortsExclude, true},
	}
	for _, l := range lists {
		for _, pt := range portPoints(l.ports) {
			for _, dst := range []netip.Addr{defaultDst(v6), d.inc[fam(v6)], d.exc[fam(v6)]} {
				if !dst.IsValid() {
					continue
				}
				name := fmt.Sprintf("app to the %s of %s %s", pt.what, l.what, pt.raw)
				d.set.add(FromPod, name, d.app.flow("tcp", addrPort(dst, pt.port)))
				if l.udp {
					d.set.add(FromPod, name+" (UDP)", d.app.flow("udp", addrPort(dst, pt.port)))
				}
			}
		}
	}
}

// perIdentity: every identity to remote, loopback and own addresses and
// to DNS servers.
func (d *deriver) perIdentity(v6 bool) {
	targets := []target{
		{"the default destination", "tcp", addrPort(defaultDst(v6), httpPort)},
		{"the first include CIDR", "tcp", addrPort(d.inc[fam(v6)], httpPort)},
		{"the first exclude CIDR", "tcp", addrPort(d.exc[fam(v6)], httpPort)},
		{"loopback", "tcp", addrPort(loopback(v6), appPort)},
		{"its own pod address", "tcp", addrPort(podAddr(v6), appPort)},
		{"its own pod address, tunnel port", "tcp", addrPort(podAddr(v6), d.cfg.InboundTunnelPort.From)},
		{"its own pod address, DNS port", "tcp", addrPort(podAddr(v6), dnsPort)},
		{"its own pod address, outbound capture port", "tcp", addrPort(podAddr(v6), d.cfg.ProxyPort.From)},
		{"a DNS server elsewhere", "udp", addrPort(defaultDst(v6), dnsPort)},
		{"a DNS server elsewhere", "tcp", addrPort(defaultDst(v6), dnsPort)},
	}
	if !v6 {
		targets = append(targets, target{"the second address of the host loopback CIDR", "tcp",
			addrPort(secondLoopback(d.cfg.HostIPv4Loopback), appPort)})
	}
	servers4, servers6 := translate.Nameservers(d.resolv)
	servers := servers4
	if v6 {
		servers = servers6
	}
	for i, srv := range capAddrs(servers) {
		if !usable(srv) {
			continue
		}
		what := fmt.Sprintf("resolv.conf server %d (%s)", i+1, srv)
		targets = append(targets, target{what, "udp", addrPort(srv, dnsPort)}, target{what, "tcp", addrPort(srv, dnsPort)})
		if i == 0 {
			targets = append(targets, target{what + " on another port", "udp", addrPort(srv, altDNS)})
		}
	}
	for _, id := range identities(d.cfg) {
		for _, tg := range targets {
			if tg.dst.Addr().IsValid() {
				d.set.add(FromPod, fmt.Sprintf("%s %s to %s", id.name, strings.ToUpper(tg.proto), tg.what), id.flow(tg.proto, tg.dst))
			}
		}
	}
}

// passthrough: the proxy (and the app, which is not exempt) connecting
// from the inbound passthrough source 127.0.0.6 / ::6.
func (d *deriver) passthrough(v6 bool) {
	src := netip.MustParseAddr("127.0.0.6")
	if v6 {
		src = netip.MustParseAddr("::6")
	}
	for _, id := range []ident{d.proxy, d.app} {
		for _, dst := range []netip.AddrPort{addrPort(podAddr(v6), appPort), addrPort(loopback(v6), appPort)} {
			f := id.flow("tcp", dst)
			f.Src = src
			d.set.add(FromPod, fmt.Sprintf("%s from the passthrough source %s", id.name, src), f)
		}
	}
}

// inbound: from the peer to the pod's inbound ports, and to a VIP the peer
// routes to the pod.
func (d *deriver) inbound(v6 bool) {
	inPorts := inboundPorts(d.cfg)
	for _, p := range inPorts {
		d.set.add(FromPeer, "inbound to "+p.what, harness.Flow{Proto: "tcp", Dst: addrPort(podAddr(v6), p.port)})
	}
	vip := VIPV4
	if v6 {
		vip = VIPV6
	}
	for _, p := range inPorts[:min(2, len(inPorts))] {
		d.set.add(FromPeer, "inbound to a VIP routed to the pod, "+p.what, harness.Flow{Proto: "tcp", Dst: addrPort(vip, p.port)})
	}
}

// interfaces: inbound through every extra interface, VMs behind them (the
// peer for eth0), pod traffic leaving through them.
func (d *deriver) interfaces(v6 bool) {
	inPorts := inboundPorts(d.cfg)
	vmDsts := []netip.Addr{defaultDst(v6), d.inc[fam(v6)], d.exc[fam(v6)]}
	for _, i := range d.topo.Ifaces {
		src := i.SideAddr(v6)
		for _, p := range inPorts[:min(3, len(inPorts))] {
			d.set.add(FromSide, fmt.Sprintf("inbound through %s to %s", i.Name, p.what),
				harness.Flow{Proto: "tcp", Src: src, Dst: addrPort(i.PodAddr(v6), p.port)})
		}
		for _, dst := range vmDsts {
			if dst.IsValid() {
				d.set.add(FromSide, "VM behind "+i.Name+" to a remote destination",
					harness.Flow{Proto: "tcp", Src: src, Dst: addrPort(dst, httpPort)})
			}
		}
		d.set.add(FromPod, "app leaving through "+i.Name, d.app.flow("tcp", addrPort(i.Behind(v6), httpPort)))
		d.set.add(FromPod, "proxy leaving through "+i.Name, d.proxy.flow("tcp", addrPort(i.Behind(v6), httpPort)))
	}
	if namesIface(d.cfg.RerouteVirtualInterfaces, "eth0") {
		for _, dst := range vmDsts {
			if dst.IsValid() {
				d.set.add(FromPeer, "VM behind eth0 to a remote destination", harness.Flow{Proto: "tcp", Dst: addrPort(dst, httpPort)})
			}
		}
	}
}

// invalidPackets: a lone FIN to a closed port, answered with a RST unless
// "drop invalid" swallows it; from the peer and through every extra
// interface.
func (d *deriver) invalidPackets(v6 bool) {
	d.set.add(FromPeer, "invalid TCP packet (lone FIN) to a closed port",
		harness.Flow{Proto: ProtoInvalidFIN, Src: peerAddr(v6), Dst: addrPort(podAddr(v6), closedPort)})
	for _, i := range d.topo.Ifaces {
		d.set.add(FromSide, "invalid TCP packet (lone FIN) through "+i.Name+" to a closed port",
			harness.Flow{Proto: ProtoInvalidFIN, Src: i.SideAddr(v6), Dst: addrPort(i.PodAddr(v6), closedPort)})
	}
}

// tproxyUpstream: Envoy's TPROXY upstream to the app, a transparent socket
// keeping the downstream's (non-local) source address, with and without
// the TPROXY mark. The answer only comes back through the connmark and the
// policy routing.
func (d *deriver) tproxyUpstream(v6 bool) {
	for _, mark := range []uint32{d.cfg.TProxyMark.Value, 0} {
		f := d.proxy.flow("tcp", addrPort(podAddr(v6), appPort))
		f.Src, f.Mark, f.Transparent = peerAddr(v6), mark, true
		d.set.addFlow(Flow{Name: fmt.Sprintf("proxy to the app from the downstream's address (transparent, mark %d)", mark),
			From: FromPod, Flow: f})
	}
}

// identities lists who makes the per-identity flows: root, the app, each
// proxy uid and gid (edges of ranges included), the proxy itself, owner
// group members, and a process whose supplementary groups hold the proxy
// gid (owner matching looks at the primary gid only).
func identities(cfg translate.Config) []ident {
	ids := []ident{{name: "root", uid: 0, gid: 0}, {name: "app", uid: appID, gid: appID}, proxyIdent(cfg)}
	for _, o := range cfg.ProxyUIDs {
		for _, v := range ownerPoints(o) {
			ids = append(ids, ident{name: fmt.Sprintf("proxy uid %d", v), uid: v, gid: appID})
		}
	}
	for _, o := range cfg.ProxyGIDs {
		for _, v := range ownerPoints(o) {
			ids = append(ids, ident{name: fmt.Sprintf("proxy gid %d", v), uid: appID, gid: v})
		}
	}
	for _, l := range [][]translate.Owner{cfg.OwnerGroupsInclude.Owners, cfg.OwnerGroupsExclude} {
		for _, o := range l {
			for _, v := range ownerPoints(o) {
				ids = append(ids, ident{name: fmt.Sprintf("owner group %d member", v), uid: appID, gid: v})
			}
		}
	}
	if len(cfg.ProxyGIDs) > 0 {
		g := idValue(cfg.ProxyGIDs[0].From)
		ids = append(ids, ident{name: fmt.Sprintf("app with supplementary group %d", g), uid: appID, gid: appID, groups: []uint32{g}})
	}
	// Dedupe by credentials, keep the first name.
	var out []ident
	seen := map[string]bool{}
	for _, id := range ids {
		k := fmt.Sprint(id.uid, id.gid, id.groups)
		if seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, id)
	}
	if len(out) > maxIdentities {
		out = out[:maxIdentities]
	}
	return out
}

// proxyIdent is the proxy's own identity: first proxy uid and gid.
func proxyIdent(cfg translate.Config) ident {
	id := ident{name: "proxy", uid: 1337, gid: 1337}
	if len(cfg.ProxyUIDs) > 0 {
		id.uid = idValue(cfg.ProxyUIDs[0].From)
	}
	if len(cfg.ProxyGIDs) > 0 {
		id.gid = idValue(cfg.ProxyGIDs[0].From)
	}
	return id
}

// ProxyOwner is the identity the pod's proxy listeners run as.
func ProxyOwner(cfg translate.Config) harness.Owner {
	id := proxyIdent(cfg)
	return harness.Owner{UID: id.uid, GID: id.gid}
}

// idValue avoids -1, which set*id calls read as "leave unchanged".
func idValue(v uint32) uint32 {
	if v == ^uint32(0) {
		return v - 1
	}
	return v
}

// ownerPoints are the ids a uid/gid item is probed with: the value, or a
// range's ends, middle and the id just past it.
func ownerPoints(o translate.Owner) []uint32 {
	if !o.Resolved {
		return nil
	}
	pts := []uint32{idValue(o.From)}
	if o.To != o.From {
		pts = append(pts, idValue(o.To), idValue(o.From+(o.To-o.From)/2), idValue(o.To+1))
	}
	return pts
}

type portPoint struct {
	what string
	raw  string
	port uint16
}

// portPoints are a port list's probes: each port, or a range's ends,
// middle and neighbours. Port 0 cannot be dialled and is skipped.
func portPoints(ports []translate.Port) []portPoint {
	var pts []portPoint
	for _, p := range capPorts(ports) {
		raw := strings.TrimSpace(p.Raw)
		if p.From == p.To {
			pts = append(pts, portPoint{"port", raw, p.From})
			continue
		}
		pts = append(pts, portPoint{"first port", raw, p.From}, portPoint{"last port", raw, p.To},
			portPoint{"middle port", raw, p.From + (p.To-p.From)/2})
		if p.From > 1 {
			pts = append(pts, portPoint{"port before", raw, p.From - 1})
		}
		if p.To < 65535 {
			pts = append(pts, portPoint{"port after", raw, p.To + 1})
		}
	}
	var out []portPoint
	for _, pt := range pts {
		if pt.port != 0 {
			out = append(out, pt)
		}
	}
	return out
}

// inboundPorts are the ports inbound flows go to: the included and excluded
// inbound ports, the tunnel port, the sidecar's own ports, an application
// port, and the proxy's capture ports.
func inboundPorts(cfg translate.Config) []portPoint {
	var pts []portPoint
	for _, pt := range portPoints(cfg.InboundPorts.Ports) {
		pt.what = "the " + pt.what + " of inbound port " + pt.raw
		pts = append(pts, pt)
	}
	pts = append(pts, portPoint{what: "an application port", port: appPort})
	for _, pt := range portPoints(cfg.InboundPortsExclude) {
		pt.what = "the " + pt.what + " of excluded inbound port " + pt.raw
		pts = append(pts, pt)
	}
	pts = append(pts, portPoint{what: "the tunnel port", port: cfg.InboundTunnelPort.From})
	for _, p := range sidecarPorts {
		pts = append(pts, portPoint{what: fmt.Sprintf("sidecar port %d", p), port: p})
	}
	pts = append(pts, portPoint{what: "the outbound capture port", port: cfg.ProxyPort.From},
		portPoint{what: "the inbound capture port", port: cfg.InboundCapturePort.From})
	var out []portPoint
	seen := map[uint16]bool{}
	for _, pt := range pts {
		if pt.port != 0 && !seen[pt.port] {
			seen[pt.port] = true
			out = append(out, pt)
		}
	}
	return out
}

type addrPoint struct {
	what string
	addr netip.Addr
}

// cidrPoints are a prefix's probes: as written (host bits kept), first,
// middle, last, and the addresses just outside. Addresses a connection
// cannot go to are skipped.
func cidrPoints(p translate.Prefix) []addrPoint {
	pr := p.Prefix
	first := pr.Masked().Addr()
	last := lastAddr(pr)
	pts := []addrPoint{{"address as written", pr.Addr()}, {"first address", first}, {"last address", last}}
	if host := pr.Addr().BitLen() - pr.Bits(); host > 0 {
		pts = append(pts, addrPoint{"middle address", addOffset(first, host-1)})
	}
	if prev := first.Prev(); prev.IsValid() {
		pts = append(pts, addrPoint{"address before", prev})
	}
	if next := last.Next(); next.IsValid() {
		pts = append(pts, addrPoint{"address after", next})
	}
	if first.Is4In6() {
		// An IPv6 rule must not match the IPv4 packets these stand for.
		for _, pt := range pts {
			pts = append(pts, addrPoint{pt.what + " (as IPv4)", pt.addr.Unmap()})
		}
	}
	var out []addrPoint
	seen := map[netip.Addr]bool{}
	for _, pt := range pts {
		if usable(pt.addr) && !seen[pt.addr] {
			seen[pt.addr] = true
			out = append(out, pt)
		}
	}
	return out
}

// usable reports whether a TCP/UDP flow can be sent to a.
func usable(a netip.Addr) bool {
	if !a.IsValid() || a.IsUnspecified() || a.IsMulticast() || a.IsLinkLocalUnicast() || a.Is4In6() {
		return false
	}
	if a.Is4() {
		b := a.As4()
		// 0/8 is "this network", 240/4 reserved (and the broadcast).
		return b[0] != 0 && b[0] < 240
	}
	return true
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// addOffset adds 2^bit to a.
func addOffset(a netip.Addr, bit int) netip.Addr {
	b := a.AsSlice()
	i := len(b) - 1 - bit/8
	carry := uint16(1) << (bit % 8)
	for ; i >= 0 && carry != 0; i-- {
		v := uint16(b[i]) + carry
		b[i] = byte(v)
		carry = v >> 8
	}
	r, _ := netip.AddrFromSlice(b)
	return r
}

// firstMiddle is a usable address in the middle of the first prefix, or
// the zero Addr.
func firstMiddle(ps []translate.Prefix) netip.Addr {
	for _, p := range ps {
		for _, pt := range cidrPoints(p) {
			if pt.what == "middle address" || p.Prefix.IsSingleIP() {
				return pt.addr
			}
		}
	}
	return netip.Addr{}
}

// secondLoopback is the address after the host loopback CIDR's, still in
// 127/8 (inside the CIDR when it is wider than /32).
func secondLoopback(p translate.Prefix) netip.Addr {
	a := p.Prefix.Addr().Next()
	if !a.IsValid() || !a.IsLoopback() {
		return netip.MustParseAddr("127.0.0.2")
	}
	return a
}

func loopback(v6 bool) netip.Addr {
	if v6 {
		return netip.IPv6Loopback()
	}
	return netip.MustParseAddr("127.0.0.1")
}

func pick(l translate.CIDRList, v6 bool) []translate.Prefix {
	if v6 {
		return l.V6
	}
	return l.V4
}

// capPrefixes keeps distinct prefixes (duplicates add nothing to probe),
// at most maxListItems spread over the whole list: a long list's last
// items matter as much as its first (sets are loaded in chunks).
func capPrefixes(ps []translate.Prefix) []translate.Prefix {
	var out []translate.Prefix
	seen := map[netip.Prefix]bool{}
	for _, p := range ps {
		if !seen[p.Prefix] {
			seen[p.Prefix] = true
			out = append(out, p)
		}
	}
	return spread(out)
}

func capPorts(ps []translate.Port) []translate.Port {
	var out []translate.Port
	seen := map[[2]uint16]bool{}
	for _, p := range ps {
		k := [2]uint16{p.From, p.To}
		if !seen[k] {
			seen[k] = true
			out = append(out, p)
		}
	}
	return spread(out)
}

// spread picks maxListItems items evenly, first and last included.
func spread[T any](l []T) []T {
	if len(l) <= maxListItems {
		return l
	}
	out := make([]T, 0, maxListItems)
	for i := 0; i < maxListItems; i++ {
		out = append(out, l[i*(len(l)-1)/(maxListItems-1)])
	}
	return out
}

func capAddrs(as []netip.Addr) []netip.Addr {
	if len(as) > 3 {
		return as[:3]
	}
	return as
}

func namesIface(l []translate.Iface, name string) bool {
	for _, i := range l {
		s := strings.TrimSpace(string(i))
		if s == name || (strings.HasSuffix(s, "+") && strings.HasPrefix(name, strings.TrimSuffix(s, "+"))) {
			return true
		}
	}
	return false
}

// PodPorts lists the ports the pod must listen on so that every flow ending
// in the pod finds a listener: every destination port of every flow.
func PodPorts(flows []Flow) (tcp, udp []uint16) {
	t, u := map[uint16]bool{}, map[uint16]bool{}
	for _, f := range flows {
		switch f.Proto {
		case ProtoInvalidFIN:
			continue // must stay closed
		case "udp":
			u[f.Dst.Port()] = true
		default:
			t[f.Dst.Port()] = true
		}
	}
	return sortedPorts(t), sortedPorts(u)
}

func sortedPorts(m map[uint16]bool) []uint16 {
	var out []uint16
	for p := range m {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}
