package integration

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nfintercept/nfintercept"
	"github.com/nfintercept/nfintercept/integration/harness"
	"github.com/nfintercept/nfintercept/internal/libtest"
	"github.com/nfintercept/nfintercept/translate"
)

// The repros of the namespace-handle rework: faults injected with strace
// (`-e inject=SYSCALL:error=E:when=N`), random SIGKILLs, and hostile
// namespaces and files. The one state that must never be seen is TPROXY
// capture rules without the policy routing that delivers what they mark.

// tproxyArgs is the issue's $T: a dual-stack TPROXY sidecar, mark 0x600,
// route table 150.
var tproxyArgs = []string{"-u", "1337", "-m", "TPROXY", "-b", "*", "-i", "*", "--dual-stack", "-t", "0x600", "-r", "150"}

// faultNS is the mk: lo up, a veth pair, an IPv4 and an IPv6
// address on d0.
func faultNS(t testing.TB) (name, path string) {
	t.Helper()
	name, path = rlNS(t)
	for _, args := range [][]string{
		{"link", "add", "d0", "type", "veth", "peer", "name", "d1"},
		{"link", "set", "d0", "up"}, {"link", "set", "d1", "up"},
		{"addr", "add", "10.99.0.2/24", "dev", "d0"},
		{"addr", "add", "fd00:99::2/64", "dev", "d0", "nodad"},
	} {
		harness.MustRun(t, "ip", append([]string{"-n", name}, args...)...)
	}
	return name, path
}

// runWrapped runs the CLI inside a throwaway namespace (unshare -n), under
// the given wrapper (strace ...) when not empty, and kills it after a
// minute: a hang is a failure, reported as exit -1.
func runWrapped(t *testing.T, wrapper []string, args ...string) cliResult {
	t.Helper()
	argv := append([]string{"-n"}, wrapper...)
	argv = append(append(argv, cliBinary(t)), args...)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, lookPath(t, "unshare"), argv...)
	cmd.Env = []string{"PATH=/nonexistent"}
	return runResult(t, cmd)
}

// inject is the strace wrapper failing the when-th call of syscalls with
// errno.
func inject(t *testing.T, syscalls, errno string, when int) []string {
	return []string{lookPath(t, "strace"), "-f", "-qq", "-o", "/dev/null",
		"-e", "trace=" + syscalls, "-e", fmt.Sprintf("inject=%s:error=%s:when=%d", syscalls, errno, when)}
}

// captureWithoutRouting names what the namespace's TPROXY rules need and
// it lacks ("" when nothing is missing): per family, "fwmark 0x600 lookup
// 150" and "local default dev lo" in table 150.
func captureWithoutRouting(t testing.TB, ns string) string {
	t.Helper()
	ruleset := harness.InNS(t, ns, "nft", "list", "ruleset")
	var missing []string
	for _, fam := range []struct{ flag, stmt string }{{"-4", "tproxy ip to"}, {"-6", "tproxy ip6 to"}} {
		if !strings.Contains(ruleset, fam.stmt) && !strings.Contains(ruleset, "tproxy to") {
			continue
		}
		if !strings.Contains(harness.InNS(t, ns, "ip", fam.flag, "rule", "show"), "fwmark 0x600 lookup 150") {
			missing = append(missing, "ip "+fam.flag+" rule fwmark 0x600 lookup 150")
		}
		// A table without routes does not exist: ip then fails.
		routes, _ := exec.Command("ip", "-n", ns, fam.flag, "route", "show", "table", "150").Output()
		if !strings.Contains(string(routes), "local default dev lo") {
			missing = append(missing, "ip "+fam.flag+" route local default dev lo table 150")
		}
	}
	return strings.Join(missing, ", ")
}

func requireStrace(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("strace"); err != nil {
		// .ci/deps installs strace: a missing one is a broken setup, and
		// skipping would hide every fault-injection test in CI.
		t.Fatal("strace not on PATH: run .ci/deps (it installs strace)")
	}
}

