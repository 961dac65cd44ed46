package equiv

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nfintercept/nfintercept/integration/harness"
)

// Flow is one connection (TCP) or request/answer (UDP) made from a part of
// a twin with an identity.
type Flow struct {
	Name string // why the flow exists, for reports
	From Origin
	// Flow.Mark (SO_MARK) and Flow.Transparent (IP_TRANSPARENT) let a
	// client act as Envoy's TPROXY upstream or as ztunnel.
	harness.Flow
}

// ProtoInvalidFIN is a raw probe rather than a connection: a lone TCP FIN
// (a flag combination conntrack classifies INVALID) sent to a closed port.
// The kernel answers it with a RST unless a rule drops it first.
const ProtoInvalidFIN = "tcp-invalid-fin"

func (f Flow) String() string { return fmt.Sprintf("from %s: %v", f.From, f.Flow) }

// Decision is where a flow landed: the listener that answered with the
// destination and source it saw, or the class of failure the client got.
type Decision struct {
	Tag  string // listener tag
	Dst  string // original destination as the listener saw it
	From string // source address the listener saw
	Err  string // failure class, when no listener answered
}

func (d Decision) String() string {
	if d.Err != "" {
		return "error: " + d.Err
	}
	return fmt.Sprintf("%s dst=%s from=%s", d.Tag, d.Dst, d.From)
}

// decide turns a listener reply or a client error into a Decision.
func decide(r harness.Reply, err error) Decision {
	if err != nil {
		return Decision{Err: errorClass(err)}
	}
	// A REDIRECTed connection's listener reads the original destination
	// from conntrack; anything else saw it as its local address.
	dst := r.OrigDst
	if dst == "" {
		dst = r.Local
	}
	return Decision{Tag: r.Tag, Dst: dst, From: hostOf(r.Remote)}
}

// errorClass names a client failure so twins can be compared (messages carry
// ports and addresses that differ between runs).
func errorClass(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, syscall.EPIPE):
		return "reset"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "unreachable"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "cannot bind source"
	case errors.Is(err, syscall.EPERM), errors.Is(err, syscall.EACCES):
		return "not permitted"
	case errors.Is(err, syscall.EINVAL):
		return "invalid"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	// harness.Run hands errors over as text.
	for _, m := range errorTexts {
		if strings.Contains(err.Error(), m.text) {
			return m.class
		}
	}
	return "other: " + err.Error()
}

var errorTexts = []struct{ text, class string }{
	{syscall.ECONNREFUSED.Error(), "refused"},
	{syscall.ECONNRESET.Error(), "reset"},
	{"EOF", "reset"},
	{syscall.EPIPE.Error(), "reset"},
	{syscall.EHOSTUNREACH.Error(), "unreachable"},
	{syscall.ENETUNREACH.Error(), "unreachable"},
	{syscall.EADDRNOTAVAIL.Error(), "cannot bind source"},
	{syscall.EPERM.Error(), "not permitted"},
	{syscall.EACCES.Error(), "not permitted"},
	{syscall.EINVAL.Error(), "invalid"},
	{"i/o timeout", "timeout"},
}

