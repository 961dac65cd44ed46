package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/nfintercept/nfintercept"
)

// Reply is what a listener sends back to the client: its tag plus what it
// saw of the connection, so the client's result tells where the flow landed.
type Reply struct {
	Tag     string `json:"tag"`
	Local   string `json:"local"`
	Remote  string `json:"remote"`
	OrigDst string `json:"orig_dst,omitempty"` // TCP only; empty when conntrack has no entry
}

// Listener accepts connections (or datagrams) inside a namespace and
// records each one.
type Listener struct {
	Tag  string
	Addr string // as bound

	closer func() error
}

// ListenOptions tunes a listener.
type ListenOptions struct {
	// Transparent sets IP_TRANSPARENT / IPV6_TRANSPARENT, needed to accept
	// TPROXY'd connections for non-local addresses.
	Transparent bool
	// Owner, when set, creates the socket with this fsuid/fsgid, so rules
	// matching skuid/skgid see its packets as that user's.
	Owner *Owner
}

// Owner is a socket owner identity.
type Owner struct{ UID, GID uint32 }

// withOwner runs fn with the calling thread's fsuid/fsgid switched to o. It
// must run on a locked thread; an extra lock makes the thread exit with its
// goroutine, so a thread with changed credentials is never reused.
func withOwner(o *Owner, fn func() error) error {
	if o == nil {
		return fn()
	}
	runtime.LockOSThread()
	unix.Setfsgid(int(o.GID))
	unix.Setfsuid(int(o.UID))
	return fn()
}

// ListenTCP listens on addr ("0.0.0.0:15001", "[::]:15001", ...) inside the
// namespace. A "[::]" address listens to IPv6 only, so IPv4 and IPv6
// listeners can share a port and SO_ORIGINAL_DST is read per family.
func ListenTCP(t testing.TB, nsPath, addr, tag string, opts ListenOptions) *Listener {
	t.Helper()
	network := networkFor("tcp", addr)
	var ln net.Listener
	err := Do(nsPath, func() error {
		return withOwner(opts.Owner, func() error {
			var err error
			lc := listenConfig(opts)
			ln, err = lc.Listen(context.Background(), network, addr)
			return err
		})
	})
	if err != nil {
		t.Fatalf("listen %s %s in %s: %v", network, addr, nsPath, err)
	}
	l := &Listener{Tag: tag, Addr: addr, closer: ln.Close}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go l.serveTCP(c.(*net.TCPConn))
		}
	}()
	t.Cleanup(func() { _ = l.closer() })
	return l
}

func (l *Listener) serveTCP(c *net.TCPConn) {
	defer c.Close()
	r := Reply{Tag: l.Tag, Local: c.LocalAddr().String(), Remote: c.RemoteAddr().String()}
	if od, err := OriginalDst(c); err == nil {
		r.OrigDst = od.String()
	}
	_ = c.SetWriteDeadline(time.Now().Add(2 * time.Second))
	_ = json.NewEncoder(c).Encode(r)
}

// ListenUDP listens on addr inside the namespace and answers every datagram
// with a Reply, sent from the address the datagram was addressed to (a
// wildcard socket would otherwise answer from the route's preferred source,
// which a connected client drops).
func ListenUDP(t testing.TB, nsPath, addr, tag string, opts ListenOptions) *Listener {
	t.Helper()
	network := networkFor("udp", addr)
	v6 := strings.HasSuffix(network, "6")
	var uc *net.UDPConn
	err := Do(nsPath, func() error {
		return withOwner(opts.Owner, func() error {
			lc := listenConfig(opts)
			pc, err := lc.ListenPacket(context.Background(), network, addr)
			if err != nil {
				return err
			}
			uc = pc.(*net.UDPConn)
			return setPktinfo(uc, v6)
		})
	})
	if err != nil {
		t.Fatalf("listen %s %s in %s: %v", network, addr, nsPath, err)
	}
	l := &Listener{Tag: tag, Addr: addr, closer: uc.Close}
	go func() {
		buf := make([]byte, 2048)
		oob := make([]byte, 512)
		for {
			_, oobn, _, from, err := uc.ReadMsgUDPAddrPort(buf, oob)
			if err != nil {
				return
			}
			dst, replyOOB := pktinfoReply(oob[:oobn], v6)
			local := uc.LocalAddr().String()
			if dst.IsValid() {
				local = netip.AddrPortFrom(dst, uint16(uc.LocalAddr().(*net.UDPAddr).Port)).String()
			}
			r := Reply{Tag: tag, Local: local, Remote: from.String()}
			b, _ := json.Marshal(r)
			_, _, _ = uc.WriteMsgUDPAddrPort(b, replyOOB, from)
		}
	}()
	t.Cleanup(func() { _ = l.closer() })
	return l
}

func setPktinfo(uc *net.UDPConn, v6 bool) error {
	rc, err := uc.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		if v6 {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_IPV6, unix.IPV6_RECVPKTINFO, 1)
		} else {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_PKTINFO, 1)
		}
	})
	if err != nil {
		return err
	}
	return serr
}

// pktinfoReply extracts the destination of a received datagram and builds
// the control message that sends the answer from it.
func pktinfoReply(oob []byte, v6 bool) (netip.Addr, []byte) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return netip.Addr{}, nil
	}
	for _, m := range msgs {
		switch {
		case !v6 && m.Header.Level == unix.SOL_IP && m.Header.Type == unix.IP_PKTINFO &&
			len(m.Data) >= unix.SizeofInet4Pktinfo:
			info := (*unix.Inet4Pktinfo)(unsafe.Pointer(&m.Data[0]))
			dst := netip.AddrFrom4(info.Addr)
			return dst, unix.PktInfo4(&unix.Inet4Pktinfo{Spec_dst: info.Addr})
		case v6 && m.Header.Level == unix.SOL_IPV6 && m.Header.Type == unix.IPV6_PKTINFO &&
			len(m.Data) >= unix.SizeofInet6Pktinfo:
			info := (*unix.Inet6Pktinfo)(unsafe.Pointer(&m.Data[0]))
			dst := netip.AddrFrom16(info.Addr)
			return dst, unix.PktInfo6(&unix.Inet6Pktinfo{Addr: info.Addr})
		}
	}
	return netip.Addr{}, nil
}

// ListenBoth starts an IPv4 and an IPv6 wildcard listener on port with the
// same tag.
func ListenBoth(t testing.TB, nsPath, proto string, port uint16, tag string) {
	t.Helper()
	for _, host := range []string{"0.0.0.0", "::"} {
		addr := net.JoinHostPort(host, fmt.Sprint(port))
		switch proto {
		case "tcp":
			ListenTCP(t, nsPath, addr, tag, ListenOptions{})
		case "udp":
			ListenUDP(t, nsPath, addr, tag, ListenOptions{})
		default:
			t.Fatalf("unknown proto %q", proto)
		}
	}
}

func networkFor(proto, addr string) string {
	if strings.HasPrefix(addr, "[") {
		return proto + "6"
	}
	return proto + "4"
}

func listenConfig(opts ListenOptions) net.ListenConfig {
	return net.ListenConfig{Control: func(network, _ string, rc syscall.RawConn) error {
		if !opts.Transparent {
			return nil
		}
		var serr error
		if err := rc.Control(func(fd uintptr) { serr = setTransparent(fd, network) }); err != nil {
			return err
		}
		return serr
	}}
}

// OriginalDst returns the destination a NATed (REDIRECTed) TCP connection
// was originally sent to, as conntrack remembers it.
func OriginalDst(c *net.TCPConn) (netip.AddrPort, error) {
	return nfintercept.OriginalDst(c)
}
