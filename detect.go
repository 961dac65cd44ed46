package nfintercept

import (
	"net/netip"
)

// passthroughV6 is the ::6/128 nfintercept adds to lo for IPv6 inbound
// passthrough.
var passthroughV6 = netip.MustParsePrefix("::6/128")

// detectIPv6 decides IPv6 enablement from the namespace's addresses the way
// istio-iptables does (SPEC §1.4), scanning interfaces in index order and
// skipping loopback and link-local addresses. A namespace without any
// qualifying address (istio-iptables gives up there) is treated as IPv4-only.
func detectIPv6(k nsKernel, dualStack bool) (bool, error) {
	addrs, err := localAddrs(k)
	if err != nil {
		return false, err
	}
	if !dualStack {
		return len(addrs) > 0 && addrs[0].Is6(), nil
	}
	for _, a := range addrs {
		if a.Is6() {
			return true, nil
		}
	}
	return false, nil
}

// localAddrs lists the qualifying addresses of the namespace in
// istio-iptables' enumeration order (interfaces by index, IPv4 first). The
// addresses nfintercept added itself (::6 on lo) are not the pod's.
func localAddrs(k nsKernel) ([]netip.Addr, error) {
	all, err := k.Addrs()
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, a := range all {
		ip := a.Addr.Unmap()
		if ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() {
			continue
		}
		if a.Ours || (a.Index == loopbackIndex && netip.PrefixFrom(ip, a.Bits) == passthroughV6) {
			continue
		}
		out = append(out, ip)
	}
	return out, nil
}

// loopbackIndex is lo's interface index in every namespace.
const loopbackIndex = 1
