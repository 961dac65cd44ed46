package translate

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Options are istio-iptables' inputs as given: strings for ports, lists and
// marks, exactly as the command line and environment spell them. Nothing
// here is validated; Config does that before anything is touched.
type Options struct {
	EnvoyPort                string // -p/--envoy-port
	InboundCapturePort       string // -z/--inbound-capture-port
	InboundTunnelPort        string // -e/--inbound-tunnel-port
	ProxyUID                 string // -u/--proxy-uid
	ProxyGID                 string // -g/--proxy-gid
	InboundInterceptionMode  string // -m/--istio-inbound-interception-mode
	InboundPortsInclude      string // -b/--istio-inbound-ports
	InboundPortsExclude      string // -d/--istio-local-exclude-ports
	ExcludeInterfaces        string // -c/--istio-exclude-interfaces
	OutboundIPRangesInclude  string // -i/--istio-service-cidr
	OutboundIPRangesExclude  string // -x/--istio-service-exclude-cidr
	OutboundPortsInclude     string // -q/--istio-outbound-ports
	OutboundPortsExclude     string // -o/--istio-local-outbound-ports-exclude
	RerouteVirtualInterfaces string // -k/--kube-virt-interfaces
	InboundTProxyMark        string // -t/--istio-inbound-tproxy-mark
	InboundTProxyRouteTable  string // -r/--istio-inbound-tproxy-route-table

	RedirectDNS   bool // --redirect-dns
	CaptureAllDNS bool // --capture-all-dns
	DropInvalid   bool // --drop-invalid
	DualStack     bool // --dual-stack

	// Accepted for compatibility; the caller decides what they mean for it.
	DryRun              bool          // -n/--dry-run
	IptablesProbePort   uint16        // --iptables-probe-port
	ProbeTimeout        time.Duration // --probe-timeout
	SkipRuleApply       bool          // --skip-rule-apply
	RunValidation       bool          // --run-validation
	NetworkNamespace    string        // --network-namespace
	CNIMode             bool          // --cni-mode
	Reconcile           bool          // --reconcile
	CleanupOnly         bool          // --cleanup-only
	ForceApply          bool          // --force-apply
	NativeNftables      bool          // --native-nftables
	ForceIptablesBinary string        // --force-iptables-binary

	// Environment only (no flag), see LoadEnvOnly.
	OwnerGroupsInclude   string // ISTIO_OUTBOUND_OWNER_GROUPS
	OwnerGroupsExclude   string // ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE
	HostIPv4LoopbackCidr string // ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR
	EnvoyUser            string // ENVOY_USER

	// fromEnv maps a long flag name to the environment variable its
	// current value came from, so errors can say where to look.
	fromEnv map[string]string
}

// Environment-only variable names.
const (
	EnvOwnerGroupsInclude   = "ISTIO_OUTBOUND_OWNER_GROUPS"
	EnvOwnerGroupsExclude   = "ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE"
	EnvHostIPv4LoopbackCidr = "ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR"
	EnvEnvoyUser            = "ENVOY_USER"
)

// DefaultOptions returns istio-iptables' defaults.
func DefaultOptions() Options {
	return Options{
		EnvoyPort:               "15001",
		InboundCapturePort:      "15006",
		InboundTunnelPort:       "15008",
		InboundTProxyMark:       "1337",
		InboundTProxyRouteTable: "133",
		IptablesProbePort:       15002,
		ProbeTimeout:            5 * time.Second,
		OwnerGroupsInclude:      "*",
		HostIPv4LoopbackCidr:    "127.0.0.1/32",
		EnvoyUser:               "istio-proxy",
	}
}

