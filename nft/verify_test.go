package nft

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/nfintercept/nfintercept/translate"
)

// applyAll installs rs like the root package does: routing, then tables.
func applyAll(t *testing.T, rs *translate.Ruleset, path string) {
	t.Helper()
	if _, err := ApplyRouting(rs, path); err != nil {
		t.Fatal(err)
	}
	if err := Apply(rs, path); err != nil {
		t.Fatal(err)
	}
}

// reconcileAll is applyAll with Reconcile, as verify --reconcile does.
func reconcileAll(t *testing.T, rs *translate.Ruleset, path string) {
	t.Helper()
	if _, err := ApplyRouting(rs, path); err != nil {
		t.Fatal(err)
	}
	if err := Reconcile(rs, path); err != nil {
		t.Fatal(err)
	}
}

func mustVerify(t *testing.T, rs *translate.Ruleset, path string) *Drift {
	t.Helper()
	d, err := Verify(rs, path)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return d
}

// verifyRulesets are the rulesets every verify test runs against: the
// fixture covering every statement, and realistic Build outputs.
func verifyRulesets() map[string]*translate.Ruleset {
	out := map[string]*translate.Ruleset{"fixture": fullRuleset()}
	for name, cfg := range realisticConfigs() {
		out[name] = translate.Build(cfg)
	}
	return out
}

// TestVerifyInSync: right after Apply every ruleset verifies in sync; an
// empty namespace misses every table.
func TestVerifyInSync(t *testing.T) {
	requireRoot(t)
	for name, rs := range verifyRulesets() {
		t.Run(name, func(t *testing.T) {
			_, path := newNetnsLoUp(t)
			d := mustVerify(t, rs, path)
			if got, want := countKind(d, Missing, "table"), len(rs.Tables); got != want {
				t.Errorf("empty namespace: %d missing tables, want %d:\n%s", got, want, d)
			}
			applyAll(t, rs, path)
			if d := mustVerify(t, rs, path); !d.InSync() {
				t.Errorf("right after Apply:\n%s", d)
			}
		})
	}
}

func countKind(d *Drift, k DriftKind, object string) int {
	n := 0
	for _, it := range d.Items {
		if it.Kind == k && it.Object == object {
			n++
		}
	}
	return n
}

// ruleHandle finds the rule of table/chain whose `nft -a list` line
// contains text, and returns its handle and the line as nft prints it
// (counter values removed).
func ruleHandle(t *testing.T, ns, table, chain, text string) (handle, line string) {
	t.Helper()
	out := nftIn(t, ns, "", "-a", "list", "chain", "inet", table, chain)
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		if !strings.Contains(l, text) || !strings.Contains(l, "# handle ") {
			continue
		}
		body, h, _ := strings.Cut(l, " # handle ")
		return h, counterRE.ReplaceAllString(body, "counter")
	}
	t.Fatalf("no rule with %q in %s %s:\n%s", text, table, chain, out)
	return "", ""
}

// tamperCase changes the namespace behind nfintercept's back and says
// which single difference Verify must report.
type tamperCase struct {
	name   string
	tamper func(t *testing.T, ns string) (want string) // want: text the item must show
	kind   DriftKind
	object string
	where  string // substring of Where
}

