package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/containernetworking/cni/libcni"
)

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
	buildOut  []byte
)

// pluginBinary builds nfintercept-cni once per test run.
func pluginBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "nfintercept-cni-bin-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, pluginType)
		buildOut, buildErr = exec.Command("go", "build", "-o", builtBin, ".").CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("go build: %v\n%s", buildErr, buildOut)
	}
	return builtBin
}

// Realistic primary configurations.
const (
	bridgeConf = `{
  "cniVersion": "0.4.0",
  "name": "bridge",
  "type": "bridge",
  "bridge": "cni0",
  "isGateway": true,
  "ipMasq": true,
  "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.0.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}]}
}`
	calicoConflist = `{
  "name": "k8s-pod-network",
  "cniVersion": "0.3.1",
  "plugins": [
    {"type": "calico", "log_level": "info", "datastore_type": "kubernetes", "mtu": 1440,
     "ipam": {"type": "calico-ipam"}, "policy": {"type": "k8s"},
     "kubernetes": {"kubeconfig": "/etc/cni/net.d/calico-kubeconfig"}},
    {"type": "portmap", "snat": true, "capabilities": {"portMappings": true}},
    {"type": "bandwidth", "capabilities": {"bandwidth": true}}
  ]
}`
	istioConflist = `{
  "name": "k8s-pod-network",
  "cniVersion": "1.0.0",
  "plugins": [
    {"type": "ptp", "mtu": 1460, "ipam": {"type": "host-local", "subnet": "10.8.0.0/24"}},
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "istio-cni", "log_level": "info", "log_uds_address": "/var/run/istio-cni/log.sock",
     "cni_event_address": "/var/run/istio-cni/pod.sock", "ambient_enabled": false,
     "exclude_namespaces": ["kube-system", "istio-system"],
     "kubernetes": {"kubeconfig": "/etc/cni/net.d/ZZZ-istio-cni-kubeconfig", "cni_bin_dir": "/opt/cni/bin"}}
  ]
}`
)

func runInstall(t *testing.T, bin, cmd, confDir, binDir string) string {
	t.Helper()
	out, err := exec.Command(bin, cmd, "--cni-conf-dir", confDir, "--cni-bin-dir", binDir).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, out)
	}
	return string(out)
}

// dirState is every file of dir with its contents.
func dirState(t *testing.T, dir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = string(data)
	}
	return out
}

func decode(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("%v\n%s", err, s)
	}
	return m
}

func pluginTypes(t *testing.T, list map[string]any) []string {
	var out []string
	for _, p := range list["plugins"].([]any) {
		out = append(out, p.(map[string]any)["type"].(string))
	}
	return out
}

