package integration

import (
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nfintercept/nfintercept/integration/harness"
)

// The fault suites of faults_test.go for the ambient-pod profile: its
// capture marks ztunnel's connections 0x111 (connmark, restored on the
// replies), and what must never be seen is such a rule without the policy
// routing that delivers the marked replies: "fwmark 0x111/0xfff lookup
// 100" and "local default dev lo" in table 100, per family the rules
// match (AMBIENT.md §5).

// ambientWithoutRouting names what the namespace's 0x111 mark rules need
// and it lacks ("" when nothing is missing).
func ambientWithoutRouting(t testing.TB, ns string) string {
	t.Helper()
	v4, v6 := markFamilies(nftList(t, ns, "ruleset"))
	var missing []string
	for _, fam := range []struct {
		flag   string
		needed bool
	}{{"-4", v4}, {"-6", v6}} {
		if !fam.needed {
			continue
		}
		if !strings.Contains(harness.MustRun(t, "ip", "-n", ns, fam.flag, "rule", "show"), "fwmark 0x111/0xfff lookup 100") {
			missing = append(missing, "ip "+fam.flag+" rule fwmark 0x111/0xfff lookup 100")
		}
		// A table without routes does not exist: ip then fails.
		routes, _ := exec.Command("ip", "-n", ns, fam.flag, "route", "show", "table", "100").Output()
		if !strings.Contains(string(routes), "local default dev lo") {
			missing = append(missing, "ip "+fam.flag+" route local default dev lo table 100")
		}
	}
	return strings.Join(missing, ", ")
}

// markFamilies says which families the rules of ruleset (nft list
// output) that match or set mark 0x111 apply to: a rule of an inet table
// applies to both unless it names one (meta nfproto, ip/ip6 addresses).
func markFamilies(ruleset string) (v4, v6 bool) {
	tableFamily := ""
	for _, line := range strings.Split(ruleset, "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == "table" {
			tableFamily = f[1]
			continue
		}
		if !strings.Contains(line, "0x00000111") {
			continue
		}
		only4 := tableFamily == "ip" || strings.Contains(line, "nfproto ipv4") || strings.Contains(line, " ip saddr") || strings.Contains(line, " ip daddr")
		only6 := tableFamily == "ip6" || strings.Contains(line, "nfproto ipv6") || strings.Contains(line, " ip6 ")
		v4 = v4 || !only6
		v6 = v6 || !only4
	}
	return v4, v6
}

// TestAmbientMarkFamilies: the parser of the invariant sees the families of
// the profile as rendered (IPv4 only, then with IPv6).
func TestAmbientMarkFamilies(t *testing.T) {
	for _, c := range []struct {
		args   []string
		v4, v6 bool
	}{
		{[]string{"render", "--profile", "ambient-pod"}, true, false},
		{[]string{"render", "--profile", "ambient-pod", "--ambient-ipv6"}, true, true},
		{[]string{"render", "-u", "1337", "-b", "*", "-i", "*", "--dual-stack"}, false, false},
	} {
		r := runWrapped(t, nil, c.args...)
		if r.code != 0 {
			t.Fatalf("%v: exit %d: %s", c.args, r.code, r.stderr)
		}
		if v4, v6 := markFamilies(r.stdout); v4 != c.v4 || v6 != c.v6 {
			t.Errorf("%v: mark 0x111 rules for ipv4 %v, ipv6 %v; want %v, %v\n%s", c.args, v4, v6, c.v4, c.v6, r.stdout)
		}
	}
}

// syscallCall matches the first line strace -f writes for a call: thread
// id and syscall.
var syscallCall = regexp.MustCompile(`(?m)^(\d+) +(sendto|sendmsg|recvfrom|recvmsg|socket)\(`)

