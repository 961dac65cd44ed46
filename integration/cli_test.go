package integration

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nfintercept/nfintercept/integration/harness"
	"github.com/nfintercept/nfintercept/translate"
)

// cliResult is one run of the CLI.
type cliResult struct {
	stdout, stderr string
	code           int
}

// runCLI runs the nfintercept binary inside a throwaway network namespace
// (so a bug in --network-namespace handling cannot reach this host's
// namespace) with a PATH holding no nft or iptables. When resolv is not
// empty, a private mount namespace shows it as /etc/resolv.conf.
func runCLI(t *testing.T, resolv string, args ...string) cliResult {
	t.Helper()
	bin := cliBinary(t)
	var argv []string
	if resolv != "" {
		file := filepath.Join(t.TempDir(), "resolv.conf")
		if err := os.WriteFile(file, []byte(resolv), 0o644); err != nil {
			t.Fatal(err)
		}
		// $0 is the resolv.conf file, "$@" the command; tools by absolute
		// path since the command's PATH is empty.
		script := lookPath(t, "mount") + ` --bind "$0" /etc/resolv.conf && exec "$@"`
		argv = append([]string{"-m", "-n", lookPath(t, "sh"), "-c", script, file, bin}, args...)
	} else {
		argv = append([]string{"-n", bin}, args...)
	}
	cmd := exec.Command(lookPath(t, "unshare"), argv...)
	cmd.Env = []string{"PATH=" + t.TempDir()}
	return runResult(t, cmd)
}

// runResult runs a command and returns its output and exit status; a
// command that cannot be started fails the test.
func runResult(t *testing.T, cmd *exec.Cmd) cliResult {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := cliResult{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		res.code = exit.ExitCode()
	default:
		t.Fatalf("running %v: %v", cmd.Args, err)
	}
	return res
}

