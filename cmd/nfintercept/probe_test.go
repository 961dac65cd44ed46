package main

import (
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestRunValidation: after the rules are applied, --run-validation run by
// the proxy's uid inside the pod succeeds, and run by another uid (which the
// rules do not loop back) fails with istio-iptables' status 126.
func TestRunValidation(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace")
	}
	bin := buildBinary(t)
	// The unprivileged runs need to reach the binary.
	for dir := filepath.Dir(bin); dir != os.TempDir() && dir != "/"; dir = filepath.Dir(dir) {
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ns := fmt.Sprintf("nfi-cmd-%d", rand.Intn(1e9))
	sh(t, "ip", "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	sh(t, "ip", "-n", ns, "link", "set", "lo", "up")
	sh(t, "ip", "-n", ns, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
	sh(t, "ip", "-n", ns, "addr", "add", "192.0.2.9/24", "dev", "v0")
	sh(t, "ip", "-n", ns, "link", "set", "v0", "up")
	sh(t, "unshare", "-n", bin, "-u", "1337", "-i", "*", "-b", "*", "--network-namespace", ns)

	probe := func(uid string) (int, string) {
		cmd := exec.Command("nsenter", "--net=/var/run/netns/"+ns, "--setuid", uid, "--setgid", uid,
			bin, "--skip-rule-apply", "--run-validation", "--probe-timeout", "2s")
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		} else if err != nil {
			t.Fatal(err)
		}
		return 0, string(out)
	}
	if code, out := probe("1337"); code != 0 || !strings.Contains(out, "validation passed") {
		t.Errorf("proxy uid: exit %d, want 0:\n%s", code, out)
	}
	if code, out := probe("1000"); code != 126 || !strings.Contains(out, "validation failed") {
		t.Errorf("uid 1000: exit %d, want 126:\n%s", code, out)
	}
}

func sh(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}