// sweepLength is the number of positions a fault sweep over syscalls
// covers for a run of the CLI with args: strace counts the calls per
// thread and per syscall (when=N fails the Nth sendto and the Nth
// sendmsg of each thread), so the largest such count.
func sweepLength(t *testing.T, syscalls string, args ...string) int {
	t.Helper()
	out := filepath.Join(t.TempDir(), "strace")
	wrapper := []string{lookPath(t, "strace"), "-f", "-qq", "-o", out, "-e", "trace=" + syscalls}
	if r := runWrapped(t, wrapper, args...); r.code != 0 {
		t.Fatalf("%v under strace: exit %d: %s", args, r.code, r.stderr)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	calls := map[[2]string]int{}
	n := 0
	for _, m := range syscallCall.FindAllStringSubmatch(string(b), -1) {
		k := [2]string{m[1], m[2]}
		calls[k]++
		n = max(n, calls[k])
	}
	return n
}

// TestFaultAmbientPod: an ambient-pod apply (into a fresh namespace, over
// the sidecar's REDIRECT, from dual-stack to IPv4 only) or cleanup with a
// netlink socket, send or receive failing at each position in turn, or
// killed at random moments, exits 0 or 1 (a one-line error) and never
// leaves the 0x111 mark rules without their policy routing.
func TestFaultAmbientPod(t *testing.T) {
	requireStrace(t)
	ns, path := faultNS(t)
	with := func(args ...string) []string { return append(args, "--network-namespace", path) }
	ambient6 := with("--profile", "ambient-pod", "--ambient-ipv6")
	ambient4 := with("--profile", "ambient-pod")
	redirect := with("-u", "1337", "-b", "*", "-i", "*", "--dual-stack")
	cleanup := with("cleanup")
	mustRun := func(args []string) {
		t.Helper()
		if r := runWrapped(t, nil, args...); r.code != 0 {
			t.Fatalf("nfintercept %v: exit %d: %s", args, r.code, r.stderr)
		}
	}
	fresh := func() {
		t.Helper()
		mustRun(cleanup)
		if tables, rules := ownTables(t, ns), harness.MustRun(t, "ip", "-n", ns, "rule", "show"); len(tables) != 0 || strings.Contains(rules, "lookup 100") {
			t.Fatalf("after cleanup: tables %v, rules\n%s", tables, rules)
		}
	}
	type scenario struct {
		name  string
		setup func()
		run   []string
	}
	scenarios := []scenario{
		{"apply into a fresh namespace", fresh, ambient6},
		{"switch from sidecar REDIRECT", func() { mustRun(redirect) }, ambient6},
		{"switch from dual-stack to IPv4 only", func() { mustRun(ambient6) }, ambient4},
		{"cleanup", func() { mustRun(ambient6) }, cleanup},
	}
	for _, f := range []struct{ syscalls, errno string }{
		{"sendmsg,sendto", "ENOBUFS"}, {"recvfrom,recvmsg", "ENOBUFS"}, {"socket", "EMFILE"},
	} {
		for _, s := range scenarios {
			s.setup()
			n := sweepLength(t, f.syscalls, s.run...)
			if n == 0 {
				t.Fatalf("%s makes no %s call: the sweep proves nothing", s.name, f.syscalls)
			}
			t.Logf("%s: %d positions of %s", s.name, n, f.syscalls)
			for when := 1; when <= n; when++ {
				s.setup()
				r := runWrapped(t, inject(t, f.syscalls, f.errno, when), s.run...)
				if (r.code != 0 && r.code != 1) || strings.Contains(r.stderr, "panic") {
					t.Errorf("%s, %s %s at %d of %d: exit %d (want 0 or 1): %s", s.name, f.syscalls, f.errno, when, n, r.code, r.stderr)
				}
				if r.code != 0 && strings.Count(strings.TrimSpace(r.stderr), "\n") > 0 {
					t.Errorf("%s, %s %s at %d of %d: not a one-line error:\n%s", s.name, f.syscalls, f.errno, when, n, r.stderr)
				}
				if m := ambientWithoutRouting(t, ns); m != "" {
					t.Fatalf("%s, %s %s at %d of %d (exit %d: %s): mark 0x111 rules without %s",
						s.name, f.syscalls, f.errno, when, n, r.code, r.stderr, m)
				}
			}
		}
	}

	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	for _, s := range []scenario{scenarios[0], scenarios[1], scenarios[3]} {
		for i := range 20 {
			s.setup()
			killCLIWithin(t, rng, 15*time.Millisecond, s.run)
			if m := ambientWithoutRouting(t, ns); m != "" {
				t.Fatalf("%s, kill %d: mark 0x111 rules without %s", s.name, i, m)
			}
		}
	}
}
