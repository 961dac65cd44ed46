package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/nfintercept/nfintercept/integration/equiv"
	"github.com/nfintercept/nfintercept/integration/harness"
	"github.com/nfintercept/nfintercept/internal/tools"
)

// nfintercept as the istio-init image (issue 10): the injector's argv, in
// every shape of CNI.md §1, must install exactly what the same options
// without the injector's extra words install, and the validation form must
// run as the proxy user without capabilities.

// initShape is one shape of the injection template's args.
type initShape struct {
	name       string
	mode       string   // -m
	i, x, b, d string   // always present, possibly empty
	optional   []string // -q/-o/-k/-c, only when set
	logs       []string // --log_* words
	legacy     []string // logging words only older pilot-agents take (rotation)
	extra      []string // --force-apply, --native-nftables
	env        []string // proxyMetadata, given to the injector's argv only
	envFlags   []string // what env means as flags, given to the plain argv
	logAs      string   // "text", "json" or "" (nothing printed)
	logTo      string   // "stderr" (default) or "stdout"
}

const podAllDefaultExclude = "15090,15021,15020"

var initShapes = []initShape{
	{name: "seed", mode: "REDIRECT", i: "*", x: "10.245.0.0/16", b: "*", d: podAllDefaultExclude,
		logs: []string{"--log_output_level=default:info"}, logAs: "text"},
	{name: "empty-values", mode: "REDIRECT", i: "", x: "", b: "", d: "15090,15021",
		logs: []string{"--log_output_level=default:warn"}},
	{name: "optional-parts", mode: "REDIRECT", i: "10.96.0.0/12,192.168.0.0/16", x: "", b: "8080,9090", d: podAllDefaultExclude,
		optional: []string{"-q", "31400,32000", "-o", "5432,15020", "-k", "eth9", "-c", "not-istio-nic"},
		logs:     []string{"--log_output_level=default:warn,iptables:debug", "--log_as_json"}},
	{name: "tproxy", mode: "TPROXY", i: "*", x: "", b: "*", d: podAllDefaultExclude,
		logs: []string{"--log_output_level=default:debug", "--log_as_json", "--log_caller", "default"}, logAs: "json"},
	{name: "force-native", mode: "REDIRECT", i: "*", x: "10.245.0.0/16", b: "*", d: podAllDefaultExclude,
		extra:  []string{"--force-apply", "--native-nftables"},
		logs:   []string{"--log_output_level=default:info", "--log_target", "stdout", "--log_stacktrace_level=default:none", "--vklog", "9"},
		legacy: []string{"--log_rotate_max_age", "7", "--log_rotate_max_size", "10", "--log_rotate_max_backups", "3", "--log_rotate", "/nonexistent/agent.log"},
		logAs:  "text", logTo: "stdout"},
	{name: "proxy-metadata", mode: "REDIRECT", i: "*", x: "", b: "*", d: podAllDefaultExclude,
		logs:     []string{"--log_output_level=default:info", "--log_as_json"},
		env:      []string{"ISTIO_META_DNS_CAPTURE=true", "ISTIO_DUAL_STACK=true", "INVALID_DROP=true"},
		envFlags: []string{"--redirect-dns", "--dual-stack", "--drop-invalid"}, logAs: "json"},
	{name: "tproxy-everything", mode: "TPROXY", i: "10.96.0.0/12,2001:db8::/32", x: "10.96.0.10/32", b: "8080", d: podAllDefaultExclude,
		optional: []string{"-q", "31400", "-o", "5432", "-k", "eth9", "-c", "not-istio-nic"},
		logs:     []string{"--log_output_level=all:info,default:info", "--log_as_json"},
		extra:    []string{"--force-apply", "--native-nftables"},
		env:      []string{"ISTIO_META_DNS_CAPTURE=true", "ISTIO_DUAL_STACK=true", "INVALID_DROP=true"},
		envFlags: []string{"--redirect-dns", "--dual-stack", "--drop-invalid"}, logAs: "json"},
}