// killCLIWithin starts the CLI with args in a throwaway namespace and
// SIGKILLs it after a random delay below within.
func killCLIWithin(t *testing.T, rng *rand.Rand, within time.Duration, args []string) {
	t.Helper()
	cmd := exec.Command(lookPath(t, "unshare"), append([]string{"-n", cliBinary(t)}, args...)...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Duration(rng.Int63n(int64(within))))
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
}

// TestFaultCleanupKeepsRoutingWithRules (repro 1): cleanup failing at any
// netlink send, or killed at any moment, leaves the TPROXY tables with
// their routing, or neither.
func TestFaultCleanupKeepsRoutingWithRules(t *testing.T) {
	requireStrace(t)
	ns, path := faultNS(t)
	apply := append(append([]string{}, tproxyArgs...), "--network-namespace", path)
	cleanup := []string{"cleanup", "--network-namespace", path}
	for when := 1; when <= 12; when++ {
		if r := runWrapped(t, nil, apply...); r.code != 0 {
			t.Fatalf("apply: exit %d: %s", r.code, r.stderr)
		}
		r := runWrapped(t, inject(t, "sendmsg,sendto", "ENOBUFS", when), cleanup...)
		if r.code != 0 && r.code != 1 {
			t.Errorf("cleanup, send %d fails: exit %d: %s", when, r.code, r.stderr)
		}
		if m := captureWithoutRouting(t, ns); m != "" {
			t.Fatalf("cleanup, send %d fails (exit %d: %s): TPROXY rules without %s", when, r.code, r.stderr, m)
		}
	}
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	for i := range 40 {
		if r := runWrapped(t, nil, apply...); r.code != 0 {
			t.Fatalf("apply: exit %d: %s", r.code, r.stderr)
		}
		killCLIWithin(t, rng, 15*time.Millisecond, cleanup)
		if m := captureWithoutRouting(t, ns); m != "" {
			t.Fatalf("kill %d of cleanup: TPROXY rules without %s", i, m)
		}
	}
	if r := runWrapped(t, nil, cleanup...); r.code != 0 {
		t.Fatalf("cleanup: exit %d: %s", r.code, r.stderr)
	}
	if tables, rules := ownTables(t, ns), harness.InNS(t, ns, "ip", "rule", "show"); len(tables) != 0 || strings.Contains(rules, "lookup 150") {
		t.Errorf("after cleanup: tables %v, rules\n%s", tables, rules)
	}
}

// TestFaultModeSwitch (repros 1 and 4): REDIRECT → TPROXY → REDIRECT with
// a netlink send or receive failing at each position in turn: each run
// leaves one mode's tables with their routing; a batch the kernel
// committed is never followed by a rollback of its routing.
func TestFaultModeSwitch(t *testing.T) {
	requireStrace(t)
	ns, path := faultNS(t)
	redirect := []string{"-u", "1337", "-b", "*", "-i", "*", "--dual-stack", "--network-namespace", path}
	tproxy := append(append([]string{}, tproxyArgs...), "--network-namespace", path)
	for _, f := range []struct{ syscalls, errno string }{
		{"recvfrom,recvmsg", "ENOBUFS"}, {"sendmsg,sendto", "ENOBUFS"}, {"socket", "EMFILE"},
	} {
		failed := 0
		for when := 1; when <= 16; when++ {
			for _, sw := range [][2][]string{{redirect, tproxy}, {tproxy, redirect}} {
				if r := runWrapped(t, nil, sw[0]...); r.code != 0 {
					t.Fatalf("apply: exit %d: %s", r.code, r.stderr)
				}
				r := runWrapped(t, inject(t, f.syscalls, f.errno, when), sw[1]...)
				if r.code != 0 {
					failed++
				}
				if r.code != 0 && r.code != 1 {
					t.Errorf("%s %s at %d: exit %d (want 0 or 1): %s", f.syscalls, f.errno, when, r.code, r.stderr)
				}
				if strings.Contains(r.stderr, "panic") || strings.Count(strings.TrimSpace(r.stderr), "\n") > 0 && r.code != 0 {
					t.Errorf("%s %s at %d: not a one-line error:\n%s", f.syscalls, f.errno, when, r.stderr)
				}
				if m := captureWithoutRouting(t, ns); m != "" {
					t.Fatalf("%s %s at %d (exit %d: %s): TPROXY rules without %s", f.syscalls, f.errno, when, r.code, r.stderr, m)
				}
			}
		}
		// Not vacuous: the injected failures reached the CLI.
		if failed == 0 {
			t.Errorf("%s %s: no injected failure made a switch fail: the injection proves nothing", f.syscalls, f.errno)
		}
	}
}

