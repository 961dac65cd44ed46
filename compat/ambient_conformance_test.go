package compat_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nfintercept/nfintercept/compat"
	"github.com/nfintercept/nfintercept/translate"
)

// ambientCase is one folder of testdata/istio-ambient (derived from Istio,
// see its NOTICE; vocabulary of the config files: AMBIENT.md §2.4).
type ambientCase struct {
	name   string
	config map[string]string
	golden string
}

func loadAmbientCorpus(t *testing.T) []ambientCase {
	t.Helper()
	dirs, err := os.ReadDir("testdata/istio-ambient")
	if err != nil {
		t.Fatal(err)
	}
	var cases []ambientCase
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		dir := filepath.Join("testdata/istio-ambient", d.Name())
		raw, err := os.ReadFile(filepath.Join(dir, "config"))
		if err != nil {
			t.Fatal(err)
		}
		c := ambientCase{name: d.Name(), config: map[string]string{}}
		for _, line := range strings.Split(string(raw), "\n") {
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			k, v, _ := strings.Cut(line, "=")
			c.config[k] = v
		}
		golden, err := os.ReadFile(filepath.Join(dir, "iptables.golden"))
		if err != nil {
			t.Fatal(err)
		}
		c.golden = string(golden)
		cases = append(cases, c)
	}
	if len(cases) != 14 {
		t.Fatalf("ambient corpus has %d cases, want 14", len(cases))
	}
	return cases
}

// ambientInputs turns a case's config into the inputs nfintercept takes:
// the node agent's settings given as environment (as the node agent gets
// them) and the pod overrides given as annotations.
func ambientInputs(t *testing.T, c ambientCase) (translate.AmbientNode, map[string]string) {
	t.Helper()
	env := map[string]string{
		translate.EnvAmbientDNSCapture: c.config["REDIRECT_DNS"],
		translate.EnvAmbientIPv6:       c.config["ENABLE_IPV6"],
		translate.EnvHostProbeSNATIP:   c.config["HOST_PROBE_SNAT_V4"],
		translate.EnvHostProbeSNATIPv6: c.config["HOST_PROBE_SNAT_V6"],
	}
	var opts translate.AmbientOptions
	opts.LoadEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	node, err := opts.Node()
	if err != nil {
		t.Fatalf("node settings: %v", err)
	}
	ann := map[string]string{}
	if c.config["INGRESS_MODE"] == "true" {
		ann[translate.AnnBypassInboundCapture] = "true"
	}
	switch c.config["DNS_PROXY"] {
	case "enabled":
		ann[translate.AnnDNSCapture] = "true"
	case "disabled":
		ann[translate.AnnDNSCapture] = "false"
	}
	if v := c.config["VIRTUAL_INTERFACES"]; v != "" {
		ann[translate.AnnRerouteVirtualInterfaces] = v
	}
	return node, ann
}

// TestAmbientCorpusByteIdentical renders each case's rule model as the
// iptables view, both families, and compares it with Istio's golden trace
// (corpus README: two stub header lines, the IPv4 then the IPv6 restore
// input, no final newline).
func TestAmbientCorpusByteIdentical(t *testing.T) {
	for _, c := range loadAmbientCorpus(t) {
		t.Run(c.name, func(t *testing.T) {
			node, ann := ambientInputs(t, c)
			var rs *translate.Ruleset
			if strings.HasPrefix(c.name, "host-") {
				rs = translate.BuildAmbientNode(translate.AmbientNodeConfig{Node: node})
			} else {
				pod, err := translate.PodOverridesFromAnnotations(ann)
				if err != nil {
					t.Fatalf("annotations %v: %v", ann, err)
				}
				rs = translate.BuildAmbientPod(translate.AmbientPodConfig{Node: node, Pod: pod})
			}
			got := "iptables-save\nip6tables-save\n" + compat.Restore(rs, translate.IPv4) + compat.Restore(rs, translate.IPv6)
			got = strings.TrimSuffix(got, "\n")
			if got != c.golden {
				t.Errorf("differs from iptables.golden:\n%s", lineDiff(c.golden, got))
			}
		})
	}
}
