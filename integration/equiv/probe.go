package equiv

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nfintercept/nfintercept/integration/harness"
)

// TagRST is the decision of an invalid-packet probe the destination
// answered with a RST.
const TagRST = "rst"

const (
	tcpFIN = 0x01
	tcpRST = 0x04
)

// probeInvalidFIN sends a lone FIN from f.Src to f.Dst through a raw socket
// and waits for the RST a closed port answers with. Conntrack classifies a
// lone FIN as INVALID (tcp_error: invalid flag combination), so a "drop
// invalid" rule on the way swallows it and the probe times out.
func probeInvalidFIN(f harness.Flow, timeout time.Duration) (harness.Reply, error) {
	v6 := f.Dst.Addr().Is6()
	family := unix.AF_INET
	if v6 {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return harness.Reply{}, fmt.Errorf("%w: raw socket: %w", errHarness, err)
	}
	defer unix.Close(fd)
	if v6 {
		// The kernel fills the TCP checksum at this offset.
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_CHECKSUM, 16); err != nil {
			return harness.Reply{}, fmt.Errorf("%w: IPV6_CHECKSUM: %w", errHarness, err)
		}
	}
	if err := unix.Bind(fd, sockaddr(netip.AddrPortFrom(f.Src, 0))); err != nil {
		return harness.Reply{}, fmt.Errorf("%w: bind %s: %w", errHarness, f.Src, err)
	}
	tv := unix.NsecToTimeval(timeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return harness.Reply{}, fmt.Errorf("%w: SO_RCVTIMEO: %w", errHarness, err)
	}

	sport := uint16(40000 + rand.IntN(20000))
	hdr := make([]byte, 20)
	binary.BigEndian.PutUint16(hdr[0:], sport)
	binary.BigEndian.PutUint16(hdr[2:], f.Dst.Port())
	binary.BigEndian.PutUint32(hdr[4:], rand.Uint32())
	hdr[12] = 5 << 4 // data offset: 5 words, no options
	hdr[13] = tcpFIN
	binary.BigEndian.PutUint16(hdr[14:], 1024) // window
	if !v6 {
		binary.BigEndian.PutUint16(hdr[16:], tcpChecksum4(f.Src, f.Dst.Addr(), hdr))
	}
	if err := unix.Sendto(fd, hdr, 0, sockaddr(netip.AddrPortFrom(f.Dst.Addr(), 0))); err != nil {
		return harness.Reply{}, err
	}

	deadline := time.Now().Add(timeout)
	buf := make([]byte, 1500)
	for time.Now().Before(deadline) {
		n, from, err := unix.Recvfrom(fd, buf, 0)
		if err == unix.EAGAIN || err == unix.EINTR {
			continue
		}
		if err != nil {
			return harness.Reply{}, err
		}
		seg := buf[:n]
		if !v6 { // IPv4 raw sockets deliver the IP header too
			if n < 20 {
				continue
			}
			seg = seg[int(buf[0]&0x0f)*4:]
		}
		if len(seg) < 20 || !fromAddr(from, f.Dst.Addr()) {
			continue
		}
		if binary.BigEndian.Uint16(seg[0:]) != f.Dst.Port() || binary.BigEndian.Uint16(seg[2:]) != sport {
			continue
		}
		if seg[13]&tcpRST != 0 {
			return harness.Reply{Tag: TagRST, Local: f.Dst.String(), Remote: netip.AddrPortFrom(f.Src, sport).String()}, nil
		}
	}
	return harness.Reply{}, errTimeout
}

// errTimeout is a probe that got no answer; it classifies as "timeout".
var errTimeout = timeoutError{}

type timeoutError struct{}

func (timeoutError) Error() string   { return "no answer" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return false }

func fromAddr(sa unix.Sockaddr, want netip.Addr) bool {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrFrom4(a.Addr) == want
	case *unix.SockaddrInet6:
		return netip.AddrFrom16(a.Addr) == want
	}
	return false
}

// tcpChecksum4 is the TCP checksum over the IPv4 pseudo header and seg.
func tcpChecksum4(src, dst netip.Addr, seg []byte) uint16 {
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(binary.BigEndian.Uint16(b[i:]))
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	s4, d4 := src.As4(), dst.As4()
	add(s4[:])
	add(d4[:])
	sum += unix.IPPROTO_TCP + uint32(len(seg))
	add(seg)
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