// TestFaultSocketCreation (repro 3): a netlink socket that cannot be
// created is a one-line error and exit 1, never a panic.
func TestFaultSocketCreation(t *testing.T) {
	requireStrace(t)
	_, path := faultNS(t)
	if r := runWrapped(t, nil, append(append([]string{}, tproxyArgs...), "--network-namespace", path)...); r.code != 0 {
		t.Fatalf("apply: exit %d: %s", r.code, r.stderr)
	}
	for _, cmd := range [][]string{
		{"cleanup", "--network-namespace", path},
		append([]string{"verify", "--network-namespace", path}, tproxyArgs...),
	} {
		failed := 0
		for when := 1; when <= 4; when++ {
			r := runWrapped(t, inject(t, "socket", "EMFILE", when), cmd...)
			if r.code == 0 {
				continue // that socket was not needed
			}
			failed++
			if r.code != 1 || strings.Contains(r.stderr, "panic") || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
				t.Errorf("%s with socket %d failing: exit %d, stderr:\n%s", cmd[0], when, r.code, r.stderr)
			}
		}
		if failed == 0 {
			t.Errorf("%s: no failing socket made it fail: the injection proves nothing", cmd[0])
		}
	}
}

// TestOwnAddressNotDetected (repro 2): the result of an apply does not
// depend on what was applied before: the ::6 a dual-stack apply adds to lo
// does not make the next IPv4-only apply program IPv6.
func TestOwnAddressNotDetected(t *testing.T) {
	// lo (index 1, where ::6 goes) comes before d0 (IPv4 first, then
	// IPv6): counted, our ::6 would be the first address.
	ns, path := faultNS(t)
	v4 := []string{"-u", "1337", "-i", "*", "-b", "*", "--network-namespace", path}
	dual := append(append([]string{}, v4...), "--dual-stack")
	state := func() string {
		return harness.InNS(t, ns, "nft", "list", "ruleset") + harness.InNS(t, ns, "ip", "-6", "addr", "show", "dev", "lo")
	}
	mustRun := func(args []string) {
		t.Helper()
		if r := runWrapped(t, nil, args...); r.code != 0 {
			t.Fatalf("nfintercept %v: exit %d: %s", args, r.code, r.stderr)
		}
	}
	mustRun(v4)
	first := state()
	mustRun(dual)
	if !strings.Contains(harness.InNS(t, ns, "ip", "-6", "addr", "show", "dev", "lo"), "::6/128") {
		t.Fatal("the dual-stack apply did not add ::6 to lo: the test proves nothing")
	}
	mustRun(v4)
	if third := state(); third != first {
		t.Errorf("the same options applied after a dual-stack apply give another state:\n--- first\n%s\n--- third\n%s", first, third)
	}
	if r := runWrapped(t, nil, append([]string{"verify"}, v4...)...); r.code != 0 {
		t.Errorf("verify: exit %d: %s%s", r.code, r.stdout, r.stderr)
	}
}

