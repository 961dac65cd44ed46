package integration

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/nfintercept/nfintercept/integration/harness"
	"github.com/nfintercept/nfintercept/translate"
)

// kubeProxyTables is a ruleset shaped like kube-proxy's nftables mode and a
// network-policy agent's: sets, maps, verdict maps, base chains on the hooks
// nfintercept uses, at the same and at neighbouring priorities.
const kubeProxyTables = `
table ip kube-proxy {
	set cluster-ips {
		type ipv4_addr
		elements = { 10.96.0.1, 10.96.0.10 }
	}
	set nodeport-ips {
		type ipv4_addr
		flags interval
		elements = { 192.0.2.0/24, 198.51.100.0/25 }
	}
	map service-ips {
		type ipv4_addr . inet_proto . inet_service : verdict
		elements = { 10.96.0.1 . tcp . 443 : goto service-api, 10.96.0.10 . udp . 53 : goto service-dns }
	}
	map no-endpoint-services {
		type ipv4_addr . inet_proto . inet_service : verdict
	}
	chain services {
		ip daddr . meta l4proto . th dport vmap @service-ips
		ip daddr @nodeport-ips counter return
	}
	chain service-api {
		ip saddr != 10.244.0.0/16 counter meta mark set meta mark | 0x4000
		meta l4proto tcp dnat to 192.0.2.10:6443
	}
	chain service-dns {
		numgen random mod 2 vmap { 0 : goto endpoint-dns-a, 1 : goto endpoint-dns-b }
	}
	chain endpoint-dns-a {
		meta l4proto udp dnat to 10.244.1.5:53
	}
	chain endpoint-dns-b {
		meta l4proto udp dnat to 10.244.2.7:53
	}
	chain nat-prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		jump services
	}
	chain nat-output {
		type nat hook output priority -100; policy accept;
		ip daddr @cluster-ips jump services
	}
	chain filter-forward {
		type filter hook forward priority -110; policy accept;
		ct state new ip daddr . meta l4proto . th dport vmap @no-endpoint-services
	}
}
table ip6 kube-proxy {
	chain nat-output {
		type nat hook output priority -100; policy accept;
		ip6 daddr fd00:10::1 tcp dport 443 counter dnat to [2001:db8::10]:6443
	}
}
table inet kube-network-policies {
	chain mangle-output {
		type route hook output priority mangle; policy accept;
		meta skuid 1000 ct mark set 0x10 counter
	}
	chain raw-prerouting {
		type filter hook prerouting priority raw; policy accept;
		iifname "eth9" notrack
	}
}
`

// iptablesNftSetup creates chains the way kube-proxy's iptables mode and
// CNI plugins do through iptables-nft (tables ip nat, ip filter, ip mangle,
// ip6 filter in nftables).
var iptablesNftSetup = [][]string{
	{"iptables-nft", "-t", "nat", "-N", "KUBE-SERVICES"},
	{"iptables-nft", "-t", "nat", "-A", "PREROUTING", "-m", "comment", "--comment", "kubernetes service portals", "-j", "KUBE-SERVICES"},
	{"iptables-nft", "-t", "nat", "-A", "OUTPUT", "-j", "KUBE-SERVICES"},
	{"iptables-nft", "-t", "nat", "-A", "KUBE-SERVICES", "-d", "10.96.0.1/32", "-p", "tcp", "--dport", "443", "-j", "DNAT", "--to-destination", "192.0.2.10:6443"},
	{"iptables-nft", "-t", "nat", "-A", "POSTROUTING", "-s", "10.244.0.0/16", "!", "-o", "cni0", "-j", "MASQUERADE"},
	{"iptables-nft", "-t", "filter", "-N", "KUBE-FIREWALL"},
	{"iptables-nft", "-t", "filter", "-A", "INPUT", "-j", "KUBE-FIREWALL"},
	{"iptables-nft", "-t", "filter", "-A", "KUBE-FIREWALL", "-m", "mark", "--mark", "0x8000/0x8000", "-j", "DROP"},
	{"iptables-nft", "-t", "mangle", "-A", "PREROUTING", "-i", "cni0", "-j", "MARK", "--set-xmark", "0x20/0x20"},
	{"ip6tables-nft", "-t", "filter", "-A", "FORWARD", "-s", "2001:db8::/32", "-j", "ACCEPT"},
}

// foreignRouting is policy routing of others, next to nfintercept's.
var foreignRouting = [][]string{
	{"ip", "rule", "add", "fwmark", "0x4000", "lookup", "200"},
	{"ip", "route", "add", "local", "default", "dev", "lo", "table", "200"},
	{"ip", "-6", "rule", "add", "fwmark", "0x4000", "lookup", "200"},
}

