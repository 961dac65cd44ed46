package translate

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

const cniStatus = `{"initContainers":["istio-validation"],"containers":["istio-proxy"]}`

func cniPod(ann map[string]string) CNIPod {
	all := map[string]string{AnnSidecarStatus: cniStatus}
	for k, v := range ann {
		all[k] = v
	}
	return CNIPod{Annotations: all}
}

func TestCNISelection(t *testing.T) {
	for _, tc := range []struct {
		name string
		pod  CNIPod
		skip string // fragment of the reason; "" = captured
	}{
		{"injected", cniPod(nil), ""},
		{"status not JSON", CNIPod{Annotations: map[string]string{AnnSidecarStatus: "true"}}, ""},
		{"no status", CNIPod{Annotations: map[string]string{}}, "not injected"},
		{"istio-init", cniPod(map[string]string{AnnSidecarStatus: `{"initContainers":["istio-init"],"containers":["istio-proxy"]}`}), "istio-init"},
		{"no istio-proxy", cniPod(map[string]string{AnnSidecarStatus: `{"containers":["app"]}`}), "no istio-proxy"},
		{"inject false", cniPod(map[string]string{AnnInject: "false"}), AnnInject},
		{"inject true", cniPod(map[string]string{AnnInject: "true"}), ""},
		{"inject unparsable", cniPod(map[string]string{AnnInject: "nope"}), ""},
		{"mode NONE", cniPod(map[string]string{AnnInterceptionMode: "NONE"}), "NONE"},
		{"envoy disabled", CNIPod{Annotations: cniPod(nil).Annotations, ProxyEnv: map[string]string{EnvDisableEnvoy: "true"}}, EnvDisableEnvoy},
		{"envoy disabled by proxy config", cniPod(map[string]string{AnnProxyConfig: "proxyMetadata:\n  DISABLE_ENVOY: \"true\"\n"}), EnvDisableEnvoy},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := CNIPodDecision(tc.pod, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.skip == "" && d.Skip != "" || tc.skip != "" && !strings.Contains(d.Skip, tc.skip) {
				t.Fatalf("skip %q, want %q", d.Skip, tc.skip)
			}
		})
	}
}

func TestCNIOptions(t *testing.T) {
	for _, tc := range []struct {
		name  string
		pod   CNIPod
		check func(t *testing.T, o Options)
	}{
		{"defaults", cniPod(nil), func(t *testing.T, o Options) {
			want := Options{InboundInterceptionMode: "REDIRECT", ProxyUID: "1337", ProxyGID: "1337",
				OutboundIPRangesInclude: "*", InboundPortsInclude: "*", InboundPortsExclude: "15020,15021,15090",
				OutboundPortsExclude: "15020"}
			got := Options{InboundInterceptionMode: o.InboundInterceptionMode, ProxyUID: o.ProxyUID, ProxyGID: o.ProxyGID,
				OutboundIPRangesInclude: o.OutboundIPRangesInclude, OutboundIPRangesExclude: o.OutboundIPRangesExclude,
				InboundPortsInclude: o.InboundPortsInclude, InboundPortsExclude: o.InboundPortsExclude,
				OutboundPortsInclude: o.OutboundPortsInclude, OutboundPortsExclude: o.OutboundPortsExclude}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("got %+v\nwant %+v", got, want)
			}
			if o.EnvoyPort != "15001" || o.InboundCapturePort != "15006" || o.InboundTunnelPort != "15008" || !o.CNIMode {
				t.Fatalf("fixed ports / cni mode: %+v", o)
			}
		}},
		{"exclude inbound deduplicated", cniPod(map[string]string{AnnExcludeInboundPorts: "15021,80"}), func(t *testing.T, o Options) {
			if o.InboundPortsExclude != "15021,80,15020,15090" {
				t.Fatal(o.InboundPortsExclude)
			}
		}},
		{"raw port value reaches the rules", cniPod(map[string]string{AnnIncludeInboundPorts: " 80, 90"}), func(t *testing.T, o Options) {
			if o.InboundPortsInclude != " 80, 90" {
				t.Fatalf("%q", o.InboundPortsInclude)
			}
		}},
		{"tproxy keeps the proxy uid", CNIPod{Annotations: cniPod(map[string]string{AnnInterceptionMode: "TPROXY"}).Annotations, ProxyUID: 1000, ProxyGID: 2000}, func(t *testing.T, o Options) {
			if o.ProxyUID != "1000" || o.ProxyGID != "2000" || o.InboundInterceptionMode != "TPROXY" {
				t.Fatalf("%+v", o)
			}
		}},
		{"uid 0 is unset", CNIPod{Annotations: cniPod(nil).Annotations, ProxyUID: 0, ProxyGID: 5}, func(t *testing.T, o Options) {
			if o.ProxyUID != "1337" || o.ProxyGID != "5" {
				t.Fatalf("%+v", o)
			}
		}},
		{"env from proxy, overridden by proxy config", CNIPod{
			Annotations: cniPod(map[string]string{AnnProxyConfig: `{"proxyMetadata":{"ISTIO_META_DNS_CAPTURE":"false","INVALID_DROP":"true"}}`}).Annotations,
			ProxyEnv:    map[string]string{EnvDNSCapture: "true", EnvDualStack: "true"},
		}, func(t *testing.T, o Options) {
			if o.RedirectDNS || o.CaptureAllDNS || !o.DropInvalid || !o.DualStack {
				t.Fatalf("%+v", o)
			}
		}},
		{"dns capture captures all", CNIPod{Annotations: cniPod(nil).Annotations, ProxyEnv: map[string]string{EnvDNSCapture: "true"}}, func(t *testing.T, o Options) {
			if !o.RedirectDNS || !o.CaptureAllDNS {
				t.Fatalf("%+v", o)
			}
		}},
		{"reroute preferred over kubevirt", cniPod(map[string]string{AnnRerouteVirtualInterfaces: "a", AnnKubevirtInterfaces: "b"}), func(t *testing.T, o Options) {
			if o.RerouteVirtualInterfaces != "a" {
				t.Fatal(o.RerouteVirtualInterfaces)
			}
		}},
		{"kubevirt fallback", cniPod(map[string]string{AnnKubevirtInterfaces: "b"}), func(t *testing.T, o Options) {
			if o.RerouteVirtualInterfaces != "b" {
				t.Fatal(o.RerouteVirtualInterfaces)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := CNIPodDecision(tc.pod, nil)
			if err != nil || d.Skip != "" {
				t.Fatalf("%v %q", err, d.Skip)
			}
			tc.check(t, d.Options)
		})
	}
}

