package bench

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The -x list goes to the file one CIDR a line and the arguments point at
// it; everything else is kept.
func TestWriteListFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.txt")
	args := ArgsWithExcludes([]string{"10.0.0.0/8", "192.0.2.1/32"})
	got, err := WriteListFile(args, "-x", path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(args) {
		t.Fatalf("got %q from %q", got, args)
	}
	for i := range args {
		want := args[i]
		if i > 0 && args[i-1] == "-x" {
			want = "@" + path
		}
		if got[i] != want {
			t.Errorf("argument %d: %q, want %q", i, got[i], want)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != "10.0.0.0/8\n192.0.2.1/32\n" {
		t.Errorf("file holds %q", data)
	}
	if _, err := WriteListFile([]string{"-b", "*"}, "-x", path); err == nil {
		t.Error("no -x: want an error")
	}
}

// The issue-13 targets are judged on the ratios of the medians, at their
// thresholds.
func TestPeerTargets(t *testing.T) {
	med := func(name string, d time.Duration) MethodResult {
		return MethodResult{Name: name, Stats: Stats{N: 1, Median: d}}
	}
	three := func(us, ipt, nft time.Duration) []MethodResult {
		return []MethodResult{med(PNfi, us), med(PIpt, ipt), med(PIstNft, nft)}
	}
	pr := &PeerResults{
		PodsAtOnce: 40,
		Fresh:      three(10*time.Millisecond, 80*time.Millisecond, 39*time.Millisecond), // 8× met, 3.9× not
		Pods:       three(100*time.Millisecond, 700*time.Millisecond, 400*time.Millisecond),
		Reapply:    three(12*time.Millisecond, 100*time.Millisecond, 50*time.Millisecond),
		ListDelta:  []MethodResult{med(DAdd, 9*time.Millisecond), med(DRemove, 10*time.Millisecond)},
		ListCIDRs:  100_000,
		Startup:    []MethodResult{med(SMinimal, 2*time.Millisecond), med(SCLI, 4*time.Millisecond)},
	}
	want := map[string]bool{
		"apply into a fresh pod (whole process): ≥ 8× faster than istio-iptables":                         true,
		"apply into a fresh pod (whole process): ≥ 4× faster than istio-iptables --native-nftables":       false,
		"40 pods programmed at once: ≥ 8× faster than istio-iptables":                                     false,
		"40 pods programmed at once: ≥ 4× faster than istio-iptables --native-nftables":                   true,
		"re-apply of the same options (whole process): ≥ 8× faster than istio-iptables":                   true,
		"re-apply of the same options (whole process): ≥ 4× faster than istio-iptables --native-nftables": true,
		"re-apply of the same options no slower than 1.2× a fresh apply (whole process)":                  true,
		"one CIDR added, on a 100000-CIDR exclude list (-x @file): < 10 ms (whole process)":               true,
		"one CIDR removed, on a 100000-CIDR exclude list (-x @file): < 10 ms (whole process)":             false,
	}
	seen := 0
	for _, tg := range peerTargets(pr) {
		if strings.HasPrefix(tg.Goal, "CLI overhead") {
			if !tg.Met {
				t.Errorf("%s: 4 ms − 2 ms judged over 2 ms (%s)", tg.Goal, tg.Measured)
			}
			seen++
			continue
		}
		w, ok := want[tg.Goal]
		if !ok {
			t.Errorf("unexpected target %q", tg.Goal)
			continue
		}
		seen++
		if tg.Met != w {
			t.Errorf("%s: met %v, want %v (%s)", tg.Goal, tg.Met, w, tg.Measured)
		}
	}
	if seen != len(want)+1 {
		t.Errorf("%d targets judged, want %d", seen, len(want)+1)
	}
}
