package istioflags

import (
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/nfintercept/nfintercept/translate"
)

// envMap is a fake environment for Add and LoadEnvOnly.
type envMap map[string]string

func (e envMap) get(k string) (string, bool) { v, ok := e[k]; return v, ok }

// parseOpts registers the flags with env, parses args and loads the
// env-only settings, like a command would.
func parseOpts(t *testing.T, env envMap, args ...string) (translate.Options, error) {
	t.Helper()
	o := translate.DefaultOptions()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	fs.SetOutput(new(strings.Builder))
	Add(fs, &o, env.get)
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	o.LoadEnvOnly(env.get)
	return o, nil
}

func mustParse(t *testing.T, env envMap, args ...string) translate.Options {
	t.Helper()
	o, err := parseOpts(t, env, args...)
	if err != nil {
		t.Fatalf("parse %q: %v", args, err)
	}
	return o
}

// istioFlags is istio-iptables' flag table (SPEC §1.2), written out
// independently of flagSpecs: long name, short name, primary env var.
var istioFlags = []struct{ long, short, env string }{
	{"envoy-port", "p", ""},
	{"inbound-capture-port", "z", "INBOUND_CAPTURE_PORT"},
	{"inbound-tunnel-port", "e", "INBOUND_TUNNEL_PORT"},
	{"proxy-uid", "u", "PROXY_UID"},
	{"proxy-gid", "g", "PROXY_GID"},
	{"istio-inbound-interception-mode", "m", "ISTIO_INBOUND_INTERCEPTION_MODE"},
	{"istio-inbound-ports", "b", "ISTIO_INBOUND_PORTS"},
	{"istio-local-exclude-ports", "d", "ISTIO_LOCAL_EXCLUDE_PORTS"},
	{"istio-exclude-interfaces", "c", "ISTIO_EXCLUDE_INTERFACES"},
	{"istio-service-cidr", "i", "ISTIO_SERVICE_CIDR"},
	{"istio-service-exclude-cidr", "x", "ISTIO_SERVICE_EXCLUDE_CIDR"},
	{"istio-outbound-ports", "q", "ISTIO_OUTBOUND_PORTS"},
	{"istio-local-outbound-ports-exclude", "o", "ISTIO_LOCAL_OUTBOUND_PORTS_EXCLUDE"},
	{"kube-virt-interfaces", "k", "KUBE_VIRT_INTERFACES"},
	{"istio-inbound-tproxy-mark", "t", "ISTIO_INBOUND_TPROXY_MARK"},
	{"istio-inbound-tproxy-route-table", "r", "ISTIO_INBOUND_TPROXY_ROUTE_TABLE"},
	{"dry-run", "n", "DRY_RUN"},
	{"iptables-probe-port", "", "IPTABLES_PROBE_PORT"},
	{"probe-timeout", "", "PROBE_TIMEOUT"},
	{"skip-rule-apply", "", "SKIP_RULE_APPLY"},
	{"run-validation", "", "RUN_VALIDATION"},
	{"redirect-dns", "", "REDIRECT_DNS"},
	{"drop-invalid", "", "DROP_INVALID"},
	{"dual-stack", "", "DUAL_STACK"},
	{"capture-all-dns", "", "CAPTURE_ALL_DNS"},
	{"network-namespace", "", "NETWORK_NAMESPACE"},
	{"cni-mode", "", "CNI_MODE"},
	{"reconcile", "", "RECONCILE"},
	{"cleanup-only", "", "CLEANUP_ONLY"},
	{"force-apply", "", "FORCE_APPLY"},
	{"native-nftables", "", "NATIVE_NFTABLES"},
	{"force-iptables-binary", "", "FORCE_IPTABLES_BINARY"},
}