func tamperCases() []tamperCase {
	nft := func(t *testing.T, ns string, args ...string) { t.Helper(); nftIn(t, ns, "", args...) }
	ip := func(t *testing.T, ns string, args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
	}
	return []tamperCase{
		{"delete a rule", func(t *testing.T, ns string) string {
			h, line := ruleHandle(t, ns, "nfintercept-nat", "istio-output", "ip saddr 127.0.0.6")
			nft(t, ns, "delete", "rule", "inet", "nfintercept-nat", "istio-output", "handle", h)
			return line
		}, Missing, "rule", "nfintercept-nat chain istio-output rule 3"},
		{"change a port", func(t *testing.T, ns string) string {
			h, line := ruleHandle(t, ns, "nfintercept-nat", "istio-output", "tcp dport 3306")
			nft(t, ns, "replace", "rule", "inet", "nfintercept-nat", "istio-output", "handle", h,
				strings.Replace(line, "3306", "3307", 1))
			return "0x0cea" // 3306, as the expression shows it
		}, Changed, "rule", "istio-output"},
		{"change an anonymous set", func(t *testing.T, ns string) string {
			h, line := ruleHandle(t, ns, "nfintercept-nat", "istio-output", "{ 53, 15008 } meta skuid")
			nft(t, ns, "replace", "rule", "inet", "nfintercept-nat", "istio-output", "handle", h,
				strings.Replace(line, "{ 53, 15008 }", "{ 53, 15009 }", 1))
			return "53, 15009"
		}, Changed, "rule", "istio-output"},
		{"add a set element", func(t *testing.T, ns string) string {
			nft(t, ns, "add", "element", "inet", "nfintercept-nat", "exclude-v4", "{ 203.0.113.0/24 }")
			return "203.0.113.0/24"
		}, Extra, "set element", "set exclude-v4"},
		{"remove a set element", func(t *testing.T, ns string) string {
			nft(t, ns, "delete", "element", "inet", "nfintercept-nat", "exclude-v4", "{ 192.168.0.0/16 }")
			return "192.168.0.0/16"
		}, Missing, "set element", "set exclude-v4"},
		{"extra rule in our chain", func(t *testing.T, ns string) string {
			nft(t, ns, "add", "rule", "inet", "nfintercept-nat", "istio-redirect", "tcp dport 22 accept")
			return "0x0016" // port 22
		}, Extra, "rule", "istio-redirect rule 2"},
		{"tproxy port", func(t *testing.T, ns string) string {
			h, line := ruleHandle(t, ns, "nfintercept-mangle", "istio-tproxy", "tproxy ip to :15006")
			nft(t, ns, "replace", "rule", "inet", "nfintercept-mangle", "istio-tproxy", "handle", h,
				strings.Replace(line, ":15006", ":15007", 1))
			return "0x3a9f" // 15007
		}, Changed, "rule", "istio-tproxy rule 1"},
		{"ct zone", func(t *testing.T, ns string) string {
			h, line := ruleHandle(t, ns, "nfintercept-raw", "istio-inbound", "ip saddr 10.96.0.10")
			nft(t, ns, "replace", "rule", "inet", "nfintercept-raw", "istio-inbound", "handle", h,
				strings.Replace(line, "ct zone set 1", "ct zone set 3", 1))
			return "ct zone set 1"
		}, Changed, "rule", "nfintercept-raw chain istio-inbound rule 1"},
		{"base chain policy", func(t *testing.T, ns string) string {
			nft(t, ns, "add", "chain", "inet", "nfintercept-mangle", "output", "{ type route hook output priority mangle; policy drop; }")
			return "policy drop"
		}, Changed, "chain", "nfintercept-mangle chain output"},
		{"dormant table", func(t *testing.T, ns string) string {
			nft(t, ns, "add", "table", "inet", "nfintercept-nat", "{ flags dormant; }")
			return "dormant"
		}, Changed, "table", "inet nfintercept-nat"},
		{"extra chain", func(t *testing.T, ns string) string {
			nft(t, ns, "add", "chain", "inet", "nfintercept-nat", "sneaky")
			return ""
		}, Extra, "chain", "nfintercept-nat chain sneaky"},
		{"extra set", func(t *testing.T, ns string) string {
			nft(t, ns, "add", "set", "inet", "nfintercept-nat", "sneaky", "{ type ipv4_addr; }")
			return "ipv4_addr"
		}, Extra, "set", "nfintercept-nat set sneaky"},
		{"extra object", func(t *testing.T, ns string) string {
			nft(t, ns, "add", "counter", "inet", "nfintercept-mangle", "sneaky")
			return "counter sneaky"
		}, Extra, "object", "inet nfintercept-mangle"},
		{"extra table", func(t *testing.T, ns string) string {
			nft(t, ns, "add", "table", "inet", "nfintercept-extra")
			return ""
		}, Extra, "table", "inet nfintercept-extra"},
		{"missing table", func(t *testing.T, ns string) string {
			nft(t, ns, "delete", "table", "inet", "nfintercept-raw")
			return ""
		}, Missing, "table", "inet nfintercept-raw"},
		{"missing route", func(t *testing.T, ns string) string {
			ip(t, ns, "-6", "route", "del", "local", "default", "dev", "lo", "table", "133")
			return "ip -6 route local default dev lo table 133"
		}, Missing, "route", ""},
		{"missing policy rule", func(t *testing.T, ns string) string {
			ip(t, ns, "rule", "del", "fwmark", "0x539", "lookup", "133")
			return "fwmark 0x539 lookup 133"
		}, Missing, "policy rule", ""},
		{"extra policy rule", func(t *testing.T, ns string) string {
			ip(t, ns, "rule", "add", "fwmark", "0x99", "lookup", "99", "proto", "201")
			return "fwmark 0x99 lookup 99"
		}, Extra, "policy rule", ""},
		{"missing address", func(t *testing.T, ns string) string {
			ip(t, ns, "addr", "del", "::6/128", "dev", "lo")
			return "::6/128"
		}, Missing, "address", "dev lo"},
	}
}

