package kernel

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nfintercept/nfintercept/translate"
)

// These tests install rules and routes in throwaway namespaces named
// nfi-tp-*, and use iproute2 as the oracle (the product never runs it).

func routingNS(t *testing.T) (name, path string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	name = fmt.Sprintf("nfi-tp-%d-%s", os.Getpid(), hex.EncodeToString(b))
	ipCmd(t, "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("delete netns %s: %v: %s", name, err, out)
		}
	})
	ipCmd(t, "-n", name, "link", "set", "lo", "up")
	return name, filepath.Join("/var/run/netns", name)
}

func ipCmd(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func ipJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	out := ipCmd(t, append([]string{"-j"}, args...)...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("parse ip -j %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

type ipRule struct {
	Priority int    `json:"priority"`
	Src      string `json:"src"`
	FWMark   string `json:"fwmark"`
	Table    string `json:"table"`
	Protocol string `json:"protocol"`
}

func (r ipRule) String() string {
	return fmt.Sprintf("%d: fwmark %s lookup %s proto %s", r.Priority, r.FWMark, r.Table, r.Protocol)
}

// fwmarkRules lists the rules with a fwmark in family "-4" or "-6".
func fwmarkRules(t *testing.T, ns, fam string) []string {
	t.Helper()
	var rules []ipRule
	ipJSON(t, &rules, "-d", "-n", ns, fam, "rule", "show")
	var out []string
	for _, r := range rules {
		if r.FWMark != "" {
			out = append(out, fmt.Sprintf("fwmark %s lookup %s proto %s", r.FWMark, r.Table, r.Protocol))
		}
	}
	slices.Sort(out)
	return out
}

type ipRoute struct {
	Type     string `json:"type"`
	Dst      string `json:"dst"`
	Dev      string `json:"dev"`
	Protocol string `json:"protocol"`
	Scope    string `json:"scope"`
}

// tableRoutes lists the routes of a table ("" when the table is empty).
func tableRoutes(t *testing.T, ns, fam string, table uint32) []string {
	t.Helper()
	var routes []ipRoute
	out, err := exec.Command("ip", "-j", "-d", "-n", ns, fam, "route", "show", "table", fmt.Sprint(table)).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) == "" {
		// An empty or unknown table is reported as an error by some iproute2 versions.
		return nil
	}
	if err := json.Unmarshal(out, &routes); err != nil {
		t.Fatalf("parse routes: %v\n%s", err, out)
	}
	var s []string
	for _, r := range routes {
		s = append(s, fmt.Sprintf("%s %s dev %s proto %s", r.Type, r.Dst, r.Dev, r.Protocol))
	}
	return s
}

func loV6Addrs(t *testing.T, ns string) []string {
	t.Helper()
	var links []struct {
		AddrInfo []struct {
			Local     string `json:"local"`
			Prefixlen int    `json:"prefixlen"`
		} `json:"addr_info"`
	}
	ipJSON(t, &links, "-n", ns, "-6", "addr", "show", "dev", "lo")
	var out []string
	for _, l := range links {
		for _, a := range l.AddrInfo {
			out = append(out, fmt.Sprintf("%s/%d", a.Local, a.Prefixlen))
		}
	}
	slices.Sort(out)
	return out
}

// routeGet asks the kernel how a packet with the mark is routed: with our
// policy routing it is delivered locally through the table.
func routeGet(t *testing.T, ns, dst string, mark uint32) string {
	t.Helper()
	return ipCmd(t, "-n", ns, "route", "get", dst, "mark", fmt.Sprint(mark))
}

func tproxyRuleset(mark, table uint32, v6 bool) *translate.Ruleset {
	rs := &translate.Ruleset{Families: translate.IPv4}
	rs.Routes = append(rs.Routes, translate.PolicyRoute{Family: translate.IPv4, Mark: mark, Table: table})
	if v6 {
		rs.Families = translate.BothFamilies
		rs.Routes = append(rs.Routes, translate.PolicyRoute{Family: translate.IPv6, Mark: mark, Table: table})
		rs.LoopbackAddrs = []netip.Prefix{netip.MustParsePrefix("::6/128")}
	}
	return rs
}

func mustApply(t *testing.T, rs *translate.Ruleset, path string) func() error {
	t.Helper()
	undo, err := ApplyRouting(rs, openNS(t, path))
	if err != nil {
		t.Fatalf("ApplyRouting: %v", err)
	}
	return undo
}

func want(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s:\n got %q\nwant %q", what, got, want)
	}
}

var (
	ours = fmt.Sprint(RouteProtocol)
	none []string
)

func TestApplyRoutingDualStack(t *testing.T) {
	ns, path := routingNS(t)
	mustApply(t, tproxyRuleset(1337, 133, true), path)

	want(t, "v4 rules", fwmarkRules(t, ns, "-4"), []string{"fwmark 0x539 lookup 133 proto " + ours})
	want(t, "v6 rules", fwmarkRules(t, ns, "-6"), []string{"fwmark 0x539 lookup 133 proto " + ours})
	want(t, "v4 table 133", tableRoutes(t, ns, "-4", 133), []string{"local default dev lo proto " + ours})
	want(t, "v6 table 133", tableRoutes(t, ns, "-6", 133), []string{"local default dev lo proto " + ours})
	want(t, "lo v6 addresses", loV6Addrs(t, ns), []string{"::1/128", "::6/128"})

	// The kernel now delivers marked packets locally, unmarked ones not.
	if got := routeGet(t, ns, "10.1.2.3", 1337); !strings.HasPrefix(got, "local 10.1.2.3 dev lo table 133") {
		t.Errorf("marked v4 packet routed as %q", got)
	}
	if out, err := exec.Command("ip", "-n", ns, "route", "get", "10.1.2.3").CombinedOutput(); err == nil {
		t.Errorf("unmarked packet has a route: %s", out)
	}
	if got := ipCmd(t, "-n", ns, "-6", "route", "get", "2001:db8::9", "mark", "1337"); !strings.HasPrefix(got, "local 2001:db8::9") || !strings.Contains(got, "table 133") {
		t.Errorf("marked v6 packet routed as %q", got)
	}
}

func TestApplyRoutingIPv4Only(t *testing.T) {
	ns, path := routingNS(t)
	mustApply(t, tproxyRuleset(0x10, 7000, false), path)
	want(t, "v4 rules", fwmarkRules(t, ns, "-4"), []string{"fwmark 0x10 lookup 7000 proto " + ours})
	want(t, "v6 rules", fwmarkRules(t, ns, "-6"), none)
	want(t, "v4 table", tableRoutes(t, ns, "-4", 7000), []string{"local default dev lo proto " + ours})
	want(t, "v6 table", tableRoutes(t, ns, "-6", 7000), none)
	want(t, "lo v6 addresses", loV6Addrs(t, ns), []string{"::1/128"})
}

func TestApplyRoutingIdempotent(t *testing.T) {
	ns, path := routingNS(t)
	rs := tproxyRuleset(1337, 133, true)
	mustApply(t, rs, path)
	var before []ipRule
	ipJSON(t, &before, "-n", ns, "rule", "show")
	undo := mustApply(t, rs, path)
	var after []ipRule
	ipJSON(t, &after, "-n", ns, "rule", "show")
	if !slices.Equal(before, after) {
		t.Errorf("re-apply changed the rules:\nbefore %v\nafter  %v", before, after)
	}
	want(t, "v6 rules", fwmarkRules(t, ns, "-6"), []string{"fwmark 0x539 lookup 133 proto " + ours})
	want(t, "lo v6 addresses", loV6Addrs(t, ns), []string{"::1/128", "::6/128"})
	// Nothing was added by the second call, so its undo leaves the first's.
	if err := undo(); err != nil {
		t.Fatal(err)
	}
	want(t, "v4 rules after no-op undo", fwmarkRules(t, ns, "-4"), []string{"fwmark 0x539 lookup 133 proto " + ours})
	want(t, "v4 table after no-op undo", tableRoutes(t, ns, "-4", 133), []string{"local default dev lo proto " + ours})
}

func TestApplyRoutingUndo(t *testing.T) {
	ns, path := routingNS(t)
	undo := mustApply(t, tproxyRuleset(1337, 133, true), path)
	if err := undo(); err != nil {
		t.Fatalf("undo: %v", err)
	}
	for _, fam := range []string{"-4", "-6"} {
		want(t, fam+" rules", fwmarkRules(t, ns, fam), none)
		want(t, fam+" table", tableRoutes(t, ns, fam, 133), none)
	}
	want(t, "lo v6 addresses", loV6Addrs(t, ns), []string{"::1/128"})
	if err := undo(); err != nil {
		t.Errorf("second undo: %v", err)
	}
}

// A re-apply with another mark and table replaces ours; its undo brings the
// previous state back.
func TestApplyRoutingChange(t *testing.T) {
	ns, path := routingNS(t)
	mustApply(t, tproxyRuleset(1337, 133, true), path)
	undo := mustApply(t, tproxyRuleset(0x100, 144, true), path)
	for _, fam := range []string{"-4", "-6"} {
		want(t, fam+" rules", fwmarkRules(t, ns, fam), []string{"fwmark 0x100 lookup 144 proto " + ours})
		want(t, fam+" stale table", tableRoutes(t, ns, fam, 133), none)
		want(t, fam+" new table", tableRoutes(t, ns, fam, 144), []string{"local default dev lo proto " + ours})
	}
	if err := undo(); err != nil {
		t.Fatalf("undo: %v", err)
	}
	for _, fam := range []string{"-4", "-6"} {
		want(t, fam+" rules after undo", fwmarkRules(t, ns, fam), []string{"fwmark 0x539 lookup 133 proto " + ours})
		want(t, fam+" table 133 after undo", tableRoutes(t, ns, fam, 133), []string{"local default dev lo proto " + ours})
		want(t, fam+" table 144 after undo", tableRoutes(t, ns, fam, 144), none)
	}

	// Same mark, other table; then REDIRECT mode (no routes) with IPv6 off.
	mustApply(t, tproxyRuleset(1337, 150, false), path)
	want(t, "v4 rules", fwmarkRules(t, ns, "-4"), []string{"fwmark 0x539 lookup 150 proto " + ours})
	want(t, "v6 rules", fwmarkRules(t, ns, "-6"), none)
	want(t, "lo v6 addresses", loV6Addrs(t, ns), []string{"::1/128"})
	mustApply(t, &translate.Ruleset{Families: translate.IPv4}, path)
	want(t, "v4 rules in REDIRECT", fwmarkRules(t, ns, "-4"), none)
	want(t, "table 150 in REDIRECT", tableRoutes(t, ns, "-4", 150), none)
}

func TestApplyRoutingRedirectLoopback(t *testing.T) {
	ns, path := routingNS(t)
	rs := &translate.Ruleset{Families: translate.BothFamilies, LoopbackAddrs: []netip.Prefix{netip.MustParsePrefix("::6/128")}}
	mustApply(t, rs, path)
	want(t, "lo v6 addresses", loV6Addrs(t, ns), []string{"::1/128", "::6/128"})
	want(t, "v4 rules", fwmarkRules(t, ns, "-4"), none)
	if err := cleanupRouting(t, path); err != nil {
		t.Fatal(err)
	}
	want(t, "lo v6 addresses after cleanup", loV6Addrs(t, ns), []string{"::1/128"})
}

// Cleanup removes ours and only ours; apply coexists with look-alikes.
func TestCleanupRoutingLeavesForeign(t *testing.T) {
	ns, path := routingNS(t)
	// Someone else's rule identical to ours, a route in our table's slot
	// (what istio-iptables leaves), a route in another table, and ::6.
	ipCmd(t, "-n", ns, "rule", "add", "fwmark", "1337", "lookup", "133")
	ipCmd(t, "-n", ns, "-6", "rule", "add", "fwmark", "7", "lookup", "200")
	ipCmd(t, "-n", ns, "route", "add", "local", "default", "dev", "lo", "table", "133")
	ipCmd(t, "-n", ns, "route", "add", "local", "default", "dev", "lo", "table", "134")
	ipCmd(t, "-n", ns, "-6", "addr", "add", "::6/128", "dev", "lo")
	foreignV4 := []string{"fwmark 0x539 lookup 133 proto unspec"}
	foreignV6 := []string{"fwmark 0x7 lookup 200 proto unspec"}

	mustApply(t, tproxyRuleset(1337, 133, true), path)
	want(t, "v4 rules", fwmarkRules(t, ns, "-4"), append([]string{"fwmark 0x539 lookup 133 proto " + ours}, foreignV4...))
	want(t, "v4 table 133 (foreign route accepted)", tableRoutes(t, ns, "-4", 133), []string{"local default dev lo proto boot"})
	want(t, "v6 table 133", tableRoutes(t, ns, "-6", 133), []string{"local default dev lo proto " + ours})

	mustApply(t, tproxyRuleset(1337, 133, true), path) // idempotent next to foreign ones too
	want(t, "v4 rules after re-apply", fwmarkRules(t, ns, "-4"), append([]string{"fwmark 0x539 lookup 133 proto " + ours}, foreignV4...))

	for range 2 { // cleanup is idempotent
		if err := cleanupRouting(t, path); err != nil {
			t.Fatalf("CleanupRouting: %v", err)
		}
		want(t, "v4 rules after cleanup", fwmarkRules(t, ns, "-4"), foreignV4)
		want(t, "v6 rules after cleanup", fwmarkRules(t, ns, "-6"), foreignV6)
		want(t, "v4 table 133 after cleanup", tableRoutes(t, ns, "-4", 133), []string{"local default dev lo proto boot"})
		want(t, "v4 table 134 after cleanup", tableRoutes(t, ns, "-4", 134), []string{"local default dev lo proto boot"})
		want(t, "v6 table 133 after cleanup", tableRoutes(t, ns, "-6", 133), none)
		want(t, "lo v6 addresses after cleanup", loV6Addrs(t, ns), []string{"::1/128", "::6/128"})
	}
}

// A table already holding another default route is refused, naming the
// namespace and the route, and nothing of the attempt stays behind.
func TestApplyRoutingConflictRollsBack(t *testing.T) {
	ns, path := routingNS(t)
	ipCmd(t, "-n", ns, "-6", "route", "add", "unreachable", "default", "table", "133")
	_, err := ApplyRouting(tproxyRuleset(1337, 133, true), openNS(t, path))
	if err == nil {
		t.Fatal("ApplyRouting succeeded next to a conflicting default route")
	}
	for _, s := range []string{path, "ip -6 route local default dev lo table 133", "another route table"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}
	for _, fam := range []string{"-4", "-6"} {
		want(t, fam+" rules", fwmarkRules(t, ns, fam), none)
	}
	want(t, "v4 table", tableRoutes(t, ns, "-4", 133), none)
	want(t, "v6 table", tableRoutes(t, ns, "-6", 133), []string{"unreachable default dev lo proto boot"})
	want(t, "lo v6 addresses", loV6Addrs(t, ns), []string{"::1/128"})
}

func TestApplyRoutingRefusesDangerousValues(t *testing.T) {
	_, path := routingNS(t)
	for _, tc := range []struct {
		mark, table uint32
		msg         string
	}{
		{0, 133, "mark 0"},
		{1337, 254, "table 254"},
		{1337, 255, "table 255"},
		{1337, 0, "table 0"},
	} {
		if _, err := ApplyRouting(tproxyRuleset(tc.mark, tc.table, false), openNS(t, path)); err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("mark %d table %d: got error %v, want one mentioning %q", tc.mark, tc.table, err, tc.msg)
		}
	}
}

func TestOpenNamespaceMissing(t *testing.T) {
	missing := "/var/run/netns/nfi-tp-does-not-exist"
	_, err := OpenNamespace(missing)
	var nerr *NamespaceError
	if !errors.As(err, &nerr) || !nerr.Input() || !strings.Contains(err.Error(), missing) {
		t.Errorf("OpenNamespace: got %v, want an input error naming %s", err, missing)
	}
}

// openNS opens the namespace at path for the test's duration.
func openNS(t *testing.T, path string) *Namespace {
	t.Helper()
	ns, err := OpenNamespace(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

// openRouting connects to the routing of the namespace at path for the
// test's duration.
func openRouting(t *testing.T, path string) *Routing {
	t.Helper()
	r, err := OpenRouting(openNS(t, path))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

func beginRouting(t *testing.T, rs *translate.Ruleset, path string) (*RoutingChange, error) {
	t.Helper()
	return openRouting(t, path).Begin(rs)
}

func cleanupRouting(t *testing.T, path string) error {
	t.Helper()
	return openRouting(t, path).Cleanup()
}
