// Package harness builds throwaway network topologies and makes real
// connections through them, so integration tests can prove what the kernel
// does with installed rules. It never touches the root network namespace:
// namespaces are created with iproute2 and everything is configured from
// inside them.
package harness

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/nfintercept/nfintercept"
)

// Prefix starts the name of every namespace the harness creates, followed by
// the creating process id so leftovers of dead runs can be told apart from
// namespaces of runs still going on.
const Prefix = "nfi-it-"

// NetNSDir is where iproute2 keeps named namespaces.
const NetNSDir = "/var/run/netns"

// Addresses of the standard pair. The pod reaches the Peer* destinations
// through the peer, which owns them.
var (
	PodV4  = netip.MustParseAddr("192.0.2.2")
	PodV6  = netip.MustParseAddr("2001:db8:1::2")
	PeerV4 = netip.MustParseAddr("192.0.2.1")
	PeerV6 = netip.MustParseAddr("2001:db8:1::1")

	// Destinations owned by the peer and routed from the pod.
	DstV4        = netip.MustParseAddr("198.51.100.7")
	DstV4b       = netip.MustParseAddr("198.51.100.8")
	DNSV4        = netip.MustParseAddr("198.51.100.53")
	ExcludedV4   = netip.MustParseAddr("10.245.0.1") // inside the usual -x 10.245.0.0/16
	DstV6        = netip.MustParseAddr("2001:db8:2::7")
	DNSV6        = netip.MustParseAddr("2001:db8:2::53")
	ExcludedV6   = netip.MustParseAddr("2001:db8:3::1") // inside 2001:db8:3::/64
	peerExtra    = []netip.Addr{DstV4, DstV4b, DNSV4, ExcludedV4, DstV6, DNSV6, ExcludedV6}
	podRoutesVia = []string{"198.51.100.0/24", "10.245.0.0/16", "2001:db8:2::/64", "2001:db8:3::/64"}
)

// Pair is a "pod" namespace and a "peer" namespace joined by a veth pair
// (eth0 on both sides).
type Pair struct {
	Pod, Peer         string // namespace names
	PodPath, PeerPath string // /var/run/netns/NAME
}

// PairOptions tunes NewPair.
type PairOptions struct {
	// PeerAddrs are extra addresses given to the peer's eth0 (as /32 or
	// /128); the pod gets no route to them unless they fall in a routed range.
	PeerAddrs []netip.Addr
}

var sweepOnce sync.Once

// NewPair creates the two namespaces and the link between them. Both are
// deleted when the test ends, whatever its outcome.
func NewPair(t testing.TB, opts PairOptions) *Pair {
	t.Helper()
	RequireRoot(t)
	sweepOnce.Do(sweepLeftovers)

	base := OwnedName(Prefix)
	p := &Pair{Pod: base + "-pod", Peer: base + "-peer"}
	p.PodPath = filepath.Join(NetNSDir, p.Pod)
	p.PeerPath = filepath.Join(NetNSDir, p.Peer)

	AddNS(t, p.Pod)
	AddNS(t, p.Peer)

	pod := []string{"ip", "-n", p.Pod}
	peer := []string{"ip", "-n", p.Peer}
	run := func(args ...string) { MustRun(t, args[0], args[1:]...) }
	// Created inside the pod namespace and moved straight into the peer, so
	// no interface ever exists in the root namespace.
	run(append(pod, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", p.Peer)...)
	for _, ns := range [][]string{pod, peer} {
		run(append(ns, "link", "set", "eth0", "up")...)
	}
	run(append(pod, "addr", "add", PodV4.String()+"/24", "dev", "eth0")...)
	run(append(pod, "addr", "add", PodV6.String()+"/64", "dev", "eth0", "nodad")...)
	run(append(peer, "addr", "add", PeerV4.String()+"/24", "dev", "eth0")...)
	run(append(peer, "addr", "add", PeerV6.String()+"/64", "dev", "eth0", "nodad")...)
	for _, a := range append(append([]netip.Addr{}, peerExtra...), opts.PeerAddrs...) {
		run(append(peer, "addr", "add", netip.PrefixFrom(a, a.BitLen()).String(), "dev", "eth0", "nodad")...)
	}
	for _, r := range podRoutesVia {
		via := PeerV4
		if strings.Contains(r, ":") {
			via = PeerV6
		}
		run(append(pod, "route", "add", r, "via", via.String())...)
	}
	return p
}

// AddNS creates the named namespace with lo up and returns its path; it is
// deleted when the test ends, whatever its outcome, and a failed deletion
// fails the test (a leaked namespace would go unnoticed).
func AddNS(t testing.TB, name string) string {
	t.Helper()
	MustRun(t, "ip", "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("deleting netns %s: %v: %s", name, err, out)
		}
	})
	MustRun(t, "ip", "-n", name, "link", "set", "lo", "up")
	return filepath.Join(NetNSDir, name)
}