// LoadEnvOnly reads the settings that have no flag. A variable that is set
// but empty yields the empty string, not the default (istio-iptables does
// the same: an empty ISTIO_OUTBOUND_OWNER_GROUPS captures nothing).
func (o *Options) LoadEnvOnly(getenv func(string) (string, bool)) {
	for _, e := range []struct {
		name string
		dst  *string
	}{
		{EnvOwnerGroupsInclude, &o.OwnerGroupsInclude},
		{EnvOwnerGroupsExclude, &o.OwnerGroupsExclude},
		{EnvHostIPv4LoopbackCidr, &o.HostIPv4LoopbackCidr},
		{EnvEnvoyUser, &o.EnvoyUser},
	} {
		if v, ok := getenv(e.name); ok {
			*e.dst = v
		}
	}
}

// EnvName is the primary environment variable of a long flag name, as
// istio-iptables derives it: upper case, '-' replaced by '_'.
func EnvName(long string) string {
	return strings.ToUpper(strings.ReplaceAll(long, "-", "_"))
}

// OptionError reports an unusable option value. Error() is one line naming
// the option (short and long flag, and the environment variable when the
// value came from there), the value and the reason.
type OptionError struct {
	Option string // "-b/--istio-inbound-ports", "--redirect-dns" or an env-only variable
	Env    string // environment variable the value came from, if any
	Value  string
	Reason string
}

func (e *OptionError) Error() string {
	name := e.Option
	if e.Env != "" && e.Env != e.Option {
		name = e.Env + " (" + e.Option + ")"
	}
	return fmt.Sprintf("invalid %s %s: %s", name, quoteShort(e.Value), e.Reason)
}

// maxQuoted bounds how much of a value an error quotes: lists read from
// files hold 100,000s of items, and the reason names the bad one.
const maxQuoted = 120

func quoteShort(v string) string {
	if len(v) <= maxQuoted {
		return strconv.Quote(v)
	}
	cut := maxQuoted
	for cut > 0 && !utf8.RuneStart(v[cut]) {
		cut--
	}
	return fmt.Sprintf("%s… (%d bytes, %d items)", strconv.Quote(v[:cut]), len(v), strings.Count(v, ",")+1)
}

// SetEnvSource records that the current value of the option long (its
// long flag name) came from the environment variable env, or with env ""
// from the command line, so errors can say where to look.
func (o *Options) SetEnvSource(long, env string) {
	if env == "" {
		delete(o.fromEnv, long)
		return
	}
	if o.fromEnv == nil {
		o.fromEnv = map[string]string{}
	}
	o.fromEnv[long] = env
}

// ShortFlag is the one-letter form of a long flag name, "" if it has none.
func ShortFlag(long string) string { return shortOf[long] }

// optError builds the error for a flag's value, naming where it came from.
func (o *Options) optError(long, value, reason string) error {
	return &OptionError{Option: flagDisplay(long), Env: o.fromEnv[long], Value: value, Reason: reason}
}

// envError builds the error for an environment-only variable.
func envError(name, value, reason string) error {
	return &OptionError{Option: name, Value: value, Reason: reason}
}

// flagDisplay spells a flag as "-b/--istio-inbound-ports", or "--long"
// when it has no short form.
func flagDisplay(long string) string {
	if s := shortOf[long]; s != "" {
		return "-" + s + "/--" + long
	}
	return "--" + long
}

// shortOf maps long flag names to their single-letter forms.
var shortOf = map[string]string{
	"envoy-port":                         "p",
	"inbound-capture-port":               "z",
	"inbound-tunnel-port":                "e",
	"proxy-uid":                          "u",
	"proxy-gid":                          "g",
	"istio-inbound-interception-mode":    "m",
	"istio-inbound-ports":                "b",
	"istio-local-exclude-ports":          "d",
	"istio-exclude-interfaces":           "c",
	"istio-service-cidr":                 "i",
	"istio-service-exclude-cidr":         "x",
	"istio-outbound-ports":               "q",
	"istio-local-outbound-ports-exclude": "o",
	"kube-virt-interfaces":               "k",
	"istio-inbound-tproxy-mark":          "t",
	"istio-inbound-tproxy-route-table":   "r",
	"dry-run":                            "n",
}
