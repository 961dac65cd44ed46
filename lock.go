package nfintercept

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// lockWait bounds how long a change waits for another nfintercept process
// changing the same namespace (istio-iptables waits 30 s for xtables).
const lockWait = 30 * time.Second

// lockDirs are tried in order for the lock files.
var lockDirs = []string{"/run/nfintercept", filepath.Join(os.TempDir(), "nfintercept")}

// lockNamespace serialises the processes that change one namespace, so
// routing and the nftables batch of two appliers never interleave. The lock
// file is named after the namespace's inode (any path to it gets the same
// lock); the kernel drops the lock if the holder dies.
func lockNamespace(nsPath string) (unlock func(), err error) {
	target := nsPath
	if target == "" {
		target = "/proc/thread-self/ns/net"
	}
	var st unix.Stat_t
	if err := unix.Stat(target, &st); err != nil {
		return nil, fmt.Errorf("lock %s: %w", nsName(nsPath), err)
	}
	name := fmt.Sprintf("netns-%d-%d.lock", st.Dev, st.Ino)
	var f *os.File
	var openErr error
	for _, dir := range lockDirs {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			openErr = err
			continue
		}
		if f, openErr = os.OpenFile(filepath.Join(dir, name), os.O_RDWR|os.O_CREATE, 0o600); openErr == nil {
			break
		}
	}
	if f == nil {
		return nil, fmt.Errorf("lock %s: %w", nsName(nsPath), openErr)
	}
	deadline := time.Now().Add(lockWait)
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) || time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("lock %s (%s): another nfintercept is changing it: %w", nsName(nsPath), f.Name(), err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
