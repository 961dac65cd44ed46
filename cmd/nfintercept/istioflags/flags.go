// Package istioflags binds istio-iptables' flags and environment variables
// to translate.Options with pflag: the command line's adapter into the
// typed configuration.
package istioflags

import (
	"strconv"
	"time"

	"github.com/spf13/pflag"

	"github.com/nfintercept/nfintercept/translate"
)

// flagSpec describes one istio-iptables flag: names, environment binding
// and help. Values are bound to an Options field by Add.
type flagSpec struct {
	long  string
	noEnv bool   // -p only: istio-iptables binds no env var to it
	extra string // additional env var, applied after the primary one (wins)
	// fallback is read only when the primary env var is unset (our
	// extension for -m, see its help text).
	fallback string
	usage    string
	value    value // bound to a field of the Options flagSpecs was given
}

// value is a pflag.Value whose parse can be tried without side effects on
// failure: environment values that do not parse are ignored.
type value interface {
	pflag.Value
	set(s string) error // parse and store; leaves the value alone on error
}

func flagSpecs(o *translate.Options) []flagSpec {
	str := func(p *string) value {
		return parsed[string]{p, "string", func(s string) (string, error) { return s, nil }, func(s string) string { return s }}
	}
	boolean := func(p *bool) value { return parsed[bool]{p, "bool", strconv.ParseBool, strconv.FormatBool} }
	uint16Of := func(p *uint16) value {
		return parsed[uint16]{p, "uint16", func(s string) (uint16, error) {
			n, err := strconv.ParseUint(s, 0, 16) // as pflag's Uint16
			return uint16(n), err
		}, func(n uint16) string { return strconv.FormatUint(uint64(n), 10) }}
	}
	duration := func(p *time.Duration) value {
		return parsed[time.Duration]{p, "duration", time.ParseDuration, time.Duration.String}
	}
	return []flagSpec{
		{long: "envoy-port", noEnv: true, value: str(&o.EnvoyPort),
			usage: "port of the proxy's outbound listener: outbound TCP that is captured is redirected there (1-65535; ENVOY_PORT is not read)"},
		{long: "inbound-capture-port", value: str(&o.InboundCapturePort),
			usage: "port of the proxy's inbound listener: captured inbound TCP is redirected (REDIRECT) or diverted (TPROXY) there (1-65535)"},
		{long: "inbound-tunnel-port", value: str(&o.InboundTunnelPort),
			usage: "HBONE tunnel port: inbound TCP to it is never captured and the proxy's own connections to it on lo are not looped back"},
		{long: "proxy-uid", value: str(&o.ProxyUID),
			usage: "comma-separated UIDs (numbers, ranges a-b or user names) whose traffic is never captured, normally the proxy's; empty = uid of $ENVOY_USER, else 1337"},
		{long: "proxy-gid", value: str(&o.ProxyGID),
			usage: "comma-separated GIDs (numbers, ranges a-b or group names) whose traffic is never captured; empty = same value as --proxy-uid"},
		{long: "istio-inbound-interception-mode", fallback: "INBOUND_INTERCEPTION_MODE", value: str(&o.InboundInterceptionMode),
			usage: "how inbound connections reach the proxy: REDIRECT (NAT, the default when empty) or TPROXY (keeps the original destination; needs policy routing). Read from ISTIO_INBOUND_INTERCEPTION_MODE, or INBOUND_INTERCEPTION_MODE when that is unset"},
		{long: "istio-inbound-ports", value: str(&o.InboundPortsInclude),
			usage: "comma-separated inbound TCP ports (or ranges a:b) to capture; \"*\" captures all; empty captures no inbound traffic"},
		{long: "istio-local-exclude-ports", value: str(&o.InboundPortsExclude),
			usage: "comma-separated inbound TCP ports (or ranges a:b) never captured; only used when --istio-inbound-ports is \"*\""},
		{long: "istio-exclude-interfaces", value: str(&o.ExcludeInterfaces),
			usage: "comma-separated interfaces whose traffic is never captured, inbound or outbound (a trailing + matches a prefix)"},
		{long: "istio-service-cidr", value: str(&o.OutboundIPRangesInclude),
			usage: "comma-separated destination CIDRs (IPv4 and IPv6) whose outbound TCP is captured; \"*\" captures all; empty captures none"},
		{long: "istio-service-exclude-cidr", value: str(&o.OutboundIPRangesExclude),
			usage: "comma-separated destination CIDRs never captured outbound; applies whatever --istio-service-cidr is and wins over it"},
		{long: "istio-outbound-ports", value: str(&o.OutboundPortsInclude),
			usage: "comma-separated outbound TCP destination ports (or ranges a:b) always captured, whatever the destination address"},
		{long: "istio-local-outbound-ports-exclude", value: str(&o.OutboundPortsExclude),
			usage: "comma-separated outbound destination ports (or ranges a:b), TCP and UDP, never captured; checked before everything else"},
		{long: "kube-virt-interfaces", value: str(&o.RerouteVirtualInterfaces),
			usage: "comma-separated interfaces (e.g. of VMs in the pod) whose incoming traffic is treated as outbound and sent to the proxy"},
		{long: "istio-inbound-tproxy-mark", value: str(&o.InboundTProxyMark),
			usage: "TPROXY mode: packet mark (decimal or 0x hex) given to diverted inbound packets and selecting the TPROXY routing table"},
		{long: "istio-inbound-tproxy-route-table", value: str(&o.InboundTProxyRouteTable),
			usage: "TPROXY mode: routing table (decimal, not 0/253/254/255) that receives \"local default dev lo\" for marked packets"},
		{long: "dry-run", value: boolean(&o.DryRun),
			usage: "change nothing: show what would be installed"},
		{long: "iptables-probe-port", value: uint16Of(&o.IptablesProbePort),
			usage: "port the --run-validation probe connects to"},
		{long: "probe-timeout", value: duration(&o.ProbeTimeout),
			usage: "how long --run-validation waits for the probe to be redirected"},
		{long: "skip-rule-apply", value: boolean(&o.SkipRuleApply),
			usage: "install no rules nor routes (validation may still run)"},
		{long: "run-validation", value: boolean(&o.RunValidation),
			usage: "after installing, check that a probe connection is redirected"},
		{long: "redirect-dns", extra: "ISTIO_META_DNS_CAPTURE", value: boolean(&o.RedirectDNS),
			usage: "capture DNS (TCP and UDP port 53) to the agent's resolver on port 15053, for the nameservers of /etc/resolv.conf unless --capture-all-dns (env REDIRECT_DNS, then ISTIO_META_DNS_CAPTURE)"},
		{long: "drop-invalid", extra: "INVALID_DROP", value: boolean(&o.DropInvalid),
			usage: "drop inbound packets conntrack classifies as INVALID (env DROP_INVALID, then INVALID_DROP)"},
		{long: "dual-stack", extra: "ISTIO_DUAL_STACK", value: boolean(&o.DualStack),
			usage: "program IPv6 interception too (env DUAL_STACK, then ISTIO_DUAL_STACK)"},
		{long: "capture-all-dns", value: boolean(&o.CaptureAllDNS),
			usage: "with --redirect-dns, capture all port-53 traffic instead of only traffic to the resolv.conf nameservers"},
		{long: "network-namespace", value: str(&o.NetworkNamespace),
			usage: "network namespace to act on (path or name)"},
		{long: "cni-mode", value: boolean(&o.CNIMode),
			usage: "run as part of a CNI plugin (accepted for istio-iptables compatibility)"},
		{long: "reconcile", value: boolean(&o.Reconcile),
			usage: "verify: re-apply atomically when drift is found (apply always brings the rules to the options)"},
		{long: "cleanup-only", value: boolean(&o.CleanupOnly),
			usage: "only remove the interception rules and routes, install nothing"},
		{long: "force-apply", value: boolean(&o.ForceApply),
			usage: "accepted for istio-iptables compatibility (every apply brings the rules to the options)"},
		{long: "native-nftables", value: boolean(&o.NativeNftables),
			usage: "accepted for istio-iptables compatibility (rules are always nftables here)"},
		{long: "force-iptables-binary", value: str(&o.ForceIptablesBinary),
			usage: "accepted for istio-iptables compatibility: \"\", legacy or nft (no iptables binary is ever run)"},
	}
}