// injectorArgv is the argv the template writes, istio-iptables first.
func (s initShape) injectorArgv() []string {
	return append(s.oracleArgv(), s.legacy...)
}

// oracleArgv is injectorArgv without the flags the reference pilot-agent
// no longer has.
func (s initShape) oracleArgv() []string {
	argv := []string{"istio-iptables", "-p", "15001", "-z", "15006", "-u", "1337", "-m", s.mode,
		"-i", s.i, "-x", s.x, "-b", s.b, "-d", s.d}
	argv = append(argv, s.optional...)
	argv = append(argv, s.logs...)
	return append(argv, s.extra...)
}

// plainArgv is the same configuration without the injector's extra words,
// the environment spelled as flags.
func (s initShape) plainArgv() []string {
	argv := []string{"-p", "15001", "-z", "15006", "-u", "1337", "-m", s.mode,
		"-i", s.i, "-x", s.x, "-b", s.b, "-d", s.d}
	argv = append(argv, s.optional...)
	return append(argv, s.envFlags...)
}

// inPod runs the CLI the way a container runtime runs istio-init: inside
// the pod's namespace, no --network-namespace, only the given environment
// (a PATH without nft or iptables), optionally under a wrapper such as
// setpriv.
func inPod(t *testing.T, ns string, env, wrapper []string, args ...string) cliResult {
	t.Helper()
	return binInPod(t, ns, env, wrapper, cliBinary(t), args...)
}

// binInPod is inPod for another istio-init entrypoint (pilot-agent).
func binInPod(t *testing.T, ns string, env, wrapper []string, bin string, args ...string) cliResult {
	t.Helper()
	argv := append([]string{"netns", "exec", ns}, wrapper...)
	argv = append(append(argv, bin), args...)
	cmd := exec.Command(lookPath(t, "ip"), argv...)
	cmd.Env = append([]string{"PATH=" + t.TempDir()}, env...)
	return runResult(t, cmd)
}

// podSnapshot is the pod's ruleset and policy routing, without what
// differs between two fresh pairs (link-local addresses).
func podSnapshot(t *testing.T, ns string) string {
	t.Helper()
	var kept []string
	for _, line := range strings.Split(kernelSnapshot(t, ns), "\n") {
		if !strings.Contains(line, "fe80:") {
			kept = append(kept, line)
		}
	}
	return strings.Join(kept, "\n")
}

func TestIstioInitArgv(t *testing.T) {
	harness.RequireRoot(t)
	for _, s := range initShapes {
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			injected := harness.NewPair(t, harness.PairOptions{})
			plain := harness.NewPair(t, harness.PairOptions{})
			r := inPod(t, injected.Pod, s.env, nil, s.injectorArgv()...)
			if r.code != 0 {
				t.Fatalf("injector argv %q: exit %d\nstdout: %s\nstderr: %s", s.injectorArgv(), r.code, r.stdout, r.stderr)
			}
			if p := inPod(t, plain.Pod, nil, nil, s.plainArgv()...); p.code != 0 {
				t.Fatalf("plain argv %q: exit %d\nstderr: %s", s.plainArgv(), p.code, p.stderr)
			}
			got, want := podSnapshot(t, injected.Pod), podSnapshot(t, plain.Pod)
			if !strings.Contains(want, "table inet nfintercept-nat") {
				t.Fatalf("the plain argv installed no nat table:\n%s", want)
			}
			if got != want {
				t.Errorf("injector argv %q (env %q) installed:\n%s\nthe plain argv %q installs:\n%s", s.injectorArgv(), s.env, got, s.plainArgv(), want)
			}
			checkInitLogs(t, s, r)
		})
	}
}

