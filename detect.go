package nfintercept

import (
	"fmt"
	"net/netip"
	"sort"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
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
// istio-iptables' enumeration order.
func localAddrs(nsPath string) ([]netip.Addr, error) {
	h, err := netlinkHandle(nsPath)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list interfaces in %s: %w", nsName(nsPath), err)
	}
	sort.Slice(links, func(i, j int) bool { return links[i].Attrs().Index < links[j].Attrs().Index })
	var out []netip.Addr
	for _, l := range links {
		for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
			list, err := h.AddrList(l, fam)
			if err != nil {
				return nil, fmt.Errorf("list addresses of %s in %s: %w", l.Attrs().Name, nsName(nsPath), err)
			}
			for _, a := range list {
				ip, ok := netip.AddrFromSlice(a.IP)
				if !ok {
					continue
				}
				ip = ip.Unmap()
				if ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() {
					continue
				}
				out = append(out, ip)
			}
		}
	}
	return out, nil
}

// netlinkHandle opens an rtnetlink handle in the namespace at nsPath, or in
// the current one when nsPath is empty.
func netlinkHandle(nsPath string) (*netlink.Handle, error) {
	if nsPath == "" {
		h, err := netlink.NewHandle()
		if err != nil {
			return nil, fmt.Errorf("open rtnetlink: %w", err)
		}
		return h, nil
	}
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		return nil, fmt.Errorf("open network namespace %s: %w", nsPath, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("open rtnetlink in %s: %w", nsPath, err)
	}
	return h, nil
}

func nsName(nsPath string) string {
	if nsPath == "" {
		return "the current network namespace"
	}
	return "network namespace " + nsPath
}