func TestInstallUninstall(t *testing.T) {
	bin := pluginBinary(t)
	for _, tc := range []struct {
		name        string
		files       map[string]string // the conf dir before
		primary     string            // the file install writes
		wantTypes   []string
		afterRemove []string // plugin types after uninstall
	}{
		{
			name:        "lone bridge conf",
			files:       map[string]string{"10-bridge.conf": bridgeConf},
			primary:     "10-bridge.conflist",
			wantTypes:   []string{"bridge", pluginType},
			afterRemove: []string{"bridge"},
		},
		{
			name:        "multi-plugin conflist, not the first by name left alone",
			files:       map[string]string{"10-calico.conflist": calicoConflist, "20-other.conf": bridgeConf, "calico-kubeconfig": "apiVersion: v1\n"},
			primary:     "10-calico.conflist",
			wantTypes:   []string{"calico", "portmap", "bandwidth", pluginType},
			afterRemove: []string{"calico", "portmap", "bandwidth"},
		},
		{
			name:        "existing istio-cni entry taken over",
			files:       map[string]string{"10-ptp.conflist": istioConflist},
			primary:     "10-ptp.conflist",
			wantTypes:   []string{"ptp", "portmap", pluginType},
			afterRemove: []string{"ptp", "portmap", "istio-cni"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			confDir, binDir := t.TempDir(), t.TempDir()
			for name, data := range tc.files {
				if err := os.WriteFile(filepath.Join(confDir, name), []byte(data), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			runInstall(t, bin, "install", confDir, binDir)
			after := dirState(t, confDir)
			list := decode(t, after[tc.primary])
			if got := pluginTypes(t, list); !slices.Equal(got, tc.wantTypes) {
				t.Fatalf("plugins after install: %v, want %v", got, tc.wantTypes)
			}
			// Everything else unchanged, no temporary file left behind.
			for name, data := range tc.files {
				if name == tc.primary || strings.TrimSuffix(name, ".conf")+".conflist" == tc.primary {
					continue
				}
				if after[name] != data {
					t.Errorf("%s changed", name)
				}
			}
			for name := range after {
				if _, ok := tc.files[name]; !ok && name != tc.primary {
					t.Errorf("unexpected file %s", name)
				}
			}
			// libcni reads the result, and our entry declares the capability.
			l, err := libcni.ConfListFromFile(filepath.Join(confDir, tc.primary))
			if err != nil {
				t.Fatal(err)
			}
			ours := l.Plugins[len(tc.wantTypes)-1]
			if ours.Network.Type != pluginType || !ours.Network.Capabilities[capPodAnnotations] {
				t.Fatalf("our entry: %s", ours.Bytes)
			}
			if self, _ := os.ReadFile(bin); !bytes.Equal(self, mustRead(t, filepath.Join(binDir, pluginType))) {
				t.Fatal("binary not copied")
			}

			// Idempotent.
			runInstall(t, bin, "install", confDir, binDir)
			if again := dirState(t, confDir); !reflect.DeepEqual(again, after) {
				t.Fatalf("second install changed the conf dir")
			}

			runInstall(t, bin, "uninstall", confDir, binDir)
			removed := dirState(t, confDir)
			got := decode(t, removed[tc.primary])
			if types := pluginTypes(t, got); !slices.Equal(types, tc.afterRemove) {
				t.Fatalf("plugins after uninstall: %v, want %v", types, tc.afterRemove)
			}
			// The other entries are as they were before install.
			orig := tc.files[tc.primary]
			if orig != "" {
				if want := decode(t, orig); !reflect.DeepEqual(got, want) {
					t.Errorf("uninstall did not restore %s:\n got %v\nwant %v", tc.primary, got, want)
				}
			} else {
				entry := got["plugins"].([]any)[0].(map[string]any)
				want := decode(t, bridgeConf)
				delete(want, "name")
				delete(want, "cniVersion")
				if !reflect.DeepEqual(entry, want) {
					t.Errorf("bridge entry changed:\n got %v\nwant %v", entry, want)
				}
			}
			if _, err := os.Stat(filepath.Join(binDir, pluginType)); !os.IsNotExist(err) {
				t.Fatalf("binary left after uninstall: %v", err)
			}
			if out := runInstall(t, bin, "uninstall", confDir, binDir); !strings.Contains(out, "nothing to uninstall") {
				t.Fatalf("second uninstall: %s", out)
			}
		})
	}
}

func TestInstallRefusals(t *testing.T) {
	bin := pluginBinary(t)
	confDir, binDir := t.TempDir(), t.TempDir()
	out, err := exec.Command(bin, "install", "--cni-conf-dir", confDir, "--cni-bin-dir", binDir).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "no CNI network configuration") {
		t.Fatalf("install without a primary config: %v\n%s", err, out)
	}
	if err := os.WriteFile(filepath.Join(confDir, "10-x.conflist"), []byte(`{"plugins": {}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(bin, "install", "--cni-conf-dir", confDir, "--cni-bin-dir", binDir).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "not a list") {
		t.Fatalf("install on a broken conflist: %v\n%s", err, out)
	}
	if data := mustRead(t, filepath.Join(confDir, "10-x.conflist")); string(data) != `{"plugins": {}}` {
		t.Fatalf("broken conflist was rewritten: %s", data)
	}
	cmd := exec.Command(bin, "install", "--bogus")
	if err := cmd.Run(); err == nil || cmd.ProcessState.ExitCode() != 2 {
		t.Fatalf("unknown flag: %v", err)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
