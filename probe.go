package nfintercept

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// ErrValidation is returned by Probe when no probe connection was
// redirected in time (istio-iptables exits 126 then).
var ErrValidation = errors.New("validation failed: probe connection was not redirected to the proxy")

// Probe checks the data path the way istio-iptables' --run-validation
// does: it listens on the proxy's outbound and inbound ports on localhost,
// connects to the inbound passthrough address (127.0.0.6 or ::6) on
// probePort, and succeeds when a listener sees that connection with its
// original destination port. Only the proxy's uid/gid is looped back to
// inbound by the rules, so run it as that user (with --skip-rule-apply).
//
// The family follows istio-iptables: IPv6 when the namespace's first
// non-loopback, non-link-local address is IPv6.
func Probe(ns *Namespace, proxyPort, inboundPort, probePort uint16, timeout time.Duration) error {
	addrs, err := localAddrs(&realKernel{ns: ns, addrsOnly: true})
	if err != nil {
		return fmt.Errorf("validation: %w", err)
	}
	local, target := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.6")
	if len(addrs) > 0 && addrs[0].Is6() {
		local, target = netip.IPv6Loopback(), netip.MustParseAddr("::6")
	}
	seen := make(chan uint16, 16)
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	return ns.Do(func() error {
		for _, port := range []uint16{proxyPort, inboundPort} {
			l, err := net.Listen("tcp", netip.AddrPortFrom(local, port).String())
			if err != nil {
				return fmt.Errorf("validation: listen on port %d: %w", port, err)
			}
			listeners = append(listeners, l)
			go acceptOriginalPorts(l, seen)
		}
		deadline := time.Now().Add(timeout)
		dialer := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(local, 0)), Timeout: time.Second}
		for {
			if c, err := dialer.Dial("tcp", netip.AddrPortFrom(target, probePort).String()); err == nil {
				c.Close()
			}
			select {
			case port := <-seen:
				if port == probePort {
					return nil
				}
			case <-time.After(time.Second):
			}
			if time.Now().After(deadline) {
				return ErrValidation
			}
		}
	})
}

func acceptOriginalPorts(l net.Listener, seen chan<- uint16) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		if dst, err := OriginalDst(c.(*net.TCPConn)); err == nil {
			select {
			case seen <- dst.Port():
			default:
			}
		}
		c.Close()
	}
}

// InNamespace runs fn on an OS thread switched into the network namespace
// at pathOrName: sockets fn creates, and processes it starts, belong to
// that namespace for their whole life. The caller's thread is never
// switched (see Namespace.Do).
func InNamespace(pathOrName string, fn func() error) error {
	ns, err := OpenNamespace(pathOrName)
	if err != nil {
		return err
	}
	defer ns.Close()
	return ns.Do(fn)
}
