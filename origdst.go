package nfintercept

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ip6tSoOriginalDst is IP6T_SO_ORIGINAL_DST (linux/netfilter_ipv6/ip6_tables.h).
const ip6tSoOriginalDst = 80

// OriginalDst returns the destination a redirected TCP connection was sent
// to, as conntrack remembers it (SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST):
// what a proxy behind the REDIRECT rules reads to know where to connect.
func OriginalDst(c *net.TCPConn) (netip.AddrPort, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, err
	}
	local, ok := c.LocalAddr().(*net.TCPAddr)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("unexpected local address %v", c.LocalAddr())
	}
	level, opt := unix.SOL_IP, unix.SO_ORIGINAL_DST
	if local.IP.To4() == nil {
		level, opt = unix.SOL_IPV6, ip6tSoOriginalDst
	}
	var buf [32]byte // fits sockaddr_in6; the kernel accepts a larger buffer
	var gerr error
	err = rc.Control(func(fd uintptr) {
		n := uint32(len(buf))
		_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, uintptr(level), uintptr(opt),
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&n)), 0)
		if e != 0 {
			gerr = e
		}
	})
	if err != nil {
		return netip.AddrPort{}, err
	}
	if gerr != nil {
		return netip.AddrPort{}, fmt.Errorf("original destination: %w", gerr)
	}
	port := binary.BigEndian.Uint16(buf[2:4])
	switch binary.NativeEndian.Uint16(buf[0:2]) {
	case unix.AF_INET:
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(buf[4:8])), port), nil
	case unix.AF_INET6:
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte(buf[8:24])), port), nil
	}
	return netip.AddrPort{}, errors.New("original destination: unknown address family")
}
