// Package kernel is nfintercept's only way into the kernel: a network
// namespace handle opened once per operation, and the netlink sockets,
// nf_tables batches and dumps, and rtnetlink routing that go through it.
package kernel

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// NamespaceDir is where `ip netns` keeps named namespaces.
const NamespaceDir = "/var/run/netns"

// Namespace is an open network namespace. Every socket, the lock and every
// read of an operation go through its one file descriptor, so deleting and
// re-creating a namespace of the same name mid-operation cannot split the
// operation between two namespaces.
type Namespace struct {
	f    *os.File // the nsfs inode, open for reading: setns, flock, ioctl
	path string   // as given, for messages
	// own: the namespace the process runs in; sockets are then opened
	// without switching (which needs CAP_SYS_ADMIN, even into one's own).
	own bool
}

// NamespaceError is a namespace that could not be opened or is not a
// network namespace. Input reports whether the caller named something
// unusable (as opposed to the system running out of descriptors).
type NamespaceError struct {
	Path   string
	Reason string
	Err    error
}

func (e *NamespaceError) Error() string {
	s := "network namespace " + strconv.Quote(e.Path)
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *NamespaceError) Unwrap() error { return e.Err }

// Input reports whether the error is about what was named rather than a
// shortage of the system.
func (e *NamespaceError) Input() bool {
	return !errors.Is(e.Err, unix.EMFILE) && !errors.Is(e.Err, unix.ENFILE) &&
		!errors.Is(e.Err, unix.ENOMEM) && !errors.Is(e.Err, unix.EINTR)
}

// NamespacePath turns a bare name ("pod", as `ip netns` names it) into its
// file under NamespaceDir; paths are returned unchanged.
func NamespacePath(nameOrPath string) string {
	if nameOrPath == "" || strings.Contains(nameOrPath, "/") {
		return nameOrPath
	}
	return NamespaceDir + "/" + nameOrPath
}

// OpenNamespace opens the network namespace at pathOrName (a bare name is
// one of NamespaceDir). The path is opened with O_PATH, so a FIFO or device
// is never opened for I/O (and cannot block), and without following a
// final symlink unless it is one of /proc's namespace links; the file must
// be on nsfs and a network namespace.
func OpenNamespace(pathOrName string) (*Namespace, error) {
	path := NamespacePath(pathOrName)
	if path == "" {
		return nil, &NamespaceError{Path: path, Reason: "no namespace named"}
	}
	fail := func(reason string, err error) (*Namespace, error) {
		return nil, &NamespaceError{Path: path, Reason: reason, Err: err}
	}
	const pathFlags = unix.O_PATH | unix.O_NONBLOCK | unix.O_CLOEXEC
	fd, err := unix.Open(path, pathFlags|unix.O_NOFOLLOW, 0)
	if err != nil {
		return fail("", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return fail("", err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		// /proc/PID/ns/net is a link into nsfs; any other link is refused.
		var sfs unix.Statfs_t
		ferr := unix.Fstatfs(fd, &sfs)
		unix.Close(fd)
		if ferr != nil || sfs.Type != unix.PROC_SUPER_MAGIC {
			return fail("is a symbolic link (name the namespace file itself)", nil)
		}
		if fd, err = unix.Open(path, pathFlags, 0); err != nil {
			return fail("", err)
		}
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			return fail("", err)
		}
	}
	defer unix.Close(fd)
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(fd, &sfs); err != nil {
		return fail("", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || sfs.Type != unix.NSFS_MAGIC {
		return fail("is not a namespace file (expected "+NamespaceDir+"/NAME or /proc/PID/ns/net)", nil)
	}
	// The O_PATH descriptor cannot be used for setns, flock or ioctl;
	// reopening it through /proc reaches the same, now verified, inode.
	rfd, err := unix.Open("/proc/self/fd/"+strconv.Itoa(fd), unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return fail("", err)
	}
	f := os.NewFile(uintptr(rfd), path)
	typ, err := unix.IoctlRetInt(rfd, unix.NS_GET_NSTYPE)
	if err == nil && typ != unix.CLONE_NEWNET {
		f.Close()
		return fail("is a namespace, but not a network namespace", nil)
	}
	return &Namespace{f: f, path: path, own: sameInode(rfd, "/proc/thread-self/ns/net")}, nil
}

// sameInode reports whether fd and the file at path are one inode.
func sameInode(fd int, path string) bool {
	var a, b unix.Stat_t
	return unix.Fstat(fd, &a) == nil && unix.Stat(path, &b) == nil && a.Dev == b.Dev && a.Ino == b.Ino
}

// Fd is the namespace's file descriptor, valid until Close.
func (n *Namespace) Fd() int { return int(n.f.Fd()) }

// Own reports whether this is the namespace the process runs in.
func (n *Namespace) Own() bool { return n == nil || n.own }

// Path is the path the namespace was opened from.
func (n *Namespace) Path() string { return n.path }

// CurrentNamespace is the path that names the process's own namespace.
const CurrentNamespace = "/proc/self/ns/net"

// String names the namespace for messages.
func (n *Namespace) String() string {
	if n == nil || n.path == CurrentNamespace {
		return "the current network namespace"
	}
	return "network namespace " + n.path
}

// Close releases the descriptor (and with it any lock).
func (n *Namespace) Close() error { return n.f.Close() }

// Lock serialises the processes that change this namespace, so routing and
// nftables batches of two appliers never interleave. It is a flock on the
// namespace's inode, shared by every path to it; the kernel drops it when
// the holder dies. It waits until ctx is done.
func (n *Namespace) Lock(ctx context.Context) (unlock func(), err error) {
	// A second open file description: flock locks belong to it, so two
	// operations of one process on one Namespace exclude each other too.
	fd, err := unix.Open("/proc/self/fd/"+strconv.Itoa(n.Fd()), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", n, err)
	}
	for {
		err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { unix.Close(fd) }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			unix.Close(fd)
			return nil, fmt.Errorf("lock %s: %w", n, err)
		}
		select {
		case <-ctx.Done():
			unix.Close(fd)
			return nil, fmt.Errorf("lock %s: another nfintercept is changing it: %w", n, context.Cause(ctx))
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// Do runs fn on an OS thread switched into the namespace: sockets fn
// opens, and processes it starts, belong to the namespace for their life.
// The caller's thread is never switched, and a thread that cannot switch
// back is retired with its goroutine. A nil Namespace is the current one.
func (n *Namespace) Do(fn func() error) error {
	if n == nil || n.own {
		return fn()
	}
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("open current network namespace: %w", err)
			return
		}
		defer unix.Close(orig)
		if err := unix.Setns(n.Fd(), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("enter %s: %w", n, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			done <- errors.Join(ferr, fmt.Errorf("leave %s: %w", n, err))
			return // the thread stays locked and exits with this goroutine
		}
		runtime.UnlockOSThread()
		done <- ferr
	}()
	return <-done
}

// Socket opens a netlink socket of protocol proto in the namespace.
func (n *Namespace) Socket(proto int) (int, error) {
	fd := -1
	err := n.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
		return err
	})
	if err != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return -1, fmt.Errorf("netlink socket in %s: %w", n, err)
	}
	return fd, nil
}
