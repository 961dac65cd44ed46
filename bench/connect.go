package bench

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nfintercept/nfintercept/internal/libtest"
)

// The connection benchmark: how many new connections per second a pod
// opens through the installed rules, to a destination the exclude list
// covers and to one that is captured (redirected to the proxy port on the
// pod's own loopback). Only the first packet of a connection walks the
// nat rules, so this isolates the cost of the exclude list: one interval
// set lookup with nftables, one rule per CIDR in the iptables view.

// DstPort is where the client connects; captured connections end up on
// ProxyPort in the pod, excluded ones reach the peer.
const (
	DstPort   = 8080
	ProxyPort = 15001
)

// Engine names.
const (
	EngineNft    = "nftables sets (nfintercept)"
	EngineLegacy = "iptables-legacy rules"
	EngineIptNft = "iptables-nft rules"
)

// Engine installs a workload's rules in a pod namespace.
type Engine struct {
	Name    string
	Install func(pod *NS, w *Workload) error
}

// Engines compared by the connection benchmark.
func Engines() []Engine {
	restore := func(v4, v6 string) func(*NS, *Workload) error {
		return func(pod *NS, w *Workload) error {
			_, err := restorePair(pod, v4, v6, w)
			return err
		}
	}
	return []Engine{
		{EngineNft, func(pod *NS, w *Workload) error {
			_, err := libtest.Apply(libtest.Request{Options: w.Opts, NetNSPath: pod.Path})
			return err
		}},
		{EngineLegacy, restore("iptables-legacy-restore", "ip6tables-legacy-restore")},
		{EngineIptNft, restore("iptables-nft-restore", "ip6tables-nft-restore")},
	}
}

// ConnectArgs is DefaultArgs excluding n random CIDRs plus, last, the
// excluded destination's network (so it is the last rule the iptables
// view walks).
func ConnectArgs(n int, seed uint64) []string {
	return ArgsWithExcludes(append(RandomCIDRs(n, seed), excludedNet.String()))
}

// Topo is a pod and a peer namespace joined by a veth pair, with rules
// installed in the pod and listeners counting what reaches them.
type Topo struct {
	Engine    string
	N         int // random exclude CIDRs (plus the excluded destination's)
	Pod, Peer *NS

	listeners         []net.Listener
	proxyHits, direct atomic.Int64
	wg                sync.WaitGroup
}

// NewTopo builds the topology for engine with n random exclude CIDRs.
// dir receives the rendered files.
func NewTopo(engine Engine, n int, seed uint64, dir string) (_ *Topo, err error) {
	t := &Topo{Engine: engine.Name, N: n}
	defer func() {
		if err != nil {
			t.Close()
		}
	}()
	if t.Pod, err = NewNS("pod"); err != nil {
		return nil, err
	}
	if t.Peer, err = NewNS("peer"); err != nil {
		return nil, err
	}
	pod, peer := t.Pod.IP, t.Peer.IP
	steps := []func() error{
		// Created in the pod and moved straight to the peer: no interface
		// ever exists in the root namespace.
		func() error {
			return pod("link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", t.Peer.Name)
		},
		func() error { return pod("link", "set", "eth0", "up") },
		func() error { return peer("link", "set", "eth0", "up") },
		func() error { return pod("addr", "add", podV4.String()+"/24", "dev", "eth0") },
		func() error { return pod("addr", "add", podV6.String()+"/64", "dev", "eth0", "nodad") },
		func() error { return peer("addr", "add", peerV4.String()+"/24", "dev", "eth0") },
		func() error { return peer("addr", "add", peerV6.String()+"/64", "dev", "eth0", "nodad") },
		func() error { return peer("addr", "add", CapturedDst.String()+"/32", "dev", "eth0") },
		func() error { return peer("addr", "add", ExcludedDst.String()+"/32", "dev", "eth0") },
		func() error { return pod("route", "add", capturedNet.String(), "via", peerV4.String()) },
		func() error { return pod("route", "add", excludedNet.String(), "via", peerV4.String()) },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, err
		}
	}
	if err := t.listen(t.Peer, DstPort, &t.direct); err != nil {
		return nil, err
	}
	if err := t.listen(t.Pod, ProxyPort, &t.proxyHits); err != nil {
		return nil, err
	}
	w, err := NewWorkload(fmt.Sprintf("connect-%d", n), ConnectArgs(n, seed), filepath.Join(dir, fmt.Sprintf("connect-%d", n)))
	if err != nil {
		return nil, err
	}
	if err := engine.Install(t.Pod, w); err != nil {
		return nil, fmt.Errorf("%s: install %d CIDRs: %w", engine.Name, n, err)
	}
	return t, nil
}

