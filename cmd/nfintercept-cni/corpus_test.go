package main

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/nfintercept/nfintercept/compat"
	"github.com/nfintercept/nfintercept/internal/cnicorpus"
	"github.com/nfintercept/nfintercept/translate"
)

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
	pods, err := cnicorpus.Load("testdata/istio-cni")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range pods {
		t.Run(c.Name, func(t *testing.T) {
			proxy := proxyConf{UID: c.Pod.ProxyUID, GID: c.Pod.ProxyGID, Env: c.Pod.ProxyEnv}
			conf, cerr := parseConf(stdinFor(t, proxy, c.Pod.Annotations))
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
			want := tables(c.Golden)
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
