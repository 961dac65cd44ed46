package bench

import "net/netip"

// Addresses of the benchmark topology: a pod namespace joined to a peer
// namespace by a veth pair. The peer owns the destinations.
var (
	linkNet     = netip.MustParsePrefix("192.0.2.0/24")
	podV4       = netip.MustParseAddr("192.0.2.2")
	peerV4      = netip.MustParseAddr("192.0.2.1")
	podV6       = netip.MustParseAddr("2001:db8:1::2")
	peerV6      = netip.MustParseAddr("2001:db8:1::1")
	capturedNet = netip.MustParsePrefix("198.18.0.0/24")
	excludedNet = netip.MustParsePrefix("198.19.0.0/24")
	// CapturedDst is redirected to the pod's own :15001; ExcludedDst is
	// reached directly (its /24 is the last exclude CIDR).
	CapturedDst = netip.MustParseAddr("198.18.0.7")
	ExcludedDst = netip.MustParseAddr("198.19.0.7")
)

// AddPodAddrs gives a lone namespace an interface (one end of a veth pair
// whose other end stays there too) with a global IPv4 and IPv6 address, so
// dual-stack detection enables IPv6 as in a pod.
func AddPodAddrs(ns *NS) error {
	for _, args := range [][]string{
		{"link", "add", "eth0", "type", "veth", "peer", "name", "eth1"},
		{"link", "set", "eth0", "up"},
		{"link", "set", "eth1", "up"},
		{"addr", "add", podV4.String() + "/24", "dev", "eth0"},
		{"addr", "add", podV6.String() + "/64", "dev", "eth0", "nodad"},
	} {
		if err := ns.IP(args...); err != nil {
			return err
		}
	}
	return nil
}