// listen accepts and closes connections on port in ns, counting them.
func (t *Topo) listen(ns *NS, port int, count *atomic.Int64) error {
	var l net.Listener
	err := ns.Do(func() error {
		var err error
		l, err = net.Listen("tcp4", ":"+strconv.Itoa(port))
		return err
	})
	if err != nil {
		return fmt.Errorf("listen on :%d in %s: %w", port, ns.Name, err)
	}
	t.listeners = append(t.listeners, l)
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			count.Add(1)
			c.Close()
		}
	}()
	return nil
}

// Rate opens connections to dst:DstPort from the pod for d, one after the
// other, and returns connections per second. It checks they went where
// the rules say: captured ones to the pod's proxy port, excluded ones to
// the peer.
func (t *Topo) Rate(dst netip.Addr, d time.Duration) (float64, error) {
	proxy0, direct0 := t.proxyHits.Load(), t.direct.Load()
	var n int
	var elapsed time.Duration
	err := t.Pod.Do(func() error {
		sa := &unix.SockaddrInet4{Port: DstPort, Addr: dst.As4()}
		start := time.Now()
		for elapsed < d {
			if err := connectOnce(sa); err != nil {
				return fmt.Errorf("connect %s after %d connections: %w", dst, n, err)
			}
			n++
			elapsed = time.Since(start)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	// Accepts trail the handshakes, by more than 20 ms when the machine is
	// loaded: wait (bounded) for the first, then a little for the rest.
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline) &&
		t.proxyHits.Load() == proxy0 && t.direct.Load() == direct0; {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	proxy, direct := t.proxyHits.Load()-proxy0, t.direct.Load()-direct0
	captured := dst == CapturedDst
	if (captured && (proxy == 0 || direct != 0)) || (!captured && (direct == 0 || proxy != 0)) {
		return 0, fmt.Errorf("%s, %d CIDRs: connections to %s reached the proxy %d times and the peer %d times",
			t.Engine, t.N, dst, proxy, direct)
	}
	return float64(n) / elapsed.Seconds(), nil
}

// connectOnce completes one TCP handshake and resets the connection (no
// TIME_WAIT, so ports are reusable at once).
func connectOnce(sa *unix.SockaddrInet4) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return os.NewSyscallError("socket", err)
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0}); err != nil {
		return os.NewSyscallError("setsockopt", err)
	}
	// Bounds a connect whose SYN was lost.
	tv := unix.Timeval{Sec: 2}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv); err != nil {
		return os.NewSyscallError("setsockopt", err)
	}
	err = unix.Connect(fd, sa)
	if err == unix.EINTR {
		// Interrupted by a signal (the Go runtime's preemption): the
		// handshake goes on; wait for it.
		err = awaitConnect(fd)
	}
	return os.NewSyscallError("connect", err)
}

func awaitConnect(fd int) error {
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
	for {
		n, err := unix.Poll(pfd, 2000)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return unix.ETIMEDOUT
		}
		soErr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
		if err != nil {
			return err
		}
		if soErr != 0 {
			return unix.Errno(soErr)
		}
		return nil
	}
}

// Close stops the listeners and deletes the namespaces.
func (t *Topo) Close() error {
	for _, l := range t.listeners {
		l.Close()
	}
	t.wg.Wait()
	var errs []error
	for _, ns := range []*NS{t.Pod, t.Peer} {
		if ns != nil {
			errs = append(errs, ns.Close())
		}
	}
	return errors.Join(errs...)
}