// Add registers every istio-iptables flag on fs, bound to o, and applies
// the environment as istio-iptables does while registering: the primary
// variable (long name upper-cased, '-' → '_'; none for -p), then the
// additional one, which wins. Environment values that do not parse are
// ignored silently; command-line values parsed later by fs win over the
// environment and are hard errors when malformed. Call o.LoadEnvOnly for
// the variables that have no flag.
func Add(fs *pflag.FlagSet, o *translate.Options, getenv func(string) (string, bool)) {
	for _, spec := range flagSpecs(o) {
		v := spec.value
		fl := fs.VarPF(&trackedValue{value: v, o: o, long: spec.long}, spec.long, translate.ShortFlag(spec.long), spec.usage)
		if v.Type() == "bool" {
			fl.NoOptDefVal = "true" // bare --redirect-dns means true
		}
		if spec.noEnv {
			continue
		}
		primary := translate.EnvName(spec.long)
		if val, ok := getenv(primary); ok {
			setFromEnv(o, v, spec.long, primary, val)
		} else if spec.fallback != "" {
			if val, ok := getenv(spec.fallback); ok {
				setFromEnv(o, v, spec.long, spec.fallback, val)
			}
		}
		if spec.extra != "" {
			if val, ok := getenv(spec.extra); ok {
				setFromEnv(o, v, spec.long, spec.extra, val)
			}
		}
	}
}

func setFromEnv(o *translate.Options, v value, long, env, val string) {
	if v.set(val) == nil {
		o.SetEnvSource(long, env)
	}
}

// trackedValue forgets the environment origin once the command line sets
// the flag.
type trackedValue struct {
	value
	o    *translate.Options
	long string
}

func (t *trackedValue) Set(s string) error {
	if err := t.value.set(s); err != nil {
		return err
	}
	t.o.SetEnvSource(t.long, "")
	return nil
}

// IsBoolFlag lets pflag print bool flags without a value placeholder.
func (t *trackedValue) IsBoolFlag() bool { return t.Type() == "bool" }

// parsed is a flag value of type T: parse reads the text, format prints
// the current value (pflag's default column).
type parsed[T any] struct {
	p      *T
	typ    string
	parse  func(string) (T, error)
	format func(T) string
}

func (v parsed[T]) set(s string) error {
	x, err := v.parse(s)
	if err != nil {
		return err
	}
	*v.p = x
	return nil
}
func (v parsed[T]) Set(s string) error { return v.set(s) }
func (v parsed[T]) String() string     { return v.format(*v.p) }
func (v parsed[T]) Type() string       { return v.typ }