// AddNS creates one more namespace beside the pair's, named after them
// with suffix ("vm": NAME-vm), as AddNS does.
func (p *Pair) AddNS(t testing.TB, suffix string) (name, path string) {
	t.Helper()
	name = strings.TrimSuffix(p.Pod, "-pod") + "-" + suffix
	return name, AddNS(t, name)
}

// RequireRoot skips the test when it cannot create namespaces.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces and switch credentials")
	}
}

// MustRun runs a tool (never the product) and fails the test on error.
func MustRun(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// InNS runs a tool inside a named namespace (ip netns exec) and fails the
// test on error.
func InNS(t testing.TB, ns string, name string, args ...string) string {
	t.Helper()
	return MustRun(t, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// Do runs fn on an OS thread switched into the namespace at nsPath. Sockets
// created by fn belong to that namespace for their whole life. The thread is
// returned to the Go scheduler only if switching back succeeded; otherwise
// it stays locked and dies with the goroutine.
func Do(nsPath string, fn func() error) error {
	return nfintercept.InNamespace(nsPath, fn)
}

func randomSuffix() string {
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// TempDir creates a process-wide temporary directory that other users can
// enter, named so that sweepLeftovers can remove it once this process is
// gone. The caller removes it when done.
func TempDir(kind string) (string, error) {
	dir, err := os.MkdirTemp("", fmt.Sprintf("%s%d-%s-", Prefix, os.Getpid(), kind))
	if err != nil {
		return "", fmt.Errorf("temp dir: %w", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", fmt.Errorf("chmod %s: %w", dir, err)
	}
	return dir, nil
}

// sweepLeftovers deletes namespaces and temporary directories created by
// harness processes that no longer exist (a crashed or killed earlier run).
// Those of live processes, including concurrent test binaries, are left alone.
func sweepLeftovers() {
	SweepNamespaces(Prefix)
	if entries, err := os.ReadDir(os.TempDir()); err == nil {
		for _, e := range entries {
			if e.IsDir() && deadOwner(Prefix, e.Name()) {
				_ = os.RemoveAll(filepath.Join(os.TempDir(), e.Name()))
			}
		}
	}
}

// SweepNamespaces deletes the namespaces named "<prefix><pid>-..." whose
// creating process is gone. Every suite names its namespaces that way (see
// OwnedName), so leftovers of a killed run are removed by the next one.
func SweepNamespaces(prefix string) {
	entries, err := os.ReadDir(NetNSDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if deadOwner(prefix, e.Name()) {
			_ = exec.Command("ip", "netns", "del", e.Name()).Run()
		}
	}
}

// OwnedName is "<prefix><pid>-<random>": a name SweepNamespaces can tie to
// this process.
func OwnedName(prefix string) string {
	return fmt.Sprintf("%s%d-%s", prefix, os.Getpid(), randomSuffix())
}

// deadOwner reports whether name is "<prefix><pid>-..." for a pid that is
// neither this process nor alive.
func deadOwner(prefix, name string) bool {
	rest, ok := strings.CutPrefix(name, prefix)
	if !ok {
		return false
	}
	pidStr, _, ok := strings.Cut(rest, "-")
	if !ok {
		return false
	}
	pid, err := strconv.Atoi(pidStr)
	return err == nil && pid != os.Getpid() && !processAlive(pid)
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || err == syscall.EPERM
}