// mustCLI runs the CLI and requires exit status 0.
func mustCLI(t *testing.T, resolv string, args ...string) cliResult {
	t.Helper()
	r := runCLI(t, resolv, args...)
	if r.code != 0 {
		t.Fatalf("nfintercept %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

func withNS(p *harness.Pair, args ...string) []string {
	return append(append([]string{}, args...), "--network-namespace", p.PodPath)
}

// TestCLIFlows installs the base configuration with the CLI and checks
// where real connections land, without and with --dual-stack.
func TestCLIFlows(t *testing.T) {
	for _, dual := range []bool{false, true} {
		name := "ipv4-only"
		if dual {
			name = "dual-stack"
		}
		t.Run(name, func(t *testing.T) {
			p := harness.NewPair(t, harness.PairOptions{})
			startListeners(t, p)
			args := withNS(p, baseFlags...)
			if dual {
				args = append(args, "--dual-stack")
			}
			mustCLI(t, resolvConf, args...)
			checkPassthroughV6(t, p, dual)
			checkFlows(t, p, dual, false)
		})
	}
}

// TestCLIRuleset checks what the CLI leaves in the kernel: our tables and
// the exclude set, an identical ruleset after a second apply, no change on
// invalid options, and a cleanup that spares other tables.
func TestCLIRuleset(t *testing.T) {
	p := harness.NewPair(t, harness.PairOptions{})

	foreign := filepath.Join(t.TempDir(), "foreign.nft")
	if err := os.WriteFile(foreign, []byte(`table inet foreign {
	set blocked {
		type ipv4_addr
		flags interval
		elements = { 10.245.0.0/16, 203.0.113.0/24 }
	}
	chain output {
		type filter hook output priority 0; policy accept;
		ip daddr @blocked accept
	}
}
table ip nfintercept {
	chain c {
		ip daddr 192.0.2.99 accept
	}
}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	harness.InNS(t, p.Pod, "nft", "-f", foreign)
	foreignBefore := nftList(t, p.Pod, "table", "inet", "foreign")
	// Same name as ours, other family: not ours either.
	lookalikeBefore := nftList(t, p.Pod, "table", "ip", "nfintercept")

	mustCLI(t, resolvConf, withNS(p, baseFlags...)...)

	tables := ownTables(t, p.Pod)
	if !contains(tables, "inet "+translate.TablePrefix+"nat") {
		t.Fatalf("tables after apply: %v, want inet %snat", tables, translate.TablePrefix)
	}
	var excludeSet *nftSet
	for _, s := range namedSets(t, p.Pod) {
		s := s
		if strings.HasPrefix(s.Table, translate.TablePrefix) && setHoldsPrefix(s, "10.245.0.0", 16) {
			excludeSet = &s
		}
	}
	if excludeSet == nil {
		t.Fatalf("no set of ours holds 10.245.0.0/16:\n%s", nftList(t, p.Pod, "ruleset"))
	}
	if !hasFlag(*excludeSet, "interval") {
		t.Errorf("set %s holding 10.245.0.0/16 has flags %v, want interval", excludeSet.Name, excludeSet.Flags)
	}

	applied := nftList(t, p.Pod, "ruleset")
	mustCLI(t, resolvConf, withNS(p, baseFlags...)...)
	if again := nftList(t, p.Pod, "ruleset"); again != applied {
		t.Errorf("second apply changed the ruleset:\n--- first\n%s\n--- second\n%s", applied, again)
	}

	t.Run("invalid options", func(t *testing.T) {
		for _, c := range []struct {
			short, long, value string
			extra              []string
		}{
			{"b", "istio-inbound-ports", "abc", nil},
			{"x", "istio-service-exclude-cidr", "*", nil},
			{"m", "istio-inbound-interception-mode", "foo", nil},
			{"p", "envoy-port", "99999", nil},
			// -t is only read in TPROXY mode (as istio-iptables does).
			{"t", "istio-inbound-tproxy-mark", "abc", []string{"-m", "TPROXY"}},
		} {
			// The bad value comes last, overriding the base flag.
			args := withNS(p, append(append(append([]string{}, baseFlags...), c.extra...), "-"+c.short, c.value)...)
			r := runCLI(t, resolvConf, args...)
			if r.code == 0 {
				t.Errorf("-%s %q: exit 0, want failure", c.short, c.value)
			}
			if !strings.Contains(r.stderr, "--"+c.long) && !strings.Contains(r.stderr, "-"+c.short+"/") &&
				!strings.Contains(r.stderr, "-"+c.short+" ") {
				t.Errorf("-%s %q: message does not name the option: %q", c.short, c.value, r.stderr)
			}
			if now := nftList(t, p.Pod, "ruleset"); now != applied {
				t.Errorf("-%s %q changed the ruleset:\n%s", c.short, c.value, now)
			}
		}
	})

	for i := 0; i < 2; i++ { // cleanup is idempotent
		mustCLI(t, "", "cleanup", "--network-namespace", p.PodPath)
	}
	if tables := ownTables(t, p.Pod); len(tables) != 0 {
		t.Errorf("tables left after cleanup: %v", tables)
	}
	if after := nftList(t, p.Pod, "table", "inet", "foreign"); after != foreignBefore {
		t.Errorf("cleanup changed a foreign table:\n--- before\n%s\n--- after\n%s", foreignBefore, after)
	}
	if after := nftList(t, p.Pod, "table", "ip", "nfintercept"); after != lookalikeBefore {
		t.Errorf("cleanup changed table ip nfintercept:\n--- before\n%s\n--- after\n%s", lookalikeBefore, after)
	}
}

// TestCLIRender checks that `render` prints a script nft accepts, and that
// loading it gives exactly the ruleset `apply` installs.
func TestCLIRender(t *testing.T) {
	for _, dual := range []bool{false, true} {
		name := "ipv4-only"
		flags := append([]string{}, baseFlags...)
		if dual {
			name = "dual-stack"
			flags = append(flags, "--dual-stack")
		}
		t.Run(name, func(t *testing.T) {
			r := mustCLI(t, resolvConf, append([]string{"render"}, flags...)...)
			script := filepath.Join(t.TempDir(), "render.nft")
			if err := os.WriteFile(script, []byte(r.stdout), 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command("unshare", "-n", "nft", "-c", "-f", script).CombinedOutput(); err != nil {
				t.Fatalf("nft -c -f rejects the rendered script: %v\n%s\nscript:\n%s", err, out, r.stdout)
			}
			loaded, err := exec.Command("unshare", "-n", "sh", "-c", `nft -f "$0" && nft --stateless list ruleset`, script).CombinedOutput()
			if err != nil {
				t.Fatalf("loading the rendered script: %v\n%s", err, loaded)
			}

			// The pod has IPv6 addresses, so with --dual-stack apply
			// enables IPv6 as the offline render assumes; without it the
			// pod's first address is IPv4.
			p := harness.NewPair(t, harness.PairOptions{})
			mustCLI(t, resolvConf, withNS(p, flags...)...)
			if applied := nftList(t, p.Pod, "ruleset"); applied != string(loaded) {
				t.Errorf("rendered script and applied ruleset differ:\n--- render, loaded by nft\n%s\n--- apply\n%s", loaded, applied)
			}
		})
	}
}

// lookPath finds a tool on the test's own PATH.
func lookPath(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("test tool %s: %v", name, err)
	}
	return p
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
