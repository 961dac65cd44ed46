package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/nfintercept/nfintercept/integration/harness"
	"github.com/nfintercept/nfintercept/internal/tools"
	"github.com/nfintercept/nfintercept/translate"
)

// As root, harness.Main runs this test binary inside a fresh network
// namespace: the "node" in which libcni runs the chain, so the bridge
// plugin creates its bridge and host-side veths there, never in the root
// namespace.
func TestMain(m *testing.M) {
	harness.Main(m, func() {
		if builtBin != "" {
			_ = os.RemoveAll(filepath.Dir(builtBin))
		}
	})
}

// Addresses of the chain's bridge network.
const (
	subnet  = "10.99.0.0/24"
	gateway = "10.99.0.1"
)

// chain is a node ready to run conflists: the reference plugins and ours.
type chain struct {
	cni     *libcni.CNIConfig
	dir     string // temporary files (IPAM state, cache, log)
	logFile string
}

func newChain(t *testing.T) *chain {
	t.Helper()
	harness.RequireRoot(t)
	if os.Getenv("NFI_HARNESS_ISOLATED") == "" {
		t.Fatal("not running in a throwaway node namespace (harness.Main)")
	}
	refDir, err := tools.CNIPluginDir()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	binDir := filepath.Dir(pluginBinary(t))
	return &chain{
		cni:     libcni.NewCNIConfigWithCacheDir([]string{refDir, binDir}, filepath.Join(dir, "cache"), nil),
		dir:     dir,
		logFile: filepath.Join(dir, "nfintercept-cni.log"),
	}
}

// conflist is bridge+host-local → loopback → nfintercept-cni at the
// given version; ours is our entry's extra fields.
func (c *chain) conflist(t *testing.T, cniVersion string, ours map[string]any) *libcni.NetworkConfigList {
	t.Helper()
	entry := map[string]any{
		"type":               pluginType,
		"capabilities":       map[string]any{capPodAnnotations: true},
		"exclude_namespaces": []string{"kube-system"},
		"proxy":              map[string]any{"uid": 1337, "gid": 1337},
		"log_file":           c.logFile,
		// Istio's own fields are accepted and ignored.
		"log_uds_address": "/var/run/istio-cni/log.sock",
		"kubernetes":      map[string]any{"kubeconfig": "/etc/cni/net.d/ZZZ-istio-cni-kubeconfig"},
	}
	for k, v := range ours {
		if v == nil {
			delete(entry, k)
		} else {
			entry[k] = v
		}
	}
	list := map[string]any{
		"cniVersion": cniVersion,
		"name":       "nfi-chain",
		"plugins": []any{
			map[string]any{
				"type": "bridge", "bridge": "nfibr0", "isGateway": true, "ipMasq": false,
				"ipam": map[string]any{
					"type":    "host-local",
					"ranges":  [][]map[string]string{{{"subnet": subnet}}},
					"dataDir": filepath.Join(c.dir, "ipam"),
				},
			},
			map[string]any{"type": "loopback"},
			entry,
		},
	}
	data, err := json.Marshal(list)
	if err != nil {
		t.Fatal(err)
	}
	l, err := libcni.NetworkConfFromBytes(data)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// pod is a pod network namespace created by the test.
type pod struct {
	name, path string
	rt         *libcni.RuntimeConf
}

func newPod(t *testing.T, namespace string, ann map[string]string) *pod {
	t.Helper()
	name := harness.OwnedName(harness.Prefix)
	harness.MustRun(t, "ip", "netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	p := &pod{name: name, path: filepath.Join(harness.NetNSDir, name)}
	p.rt = &libcni.RuntimeConf{
		ContainerID: "c-" + name,
		NetNS:       p.path,
		IfName:      "eth0",
		Args: [][2]string{
			{"IgnoreUnknown", "1"},
			{"K8S_POD_NAMESPACE", namespace},
			{"K8S_POD_NAME", "web"},
			{"K8S_POD_INFRA_CONTAINER_ID", "c-" + name},
		},
	}
	if ann != nil {
		p.rt.CapabilityArgs = map[string]any{capPodAnnotations: ann}
	}
	return p
}

// ourTables lists nfintercept's tables in the pod (read with nft, inside
// the pod's namespace).
func (p *pod) ourTables(t *testing.T) []string {
	t.Helper()
	out := harness.InNS(t, p.name, "nft", "list", "tables")
	var names []string
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) == 3 && strings.HasPrefix(f[2], translate.TablePrefix) {
			names = append(names, f[2])
		}
	}
	return names
}

