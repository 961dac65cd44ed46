package equiv

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nfintercept/nfintercept/integration/harness"
)

// listenUDPCatchAll answers datagrams TPROXYed to addr. The harness' UDP
// listener answers from its bound port, which a client connected to the
// original destination would drop; this one answers from the original
// destination (IP_ORIGDSTADDR) through a transparent socket bound to it, and
// reports that destination as Local.
func listenUDPCatchAll(t testing.TB, nsPath, addr, tag string) {
	t.Helper()
	ap := netip.MustParseAddrPort(addr)
	v6 := ap.Addr().Is6()
	var fd int
	err := harness.Do(nsPath, func() error {
		var err error
		fd, err = transparentUDP(ap)
		if err != nil {
			return err
		}
		level, opt := unix.SOL_IP, unix.IP_RECVORIGDSTADDR
		if v6 {
			level, opt = unix.SOL_IPV6, unix.IPV6_RECVORIGDSTADDR
		}
		if err := unix.SetsockoptInt(fd, level, opt, 1); err != nil {
			unix.Close(fd)
			return fmt.Errorf("IP_RECVORIGDSTADDR: %w", err)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("udp catch-all %s in %s: %v", addr, nsPath, err)
	}
	f := os.NewFile(uintptr(fd), "udp-catch-all")
	pc, err := net.FilePacketConn(f)
	f.Close()
	if err != nil {
		t.Fatalf("udp catch-all %s: %v", addr, err)
	}
	uc := pc.(*net.UDPConn)
	t.Cleanup(func() { _ = uc.Close() })
	go func() {
		buf := make([]byte, 2048)
		oob := make([]byte, 512)
		for {
			_, oobn, _, from, err := uc.ReadMsgUDPAddrPort(buf, oob)
			if err != nil {
				return
			}
			dst, ok := origDst(oob[:oobn])
			if !ok {
				continue
			}
			r := harness.Reply{Tag: tag, Local: dst.String(), Remote: from.String()}
			b, _ := json.Marshal(r)
			// The reply socket must live in the namespace too.
			_ = harness.Do(nsPath, func() error { return replyFrom(dst, from, b) })
		}
	}()
}

// transparentUDP opens a UDP socket bound to ap with IP_TRANSPARENT (it may
// bind, and send from, addresses that are not local).
func transparentUDP(ap netip.AddrPort) (int, error) {
	family, level, opt := unix.AF_INET, unix.SOL_IP, unix.IP_TRANSPARENT
	if ap.Addr().Is6() {
		family, level, opt = unix.AF_INET6, unix.SOL_IPV6, unix.IPV6_TRANSPARENT
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	setup := func() error {
		if err := unix.SetsockoptInt(fd, level, opt, 1); err != nil {
			return fmt.Errorf("transparent: %w", err)
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
			return fmt.Errorf("SO_REUSEADDR: %w", err)
		}
		if family == unix.AF_INET6 {
			if err := unix.SetsockoptInt(fd, unix.SOL_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
				return fmt.Errorf("IPV6_V6ONLY: %w", err)
			}
		}
		if err := unix.Bind(fd, sockaddr(ap)); err != nil {
			return fmt.Errorf("bind %s: %w", ap, err)
		}
		return nil
	}
	if err := setup(); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

func replyFrom(src, to netip.AddrPort, b []byte) error {
	fd, err := transparentUDP(src)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Sendto(fd, b, 0, sockaddr(to))
}

func sockaddr(ap netip.AddrPort) unix.Sockaddr {
	if ap.Addr().Is4() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
}

// origDst extracts IP_ORIGDSTADDR / IPV6_ORIGDSTADDR from control messages.
func origDst(oob []byte) (netip.AddrPort, bool) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return netip.AddrPort{}, false
	}
	for _, m := range msgs {
		switch {
		case m.Header.Level == unix.SOL_IP && m.Header.Type == unix.IP_ORIGDSTADDR && len(m.Data) >= 8:
			port := uint16(m.Data[2])<<8 | uint16(m.Data[3])
			return netip.AddrPortFrom(netip.AddrFrom4([4]byte(m.Data[4:8])), port), true
		case m.Header.Level == unix.SOL_IPV6 && m.Header.Type == unix.IPV6_ORIGDSTADDR && len(m.Data) >= 24:
			port := uint16(m.Data[2])<<8 | uint16(m.Data[3])
			return netip.AddrPortFrom(netip.AddrFrom16([16]byte(m.Data[8:24])), port), true
		}
	}
	return netip.AddrPort{}, false
}

// hostOf strips the port from "host:port".
func hostOf(s string) string {
	h, _, err := net.SplitHostPort(s)
	if err != nil {
		return s
	}
	return strings.TrimPrefix(h, "::ffff:")
}
