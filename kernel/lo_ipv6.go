package kernel

import (
	"encoding/binary"
	"errors"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// devconfDisableIPv6 is DEVCONF_DISABLE_IPV6, the index of disable_ipv6 in
// IFLA_INET6_CONF (linux/ipv6.h).
const devconfDisableIPv6 = 26

// loIPv6Disabled reads lo's disable_ipv6 from its link attributes
// (IFLA_AF_SPEC → AF_INET6 → IFLA_INET6_CONF). Without IPv6 data lo has
// no IPv6 at all, which counts as disabled.
func (r *rtnl) loIPv6Disabled() (bool, error) {
	req := r.request(unix.RTM_GETLINK, 0)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(r.lo)
	req.AddData(msg)
	msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWLINK)
	if err == nil && (len(msgs) == 0 || len(msgs[0]) < unix.SizeofIfInfomsg) {
		err = errors.New("no link message for lo in the reply")
	}
	if err != nil {
		return false, r.errorf("read lo's IPv6 settings: %w", err)
	}
	conf, err := nestedAttr(msgs[0][unix.SizeofIfInfomsg:], unix.IFLA_AF_SPEC, unix.AF_INET6, unix.IFLA_INET6_CONF)
	if err != nil {
		return false, r.errorf("read lo's IPv6 settings: %w", err)
	}
	if len(conf) < 4*(devconfDisableIPv6+1) {
		return true, nil
	}
	return binary.NativeEndian.Uint32(conf[4*devconfDisableIPv6:]) != 0, nil
}

// nestedAttr returns the value at the path of attribute types in a list
// of rtnetlink attributes, or nil when some level lacks it.
func nestedAttr(b []byte, path ...int) ([]byte, error) {
	for _, typ := range path {
		attrs, err := nl.ParseRouteAttr(b)
		if err != nil {
			return nil, err
		}
		b = nil
		for _, a := range attrs {
			if int(a.Attr.Type&nl.NLA_TYPE_MASK) == typ {
				b = a.Value
				break
			}
		}
		if b == nil {
			return nil, nil
		}
	}
	return b, nil
}
