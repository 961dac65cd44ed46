// Package bench measures nfintercept against nft -f and iptables-restore:
// apply latency, scaling with the number of excluded CIDRs, the cost of a
// new connection through the installed rules and peak memory. Everything
// runs in network namespaces it creates (names start with NSPrefix); the
// root namespace is never changed. Used by bench_test.go (Go benchmarks)
// and cmd/benchdriver (make bench).
package bench

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"github.com/nfintercept/nfintercept"
	"github.com/nfintercept/nfintercept/integration/harness"
)

// NSPrefix starts every namespace the benchmarks create, followed by the
// creating pid, so leftovers of dead runs can be swept.
const NSPrefix = "nfi-bn-"

// netnsDir is where iproute2 keeps named namespaces.
const netnsDir = "/var/run/netns"

// NS is a named network namespace.
type NS struct {
	Name string
	Path string
}

var sweepOnce sync.Once

// NewNS creates a namespace with lo up. tag makes the name readable.
func NewNS(tag string) (*NS, error) {
	sweepOnce.Do(func() { harness.SweepNamespaces(NSPrefix) })
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("random suffix: %w", err)
	}
	name := fmt.Sprintf("%s%d-%s-%s", NSPrefix, os.Getpid(), tag, hex.EncodeToString(b))
	if err := Run("ip", "netns", "add", name); err != nil {
		return nil, err
	}
	ns := &NS{Name: name, Path: filepath.Join(netnsDir, name)}
	if err := ns.IP("link", "set", "lo", "up"); err != nil {
		ns.Close()
		return nil, err
	}
	return ns, nil
}

// Close deletes the namespace.
func (n *NS) Close() error {
	return Run("ip", "netns", "del", n.Name)
}

// IP runs "ip -n NAME args...".
func (n *NS) IP(args ...string) error {
	return Run("ip", append([]string{"-n", n.Name}, args...)...)
}

// Run runs a tool (never the product) and returns its output in the error.
func Run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Do runs fn on an OS thread switched into the namespace. Sockets fn
// creates, and processes it starts, live in that namespace. The thread goes
// back to the scheduler only if switching back succeeded; otherwise it stays
// locked and dies with the goroutine.
func (n *NS) Do(fn func() error) error {
	return nfintercept.InNamespace(n.Path, fn)
}