// TestVerifyTamper: each change made with nft or ip behind nfintercept's
// back is reported as exactly one difference of the right kind, and
// Reconcile brings the namespace back in sync.
func TestVerifyTamper(t *testing.T) {
	requireRoot(t)
	rs := translate.Build(realisticConfigs()["tproxy-dualstack-dns"])
	ns, path := newNetnsLoUp(t)
	for _, tc := range tamperCases() {
		t.Run(tc.name, func(t *testing.T) {
			reconcileAll(t, rs, path)
			if d := mustVerify(t, rs, path); !d.InSync() {
				t.Fatalf("not in sync before tampering:\n%s", d)
			}
			want := tc.tamper(t, ns)
			d := mustVerify(t, rs, path)
			t.Logf("%s", d)
			if len(d.Items) != 1 {
				t.Fatalf("%d differences, want 1:\n%s", len(d.Items), d)
			}
			it := d.Items[0]
			if it.Kind != tc.kind || it.Object != tc.object || !strings.Contains(it.Where, tc.where) {
				t.Errorf("got %s %s at %q, want %s %s at %q", it.Kind, it.Object, it.Where, tc.kind, tc.object, tc.where)
			}
			if s := it.String(); !strings.Contains(s, want) {
				t.Errorf("the report does not show %q:\n%s", want, s)
			}
			reconcileAll(t, rs, path)
			if d := mustVerify(t, rs, path); !d.InSync() {
				t.Errorf("Reconcile did not repair:\n%s", d)
			}
		})
	}
}

// TestVerifyIgnoresForeign: tables of others, including ones named like
// ours in another family, do not count as drift.
func TestVerifyIgnoresForeign(t *testing.T) {
	requireRoot(t)
	rs := fullRuleset()
	ns, path := newNetnsLoUp(t)
	applyAll(t, rs, path)
	foreignTable(t, ns)
	nftIn(t, ns, `
table ip kube-proxy {
	set cluster-ips {
		type ipv4_addr
		elements = { 10.96.0.1 }
	}
	map service-ips {
		type ipv4_addr . inet_proto . inet_service : verdict
	}
	chain services {
		ip daddr . meta l4proto . th dport vmap @service-ips
	}
	chain nat-output {
		type nat hook output priority -100; policy accept;
		jump services
	}
}
table inet cni {
	chain fw {
		type filter hook forward priority 0; policy accept;
		ct state invalid drop
	}
}
`, "-f", "-")
	if d := mustVerify(t, rs, path); !d.InSync() {
		t.Errorf("foreign tables reported:\n%s", d)
	}
}
