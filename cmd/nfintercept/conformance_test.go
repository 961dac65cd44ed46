package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/nfintercept/nfintercept/integration/equiv"
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
	cases, err := equiv.LoadCorpus("../../compat/testdata/istio")
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) != 27 {
		t.Errorf("corpus has %d cases, want 27", len(cases))
	}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			env := make([]string, 0, len(c.Env))
			for k, v := range c.Env {
				env = append(env, k+"="+v)
			}
			resolv := filepath.Join(t.TempDir(), "resolv.conf") // absent in the case: empty
			if err := os.WriteFile(resolv, c.Resolv, 0o644); err != nil {
				t.Fatal(err)
			}
			for fam, file := range map[string]string{"ipv4": "iptables.v4", "ipv6": "iptables.v6"} {
				want, _ := os.ReadFile(filepath.Join("../../compat/testdata/istio", c.Name, file)) // absent: nothing expected
				cmdArgs := []string{"-m", "--propagation", "private", "sh", "-c",
					`mount --bind "$0" /etc/resolv.conf && exec "$@"`, resolv, "env", "-i"}
				cmdArgs = append(cmdArgs, env...)
				cmdArgs = append(cmdArgs, bin, "render", "--format", "iptables", "--family", fam)
				cmdArgs = append(cmdArgs, c.Args...)
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