// checkInitLogs checks what a successful apply printed: nothing below the
// level asked for, JSON objects line by line with the apply's fields, on
// the target asked for.
func checkInitLogs(t *testing.T, s initShape, r cliResult) {
	t.Helper()
	out, other := r.stderr, r.stdout
	if s.logTo == "stdout" {
		out, other = r.stdout, r.stderr
	}
	if other != "" {
		t.Errorf("output outside the log target: %q", other)
	}
	switch s.logAs {
	case "":
		if out != "" {
			t.Errorf("%q printed: %q", s.logs, out)
		}
	case "text":
		if !strings.Contains(out, "level=info") || !strings.Contains(out, "rules=") || strings.Count(out, "\n") != 1 {
			t.Errorf("want one text line with level and fields: %q", out)
		}
	case "json":
		var applied map[string]any
		for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
			var rec map[string]any
			if err := json.Unmarshal([]byte(line), &rec); err != nil {
				t.Fatalf("log line is not one JSON object: %v\n%q", err, line)
			}
			for _, k := range []string{"time", "level", "scope", "msg"} {
				if _, ok := rec[k]; !ok {
					t.Errorf("no %q in %q", k, line)
				}
			}
			if _, ok := rec["rules"]; ok {
				applied = rec
			}
		}
		if applied == nil {
			t.Fatalf("no line with the applied ruleset: %q", out)
		}
		var keys []string
		for k := range applied {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range []string{"netns", "tables", "rules", "duration"} {
			if _, ok := applied[k]; !ok {
				t.Errorf("apply line has %v, no %q", keys, k)
			}
		}
		if applied["level"] != "info" || applied["scope"] != "default" {
			t.Errorf("apply line: %v", applied)
		}
	}
}

// A malformed level spec is bad input: exit 2, one line naming the flag,
// nothing installed.
func TestIstioInitBadLevelSpec(t *testing.T) {
	harness.RequireRoot(t)
	p := harness.NewPair(t, harness.PairOptions{})
	before := podSnapshot(t, p.Pod)
	for _, spec := range []string{"default:loud", "default:info:debug", "default:info,,iptables:debug"} {
		argv := append(initShapes[0].injectorArgv(), "--log_output_level="+spec)
		r := inPod(t, p.Pod, nil, nil, argv...)
		if r.code != 2 || !strings.Contains(r.stderr, "--log_output_level") || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("--log_output_level=%s: exit %d, stderr %q; want 2 and one line naming the flag", spec, r.code, r.stderr)
		}
	}
	if after := podSnapshot(t, p.Pod); after != before {
		t.Errorf("a refused argv changed the pod:\n%s", after)
	}
}

// setprivProxy runs a command as istio-validation runs: uid/gid 1337, no
// supplementary groups, no capabilities at all.
func setprivProxy(t *testing.T) []string {
	return []string{lookPath(t, "setpriv"), "--reuid", "1337", "--regid", "1337", "--clear-groups",
		"--inh-caps=-all", "--bounding-set=-all"}
}