// injected are the annotations of a pod injected in CNI mode.
func injected(extra map[string]string) map[string]string {
	ann := map[string]string{
		translate.AnnSidecarStatus: `{"initContainers":["istio-validation"],"containers":["istio-proxy"],"volumes":["istio-envoy"]}`,
	}
	for k, v := range extra {
		ann[k] = v
	}
	return ann
}

// toGateway makes a connection from the pod to the gateway (the node's
// bridge address) and returns where it landed.
func toGateway(t *testing.T, p *pod) harness.Result {
	t.Helper()
	return harness.Run(t, p.path, harness.Flow{Proto: "tcp", Dst: netip.MustParseAddrPort(gateway + ":8080")})
}

// listeners start the stand-in proxy (:15001 in the pod) and a service on
// the gateway (in the node namespace, where the test runs).
func listeners(t *testing.T, p *pod) {
	harness.ListenTCP(t, p.path, "0.0.0.0:15001", "proxy", harness.ListenOptions{})
}

// rootSnapshot reads the root namespace's links, policy routing rules and
// nftables ruleset, without changing anything. The root namespace is the
// one harness.Main started this isolated test process from: its parent's.
func rootSnapshot(t *testing.T) string {
	t.Helper()
	root := fmt.Sprintf("/proc/%d/ns/net", os.Getppid())
	self, err1 := os.Readlink("/proc/self/ns/net")
	parent, err2 := os.Readlink(root)
	if err1 != nil || err2 != nil || self == parent {
		t.Fatalf("cannot tell the root namespace (%s) from the node namespace (%s): %v %v", parent, self, err1, err2)
	}
	var b strings.Builder
	for _, cmd := range [][]string{
		{"ip", "-o", "link", "show"},
		{"ip", "rule", "show"},
		{"ip", "-6", "rule", "show"},
		{"nft", "list", "ruleset"},
	} {
		out, err := exec.Command("nsenter", append([]string{"--net=" + root, "--"}, cmd...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %v\n%s", cmd, err, out)
		}
		b.WriteString(strings.Join(cmd, " ") + "\n")
		for _, l := range strings.Split(string(out), "\n") {
			// Link lines: keep index, name and flags, not counters or qdisc state.
			if cmd[0] == "ip" && cmd[1] == "-o" {
				if i := strings.Index(l, " mtu "); i > 0 {
					l = l[:i]
				}
			}
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

func TestChain(t *testing.T) {
	before := rootSnapshot(t)
	t.Cleanup(func() {
		if after := rootSnapshot(t); after != before {
			t.Errorf("root namespace changed:\n--- before ---\n%s--- after ---\n%s", before, after)
		}
	})
	c := newChain(t)
	ctx := context.Background()
	harness.ListenTCP(t, "/proc/self/ns/net", gateway+":8080", "gateway", harness.ListenOptions{})

	for _, ver := range []string{"1.1.0", "0.3.1"} {
		t.Run(ver, func(t *testing.T) {
			list := c.conflist(t, ver, nil)
			p := newPod(t, "default", injected(nil))
			listeners(t, p)

			res, err := c.cni.AddNetworkList(ctx, list, p.rt)
			if err != nil {
				t.Fatalf("ADD: %v", err)
			}
			// prevResult passed through: the bridge's address and gateway.
			r, err := types100.GetResult(res)
			if err != nil {
				t.Fatal(err)
			}
			if len(r.IPs) != 1 || !strings.HasPrefix(r.IPs[0].Address.String(), "10.99.0.") || r.IPs[0].Gateway.String() != gateway {
				t.Fatalf("result does not carry the bridge's address: %+v", r)
			}
			if tables := p.ourTables(t); len(tables) == 0 {
				t.Fatal("ADD installed no nfintercept table")
			}
			got := toGateway(t, p)
			if got.Err != nil || got.Tag != "proxy" || got.OrigDst != gateway+":8080" {
				t.Fatalf("pod -> gateway landed at %+v (err %v), want the stand-in proxy with original destination %s:8080", got.Reply, got.Err, gateway)
			}

			if ver != "0.3.1" { // CHECK exists from 0.4.0 on
				if err := c.cni.CheckNetworkList(ctx, list, p.rt); err != nil {
					t.Fatalf("CHECK right after ADD: %v", err)
				}
				harness.InNS(t, p.name, "nft", "delete", "table", "inet", p.ourTables(t)[0])
				err := c.cni.CheckNetworkList(ctx, list, p.rt)
				var cerr *types.Error
				if !errors.As(err, &cerr) || cerr.Code != errDrift || cerr.Details == "" {
					t.Fatalf("CHECK after tampering: %v, want code %d with the drift in details", err, errDrift)
				}
			} else if err := c.cni.CheckNetworkList(ctx, list, p.rt); err == nil {
				t.Fatal("CHECK accepted at 0.3.1")
			}

			for i := range 2 {
				if err := c.cni.DelNetworkList(ctx, list, p.rt); err != nil {
					t.Fatalf("DEL #%d: %v", i+1, err)
				}
			}
			if tables := p.ourTables(t); len(tables) != 0 {
				t.Fatalf("tables left after DEL: %v", tables)
			}
		})
	}

	t.Run("DEL after the netns is gone", func(t *testing.T) {
		list := c.conflist(t, "1.1.0", nil)
		p := newPod(t, "default", injected(nil))
		if _, err := c.cni.AddNetworkList(ctx, list, p.rt); err != nil {
			t.Fatalf("ADD: %v", err)
		}
		harness.MustRun(t, "ip", "netns", "del", p.name)
		if err := c.cni.DelNetworkList(ctx, list, p.rt); err != nil {
			t.Fatalf("DEL: %v", err)
		}
	})

	passThrough := []struct {
		name      string
		namespace string
		ann       map[string]string
	}{
		{"excluded namespace", "kube-system", injected(nil)},
		{"unannotated", "default", map[string]string{}},
		{"istio-init pod", "default", injected(map[string]string{translate.AnnSidecarStatus: `{"initContainers":["istio-init"],"containers":["istio-proxy"]}`})},
		{"inject false", "default", injected(map[string]string{translate.AnnInject: "false"})},
		{"interception NONE", "default", injected(map[string]string{translate.AnnInterceptionMode: "NONE"})},
	}
	for _, tc := range passThrough {
		t.Run(tc.name, func(t *testing.T) {
			list := c.conflist(t, "1.1.0", nil)
			p := newPod(t, tc.namespace, tc.ann)
			listeners(t, p)
			if _, err := c.cni.AddNetworkList(ctx, list, p.rt); err != nil {
				t.Fatalf("ADD: %v", err)
			}
			t.Cleanup(func() { _ = c.cni.DelNetworkList(ctx, list, p.rt) })
			if tables := p.ourTables(t); len(tables) != 0 {
				t.Fatalf("pod passed through but has tables %v", tables)
			}
			if got := toGateway(t, p); got.Err != nil || got.Tag != "gateway" {
				t.Fatalf("pod -> gateway landed at %+v (err %v), want the gateway itself", got.Reply, got.Err)
			}
			if err := c.cni.CheckNetworkList(ctx, list, p.rt); err != nil {
				t.Fatalf("CHECK: %v", err)
			}
		})
	}

	refused := []struct {
		name     string
		ours     map[string]any
		ann      map[string]string
		fragment string
	}{
		{"bad port list", nil, injected(map[string]string{translate.AnnIncludeInboundPorts: "80,,90"}), translate.AnnIncludeInboundPorts},
		{"bad CIDR", nil, injected(map[string]string{translate.AnnExcludeOutboundIPRanges: "10.0.0.0/33"}), translate.AnnExcludeOutboundIPRanges},
		{"bad mode", nil, injected(map[string]string{translate.AnnInterceptionMode: "redirect"}), translate.AnnInterceptionMode},
		{"bad interface", nil, injected(map[string]string{translate.AnnExcludeInterfaces: "0eth"}), translate.AnnExcludeInterfaces},
		{"bad proxy config", nil, injected(map[string]string{translate.AnnProxyConfig: "proxyMetadata: [1"}), translate.AnnProxyConfig},
		{"missing capability", map[string]any{"capabilities": nil}, injected(nil), capPodAnnotations},
		{"ambient", map[string]any{"ambient_enabled": true}, injected(nil), "ambient_enabled"},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			list := c.conflist(t, "1.1.0", tc.ours)
			p := newPod(t, "default", tc.ann)
			_, err := c.cni.AddNetworkList(ctx, list, p.rt)
			t.Cleanup(func() { _ = c.cni.DelNetworkList(ctx, list, p.rt) })
			var cerr *types.Error
			if !errors.As(err, &cerr) || cerr.Code != types.ErrInvalidNetworkConfig || !strings.Contains(cerr.Msg, tc.fragment) {
				t.Fatalf("ADD: %v, want code 7 naming %s", err, tc.fragment)
			}
			if tables := p.ourTables(t); len(tables) != 0 {
				t.Fatalf("refused, but tables %v were installed", tables)
			}
		})
	}

	t.Run("STATUS GC VERSION", func(t *testing.T) {
		list := c.conflist(t, "1.1.0", nil)
		ours := &libcni.NetworkConfigList{CNIVersion: list.CNIVersion, Name: list.Name, Plugins: list.Plugins[2:]}
		if err := c.cni.GetStatusNetworkList(ctx, ours); err != nil {
			t.Fatalf("STATUS: %v", err)
		}
		if err := c.cni.GCNetworkList(ctx, list, &libcni.GCArgs{}); err != nil {
			t.Fatalf("GC: %v", err)
		}
		info, err := c.cni.GetVersionInfo(ctx, pluginType)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(info.SupportedVersions(), ","); got != "0.3.0,0.3.1,0.4.0,1.0.0,1.1.0" {
			t.Fatalf("VERSION: %s", got)
		}
	})

	t.Run("log", func(t *testing.T) {
		checkLog(t, c.logFile)
	})
}

// checkLog reads the log file: one JSON object per line, each naming the
// command, and an ADD that captured with its tables and rules.
func checkLog(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	captured, refused := false, false
	sc := bufio.NewScanner(bytes.NewReader(data))
	n := 0
	for sc.Scan() {
		n++
		var line struct {
			Command, Pod, Netns, Decision string
			ContainerID                   string `json:"container_id"`
			Tables, Rules                 int
			Duration                      json.Number
			Level, Error                  string
			Code                          int
		}
		dec := json.NewDecoder(strings.NewReader(sc.Text()))
		dec.UseNumber()
		if err := dec.Decode(&line); err != nil {
			t.Fatalf("log line %d is not JSON: %v\n%s", n, err, sc.Text())
		}
		if line.Command == "" || line.Duration == "" {
			t.Fatalf("log line %d lacks command or duration: %s", n, sc.Text())
		}
		if line.Command == "ADD" && line.Decision == "captured" {
			if line.Pod != "default/web" || line.Tables == 0 || line.Rules == 0 || line.Netns == "" || line.ContainerID == "" {
				t.Fatalf("ADD log line incomplete: %s", sc.Text())
			}
			captured = true
		}
		if line.Command == "ADD" && line.Level == "ERROR" && line.Code == 7 && strings.Contains(line.Error, translate.AnnIncludeInboundPorts) {
			refused = true
		}
	}
	if !captured || !refused {
		t.Fatalf("no captured ADD or no refused ADD (code 7) in the log:\n%s", data)
	}
	fmt.Fprintf(os.Stderr, "%d log lines\n", n)
}
