package translate

import (
	"net/netip"
	"strings"
)

// ResolvConfPath is where HostSystem reads the nameservers from.
const ResolvConfPath = "/etc/resolv.conf"

// Nameservers extracts the nameserver addresses of a resolv.conf, split by
// family, in file order, the way istio-iptables reads it (miekg/dns
// ClientConfigFromReader, then netip.ParseAddr): a line whose first field
// is "nameserver" gives its second field; comment lines (# or ;) and other
// keywords are skipped; entries that are not addresses, or carry a zone
// (fe80::1%eth0), are dropped. IPv4-mapped IPv6 addresses count as IPv6.
func Nameservers(resolvConf []byte) (v4, v6 []netip.Addr) {
	for _, line := range strings.Split(string(resolvConf), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "nameserver" {
			continue // also skips "#..." and ";..." comments
		}
		a, err := netip.ParseAddr(f[1])
		if err != nil || a.Zone() != "" {
			continue
		}
		if a.Is4() {
			v4 = append(v4, a)
		} else {
			v6 = append(v6, a)
		}
	}
	return v4, v6
}
