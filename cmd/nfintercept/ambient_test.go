package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nfintercept/nfintercept"
)

// TestCLIAmbientCorpus runs the built binary on the 14 ambient golden
// cases as a node agent would: its settings in the environment, the pod's
// overrides as an annotations file. `render --format iptables --family F`
// must print exactly the family's restore input of Istio's golden trace.
func TestCLIAmbientCorpus(t *testing.T) {
	bin := buildBinary(t)
	root := "../../compat/testdata/istio-ambient"
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
			cfg := readCorpusConfig(t, filepath.Join(dir, "config"))
			golden, err := os.ReadFile(filepath.Join(dir, "iptables.golden"))
			if err != nil {
				t.Fatal(err)
			}
			want := splitGolden(t, string(golden))
			env := []string{
				"AMBIENT_DNS_CAPTURE=" + cfg["REDIRECT_DNS"], "AMBIENT_IPV6=" + cfg["ENABLE_IPV6"],
				"HOST_PROBE_SNAT_IP=" + cfg["HOST_PROBE_SNAT_V4"], "HOST_PROBE_SNAT_IPV6=" + cfg["HOST_PROBE_SNAT_V6"],
			}
			args := []string{"render", "--format", "iptables", "--profile", "ambient-node"}
			if strings.HasPrefix(d.Name(), "inpod-") {
				var ann []string
				if cfg["INGRESS_MODE"] == "true" {
					ann = append(ann, "ambient.istio.io/bypass-inbound-capture=true")
				}
				switch cfg["DNS_PROXY"] {
				case "enabled":
					ann = append(ann, "ambient.istio.io/dns-capture=true")
				case "disabled":
					ann = append(ann, "ambient.istio.io/dns-capture=false")
				}
				ann = append(ann, "istio.io/reroute-virtual-interfaces="+cfg["VIRTUAL_INTERFACES"])
				file := filepath.Join(t.TempDir(), "annotations")
				if err := os.WriteFile(file, []byte(strings.Join(ann, "\n")+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				args = []string{"render", "--format", "iptables", "--profile", "ambient-pod", "--pod-annotations", file}
			}
			for i, fam := range []string{"ipv4", "ipv6"} {
				cmd := exec.Command(bin, append(args, "--family", fam)...)
				cmd.Env = env
				var stderr bytes.Buffer
				cmd.Stderr = &stderr
				got, err := cmd.Output()
				if err != nil {
					t.Fatalf("%s: %v\n%s", fam, err, stderr.String())
				}
				if string(got) != want[i] {
					t.Errorf("%s differs from Istio's golden\n--- want ---\n%s--- got ---\n%s", fam, want[i], got)
				}
			}
		})
	}
	if n != 14 {
		t.Errorf("ambient corpus has %d cases, want 14", n)
	}
}

func readCorpusConfig(t *testing.T, file string) map[string]string {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	cfg := map[string]string{}
	for _, line := range strings.Split(string(raw), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			cfg[k] = v
		}
	}
	return cfg
}

// splitGolden cuts Istio's trace into the IPv4 and IPv6 restore inputs
// (corpus README): drop the two stub header lines, the IPv6 input starts at
// the second occurrence of the first table header.
func splitGolden(t *testing.T, golden string) [2]string {
	t.Helper()
	body, ok := strings.CutPrefix(golden, "iptables-save\nip6tables-save\n")
	if !ok {
		t.Fatal("golden lacks the stub header lines")
	}
	body += "\n" // the trace has no final newline
	first := body[:strings.Index(body, "\n")+1]
	if i := strings.Index(body[len(first):], first); i >= 0 {
		return [2]string{body[:len(first)+i], body[len(first)+i:]}
	}
	return [2]string{body, ""}
}

