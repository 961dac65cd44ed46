package harness

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestMain(m *testing.M) { Main(m) }

// TestRedirectSelfTest proves the harness without the engine: a hand-written
// nft REDIRECT for uid 1000 sends that user's connections to the 15001
// listener with the real destination readable through SO_ORIGINAL_DST,
// while other users, and everyone before the rule exists, reach the peer.
func TestRedirectSelfTest(t *testing.T) {
	p := NewPair(t, PairOptions{})
	ListenBoth(t, p.PodPath, "tcp", 15001, "outbound")
	ListenBoth(t, p.PeerPath, "tcp", 80, "peer")

	dsts := []netip.AddrPort{
		netip.AddrPortFrom(DstV4, 80),
		netip.AddrPortFrom(DstV6, 80),
	}
	for _, dst := range dsts {
		r := Run(t, p.PodPath, Flow{Proto: "tcp", Dst: dst, UID: 1000, GID: 1000})
		if r.Err != nil || r.Tag != "peer" {
			t.Fatalf("before rule: uid 1000 -> %v: got %+v, want the peer", dst, r)
		}
		// The peer sees the pod's own address: the path really crossed the veth.
		if !strings.Contains(r.Remote, PodV4.String()) && !strings.Contains(r.Remote, PodV6.String()) {
			t.Errorf("peer saw remote %s, want the pod address", r.Remote)
		}
	}

	rules := filepath.Join(t.TempDir(), "redirect.nft")
	if err := os.WriteFile(rules, []byte(`table inet selftest {
	chain output {
		type nat hook output priority -100;
		meta skuid 1000 meta l4proto tcp redirect to :15001
	}
}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	InNS(t, p.Pod, "nft", "-f", rules)

	for _, dst := range dsts {
		r := Run(t, p.PodPath, Flow{Proto: "tcp", Dst: dst, UID: 1000, GID: 1000, Groups: []uint32{2000}})
		if r.Err != nil || r.Tag != "outbound" {
			t.Fatalf("uid 1000 -> %v: got %+v, want the outbound listener", dst, r)
		}
		if r.OrigDst != dst.String() {
			t.Errorf("uid 1000 -> %v: original dst %q, want %q", dst, r.OrigDst, dst)
		}
		r = Run(t, p.PodPath, Flow{Proto: "tcp", Dst: dst, UID: 1001, GID: 1000})
		if r.Err != nil || r.Tag != "peer" {
			t.Errorf("uid 1001 -> %v: got %+v, want the peer", dst, r)
		}
	}
}

// TestUDPAndSource checks UDP answers, source binding and the failure
// path: a closed port yields an error, not a harness failure.
func TestUDPAndSource(t *testing.T) {
	p := NewPair(t, PairOptions{})
	ListenBoth(t, p.PeerPath, "udp", 53, "dns-peer")
	ListenTCP(t, p.PodPath, "0.0.0.0:8080", "app", ListenOptions{})

	r := Run(t, p.PodPath, Flow{Proto: "udp", Dst: netip.AddrPortFrom(DNSV4, 53), UID: 1000, GID: 1000})
	if r.Err != nil || r.Tag != "dns-peer" {
		t.Fatalf("udp to peer: got %+v", r)
	}
	r = Run(t, p.PodPath, Flow{Proto: "udp", Dst: netip.AddrPortFrom(DNSV6, 53), UID: 1000, GID: 1000})
	if r.Err != nil || r.Tag != "dns-peer" {
		t.Fatalf("udp6 to peer: got %+v", r)
	}

	src := netip.MustParseAddr("127.0.0.6")
	r = Run(t, p.PodPath, Flow{Proto: "tcp", Src: src, Dst: netip.AddrPortFrom(PodV4, 8080), UID: 1337, GID: 1337})
	if r.Err != nil || r.Tag != "app" {
		t.Fatalf("from 127.0.0.6 to the pod: got %+v", r)
	}
	if !strings.HasPrefix(r.Remote, "127.0.0.6:") {
		t.Errorf("app saw remote %s, want 127.0.0.6", r.Remote)
	}

	r = Run(t, p.PodPath, Flow{Proto: "tcp", Dst: netip.AddrPortFrom(DstV4, 81), UID: 1000, GID: 1000})
	if r.Err == nil {
		t.Errorf("closed port: got %+v, want an error", r)
	}

	// A listener created with an owner is that user's socket (the uid
	// column of /proc/net/udp, port 4242 = 0x1092).
	ListenUDP(t, p.PodPath, "0.0.0.0:4242", "owned", ListenOptions{Owner: &Owner{UID: 4343, GID: 4343}})
	found := false
	for _, line := range strings.Split(InNS(t, p.Pod, "cat", "/proc/net/udp"), "\n") {
		f := strings.Fields(line)
		if len(f) > 7 && strings.HasSuffix(f[1], ":1092") {
			found = true
			if f[7] != "4343" {
				t.Errorf("owned listener has uid %s, want 4343", f[7])
			}
		}
	}
	if !found {
		t.Errorf("owned listener not in /proc/net/udp")
	}
}

// TestIsolated checks that Main moved the tests out of the namespace of the
// process that started them.
func TestIsolated(t *testing.T) {
	RequireRoot(t)
	self, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	host, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", os.Getppid()))
	if err != nil {
		t.Fatal(err)
	}
	if self == host {
		t.Fatalf("tests run in the host network namespace %s", host)
	}
}

// TestSweepNamespaces: a namespace named after a process that is gone is
// deleted; one named after this (live) process is kept.
func TestSweepNamespaces(t *testing.T) {
	RequireRoot(t)
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	const prefix = "nfi-sw-"
	dead := fmt.Sprintf("%s%d-x", prefix, gone.Process.Pid)
	live := OwnedName(prefix)
	for _, name := range []string{dead, live} {
		MustRun(t, "ip", "netns", "add", name)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	}
	SweepNamespaces(prefix)
	if _, err := os.Stat(filepath.Join(NetNSDir, dead)); !os.IsNotExist(err) {
		t.Errorf("namespace of a dead process %s not swept (%v)", dead, err)
	}
	if _, err := os.Stat(filepath.Join(NetNSDir, live)); err != nil {
		t.Errorf("namespace of this process %s swept: %v", live, err)
	}
}
