package integration

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/nfintercept/nfintercept/integration/harness"
)

// The configuration every flow test installs, as istio-iptables flags. The
// library tests set the same values through translate.Options.
var baseFlags = []string{
	"-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT",
	"-i", "*", "-x", "10.245.0.0/16,2001:db8:3::/64",
	"-b", "*", "-d", "15090,15021,15020", "-o", "9999",
	"--redirect-dns",
}

// resolvConf names one resolver per family, both owned by the peer.
var resolvConf = "nameserver " + harness.DNSV4.String() + "\nnameserver " + harness.DNSV6.String() + "\n"

const (
	appPort      = 8080
	excludedIn   = 15020 // in -d
	tunnelPort   = 15008 // HBONE, never captured inbound
	excludedOut  = 9999  // in -o
	proxyUID     = 1337
	appUID       = 1000
	dnsAgentPort = 15053
)

// Listener tags.
const (
	tagOutbound = "outbound" // pod :15001
	tagInbound  = "inbound"  // pod :15006
	tagDNS      = "dns"      // pod :15053
	tagApp      = "app"      // pod application ports
	tagPeer     = "peer"     // anything the peer answers
)

// startListeners puts the proxy, the app and the peer services in place.
// The inbound listener is transparent, as Envoy's is in TPROXY mode
// (harmless for REDIRECT).
func startListeners(t *testing.T, p *harness.Pair) {
	t.Helper()
	harness.ListenBoth(t, p.PodPath, "tcp", 15001, tagOutbound)
	for _, addr := range []string{"0.0.0.0:15006", "[::]:15006"} {
		harness.ListenTCP(t, p.PodPath, addr, tagInbound, harness.ListenOptions{Transparent: true})
	}
	// The DNS agent runs as the proxy user: its answers must fall in the
	// proxy's conntrack zone to be un-NATed back to the client.
	proxy := harness.ListenOptions{Owner: &harness.Owner{UID: proxyUID, GID: proxyUID}}
	for _, host := range []string{"0.0.0.0", "[::]"} {
		addr := fmt.Sprintf("%s:%d", host, dnsAgentPort)
		harness.ListenTCP(t, p.PodPath, addr, tagDNS, proxy)
		harness.ListenUDP(t, p.PodPath, addr, tagDNS, proxy)
	}
	for _, port := range []uint16{appPort, excludedIn, tunnelPort} {
		harness.ListenBoth(t, p.PodPath, "tcp", port, tagApp)
	}
	for _, port := range []uint16{80, excludedOut, 53} {
		harness.ListenBoth(t, p.PeerPath, "tcp", port, tagPeer)
	}
	harness.ListenBoth(t, p.PeerPath, "udp", 53, tagPeer)
}

// flowCase is one connection and where it must land.
type flowCase struct {
	name string
	peer bool // made from the peer namespace instead of the pod
	flow harness.Flow
	tag  string
	// origDst: the listener must report this original destination
	// (the flow's Dst); only meaningful for TCP to a redirect target.
	origDst bool
	// redirectOnly: the expectation holds in REDIRECT mode only.
	redirectOnly bool
}

func addrPort(a netip.Addr, port uint16) netip.AddrPort { return netip.AddrPortFrom(a, port) }

// flowCases lists the flows for one family. captured says whether the
// engine is expected to intercept that family at all: IPv6 only with
// --dual-stack (and IPv6 addresses in the pod).
func flowCases(v6, captured bool) []flowCase {
	dst, dns, excluded, pod := harness.DstV4, harness.DNSV4, harness.ExcludedV4, harness.PodV4
	passthrough := netip.MustParseAddr("127.0.0.6")
	if v6 {
		dst, dns, excluded, pod = harness.DstV6, harness.DNSV6, harness.ExcludedV6, harness.PodV6
		passthrough = netip.MustParseAddr("::6")
	}
	app := harness.Flow{UID: appUID, GID: appUID}
	tcp := func(base harness.Flow, d netip.AddrPort) harness.Flow {
		base.Proto, base.Dst = "tcp", d
		return base
	}
	udp := func(base harness.Flow, d netip.AddrPort) harness.Flow {
		base.Proto, base.Dst = "udp", d
		return base
	}
	// when picks the expected tag: what capture gives, or what an
	// untouched kernel gives.
	when := func(capturedTag, plainTag string) string {
		if captured {
			return capturedTag
		}
		return plainTag
	}
	return []flowCase{
		{name: "app outbound is captured", flow: tcp(app, addrPort(dst, 80)),
			tag: when(tagOutbound, tagPeer), origDst: captured},
		{name: "proxy uid goes direct", flow: tcp(harness.Flow{UID: proxyUID, GID: appUID}, addrPort(dst, 80)),
			tag: tagPeer},
		{name: "proxy gid goes direct", flow: tcp(harness.Flow{UID: appUID, GID: proxyUID}, addrPort(dst, 80)),
			tag: tagPeer},
		// Owner matching looks at the primary gid only, as -m owner
		// --gid-owner without --suppl-groups does.
		{name: "supplementary proxy group is still captured",
			flow: tcp(harness.Flow{UID: appUID, GID: appUID, Groups: []uint32{proxyUID}}, addrPort(dst, 80)),
			tag:  when(tagOutbound, tagPeer), origDst: captured},
		{name: "excluded CIDR goes direct", flow: tcp(app, addrPort(excluded, 80)), tag: tagPeer},
		{name: "excluded outbound port goes direct", flow: tcp(app, addrPort(dst, excludedOut)), tag: tagPeer},
		{name: "app to own pod address is not captured", flow: tcp(app, addrPort(pod, appPort)), tag: tagApp},
		{name: "proxy to pod address loops to inbound", flow: tcp(harness.Flow{UID: proxyUID, GID: proxyUID}, addrPort(pod, appPort)),
			tag: when(tagInbound, tagApp), origDst: captured},
		{name: "proxy passthrough from the inbound source reaches the app",
			flow: tcp(harness.Flow{UID: proxyUID, GID: proxyUID, Src: passthrough}, addrPort(pod, appPort)), tag: tagApp},
		{name: "inbound is captured", peer: true, flow: tcp(harness.Flow{}, addrPort(pod, appPort)),
			tag: when(tagInbound, tagApp), origDst: captured},
		{name: "inbound excluded port reaches the app", peer: true, flow: tcp(harness.Flow{}, addrPort(pod, excludedIn)),
			tag: tagApp},
		// TPROXY mode exempts the tunnel port in nat only, which inbound
		// traffic no longer crosses (SPEC §2.2).
		{name: "inbound tunnel port reaches the app", peer: true, flow: tcp(harness.Flow{}, addrPort(pod, tunnelPort)),
			tag: tagApp, redirectOnly: true},
		{name: "DNS over UDP to the resolver is captured", flow: udp(app, addrPort(dns, 53)), tag: when(tagDNS, tagPeer)},
		{name: "DNS over TCP to the resolver is captured", flow: tcp(app, addrPort(dns, 53)),
			tag: when(tagDNS, tagPeer), origDst: captured},
		{name: "proxy DNS goes to the resolver", flow: udp(harness.Flow{UID: proxyUID, GID: proxyUID}, addrPort(dns, 53)),
			tag: tagPeer},
	}
}