// run makes the flow inside the namespace h with the flow's identity. The
// socket is created on a thread switched into the namespace with the
// flow's fsuid/fsgid and groups, which is what owner matching (xt_owner,
// meta skuid/skgid) looks at. The thread is never handed back to the Go
// scheduler: it exits with the goroutine.
//
// This stands in for harness.Run, which starts one process per flow (about
// 8 ms each here): the suite makes some 90,000 flow runs (flows × 3 twins).
// TestEquivalenceClient checks that both clients decide alike.
func run(h int, f Flow, timeout time.Duration) (harness.Reply, error) {
	type result struct {
		r   harness.Reply
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // no unlock: the thread's netns and credentials changed
		r, err := func() (harness.Reply, error) {
			if err := unix.Setns(h, unix.CLONE_NEWNET); err != nil {
				return harness.Reply{}, fmt.Errorf("%w: setns: %w", errHarness, err)
			}
			groups := make([]int, len(f.Groups))
			for i, g := range f.Groups {
				groups[i] = int(g)
			}
			if err := unix.Setgroups(groups); err != nil {
				return harness.Reply{}, fmt.Errorf("%w: setgroups: %w", errHarness, err)
			}
			if err := unix.Setfsgid(int(f.GID)); err != nil {
				return harness.Reply{}, fmt.Errorf("%w: setfsgid: %w", errHarness, err)
			}
			if err := unix.Setfsuid(int(f.UID)); err != nil {
				return harness.Reply{}, fmt.Errorf("%w: setfsuid: %w", errHarness, err)
			}
			if f.Proto == ProtoInvalidFIN {
				return probeInvalidFIN(f.Flow, timeout)
			}
			return dial(f, timeout)
		}()
		done <- result{r, err}
	}()
	res := <-done
	return res.r, res.err
}

// dial is the client side of a flow: connect, then read the listener's
// JSON reply (TCP) or send a datagram and read the answer (UDP).
func dial(f Flow, timeout time.Duration) (harness.Reply, error) {
	d := net.Dialer{Timeout: timeout, Control: func(network, address string, rc syscall.RawConn) error {
		if err := f.Flow.Control(network, address, rc); err != nil {
			return fmt.Errorf("%w: socket options: %w", errHarness, err)
		}
		return nil
	}}
	if f.Src.IsValid() {
		switch f.Proto {
		case "tcp":
			d.LocalAddr = &net.TCPAddr{IP: f.Src.AsSlice()}
		case "udp":
			d.LocalAddr = &net.UDPAddr{IP: f.Src.AsSlice()}
		}
	}
	if f.Proto != "tcp" && f.Proto != "udp" {
		return harness.Reply{}, fmt.Errorf("%w: unknown proto %q", errHarness, f.Proto)
	}
	c, err := d.Dial(f.Proto, f.Dst.String())
	if err != nil {
		return harness.Reply{}, err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return harness.Reply{}, err
	}
	var line []byte
	if f.Proto == "udp" {
		if _, err := c.Write([]byte("ping")); err != nil {
			return harness.Reply{}, err
		}
		buf := make([]byte, 2048)
		n, err := c.Read(buf)
		if err != nil {
			return harness.Reply{}, err
		}
		line = buf[:n]
	} else {
		line, err = bufio.NewReader(c).ReadBytes('\n')
		if err != nil {
			return harness.Reply{}, err
		}
	}
	var r harness.Reply
	if err := json.Unmarshal(line, &r); err != nil {
		return harness.Reply{}, fmt.Errorf("%w: bad reply %q: %w", errHarness, line, err)
	}
	return r, nil
}

// errHarness marks problems of the test machinery (which fail the test),
// as opposed to flow outcomes (which are decisions).
var errHarness = errors.New("harness")

func isHarnessError(err error) bool { return errors.Is(err, errHarness) }

// Run makes the flow in the twin and returns its decision. Problems of the
// machinery itself are returned as errors.
func (tw *Twin) Run(f Flow, timeout time.Duration) (Decision, error) {
	h, ok := tw.handles[f.From]
	if !ok {
		return Decision{}, fmt.Errorf("twin %s has no %s namespace", tw.Backend, f.From)
	}
	r, err := run(int(h), f, timeout)
	if isHarnessError(err) {
		return Decision{}, err
	}
	return decide(r, err), nil
}

// RunHarness makes the flow with harness.Run (one process per flow, real
// uid/gid) instead of the in-process client; only plain TCP/UDP flows.
func (tw *Twin) RunHarness(t testing.TB, f Flow) Decision {
	t.Helper()
	r := harness.Run(t, tw.Path(f.From), f.Flow)
	return decide(r.Reply, r.Err)
}

// addrPort is a shorthand.
func addrPort(a netip.Addr, port uint16) netip.AddrPort { return netip.AddrPortFrom(a, port) }