var (
	saveComment  = regexp.MustCompile(`(?m)^#.*\n`)
	saveCounters = regexp.MustCompile(`\[\d+:\d+\]`)
)

// foreignState is everything of others in the namespace, byte for byte:
// each foreign table as nft lists it (with handles, without counter
// values), the iptables-nft view of them, and the foreign routing.
func foreignState(t *testing.T, ns string) string {
	t.Helper()
	var b strings.Builder
	for _, line := range strings.Split(nftList(t, ns, "tables"), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || strings.HasPrefix(f[2], translate.TablePrefix) {
			continue
		}
		b.WriteString(harness.InNS(t, ns, "nft", "--stateless", "-a", "list", "table", f[1], f[2]))
	}
	for _, save := range []string{"iptables-nft-save", "ip6tables-nft-save"} {
		out := harness.InNS(t, ns, save)
		b.WriteString(saveCounters.ReplaceAllString(saveComment.ReplaceAllString(out, ""), "[0:0]"))
	}
	for _, fam := range []string{"-4", "-6"} {
		for _, l := range strings.SplitAfter(harness.InNS(t, ns, "ip", fam, "rule", "show"), "\n") {
			if !strings.Contains(l, "proto 201") { // nfintercept's own
				b.WriteString(l)
			}
		}
	}
	b.WriteString(harness.InNS(t, ns, "ip", "route", "show", "table", "200"))
	return b.String()
}

// TestCoexistence: kube-proxy-like nft tables, iptables-nft chains and
// foreign policy routing present before nfintercept stay exactly as they
// were through apply (TPROXY, then REDIRECT), verify --reconcile and
// cleanup; verify ignores them.
func TestCoexistence(t *testing.T) {
	ns, path := rlNS(t)
	for _, tool := range []string{"iptables-nft", "ip6tables-nft", "iptables-nft-save", "ip6tables-nft-save"} {
		lookPath(t, tool)
	}
	file := filepath.Join(t.TempDir(), "kube.nft")
	if err := os.WriteFile(file, []byte(kubeProxyTables), 0o644); err != nil {
		t.Fatal(err)
	}
	harness.InNS(t, ns, "nft", "-f", file)
	for _, c := range iptablesNftSetup {
		harness.InNS(t, ns, c[0], c[1:]...)
	}
	for _, c := range foreignRouting {
		harness.InNS(t, ns, c[0], c[1:]...)
	}
	before := foreignState(t, ns)
	if !strings.Contains(before, "KUBE-SERVICES") || !strings.Contains(before, "table ip kube-proxy") {
		t.Fatalf("foreign state incomplete:\n%s", before)
	}
	check := func(step string) {
		t.Helper()
		if after := foreignState(t, ns); after != before {
			t.Errorf("%s changed foreign state:\n--- before\n%s\n--- after\n%s", step, before, after)
		}
	}

	tproxy := rlOptions(10, 20, "15001")
	tproxy.InboundInterceptionMode = "TPROXY"
	tpArgs := append(istioIptablesArgs(tproxy), "--network-namespace", path)
	mustCLI(t, "", tpArgs...)
	check("apply (TPROXY)")
	if r := runCLI(t, "", append([]string{"verify"}, tpArgs...)...); r.code != 0 {
		t.Errorf("verify with foreign tables present: exit %d\n%s", r.code, r.stdout)
	}

	redirect := append(istioIptablesArgs(rlOptions(10, 20, "15001")), "--network-namespace", path)
	mustCLI(t, "", redirect...)
	check("apply (REDIRECT)")

	// Drift in our tables, repaired: the repair leaves theirs alone too.
	harness.InNS(t, ns, "nft", "add", "rule", "inet", translate.TablePrefix+"nat", "istio-redirect", "tcp dport 22 accept")
	if r := runCLI(t, "", append([]string{"verify"}, redirect...)...); r.code != 1 {
		t.Errorf("verify after tampering: exit %d, want 1\n%s", r.code, r.stdout)
	}
	mustCLI(t, "", append([]string{"verify", "--reconcile"}, redirect...)...)
	check("verify --reconcile")

	mustCLI(t, "", append([]string{"cleanup"}, redirect...)...)
	check("cleanup")
	if tables := ownTables(t, ns); len(tables) != 0 {
		t.Errorf("tables of ours left after cleanup: %v", tables)
	}
}
