package nfintercept

import (
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// lockWait bounds how long a change waits for another nfintercept process
// changing the same namespace (istio-iptables waits 30 s for xtables).
const lockWait = 30 * time.Second

// lockNamespace serialises the processes that change one namespace, so
// routing and the nftables batch of two appliers never interleave. The lock
// is a flock on the namespace file itself: every path to a namespace
// (/var/run/netns/NAME, /proc/PID/ns/net) is the same nsfs inode, so they
// share it; no lock file is left behind, and the kernel drops the lock if
// the holder dies.
func lockNamespace(nsPath string) (unlock func(), err error) {
	target := nsPath
	if target == "" {
		target = "/proc/thread-self/ns/net"
	}
	f, err := os.Open(target)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", NamespaceName(nsPath), err)
	}
	deadline := time.Now().Add(lockWait)
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) || time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("lock %s: another nfintercept is changing it: %w", NamespaceName(nsPath), err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