func TestCNIWarnings(t *testing.T) {
	d, err := CNIPodDecision(CNIPod{Annotations: cniPod(nil).Annotations, ProxyEnv: map[string]string{EnvInvalidDrop: "yes please"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d.Options.DropInvalid || len(d.Warnings) != 1 || !strings.Contains(d.Warnings[0], EnvInvalidDrop) {
		t.Fatalf("%+v", d)
	}
}

func TestCNIRefused(t *testing.T) {
	for _, tc := range []struct{ key, value string }{
		{AnnInterceptionMode, "redirect"},
		{AnnIncludeInboundPorts, "80,,90"},
		{AnnIncludeInboundPorts, "80-90"},
		{AnnExcludeInboundPorts, "*"},
		{AnnIncludeOutboundPorts, "x"},
		{AnnExcludeOutboundPorts, "70000"},
		{AnnIncludeOutboundIPRanges, "10.0.0.0/8,"},
		{AnnExcludeOutboundIPRanges, "*"},
		{AnnExcludeOutboundIPRanges, " 10.0.0.0/8"},
		{AnnExcludeInterfaces, "0eth"},
		{AnnKubevirtInterfaces, "averyveryverylongname"},
		{AnnProxyConfig, "proxyMetadata: [1"},
		{AnnProxyConfig, "proxyMetadata: 5"},
	} {
		t.Run(tc.key+"="+tc.value, func(t *testing.T) {
			_, err := CNIPodDecision(cniPod(map[string]string{tc.key: tc.value}), nil)
			var ae *AnnotationError
			if !errors.As(err, &ae) || ae.Annotation != tc.key || ae.Value != tc.value {
				t.Fatalf("got %v, want an AnnotationError naming %s", err, tc.key)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error spans lines: %q", err)
			}
		})
	}
}

func TestCNIConfigProcessEnv(t *testing.T) {
	env := map[string]string{EnvOwnerGroupsInclude: "20001", EnvHostIPv4LoopbackCidr: "127.0.0.1/8"}
	cfg, skip, err := CNIConfig(cniPod(nil), func(k string) (string, bool) { v, ok := env[k]; return v, ok }, HostSystem())
	if err != nil || skip != "" {
		t.Fatal(err, skip)
	}
	if cfg.OwnerGroupsInclude.All || len(cfg.OwnerGroupsInclude.Owners) != 1 || cfg.HostIPv4Loopback.Raw != "127.0.0.1/8" {
		t.Fatalf("%+v %v", cfg.OwnerGroupsInclude, cfg.HostIPv4Loopback)
	}
}