func TestFlagsRegistered(t *testing.T) {
	o := translate.DefaultOptions()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	Add(fs, &o, envMap{}.get)
	n := 0
	fs.VisitAll(func(*pflag.Flag) { n++ })
	if n != len(istioFlags) {
		t.Errorf("%d flags registered, want %d", n, len(istioFlags))
	}
	for _, f := range istioFlags {
		fl := fs.Lookup(f.long)
		if fl == nil {
			t.Errorf("--%s not registered", f.long)
			continue
		}
		if fl.Shorthand != f.short {
			t.Errorf("--%s: short %q, want %q", f.long, fl.Shorthand, f.short)
		}
		if strings.TrimSpace(fl.Usage) == "" {
			t.Errorf("--%s has no help text", f.long)
		}
		if f.env != "" && f.env != translate.EnvName(f.long) {
			t.Errorf("EnvName(%q) = %q, want %q", f.long, translate.EnvName(f.long), f.env)
		}
	}
	if u := fs.Lookup("istio-inbound-interception-mode").Usage; !strings.Contains(u, "INBOUND_INTERCEPTION_MODE") {
		t.Errorf("-m help does not document the INBOUND_INTERCEPTION_MODE fallback: %q", u)
	}
}

func TestDefaults(t *testing.T) {
	o := mustParse(t, envMap{})
	want := map[string]string{
		"envoy-port": "15001", "inbound-capture-port": "15006", "inbound-tunnel-port": "15008",
		"istio-inbound-tproxy-mark": "1337", "istio-inbound-tproxy-route-table": "133",
		"proxy-uid": "", "proxy-gid": "", "istio-inbound-interception-mode": "", "istio-inbound-ports": "",
		"istio-service-cidr": "", "istio-service-exclude-cidr": "", "iptables-probe-port": "15002",
		"probe-timeout": "5s", "redirect-dns": "false", "dry-run": "false", "force-iptables-binary": "",
	}
	for long, v := range want {
		if got := flagValue(t, &o, long); got != v {
			t.Errorf("default --%s = %q, want %q", long, got, v)
		}
	}
	if o.OwnerGroupsInclude != "*" || o.OwnerGroupsExclude != "" || o.HostIPv4LoopbackCidr != "127.0.0.1/32" || o.EnvoyUser != "istio-proxy" {
		t.Errorf("env-only defaults: %q %q %q %q", o.OwnerGroupsInclude, o.OwnerGroupsExclude, o.HostIPv4LoopbackCidr, o.EnvoyUser)
	}
}

// flagValue reads an option back through its flag.
func flagValue(t *testing.T, o *translate.Options, long string) string {
	t.Helper()
	for _, s := range flagSpecs(o) {
		if s.long == long {
			return s.value.String()
		}
	}
	t.Fatalf("no flag %s", long)
	return ""
}

// TestEveryFlagReadsItsEnv sets each flag's primary env var and checks
// the option took it; -p must ignore ENVOY_PORT.
func TestEveryFlagReadsItsEnv(t *testing.T) {
	for _, f := range istioFlags {
		if f.env == "" {
			continue
		}
		val := map[string]string{"iptables-probe-port": "123", "probe-timeout": "7s"}[f.long]
		o0 := translate.DefaultOptions()
		switch flagValue(t, &o0, f.long) {
		case "false":
			val = "true"
		case "":
			val = "from-env"
		default:
			if val == "" {
				val = "4242"
			}
		}
		o := mustParse(t, envMap{f.env: val})
		if got := flagValue(t, &o, f.long); got != val {
			t.Errorf("%s=%s: --%s = %q", f.env, val, f.long, got)
		}
	}
	if o := mustParse(t, envMap{"ENVOY_PORT": "1"}); o.EnvoyPort != "15001" {
		t.Errorf("ENVOY_PORT must not set -p, got %q", o.EnvoyPort)
	}
}