// checkFlows runs every flow case of both families against the rules
// currently installed in the pair's pod.
func checkFlows(t *testing.T, p *harness.Pair, dualStack, tproxy bool) {
	t.Helper()
	for _, fam := range []struct {
		name     string
		v6       bool
		captured bool
	}{{"ipv4", false, true}, {"ipv6", true, dualStack}} {
		for _, c := range flowCases(fam.v6, fam.captured) {
			if tproxy && c.redirectOnly {
				continue
			}
			t.Run(fam.name+"/"+strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
				ns := p.PodPath
				if c.peer {
					ns = p.PeerPath
				}
				r := runFlowTo(t, ns, c.flow, c.tag, c.origDst)
				// REDIRECT rewrites the destination to the listener's
				// port; TPROXY hands the connection over unchanged.
				if c.peer && c.tag == tagInbound {
					wantLocal := c.flow.Dst.String()
					if !tproxy {
						wantLocal = netip.AddrPortFrom(c.flow.Dst.Addr(), 15006).String()
					}
					if r.Local != wantLocal {
						t.Errorf("%v: inbound listener's local address %s, want %s", c.flow, r.Local, wantLocal)
					}
				}
				if !c.origDst && c.tag == tagApp && !strings.HasSuffix(r.Local, ":"+portOf(c.flow.Dst)) {
					t.Errorf("%v: app answered on %s, want port %s", c.flow, r.Local, portOf(c.flow.Dst))
				}
			})
		}
	}
}

// runFlowTo runs the flow from ns and checks it reached the listener
// tagged tag and, when origDst, that the listener read the flow's
// destination as the original one.
func runFlowTo(t *testing.T, ns string, f harness.Flow, tag string, origDst bool) harness.Result {
	t.Helper()
	r := harness.Run(t, ns, f)
	if r.Err != nil {
		t.Fatalf("%v: %v (want listener %q)", f, r.Err, tag)
	}
	if r.Tag != tag {
		t.Fatalf("%v: reached %q (local %s), want %q", f, r.Tag, r.Local, tag)
	}
	if origDst && r.OrigDst != f.Dst.String() {
		t.Errorf("%v: original destination %q, want %q", f, r.OrigDst, f.Dst)
	}
	return r
}

func portOf(ap netip.AddrPort) string { return fmt.Sprint(ap.Port()) }

// checkPassthroughV6 checks that the engine put the IPv6 inbound-passthrough
// source ::6 on lo exactly when it programs IPv6 (as istio-iptables does),
// then makes sure it is there so the passthrough flow can bind it.
func checkPassthroughV6(t *testing.T, p *harness.Pair, ipv6 bool) {
	t.Helper()
	out := harness.InNS(t, p.Pod, "ip", "-6", "addr", "show", "dev", "lo")
	has := strings.Contains(out, " ::6/128 ")
	switch {
	case ipv6 && !has:
		t.Errorf("IPv6 enabled but ::6/128 is not on lo:\n%s", out)
	case !ipv6 && has:
		t.Errorf("IPv6 disabled but ::6/128 was added to lo:\n%s", out)
	}
	if !has {
		harness.InNS(t, p.Pod, "ip", "-6", "addr", "add", "::6/128", "dev", "lo", "nodad")
	}
}

func mustAddrPort(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
