package nfintercept

import (
	"net/netip"

	"github.com/nfintercept/nfintercept/nft"
)

// detectIPv6 decides IPv6 enablement from the namespace's addresses the way
// istio-iptables does (SPEC §1.4), scanning interfaces in index order and
// skipping loopback and link-local addresses. A namespace without any
// qualifying address (istio-iptables gives up there) is treated as IPv4-only.
func detectIPv6(nsPath string, dualStack bool) (bool, error) {
	addrs, err := localAddrs(nsPath)
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
// istio-iptables' enumeration order (interfaces by index, IPv4 first).
func localAddrs(nsPath string) ([]netip.Addr, error) {
	all, err := nft.Addrs(nsPath)
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, a := range all {
		ip := a.Addr.Unmap()
		if ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() {
			continue
		}
		out = append(out, ip)
	}
	return out, nil
}

// NamespaceName names the namespace at nsPath for messages.
func NamespaceName(nsPath string) string {
	if nsPath == "" {
		return "the current network namespace"
	}
	return "network namespace " + nsPath
}
