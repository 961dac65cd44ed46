package nft

import (
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/nfintercept/nfintercept/translate"
)

// TestTProxyNoListenerDrops proves the reason for the drop rule after each
// tproxy rule: with nothing listening on the tproxy port, nft's tproxy lets
// the packet continue, and only the drop twin turns that into iptables'
// TPROXY behaviour (dropped, so the client times out instead of reaching
// the original destination or getting a reset).
func TestTProxyNoListenerDrops(t *testing.T) {
	requireRoot(t)
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("needs python3 as the test client")
	}
	client, _ := newNetns(t)
	server, serverPath := newNetns(t)
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	// The veth pair is created inside the client namespace, never in ours.
	run("-n", client, "link", "add", "name", "cli0", "type", "veth", "peer", "name", "srv0", "netns", server)
	run("-n", client, "addr", "add", "10.99.0.1/24", "dev", "cli0")
	run("-n", client, "link", "set", "cli0", "up")
	run("-n", server, "addr", "add", "10.99.0.2/24", "dev", "srv0")
	run("-n", server, "link", "set", "srv0", "up")
	run("-n", server, "link", "set", "lo", "up")

	rs := &translate.Ruleset{Tables: []*translate.Table{{
		Kind: translate.TableMangle,
		Chains: []*translate.Chain{{
			Name: "prerouting",
			Base: base(translate.ChainTypeFilter, translate.HookPrerouting, -150),
			Rules: []*translate.Rule{
				rule(v4, aTProxy(15006, 1337), mProto(translate.TCP), mDport(port(8080), false)),
			},
		}},
	}}}
	if err := Apply(rs, serverPath); err != nil {
		t.Fatal(err)
	}

	// Connect from the client: refused means the SYN got through to the
	// closed port 8080, a timeout means it was dropped.
	connect := func(port string) string {
		out, _ := exec.Command("ip", "netns", "exec", client, "python3", "-c", `
import socket, sys
s = socket.socket()
s.settimeout(1)
try:
    s.connect(("10.99.0.2", int(sys.argv[1])))
    print("connected")
except socket.timeout:
    print("timeout")
except ConnectionRefusedError:
    print("refused")
`, port).CombinedOutput()
		return strings.TrimSpace(string(out))
	}
	if got := connect("8080"); got != "timeout" {
		t.Errorf("with the drop twin: %s, want timeout", got)
	}
	// The twin repeats the tproxy rule's matches: other traffic passes.
	if got := connect("8081"); got != "refused" {
		t.Errorf("port 8081 (not tproxied): %s, want refused", got)
	}
	listing := nftIn(t, server, "", "list", "chain", "inet", "nfintercept-mangle", "prerouting")
	drop := regexp.MustCompile(`counter packets ([1-9]\d*) bytes \d+ drop`)
	if !drop.MatchString(listing) {
		t.Errorf("drop twin did not count the packet:\n%s", listing)
	}

	// Control: without the twin the same packet goes on to port 8080.
	handles := nftIn(t, server, "", "-a", "list", "chain", "inet", "nfintercept-mangle", "prerouting")
	m := regexp.MustCompile(`drop # handle (\d+)`).FindStringSubmatch(handles)
	if m == nil {
		t.Fatalf("no drop rule:\n%s", handles)
	}
	nftIn(t, server, "", "delete", "rule", "inet", "nfintercept-mangle", "prerouting", "handle", m[1])
	if got := connect("8080"); got != "refused" {
		t.Errorf("without the drop twin: %s, want refused (tproxy falls through)", got)
	}
}