// TestNamespaceRecreatedDuringApply (repro 5): deleting and re-creating a
// namespace of the same name while applies of a large ruleset run never
// gives the new namespace anything: each apply works on the namespace it
// opened, start to end (the old one, kept alive by its descriptor).
func TestNamespaceRecreatedDuringApply(t *testing.T) {
	ns, path := faultNS(t)
	o := translate.DefaultOptions()
	o.ProxyUID, o.InboundInterceptionMode, o.InboundPortsInclude, o.OutboundIPRangesInclude = "1337", "TPROXY", "*", "*"
	o.DualStack, o.InboundTProxyMark, o.InboundTProxyRouteTable = true, "0x600", "150"
	cidrs := make([]string, 100000) // distinct, non-adjacent /28s
	for i := range cidrs {
		cidrs[i] = fmt.Sprintf("10.%d.%d.%d/28", i/2048, (i/8)%256, 32*(i%8))
	}
	o.OutboundIPRangesExclude = strings.Join(cidrs, ",")
	// The delays cover an apply from start to end.
	t0 := time.Now()
	rlApply(t, o, path)
	full := time.Since(t0)
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	for i := range 15 {
		// The apply's namespace is opened before the deletion can start:
		// an apply that opened the path after the re-creation would
		// rightly program the new namespace.
		req, err := libtest.Request{Options: o}.Library()
		if err != nil {
			t.Fatal(err)
		}
		handle, err := nfintercept.OpenNamespace(path)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		var took time.Duration
		start := time.Now()
		go func() {
			defer handle.Close()
			_, err := nfintercept.Apply(context.Background(), handle, req)
			took = time.Since(start)
			done <- err
		}()
		time.Sleep(time.Duration(rng.Int63n(int64(full))))
		harness.MustRun(t, "ip", "netns", "del", ns)
		deleted := time.Since(start)
		harness.MustRun(t, "ip", "netns", "add", ns)
		harness.MustRun(t, "ip", "-n", ns, "link", "set", "lo", "up")
		err = <-done
		t.Logf("round %d: namespace deleted %v into an apply of %v (%v)", i, deleted, took, err)
		tables, lerr := libtest.OurTables(path)
		if lerr != nil {
			t.Fatal(lerr)
		}
		if len(tables) != 0 {
			t.Fatalf("round %d (apply: %v): an apply begun in the old namespace reached the new one: %v; TPROXY rules without %q",
				i, err, tables, captureWithoutRouting(t, ns))
		}
	}
}

