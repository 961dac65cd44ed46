package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/libcni"

	"github.com/nfintercept/nfintercept/internal/tools"
)

// The CNI demo (make demo-cni): a "node" namespace runs the chain
// bridge+host-local → loopback → nfintercept-cni through libcni, as
// containerd or CRI-O would, for a pod namespace.
const (
	nodeNS    = "nfi-demo-node"
	cniSubnet = "10.98.0.0/24"
	cniGW     = "10.98.0.1"
)

func runCNI(plugin string) error {
	if os.Geteuid() != 0 {
		return errors.New("the demo creates network namespaces: run it as root")
	}
	plugin, err := absPath(plugin)
	if err != nil {
		return err
	}
	refDir, err := tools.CNIPluginDir()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "nfi-demo-cni-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	defer teardownCNI()
	defer func() {
		if clientPath != "" {
			os.RemoveAll(filepath.Dir(clientPath))
		}
	}()
	teardownCNI()

	step("1. a node namespace and a pod namespace (the bridge plugin works in the namespace of its caller: the node)")
	for _, ns := range []string{nodeNS, podNS} {
		if err := show("ip", "netns", "add", ns); err != nil {
			return err
		}
	}
	if err := show("ip", "-n", nodeNS, "link", "set", "lo", "up"); err != nil {
		return err
	}
	binDir := filepath.Join(dir, "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return err
	}
	if err := os.Symlink(plugin, filepath.Join(binDir, "nfintercept-cni")); err != nil {
		return err
	}
	logFile := filepath.Join(dir, "nfintercept-cni.log")
	conflist := fmt.Sprintf(`{
  "cniVersion": "1.1.0",
  "name": "demo",
  "plugins": [
    {"type": "bridge", "bridge": "demobr0", "isGateway": true, "ipMasq": false,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": %q}]], "dataDir": %q}},
    {"type": "loopback"},
    {"type": "nfintercept-cni",
     "capabilities": {"io.kubernetes.cri.pod-annotations": true},
     "exclude_namespaces": ["kube-system"],
     "proxy": {"uid": 1337, "gid": 1337, "env": {}},
     "log_level": "info", "log_file": %q}
  ]
}`, cniSubnet, filepath.Join(dir, "ipam"), logFile)
	fmt.Println("conflist:\n" + conflist)
	list, err := libcni.ConfListFromBytes([]byte(conflist))
	if err != nil {
		return err
	}
	cni := libcni.NewCNIConfigWithCacheDir([]string{refDir, binDir}, filepath.Join(dir, "cache"), nil)
	rt := &libcni.RuntimeConf{
		ContainerID: "demo-pod", NetNS: "/var/run/netns/" + podNS, IfName: "eth0",
		Args: [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", "default"}, {"K8S_POD_NAME", "web"}},
		CapabilityArgs: map[string]any{"io.kubernetes.cri.pod-annotations": map[string]string{
			"sidecar.istio.io/status":                          `{"initContainers":["istio-validation"],"containers":["istio-proxy"]}`,
			"traffic.sidecar.istio.io/excludeOutboundIPRanges": cniGW + "/32",
			"traffic.sidecar.istio.io/excludeInboundPorts":     "8443",
			"proxy.istio.io/config":                            "proxyMetadata:\n  INVALID_DROP: \"true\"\n",
			"prometheus.io/scrape":                             "true",
		}},
	}
	ctx := context.Background()
	node := func(fn func() error) error { return inNS(nodeNS, fn) }

	step("2. ADD through libcni (what the runtime does when the pod starts)")
	var res any
	if err := node(func() error {
		r, err := cni.AddNetworkList(ctx, list, rt)
		res = r
		return err
	}); err != nil {
		return fmt.Errorf("ADD: %w", err)
	}
	out, _ := json.MarshalIndent(res, "", "  ")
	fmt.Printf("result (the bridge's, passed through unchanged):\n%s\n", out)

	step("3. the ruleset nfintercept-cni installed in the pod namespace")
	fmt.Println("$ ip netns exec " + podNS + " nft list ruleset")
	if err := show("ip", "netns", "exec", podNS, "nft", "list", "ruleset"); err != nil {
		return err
	}

	step("4. real connections from the pod")
	if err := serve(podNS, "0.0.0.0:15001", "proxy outbound listener :15001"); err != nil {
		return err
	}
	if err := serve(nodeNS, cniGW+":80", "node service :80"); err != nil {
		return err
	}
	ok := true
	for _, f := range []struct {
		uid       int
		dst, want string
		why       string
	}{
		{1000, "10.98.0.254:80", "proxy outbound listener :15001", "app traffic is captured, original destination kept"},
		{1337, cniGW + ":80", "node service :80", "the proxy's own uid is exempt"},
		{1000, cniGW + ":80", "node service :80", "10.98.0.1/32 is excluded (annotation)"},
	} {
		got, err := connect(podNS, f.uid, f.dst)
		mark := "ok  "
		if err != nil || !strings.HasPrefix(got, f.want) {
			mark, ok = "FAIL", false
		}
		if err != nil {
			got = "error: " + err.Error()
		}
		fmt.Printf("%s pod uid %-4d -> %-15s reached %s  (%s)\n", mark, f.uid, f.dst, got, f.why)
	}

	step("5. CHECK, then DEL (twice: DEL is idempotent)")
	if err := node(func() error { return cni.CheckNetworkList(ctx, list, rt) }); err != nil {
		return fmt.Errorf("CHECK: %w", err)
	}
	fmt.Println("CHECK: in sync")
	for range 2 {
		if err := node(func() error { return cni.DelNetworkList(ctx, list, rt) }); err != nil {
			return fmt.Errorf("DEL: %w", err)
		}
	}
	o, _ := exec.Command("ip", "netns", "exec", podNS, "nft", "list", "ruleset").CombinedOutput()
	fmt.Printf("nft list ruleset after DEL: %q\n", strings.TrimSpace(string(o)))

	step("6. the plugin's log: one JSON line per call")
	if data, err := os.ReadFile(logFile); err == nil {
		fmt.Print(string(data))
	}
	if !ok {
		return errors.New("a connection did not take the expected path")
	}
	fmt.Println("\ndemo passed: the CNI chain captured the pod's traffic as Istio's plugin would")
	return nil
}

func teardownCNI() {
	exec.Command("ip", "netns", "del", podNS).Run()
	exec.Command("ip", "netns", "del", nodeNS).Run()
}