// TestCLIAmbientRefusals: bad values and options of another profile are
// refused with one line naming them, exit 2, nothing touched.
func TestCLIAmbientRefusals(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run in a throwaway namespace (unshare -n)")
	}
	bin := buildBinary(t)
	bad := filepath.Join(t.TempDir(), "ann")
	if err := os.WriteFile(bad, []byte("ambient.istio.io/dns-capture=sometimes\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		env  []string
		args []string
		want string
	}{
		{nil, []string{"--profile", "ambient-pod", "--ambient-ipv6=perhaps"}, `invalid --ambient-ipv6 "perhaps": want true or false`},
		{nil, []string{"--profile", "ambient-pod", "--probe-snat-ipv4", "fd00::1"}, `invalid --probe-snat-ipv4 "fd00::1": not an IPv4 address`},
		{[]string{"HOST_PROBE_SNAT_IPV6=10.0.0.1"}, []string{"--profile", "ambient-node"}, `invalid HOST_PROBE_SNAT_IPV6 (--probe-snat-ipv6) "10.0.0.1": not an IPv6 address`},
		{nil, []string{"--profile", "ambient-pod", "--pod-annotations", bad}, `annotation ambient.istio.io/dns-capture "sometimes": want true or false`},
		{nil, []string{"--profile", "ambient-pod", "-b", "*"}, `--istio-inbound-ports is an istio-iptables (sidecar) option, not used by --profile ambient-pod`},
		{nil, []string{"--profile", "ambient-node", "--pod-annotations", bad}, `--pod-annotations applies to --profile ambient-pod, not ambient-node`},
		{nil, []string{"--ambient-ipv6"}, `--ambient-ipv6 is an option of the ambient profiles, not of --profile sidecar`},
		{nil, []string{"--profile", "ambient"}, `invalid --profile "ambient": want sidecar, ambient-pod or ambient-node`},
	} {
		// "apply" in a throwaway namespace: a refusal must happen before
		// anything is touched.
		cmd := exec.Command("unshare", append([]string{"-n", bin, "apply"}, c.args...)...)
		cmd.Env = c.env
		out, err := cmd.CombinedOutput()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 2 {
			t.Errorf("%v: %v, want exit 2\n%s", c.args, err, out)
			continue
		}
		if got := strings.TrimSpace(string(out)); got != "nfintercept: "+c.want {
			t.Errorf("%v:\n got %s\nwant nfintercept: %s", c.args, got, c.want)
		}
	}
}

// TestCLIAmbientRender: the nft and JSON renderings come from the same
// model as the iptables view.
func TestCLIAmbientRender(t *testing.T) {
	bin := buildBinary(t)
	render := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"render"}, args...)...)
		cmd.Env = []string{"AMBIENT_IPV6=true"}
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("render %v: %v", args, err)
		}
		return string(out)
	}
	nftText := render("--profile", "ambient-node", "--probe-snat-ipv4", "169.254.9.9")
	for _, want := range []string{
		"set istio-inpod-probes-v4 { type ipv4_addr; }",
		"type nat hook postrouting priority 99; policy accept;",
		"meta l4proto tcp ip daddr @istio-inpod-probes-v4 meta skuid 0-4294967295 counter snat ip to 169.254.9.9",
		"snat ip6 to fd16:9254:7127:1337:ffff:ffff:ffff:ffff",
	} {
		if !strings.Contains(nftText, want) {
			t.Errorf("nft rendering lacks %q:\n%s", want, nftText)
		}
	}
	var rs struct {
		Routes []struct {
			Family                      string
			Mark, Mask, Table, Priority uint32
		}
	}
	if err := json.Unmarshal([]byte(render("--profile", "ambient-pod", "--format", "json")), &rs); err != nil {
		t.Fatalf("json: %v", err)
	}
	if len(rs.Routes) != 2 || rs.Routes[1].Family != "ipv6" || rs.Routes[0].Mark != 0x111 || rs.Routes[0].Mask != 0xfff || rs.Routes[0].Priority != 32764 {
		t.Errorf("json routes: %+v", rs.Routes)
	}
}

// TestCLIAmbientNodeKeepsProbeAddrs: the probe addresses a node agent put
// in the sets through the library are part of what render (given the
// namespace), verify and verify --reconcile compare with, so none of them
// reports or reverts them as drift.
func TestCLIAmbientNodeKeepsProbeAddrs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace")
	}
	bin := buildBinary(t)
	ns := fmt.Sprintf("nfi-cmd-%d", rand.Intn(1e9))
	sh(t, "ip", "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	cli := func(args ...string) (int, string) {
		t.Helper()
		out, err := exec.Command("unshare", append([]string{"-n", bin}, args...)...).CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		} else if err != nil {
			t.Fatal(err)
		}
		return 0, string(out)
	}
	node := []string{"--profile", "ambient-node", "--network-namespace", ns}
	if code, out := cli(append([]string{"apply"}, node...)...); code != 0 {
		t.Fatalf("apply: exit %d\n%s", code, out)
	}
	h, err := nfintercept.OpenNamespace(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	const enrolled = "10.1.0.5"
	if err := nfintercept.AddProbeAddrs(context.Background(), h, netip.MustParseAddr(enrolled)); err != nil {
		t.Fatalf("AddProbeAddrs: %v", err)
	}

	if _, out := cli("render", "--profile", "ambient-node"); strings.Contains(out, enrolled) {
		t.Errorf("render without a namespace shows %s:\n%s", enrolled, out)
	}
	for _, args := range [][]string{{"verify"}, {"verify", "--reconcile"}, {"verify"}} {
		if code, out := cli(append(args, node...)...); code != 0 {
			t.Errorf("%v: exit %d, want 0 (in sync)\n%s", args, code, out)
		}
	}
	if code, out := cli(append([]string{"render"}, node...)...); code != 0 || !strings.Contains(out, enrolled) {
		t.Errorf("render --network-namespace: exit %d, want the probe sets to hold %s:\n%s", code, enrolled, out)
	}
}