func TestEnvPrecedence(t *testing.T) {
	type c struct {
		name string
		env  envMap
		args []string
		get  func(translate.Options) any
		want any
	}
	dns := func(o translate.Options) any { return o.RedirectDNS }
	drop := func(o translate.Options) any { return o.DropInvalid }
	dual := func(o translate.Options) any { return o.DualStack }
	mode := func(o translate.Options) any { return o.InboundInterceptionMode }
	ports := func(o translate.Options) any { return o.InboundPortsInclude }
	for _, tc := range []c{
		{"primary env", envMap{"ISTIO_INBOUND_PORTS": "80"}, nil, ports, "80"},
		{"set-but-empty env is empty", envMap{"INBOUND_CAPTURE_PORT": ""}, nil, func(o translate.Options) any { return o.InboundCapturePort }, ""},
		{"CLI wins over env", envMap{"ISTIO_INBOUND_PORTS": "80"}, []string{"-b", "90"}, ports, "90"},
		{"CLI empty wins over env", envMap{"ISTIO_INBOUND_PORTS": "80"}, []string{"--istio-inbound-ports="}, ports, ""},
		{"REDIRECT_DNS", envMap{"REDIRECT_DNS": "true"}, nil, dns, true},
		{"ISTIO_META_DNS_CAPTURE alone", envMap{"ISTIO_META_DNS_CAPTURE": "1"}, nil, dns, true},
		{"additional wins even false", envMap{"REDIRECT_DNS": "true", "ISTIO_META_DNS_CAPTURE": "false"}, nil, dns, false},
		{"additional wins true", envMap{"REDIRECT_DNS": "false", "ISTIO_META_DNS_CAPTURE": "T"}, nil, dns, true},
		{"CLI wins over additional", envMap{"ISTIO_META_DNS_CAPTURE": "true"}, []string{"--redirect-dns=false"}, dns, false},
		{"bad env bool ignored", envMap{"REDIRECT_DNS": "yes"}, nil, dns, false},
		{"bad additional ignored", envMap{"REDIRECT_DNS": "true", "ISTIO_META_DNS_CAPTURE": "yes"}, nil, dns, true},
		{"INVALID_DROP wins", envMap{"DROP_INVALID": "true", "INVALID_DROP": "false"}, nil, drop, false},
		{"INVALID_DROP alone", envMap{"INVALID_DROP": "TRUE"}, nil, drop, true},
		{"ISTIO_DUAL_STACK wins", envMap{"DUAL_STACK": "false", "ISTIO_DUAL_STACK": "true"}, nil, dual, true},
		{"DUAL_STACK", envMap{"DUAL_STACK": "1"}, nil, dual, true},
		{"bare bool flag", nil, []string{"--dual-stack"}, dual, true},
		{"bool flag =0", envMap{"DUAL_STACK": "1"}, []string{"--dual-stack=0"}, dual, false},
		{"mode primary", envMap{"ISTIO_INBOUND_INTERCEPTION_MODE": "TPROXY"}, nil, mode, "TPROXY"},
		{"mode fallback", envMap{"INBOUND_INTERCEPTION_MODE": "TPROXY"}, nil, mode, "TPROXY"},
		{"mode primary beats fallback", envMap{"ISTIO_INBOUND_INTERCEPTION_MODE": "REDIRECT", "INBOUND_INTERCEPTION_MODE": "TPROXY"}, nil, mode, "REDIRECT"},
		{"mode empty primary beats fallback", envMap{"ISTIO_INBOUND_INTERCEPTION_MODE": "", "INBOUND_INTERCEPTION_MODE": "TPROXY"}, nil, mode, ""},
		{"mode CLI beats fallback", envMap{"INBOUND_INTERCEPTION_MODE": "TPROXY"}, []string{"-m", "REDIRECT"}, mode, "REDIRECT"},
		{"bad env uint16 ignored", envMap{"IPTABLES_PROBE_PORT": "abc"}, nil, func(o translate.Options) any { return o.IptablesProbePort }, uint16(15002)},
		{"env uint16 hex", envMap{"IPTABLES_PROBE_PORT": "0x10"}, nil, func(o translate.Options) any { return o.IptablesProbePort }, uint16(16)},
		{"bad env duration ignored", envMap{"PROBE_TIMEOUT": "soon"}, nil, func(o translate.Options) any { return o.ProbeTimeout }, 5 * time.Second},
		{"env duration", envMap{"PROBE_TIMEOUT": "250ms"}, nil, func(o translate.Options) any { return o.ProbeTimeout }, 250 * time.Millisecond},
		{"owner groups env", envMap{translate.EnvOwnerGroupsInclude: "java,202"}, nil, func(o translate.Options) any { return o.OwnerGroupsInclude }, "java,202"},
		{"owner groups set-but-empty", envMap{translate.EnvOwnerGroupsInclude: ""}, nil, func(o translate.Options) any { return o.OwnerGroupsInclude }, ""},
		{"envoy user set-but-empty", envMap{translate.EnvEnvoyUser: ""}, nil, func(o translate.Options) any { return o.EnvoyUser }, ""},
		{"loopback cidr env", envMap{translate.EnvHostIPv4LoopbackCidr: "127.0.0.1/8"}, nil, func(o translate.Options) any { return o.HostIPv4LoopbackCidr }, "127.0.0.1/8"},
		{"exclude groups env", envMap{translate.EnvOwnerGroupsExclude: "888"}, nil, func(o translate.Options) any { return o.OwnerGroupsExclude }, "888"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := mustParse(t, tc.env, tc.args...)
			if got := tc.get(o); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestCLIErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--redirect-dns=yes"},
		{"--dry-run=2"},
		{"--iptables-probe-port=70000"},
		{"--probe-timeout=soon"},
		{"-b"},
		{"--no-such-flag"},
	} {
		if _, err := parseOpts(t, envMap{}, args...); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
}

func TestShortFlags(t *testing.T) {
	o := mustParse(t, envMap{}, "-p", "1", "-z", "2", "-e", "3", "-u", "4", "-g", "5", "-m", "TPROXY",
		"-b", "6", "-d", "7", "-c", "eth0", "-i", "10.0.0.0/8", "-x", "10.1.0.0/16", "-q", "8", "-o", "9",
		"-k", "eth1", "-t", "10", "-r", "11", "-n")
	got := []string{o.EnvoyPort, o.InboundCapturePort, o.InboundTunnelPort, o.ProxyUID, o.ProxyGID,
		o.InboundInterceptionMode, o.InboundPortsInclude, o.InboundPortsExclude, o.ExcludeInterfaces,
		o.OutboundIPRangesInclude, o.OutboundIPRangesExclude, o.OutboundPortsInclude, o.OutboundPortsExclude,
		o.RerouteVirtualInterfaces, o.InboundTProxyMark, o.InboundTProxyRouteTable}
	want := []string{"1", "2", "3", "4", "5", "TPROXY", "6", "7", "eth0", "10.0.0.0/8", "10.1.0.0/16", "8", "9", "eth1", "10", "11"}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("option %d = %q, want %q", i, got[i], want[i])
		}
	}
	if !o.DryRun {
		t.Error("-n did not set DryRun")
	}
}

func TestErrorNamesEnvSource(t *testing.T) {
	o := mustParse(t, envMap{"INBOUND_CAPTURE_PORT": "abc"})
	_, err := o.Config(&fakeSystem{})
	if err == nil || !strings.Contains(err.Error(), "INBOUND_CAPTURE_PORT") || !strings.Contains(err.Error(), "-z/--inbound-capture-port") {
		t.Fatalf("env-sourced error = %v, want env var and flag named", err)
	}
	o = mustParse(t, envMap{"INBOUND_CAPTURE_PORT": "15006"}, "-z", "abc")
	_, err = o.Config(&fakeSystem{})
	if err == nil || strings.Contains(err.Error(), "INBOUND_CAPTURE_PORT") || !strings.Contains(err.Error(), `-z/--inbound-capture-port "abc"`) {
		t.Fatalf("CLI error = %v, want flag named without the env var", err)
	}
}
