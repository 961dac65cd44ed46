package main

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/nfintercept/nfintercept/compat"
	"github.com/nfintercept/nfintercept/translate"
)

// corpusPod is one case of testdata/istio-cni (derived from Istio, see
// its NOTICE): the pod as Istio's CNI plugin sees it, and what Istio's
// plugin hands to iptables-restore for it.
type corpusPod struct {
	name        string
	annotations map[string]string
	proxy       proxyConf
	golden      string
}

func loadCNICorpus(t *testing.T) []corpusPod {
	t.Helper()
	root := "testdata/istio-cni"
	dirs, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	var out []corpusPod
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		dir := filepath.Join(root, d.Name())
		c := corpusPod{name: d.Name(), annotations: map[string]string{}}
		for _, line := range readLines(t, filepath.Join(dir, "annotations")) {
			k, v, _ := strings.Cut(line, "=")
			c.annotations[k] = v
		}
		for _, line := range readLines(t, filepath.Join(dir, "istio-proxy")) {
			k, v, _ := strings.Cut(line, "=")
			switch {
			case k == "runAsUser" || k == "runAsGroup":
				n, err := strconv.ParseUint(v, 10, 32)
				if err != nil {
					t.Fatalf("%s: %s", dir, line)
				}
				if k == "runAsUser" {
					c.proxy.UID = uint32(n)
				} else {
					c.proxy.GID = uint32(n)
				}
			case strings.HasPrefix(k, "env "):
				if c.proxy.Env == nil {
					c.proxy.Env = map[string]string{}
				}
				c.proxy.Env[strings.TrimPrefix(k, "env ")] = v
			default:
				t.Fatalf("%s: unknown fact %q", dir, line)
			}
		}
		golden, err := os.ReadFile(filepath.Join(dir, "iptables.golden"))
		if err != nil {
			t.Fatal(err)
		}
		c.golden = string(golden)
		out = append(out, c)
	}
	if len(out) != 9 {
		t.Fatalf("corpus has %d cases, want 9", len(out))
	}
	return out
}

func readLines(t *testing.T, path string) []string {
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(raw), "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

// stdinFor is the plugin's stdin for a pod: our conflist entry with the
// case's proxy facts and the annotations the runtime adds.
func stdinFor(t *testing.T, proxy proxyConf, ann map[string]string) []byte {
	t.Helper()
	conf := map[string]any{
		"cniVersion": "1.1.0", "name": "k8s-pod-network", "type": pluginType,
		"exclude_namespaces": []string{"kube-system"},
		"proxy":              proxy,
	}
	if ann != nil {
		conf["runtimeConfig"] = map[string]any{capPodAnnotations: ann}
	}
	data, err := json.Marshal(conf)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// noLookups is a System for inputs that are all numeric.
type noLookups struct{}

func (noLookups) LookupUser(name string) (uint32, error)  { return 0, errors.New("no user " + name) }
func (noLookups) LookupGroup(name string) (uint32, error) { return 0, errors.New("no group " + name) }
func (noLookups) ReadResolvConf() ([]byte, error) {
	return nil, errors.New("resolv.conf must not be read")
}

// TestCNICorpus feeds each pod through the plugin's configuration and pod
// selection, and compares the resulting rules, rendered as iptables-restore
// input, with what Istio's plugin programs: per table, as Istio's own test
// compares them.
func TestCNICorpus(t *testing.T) {
	for _, c := range loadCNICorpus(t) {
		t.Run(c.name, func(t *testing.T) {
			conf, cerr := parseConf(stdinFor(t, c.proxy, c.annotations))
			if cerr != nil {
				t.Fatal(cerr)
			}
			d, cerr := conf.decision(podArgs{K8S_POD_NAME: "pod", K8S_POD_NAMESPACE: "default"}, noEnv)
			if cerr != nil {
				t.Fatal(cerr)
			}
			if d.Skip != "" {
				t.Fatalf("skipped: %s", d.Skip)
			}
			cfg, err := d.Options.Config(noLookups{})
			if err != nil {
				t.Fatal(err)
			}
			got := tables(compat.Restore(translate.Build(cfg), translate.IPv4))
			want := tables(c.golden)
			for name, block := range want {
				if got[name] != block {
					t.Errorf("table %s differs:\n--- want (Istio) ---\n%s--- got ---\n%s", name, block, got[name])
				}
			}
			for name := range got {
				if _, ok := want[name]; !ok {
					t.Errorf("extra table %s:\n%s", name, got[name])
				}
			}
		})
	}
}

func noEnv(string) (string, bool) { return "", false }

// tables splits iptables-restore input into its "* table" ... COMMIT
// blocks by table name.
func tables(restore string) map[string]string {
	out := map[string]string{}
	var name string
	var b strings.Builder
	for _, l := range strings.SplitAfter(restore, "\n") {
		if strings.HasPrefix(l, "* ") {
			name = strings.TrimSpace(l[2:])
			b.Reset()
		}
		b.WriteString(l)
		if strings.TrimSpace(l) == "COMMIT" && name != "" {
			out[name] = b.String()
			name = ""
		}
	}
	return out
}
