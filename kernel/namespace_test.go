package kernel

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestOpenNamespaceRefuses: what is not a network namespace file is an
// input error naming it, found without opening it for I/O (a FIFO would
// block).
func TestOpenNamespaceRefuses(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink("/proc/self/ns/net", link); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		fifo:                "not a namespace file",
		file:                "not a namespace file",
		dir:                 "not a namespace file",
		"/dev/zero":         "not a namespace file",
		link:                "symbolic link",
		"/proc/self/ns/mnt": "not a network namespace",
		"":                  "no namespace named",
	} {
		_, err := OpenNamespace(path)
		var nerr *NamespaceError
		if !errors.As(err, &nerr) || !nerr.Input() || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), path) {
			t.Errorf("OpenNamespace(%q): %v, want an input error saying %q", path, err, want)
		}
	}
}

// TestOpenCurrentNamespace: the process's own namespace, through /proc's
// link, is recognised as its own (no switching for sockets).
func TestOpenCurrentNamespace(t *testing.T) {
	ns, err := OpenNamespace(CurrentNamespace)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	if !ns.Own() || ns.String() != "the current network namespace" {
		t.Errorf("own %v, named %q", ns.Own(), ns)
	}
}

// TestLockHonoursContext: a second lock on the same namespace waits until
// its context ends, then fails; it succeeds once the first is released.
func TestLockHonoursContext(t *testing.T) {
	_, path := routingNS(t)
	a, b := openNS(t, path), openNS(t, path)
	unlock, err := a.Lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := b.Lock(ctx); err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("second lock while held: %v", err)
	}
	unlock()
	unlock2, err := b.Lock(context.Background())
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	unlock2()
}