// TestChangedRouteRepaired (repro 6): our route replaced by hand (another
// device) is drift that verify reports and --reconcile and apply repair.
func TestChangedRouteRepaired(t *testing.T) {
	ns, path := faultNS(t)
	args := append(append([]string{}, tproxyArgs...), "--network-namespace", path)
	if r := runWrapped(t, nil, args...); r.code != 0 {
		t.Fatalf("apply: exit %d: %s", r.code, r.stderr)
	}
	spoil := func() {
		harness.MustRun(t, "ip", "-n", ns, "route", "replace", "local", "default", "dev", "d0", "table", "150", "proto", "201")
	}
	spoil()
	if r := runWrapped(t, nil, append([]string{"verify"}, args...)...); r.code != 1 || !strings.Contains(r.stdout, "route") {
		t.Errorf("verify of a changed route: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if r := runWrapped(t, nil, append([]string{"verify", "--reconcile"}, args...)...); r.code != 0 {
		t.Errorf("verify --reconcile: exit %d: %s%s", r.code, r.stdout, r.stderr)
	}
	if got := harness.InNS(t, ns, "ip", "route", "show", "table", "150"); !strings.Contains(got, "local default dev lo") {
		t.Errorf("table 150 after reconcile: %s", got)
	}
	spoil()
	if r := runWrapped(t, nil, args...); r.code != 0 {
		t.Errorf("apply over a changed route: exit %d: %s", r.code, r.stderr)
	}
	if r := runWrapped(t, nil, append([]string{"verify"}, args...)...); r.code != 0 {
		t.Errorf("verify after apply: exit %d: %s%s", r.code, r.stdout, r.stderr)
	}
}

// TestHostileFiles (repro 7): a FIFO named as the namespace, and a FIFO,
// a device or a huge file as resolv.conf, are refused without hanging or
// reading without bound.
func TestHostileFiles(t *testing.T) {
	ns, path := rlNS(t)
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range [][]string{{"render"}, {"apply"}, {"cleanup"}, {"verify"}} {
		r := runWrapped(t, nil, append(cmd, "-u", "1337", "--network-namespace", fifo)...)
		if r.code != 2 || !strings.Contains(r.stderr, fifo) {
			t.Errorf("%s --network-namespace FIFO: exit %d (want 2), stderr %q", cmd[0], r.code, r.stderr)
		}
	}
	huge := filepath.Join(dir, "huge")
	f, err := os.Create(huge)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 200000 {
		fmt.Fprintf(f, "nameserver 10.%d.%d.%d\n", i>>16, (i>>8)&255, i&255)
	}
	f.Close()
	for _, resolv := range []string{fifo, "/dev/zero", huge} {
		// $0 is the file bound over /etc/resolv.conf, "$@" the command;
		// its address space is capped so that a regression reading
		// /dev/zero fails the test instead of exhausting the machine.
		script := lookPath(t, "mount") + ` --bind "$0" /etc/resolv.conf && exec "$@"`
		wrapper := []string{"-m", lookPath(t, "sh"), "-c", script, resolv, lookPath(t, "prlimit"), "--as=4000000000"}
		r := runWrapped(t, wrapper, "-u", "1337", "-b", "*", "--redirect-dns", "--network-namespace", path)
		if r.code <= 0 || !strings.Contains(r.stderr, "resolv.conf") {
			t.Errorf("resolv.conf %s: exit %d, stderr %q", resolv, r.code, r.stderr)
		}
	}
	if tables := ownTables(t, ns); len(tables) != 0 {
		t.Errorf("refused runs installed %v", tables)
	}
}

// TestBadInputExitCodes (repros 8 and 9): bad interface names, unknown
// users and groups and unusable namespaces are input errors: exit 2,
// naming the option, nothing touched.
func TestBadInputExitCodes(t *testing.T) {
	ns, path := rlNS(t)
	file := filepath.Join(t.TempDir(), "regular")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-u", "1337", "-b", "*", "-c", "eth*", "--network-namespace", path}, "-c/--istio-exclude-interfaces"},
		{[]string{"-u", "1337", "-b", "*", "-k", `ve"th`, "--network-namespace", path}, "-k/--kube-virt-interfaces"},
		{[]string{"-u", "1337", "-b", "*", "-m", "TPROXY", "-c", `a\b`, "--network-namespace", path}, "-c/--istio-exclude-interfaces"},
		{[]string{"-u", "nfi-ghost-user", "-b", "*", "--network-namespace", path}, "nfi-ghost-user"},
		{[]string{"-u", "1337", "-g", "nfi-ghost-group", "-b", "*", "--network-namespace", path}, "nfi-ghost-group"},
		{[]string{"-u", "1337", "--network-namespace", "/proc/self/ns/mnt"}, "not a network namespace"},
		{[]string{"-u", "1337", "--network-namespace", file}, "not a namespace file"},
		{[]string{"cleanup", "-u", "1337", "--network-namespace", file}, "not a namespace file"},
		{[]string{"verify", "-u", "1337", "--network-namespace", "/proc/self/ns/mnt"}, "not a network namespace"},
	} {
		r := runWrapped(t, nil, c.args...)
		if r.code != 2 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("nfintercept %v: exit %d (want 2), stderr %q (want %q)", c.args, r.code, r.stderr, c.want)
		}
	}
	if tables := ownTables(t, ns); len(tables) != 0 {
		t.Errorf("refused runs installed %v", tables)
	}
	if r := runWrapped(t, nil, "--help"); !strings.Contains(r.stderr, "2 invalid options or namespace") {
		t.Errorf("--help does not document exit 2 for a bad namespace:\n%s", r.stderr)
	}
}

// TestKillDuringModeSwitches: the CLI switching between REDIRECT and
// TPROXY (both ways, with new routing each time) killed at random moments
// never leaves TPROXY rules without their routing.
func TestKillDuringModeSwitches(t *testing.T) {
	ns, path := faultNS(t)
	redirect := []string{"-u", "1337", "-b", "*", "-i", "*", "--dual-stack", "--network-namespace", path}
	tproxy := append(append([]string{}, tproxyArgs...), "--network-namespace", path)
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	for i := range 60 {
		from, to := redirect, tproxy
		if i%2 == 1 {
			from, to = tproxy, redirect
		}
		if r := runWrapped(t, nil, from...); r.code != 0 {
			t.Fatalf("apply: exit %d: %s", r.code, r.stderr)
		}
		killCLIWithin(t, rng, 20*time.Millisecond, to)
		if m := captureWithoutRouting(t, ns); m != "" {
			t.Fatalf("kill %d: TPROXY rules without %s", i, m)
		}
	}
}
