package integration

import (
	"errors"
	"reflect"
	"testing"

	"github.com/nfintercept/nfintercept/integration/equiv"
	"github.com/nfintercept/nfintercept/integration/harness"
	"github.com/nfintercept/nfintercept/internal/cnicorpus"
	"github.com/nfintercept/nfintercept/internal/tools"
	"github.com/nfintercept/nfintercept/translate"
)

// The CNI plugin's done-when (issue 12): for a pod, nfintercept-cni's
// options (translate.CNIPodDecision) installed by nfintercept make the same
// decision for real connections as Istio's pilot-agent istio-iptables given
// the same options, which is what Istio's plugin programs in-process. How a
// pod becomes options is pinned by Istio's plugin corpus (its goldens,
// cmd/nfintercept-cni); this checks the decisions those options make.

const cniCorpusDir = "../cmd/nfintercept-cni/testdata/istio-cni"

// cniPods are pods beyond the corpus: every annotation the plugin reads,
// proxy facts and proxyMetadata.
var cniPods = []cnicorpus.Pod{
	{Name: "everything", Pod: translate.CNIPod{
		Annotations: map[string]string{
			translate.AnnSidecarStatus:            `{"initContainers":["istio-validation"],"containers":["istio-proxy"]}`,
			translate.AnnIncludeOutboundIPRanges:  "10.96.0.0/12,192.168.0.0/16,198.51.100.0/24",
			translate.AnnExcludeOutboundIPRanges:  "198.51.100.53/32",
			translate.AnnIncludeInboundPorts:      "8080,9090",
			translate.AnnIncludeOutboundPorts:     "31400",
			translate.AnnExcludeOutboundPorts:     "5432",
			translate.AnnRerouteVirtualInterfaces: "eth9",
			translate.AnnExcludeInterfaces:        "not-istio-nic",
		},
		ProxyUID: 1000670000, ProxyGID: 1000670001,
		ProxyEnv: map[string]string{translate.EnvDNSCapture: "true", translate.EnvInvalidDrop: "true"},
	}},
	{Name: "tproxy-dual-stack", Pod: translate.CNIPod{
		Annotations: map[string]string{
			translate.AnnSidecarStatus:       "{}",
			translate.AnnInterceptionMode:    "TPROXY",
			translate.AnnExcludeInboundPorts: "8443",
			translate.AnnProxyConfig:         "proxyMetadata:\n  ISTIO_DUAL_STACK: \"true\"\n  ISTIO_META_DNS_CAPTURE: \"true\"\n",
		},
	}},
	{Name: "dual-stack-excludes", Pod: translate.CNIPod{
		Annotations: map[string]string{
			translate.AnnSidecarStatus:           "{}",
			translate.AnnExcludeOutboundIPRanges: "10.245.0.0/16,2001:db8:3::/64",
			translate.AnnIncludeInboundPorts:     " 8080, 9090",
			translate.AnnKubevirtInterfaces:      "eth7",
		},
		ProxyEnv: map[string]string{translate.EnvDualStack: "true"},
	}},
}

// istioIptablesArgs spells options as istio-iptables flags: what the
// oracle runs, what the equivalence suite plans from, and what the
// reliability tests give the CLI for the options they plan with.
func istioIptablesArgs(o translate.Options) []string {
	args := []string{
		"-p", o.EnvoyPort, "-z", o.InboundCapturePort, "-e", o.InboundTunnelPort,
		"-u", o.ProxyUID, "-g", o.ProxyGID, "-m", o.InboundInterceptionMode,
		"-b", o.InboundPortsInclude, "-d", o.InboundPortsExclude,
		"-i", o.OutboundIPRangesInclude, "-x", o.OutboundIPRangesExclude,
		"-q", o.OutboundPortsInclude, "-o", o.OutboundPortsExclude,
		"-k", o.RerouteVirtualInterfaces, "-c", o.ExcludeInterfaces,
		"-t", o.InboundTProxyMark, "-r", o.InboundTProxyRouteTable,
	}
	for _, f := range []struct {
		on   bool
		flag string
	}{
		{o.RedirectDNS, "--redirect-dns"}, {o.CaptureAllDNS, "--capture-all-dns"},
		{o.DropInvalid, "--drop-invalid"}, {o.DualStack, "--dual-stack"},
	} {
		if f.on {
			args = append(args, f.flag)
		}
	}
	return args
}

type noNames struct{}

func (noNames) LookupUser(n string) (uint32, error)  { return 0, errors.New("no user " + n) }
func (noNames) LookupGroup(n string) (uint32, error) { return 0, errors.New("no group " + n) }
func (noNames) ReadResolvConf() ([]byte, error)      { return nil, errors.New("not read in CNI mode") }

func TestCNIOracle(t *testing.T) {
	harness.RequireRoot(t)
	if _, err := tools.PilotAgent(); err != nil {
		t.Fatal(err)
	}
	pods, err := cnicorpus.Load(cniCorpusDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range append(pods, cniPods...) {
		if testing.Short() && p.Name != "everything" && p.Name != "tproxy-dual-stack" {
			continue
		}
		t.Run(p.Name, func(t *testing.T) {
			t.Parallel()
			d, err := translate.CNIPodDecision(p.Pod, nil)
			if err != nil || d.Skip != "" {
				t.Fatalf("decision: %v %q", err, d.Skip)
			}
			c := equiv.Case{Name: "cni-" + p.Name, Args: istioIptablesArgs(d.Options), Env: map[string]string{}}
			// The suite plans from the argv: it must stand for exactly the
			// plugin's options.
			parsed, err := c.Options()
			if err != nil {
				t.Fatal(err)
			}
			want, err := d.Options.Config(noNames{})
			if err != nil {
				t.Fatal(err)
			}
			got, err := parsed.Config(noNames{})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("argv %q does not stand for the plugin's options:\n got %+v\nwant %+v", c.Args, got, want)
			}
			opts := equivOptions()
			opts.Backends = []equiv.Backend{equiv.BackendNft, equiv.BackendPilotAgent}
			report(t, equiv.Compare(t, c, opts))
		})
	}
}
