package harness

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// childEnv carries the flow to a re-executed test binary.
const childEnv = "NFI_HARNESS_CHILD"

// DefaultTimeout bounds connect + reply of one flow.
const DefaultTimeout = 2 * time.Second

// Flow is one connection (TCP) or request/answer (UDP) made by a process
// with the given identity, from inside a namespace.
type Flow struct {
	Proto  string         `json:"proto"` // "tcp" or "udp"
	Src    netip.Addr     `json:"src"`   // optional source address to bind
	Dst    netip.AddrPort `json:"dst"`
	UID    uint32         `json:"uid"`
	GID    uint32         `json:"gid"`
	Groups []uint32       `json:"groups"` // supplementary groups (none if empty)
	// Mark is the socket's SO_MARK (needs uid 0), as ztunnel sets on its
	// sockets; Transparent sets IP_TRANSPARENT so Src may be non-local.
	Mark        uint32 `json:"mark,omitempty"`
	Transparent bool   `json:"transparent,omitempty"`

	Timeout time.Duration `json:"timeout"` // 0 = DefaultTimeout
}

func (f Flow) String() string {
	s := fmt.Sprintf("%s uid=%d gid=%d", f.Proto, f.UID, f.GID)
	if len(f.Groups) > 0 {
		s += fmt.Sprintf(" groups=%v", f.Groups)
	}
	if f.Src.IsValid() {
		s += " " + f.Src.String()
	}
	s += " -> " + f.Dst.String()
	if f.Mark != 0 {
		s += fmt.Sprintf(" mark=%d", f.Mark)
	}
	if f.Transparent {
		s += " transparent"
	}
	return s
}

// Result is where a flow landed: the answering listener's Reply, or the
// network error the client saw (refused, timeout, ...).
type Result struct {
	Reply
	Err error
}

// childResult is the child's JSON output, with the identity it ran as so
// the parent can check the credentials really applied.
type childResult struct {
	Reply  Reply    `json:"reply"`
	Err    string   `json:"err,omitempty"`
	UID    int      `json:"uid"`
	GID    int      `json:"gid"`
	Groups []uint32 `json:"groups"`
}

// Run makes the flow from a new process running with the flow's
// credentials inside the namespace at nsPath. Problems of the harness
// itself fail the test; problems of the flow are in Result.Err.
func Run(t testing.TB, nsPath string, f Flow) Result {
	t.Helper()
	bin, err := childBinary()
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	spec, err := json.Marshal(f)
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*f.timeout()+5*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = []string{childEnv + "=" + string(spec), "HOME=/"}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: f.UID, Gid: f.GID, Groups: f.Groups},
		Pdeathsig:  syscall.SIGKILL,
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// The forked child inherits the namespace of the thread that forks it.
	if err := Do(nsPath, cmd.Start); err != nil {
		t.Fatalf("harness: start child for %v: %v", f, err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("harness: child for %v: %v\nstdout: %s\nstderr: %s", f, err, stdout.String(), stderr.String())
	}
	var cr childResult
	if err := json.Unmarshal(stdout.Bytes(), &cr); err != nil {
		t.Fatalf("harness: child output for %v: %v\nstdout: %s\nstderr: %s", f, err, stdout.String(), stderr.String())
	}
	if cr.UID != int(f.UID) || cr.GID != int(f.GID) || !sameIDs(cr.Groups, f.Groups) {
		t.Fatalf("harness: child for %v ran as uid=%d gid=%d groups=%v", f, cr.UID, cr.GID, cr.Groups)
	}
	res := Result{Reply: cr.Reply}
	if cr.Err != "" {
		res.Err = errors.New(cr.Err)
	}
	return res
}

func (f Flow) timeout() time.Duration {
	if f.Timeout > 0 {
		return f.Timeout
	}
	return DefaultTimeout
}

var (
	binOnce sync.Once
	binPath string
	binDir  string
	binErr  error
)