// TestIstioInitValidation runs the istio-validation container's argv (CNI
// mode: the rules are already there) as uid 1337 without capabilities: it
// passes where the rules redirect, changes nothing, exits 126 where there
// are no rules; and the same user cannot apply, which proves it holds no
// capability.
func TestIstioInitValidation(t *testing.T) {
	harness.RequireRoot(t)
	for _, s := range []initShape{initShapes[0], initShapes[3]} {
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			validate := append(s.injectorArgv(), "--run-validation", "--skip-rule-apply")
			p := harness.NewPair(t, harness.PairOptions{})
			if r := inPod(t, p.Pod, nil, nil, s.injectorArgv()...); r.code != 0 {
				t.Fatalf("apply: exit %d: %s", r.code, r.stderr)
			}
			before := podSnapshot(t, p.Pod)
			r := inPod(t, p.Pod, nil, setprivProxy(t), validate...)
			if r.code != 0 {
				t.Errorf("validation as uid 1337 over the rules: exit %d\nstderr: %s", r.code, r.stderr)
			}
			if !strings.Contains(r.stderr, "validation passed") {
				t.Errorf("validation did not say it passed: %q", r.stderr)
			}
			if r := inPod(t, p.Pod, nil, setprivProxy(t), s.injectorArgv()...); r.code != 1 {
				t.Errorf("apply as uid 1337 without capabilities: exit %d, want 1 (the kernel refuses)\nstderr: %s", r.code, r.stderr)
			}
			// Istio's own validation accepts what nfintercept installed.
			pa := proxyReadable(t)
			if r := binInPod(t, p.Pod, nil, setprivProxy(t), pa, validate...); r.code != 0 {
				t.Errorf("pilot-agent's validation over nfintercept's rules: exit %d\n%s%s", r.code, r.stdout, r.stderr)
			}
			if after := podSnapshot(t, p.Pod); after != before {
				t.Errorf("validation changed the pod:\n--- before\n%s\n--- after\n%s", before, after)
			}

			bare := harness.NewPair(t, harness.PairOptions{})
			r = inPod(t, bare.Pod, nil, setprivProxy(t), append(validate, "--probe-timeout", "2s")...)
			if r.code != 126 {
				t.Errorf("validation without rules: exit %d, want 126\nstderr: %s", r.code, r.stderr)
			}
			if r := binInPod(t, bare.Pod, nil, setprivProxy(t), pa, append(validate, "--probe-timeout", "2s")...); r.code != 126 {
				t.Errorf("pilot-agent's validation without rules: exit %d, want 126 (as nfintercept)", r.code)
			}
			if strings.Contains(podSnapshot(t, bare.Pod), "nfintercept") {
				t.Error("validation with --skip-rule-apply installed rules")
			}
		})
	}
}

// coreArgv is plainArgv without the flags standing for the environment:
// the configuration as the equivalence suite plans it (with the env).
func (s initShape) coreArgv() []string {
	return s.plainArgv()[:len(s.plainArgv())-len(s.envFlags)]
}

// TestIstioInitOracle is the done-when of issue 10: for every shape of
// the injector's argv, the rules the nfintercept binary installs make the
// same decision for real connections as the rules Istio's pilot-agent
// installs with the same argv and environment (pilot-agent istio-iptables
// in a twin pod, see package equiv).
func TestIstioInitOracle(t *testing.T) {
	harness.RequireRoot(t)
	if _, err := tools.PilotAgent(); err != nil {
		t.Fatal(err)
	}
	resolv := []byte("search svc.cluster.local\nnameserver 198.51.100.53\nnameserver fd00:53::53\n")
	for _, s := range initShapes {
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			env := map[string]string{}
			for _, kv := range s.env {
				k, v, _ := strings.Cut(kv, "=")
				env[k] = v
			}
			c := equiv.Case{Name: "istio-init-" + s.name, Args: s.coreArgv(), InitArgs: s.oracleArgv(), Env: env, Resolv: resolv}
			opts := equivOptions()
			opts.Backends = []equiv.Backend{equiv.BackendCLI, equiv.BackendPilotAgent}
			opts.CLI = cliBinary(t)
			res := equiv.Compare(t, c, opts)
			if contains(s.extra, "--native-nftables") && !contains(s.envFlags, "--dual-stack") {
				res.Differences = withoutNftIPv6Leak(t, res.Differences)
			}
			report(t, res)
		})
	}
}

// withoutNftIPv6Leak sets aside the IPv6 flows of a --native-nftables run
// without IPv6: Istio's nftables backend puts family-neutral rules in inet
// tables, which then capture IPv6 too although IPv6 is off (SPEC §4.5 #1),
// while its iptables backend, and nfintercept whatever the flag, leave
// IPv6 alone. Every IPv4 flow must still agree.
func withoutNftIPv6Leak(t *testing.T, diffs []equiv.Difference) []equiv.Difference {
	var kept []equiv.Difference
	n := 0
	for _, d := range diffs {
		if d.Flow.Dst.Addr().Is6() {
			n++
			continue
		}
		kept = append(kept, d)
	}
	// The leak is the proof that the comparison sees the oracle's rules.
	if n == 0 {
		t.Errorf("no IPv6 flow differs: pilot-agent --native-nftables no longer captures IPv6 with IPv6 off (SPEC §4.5 #1), or the comparison is blind")
	}
	t.Logf("%d IPv6 flows differ as SPEC §4.5 #1 says (pilot-agent --native-nftables captures IPv6 with IPv6 off), not counted", n)
	return kept
}

