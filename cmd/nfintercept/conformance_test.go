package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCLICorpus runs the built binary on every conformance case the way a
// user would: the case's resolv.conf bind-mounted over /etc/resolv.conf in a
// private mount namespace, only the case's environment, and compares
// `render --format iptables` byte for byte with istio-iptables' output.
func TestCLICorpus(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a private mount namespace (unshare -m) to bind the case's resolv.conf")
	}
	for _, tool := range []string{"unshare", "mount"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (util-linux)", tool)
		}
	}
	bin := buildBinary(t)
	root := "../../compat/testdata/istio"
	dirs, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		n++
		dir := filepath.Join(root, d.Name())
		t.Run(d.Name(), func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join(dir, "args"))
			if err != nil {
				t.Fatal(err)
			}
			args := strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n")
			var env []string
			if raw, err := os.ReadFile(filepath.Join(dir, "env")); err == nil {
				env = strings.Split(strings.TrimSpace(string(raw)), "\n")
			}
			resolv := filepath.Join(dir, "resolv.conf")
			if _, err := os.Stat(resolv); err != nil {
				resolv = filepath.Join(t.TempDir(), "resolv.conf")
				if err := os.WriteFile(resolv, nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			for fam, file := range map[string]string{"ipv4": "iptables.v4", "ipv6": "iptables.v6"} {
				want, _ := os.ReadFile(filepath.Join(dir, file)) // absent: nothing expected
				cmdArgs := []string{"-m", "--propagation", "private", "sh", "-c",
					`mount --bind "$0" /etc/resolv.conf && exec "$@"`, resolv, "env", "-i"}
				cmdArgs = append(cmdArgs, env...)
				cmdArgs = append(cmdArgs, bin, "render", "--format", "iptables", "--family", fam)
				cmdArgs = append(cmdArgs, args...)
				cmd := exec.Command("unshare", cmdArgs...)
				var stderr bytes.Buffer
				cmd.Stderr = &stderr
				got, err := cmd.Output()
				if err != nil {
					t.Fatalf("%s: %v\n%s", fam, err, stderr.String())
				}
				if !bytes.Equal(got, want) {
					t.Errorf("%s differs from istio-iptables\n--- want ---\n%s--- got ---\n%s", fam, want, got)
				}
			}
		})
	}
	if n != 27 {
		t.Errorf("corpus has %d cases, want 27", n)
	}
}

func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "nfintercept")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}