// childBinary returns a copy of the running test binary that any user can
// execute: go test builds into a directory only root may enter.
func childBinary() (string, error) {
	binOnce.Do(func() {
		self, err := os.Executable()
		if err != nil {
			binErr = fmt.Errorf("locate test binary: %w", err)
			return
		}
		dir, err := TempDir("bin")
		if err != nil {
			binErr = err
			return
		}
		binDir = dir
		dst := filepath.Join(dir, filepath.Base(self))
		if err := copyFile(self, dst, 0o755); err != nil {
			binErr = err
			return
		}
		binPath = dst
	})
	return binPath, binErr
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("open %s: %w", src, err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return fmt.Errorf("create %s: %w", dst, err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy to %s: %w", dst, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("close %s: %w", dst, err)
	}
	return nil
}

// Main is the TestMain of every package using Run: in a re-executed child
// it makes the flow and exits; otherwise it runs the tests, then the
// cleanups, and removes the child binary copy.
//
// As root, the tests themselves run in a re-executed copy of the binary
// inside a fresh, empty network namespace: code under test that ignores the
// namespace it is given then programs that throwaway namespace, never the
// host's.
func Main(m *testing.M, cleanups ...func()) {
	// The main thread stays with the main goroutine. Flow clients lock a
	// thread, switch its namespace and credentials and let it die with
	// the goroutine; on the main thread Go cannot end the thread and keeps
	// it, switched, which /proc/self/ns/net then reports as the process'
	// namespace.
	runtime.LockOSThread()
	if spec, ok := os.LookupEnv(childEnv); ok {
		os.Exit(child(spec))
	}
	if os.Geteuid() == 0 && os.Getenv(isolatedEnv) == "" {
		os.Exit(runIsolated())
	}
	code := m.Run()
	for _, c := range cleanups {
		c()
	}
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// isolatedEnv marks the re-executed test process running in its own
// network namespace.
const isolatedEnv = "NFI_HARNESS_ISOLATED"

// runIsolated re-executes the test binary with the same arguments under
// `unshare -n` and returns its exit status.
func runIsolated() int {
	// The forking thread must outlive the child for Pdeathsig to mean
	// "the test process died".
	runtime.LockOSThread()
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "harness: locate test binary: %v\n", err)
		return 2
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		fmt.Fprintf(os.Stderr, "harness: %v\n", err)
		return 2
	}
	cmd := exec.Command(unshare, append([]string{"-n", "--", self}, os.Args[1:]...)...)
	cmd.Env = append(os.Environ(), isolatedEnv+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	err = cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit) && exit.ExitCode() >= 0:
		return exit.ExitCode()
	default:
		fmt.Fprintf(os.Stderr, "harness: isolated test run: %v\n", err)
		return 2
	}
}

func child(spec string) int {
	var f Flow
	if err := json.Unmarshal([]byte(spec), &f); err != nil {
		fmt.Fprintf(os.Stderr, "bad flow spec: %v\n", err)
		return 2
	}
	cr := childResult{UID: os.Getuid(), GID: os.Getgid()}
	groups, err := os.Getgroups()
	if err != nil {
		fmt.Fprintf(os.Stderr, "getgroups: %v\n", err)
		return 2
	}
	for _, g := range groups {
		cr.Groups = append(cr.Groups, uint32(g))
	}
	reply, err := dial(f)
	if err != nil {
		cr.Err = err.Error()
	} else {
		cr.Reply = reply
	}
	if err := json.NewEncoder(os.Stdout).Encode(cr); err != nil {
		fmt.Fprintf(os.Stderr, "write result: %v\n", err)
		return 2
	}
	return 0
}

// sameIDs compares id lists as sets.
func sameIDs(a, b []uint32) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}

func dial(f Flow) (Reply, error) {
	d := net.Dialer{Timeout: f.timeout(), Control: f.Control}
	if f.Src.IsValid() {
		switch f.Proto {
		case "tcp":
			d.LocalAddr = &net.TCPAddr{IP: f.Src.AsSlice()}
		case "udp":
			d.LocalAddr = &net.UDPAddr{IP: f.Src.AsSlice()}
		}
	}
	var network string
	switch f.Proto {
	case "tcp", "udp":
		network = f.Proto
	default:
		return Reply{}, fmt.Errorf("unknown proto %q", f.Proto)
	}
	c, err := d.Dial(network, f.Dst.String())
	if err != nil {
		return Reply{}, err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(f.timeout())); err != nil {
		return Reply{}, err
	}
	var line []byte
	if f.Proto == "udp" {
		if _, err := c.Write([]byte("ping")); err != nil {
			return Reply{}, err
		}
		buf := make([]byte, 2048)
		n, err := c.Read(buf)
		if err != nil {
			return Reply{}, err
		}
		line = buf[:n]
	} else {
		line, err = bufio.NewReader(c).ReadBytes('\n')
		if err != nil {
			return Reply{}, fmt.Errorf("read reply: %w", err)
		}
	}
	var r Reply
	if err := json.Unmarshal(line, &r); err != nil {
		return Reply{}, fmt.Errorf("bad reply %q: %w", line, err)
	}
	return r, nil
}

// setTransparent lets a socket of network ("tcp4", "udp6", ...) bind or
// accept non-local addresses.
func setTransparent(fd uintptr, network string) error {
	if strings.HasSuffix(network, "6") {
		return unix.SetsockoptInt(int(fd), unix.SOL_IPV6, unix.IPV6_TRANSPARENT, 1)
	}
	return unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_TRANSPARENT, 1)
}

// Control sets the flow's SO_MARK and IP_TRANSPARENT on a client socket
// before bind (a net.Dialer Control function).
func (f Flow) Control(network, _ string, rc syscall.RawConn) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		if f.Mark != 0 {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(f.Mark))
		}
		if f.Transparent && serr == nil {
			serr = setTransparent(fd, network)
		}
	})
	if err != nil {
		return err
	}
	return serr
}