var (
	paOnce sync.Once
	paDir  string
	paPath string
	paErr  error
)

// proxyReadable is a copy of pilot-agent that uid 1337 can run (the tools
// directory is under root's home), removed when the test binary exits.
func proxyReadable(t *testing.T) string {
	t.Helper()
	paOnce.Do(func() {
		src, err := tools.PilotAgent()
		if err != nil {
			paErr = err
			return
		}
		dir, err := harness.TempDir("pilot-agent")
		if err != nil {
			paErr = err
			return
		}
		dst := filepath.Join(dir, "pilot-agent")
		if out, err := exec.Command("cp", src, dst).CombinedOutput(); err != nil {
			paErr = fmt.Errorf("cp %s: %v: %s", src, err, out)
			return
		}
		paDir, paPath = dir, dst
	})
	if paErr != nil {
		t.Fatal(paErr)
	}
	return paPath
}

func removePilotAgentCopy() {
	if paDir != "" {
		_ = os.RemoveAll(paDir)
	}
}

// TestIstioInitScratchImage runs the statically linked binary the way a
// FROM-scratch image runs it: from a root holding nothing but the binary,
// the resolv.conf the kubelet mounts and the /proc every container gets.
// It installs what the same argv installs from the host, DNS capture (read
// from that resolv.conf) included.
func TestIstioInitScratchImage(t *testing.T) {
	harness.RequireRoot(t)
	dir, err := harness.TempDir("scratch")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	root := filepath.Join(dir, "root")
	for _, d := range []string{"etc", "proc"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	build := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(root, "nfintercept"), "github.com/nfintercept/nfintercept/cmd/nfintercept")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("static build: %v\n%s", err, out)
	}
	resolv, err := os.ReadFile("/etc/resolv.conf")
	if err != nil || !strings.Contains(string(resolv), "nameserver") {
		t.Skipf("the host's /etc/resolv.conf names no nameserver (%v): nothing to compare DNS capture with", err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc", "resolv.conf"), resolv, 0o644); err != nil {
		t.Fatal(err)
	}

	s := initShapes[0]
	s.env, s.envFlags = []string{"ISTIO_META_DNS_CAPTURE=true"}, []string{"--redirect-dns"}
	image := harness.NewPair(t, harness.PairOptions{})
	plain := harness.NewPair(t, harness.PairOptions{})
	// Tools by absolute path: the environment has no PATH.
	script := fmt.Sprintf(`%s -t proc proc "$0/proc" && exec %s "$0" /nfintercept "$@"`, lookPath(t, "mount"), lookPath(t, "chroot"))
	wrapper := []string{lookPath(t, "unshare"), "-m", "--propagation", "private", lookPath(t, "sh"), "-c", script, root}
	argv := append([]string{"netns", "exec", image.Pod}, wrapper...)
	cmd := exec.Command(lookPath(t, "ip"), append(argv, s.injectorArgv()...)...)
	cmd.Env = s.env // not even PATH
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("from an empty root: %v\n%s", err, out)
	}
	if r := inPod(t, plain.Pod, nil, nil, s.plainArgv()...); r.code != 0 {
		t.Fatalf("plain argv: exit %d: %s", r.code, r.stderr)
	}
	got, want := podSnapshot(t, image.Pod), podSnapshot(t, plain.Pod)
	if !strings.Contains(want, "table inet nfintercept-raw") {
		t.Fatalf("no DNS capture in the reference ruleset:\n%s", want)
	}
	if got != want {
		t.Errorf("from an empty root:\n%s\nfrom the host:\n%s", got, want)
	}
}
