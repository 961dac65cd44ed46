package kernel

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// IfAddr is an address assigned to an interface of a namespace.
type IfAddr struct {
	Index int // interface index
	Addr  netip.Addr
	Bits  int  // prefix length
	Ours  bool // tagged with RouteProtocol (IFA_PROTO, Linux 6.3+)
}

// Addrs lists the addresses of every interface of the namespace (nil: the
// current one): by interface index, IPv4 before IPv6 on each
// interface, each family in the kernel's order. That is the order of
// listing links and then each link's IPv4 and IPv6 addresses, done here
// with one socket and one dump, which matters on the path of every apply.
func Addrs(ns *Namespace) ([]IfAddr, error) {
	fd, err := ns.Socket(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	defer unix.Close(fd)
	return addrsOn(ns, fd)
}

// addrsOn is Addrs over an rtnetlink socket of ns.
func addrsOn(ns *Namespace, fd int) ([]IfAddr, error) {
	var out []IfAddr
	err := retryDump(func() error {
		var err error
		out, err = dumpAddrs(fd)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list addresses in %s: %w", ns, err)
	}
	slices.SortStableFunc(out, func(a, b IfAddr) int {
		if a.Index != b.Index {
			return cmp.Compare(a.Index, b.Index)
		}
		return cmp.Compare(a.Addr.BitLen(), b.Addr.BitLen())
	})
	return out, nil
}

func dumpAddrs(fd int) ([]IfAddr, error) {
	const seq = 1
	req := make([]byte, 0, unix.NLMSG_HDRLEN+unix.SizeofIfAddrmsg)
	req = binary.NativeEndian.AppendUint32(req, unix.NLMSG_HDRLEN+unix.SizeofIfAddrmsg)
	req = binary.NativeEndian.AppendUint16(req, unix.RTM_GETADDR)
	req = binary.NativeEndian.AppendUint16(req, unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	req = binary.NativeEndian.AppendUint32(req, seq)
	req = binary.NativeEndian.AppendUint32(req, 0)
	req = append(req, make([]byte, unix.SizeofIfAddrmsg)...) // AF_UNSPEC: every family
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("send: %w", err)
	}
	var out []IfAddr
	interrupted := false
	buf := make([]byte, 32<<10)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("receive: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return nil, fmt.Errorf("parse: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Seq != seq {
				continue
			}
			if m.Header.Flags&unix.NLM_F_DUMP_INTR != 0 {
				interrupted = true
			}
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				if interrupted {
					return nil, netlink.ErrDumpInterrupted // retried
				}
				return out, nil
			case unix.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if errno := -int32(binary.NativeEndian.Uint32(m.Data)); errno != 0 {
						return nil, syscall.Errno(errno)
					}
				}
			case unix.RTM_NEWADDR:
				if a, ok := parseIfAddr(m.Data); ok {
					out = append(out, a)
				}
			}
		}
	}
}

// parseIfAddr reads an ifaddrmsg and its attributes: the local address
// when there is one (point-to-point), else the address.
func parseIfAddr(b []byte) (IfAddr, bool) {
	if len(b) < unix.SizeofIfAddrmsg {
		return IfAddr{}, false
	}
	a := IfAddr{Bits: int(b[1]), Index: int(binary.NativeEndian.Uint32(b[4:8]))}
	var local, address netip.Addr
	for rest := b[unix.SizeofIfAddrmsg:]; len(rest) >= 4; {
		l := int(binary.NativeEndian.Uint16(rest))
		if l < 4 || l > len(rest) {
			break
		}
		v := rest[4:l]
		switch binary.NativeEndian.Uint16(rest[2:]) {
		case unix.IFA_LOCAL:
			local, _ = netip.AddrFromSlice(v)
		case unix.IFA_ADDRESS:
			address, _ = netip.AddrFromSlice(v)
		case ifaProto:
			a.Ours = len(v) > 0 && v[0] == RouteProtocol
		}
		rest = rest[min(align4(l), len(rest)):]
	}
	if local.IsValid() {
		address = local
	}
	a.Addr = address
	return a, address.IsValid()
}
