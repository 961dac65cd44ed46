package translate

import (
	"net/netip"
	"strconv"
	"strings"
)

// Istio ambient mode (AMBIENT.md): the node agent programs capture for
// ztunnel inside each enrolled pod's namespace ("ambient-pod") and SNATs
// kubelet probes in the node's namespace ("ambient-node"). Both are typed
// configurations here, turned into the same Ruleset model as the sidecar
// profile by BuildAmbientPod / BuildAmbientNode (ambient_build.go).

// Profile names what a Ruleset is built for.
type Profile string

const (
	ProfileSidecar     Profile = "sidecar"
	ProfileAmbientPod  Profile = "ambient-pod"
	ProfileAmbientNode Profile = "ambient-node"
)

// ParseProfile checks a profile name.
func ParseProfile(s string) (Profile, error) {
	switch p := Profile(s); p {
	case "", ProfileSidecar:
		return ProfileSidecar, nil
	case ProfileAmbientPod, ProfileAmbientNode:
		return p, nil
	}
	return "", &OptionError{Option: "profile", Value: s, Reason: "want sidecar, ambient-pod or ambient-node"}
}

// Default probe SNAT addresses of Istio's node agent (A§2.1).
var (
	DefaultProbeSNATv4 = netip.MustParseAddr("169.254.7.127")
	DefaultProbeSNATv6 = netip.MustParseAddr("fd16:9254:7127:1337:ffff:ffff:ffff:ffff")
)

// AmbientNode holds the node agent's global settings (A§2.1).
type AmbientNode struct {
	// DNSCapture is the default DNS capture of pods (AMBIENT_DNS_CAPTURE).
	DNSCapture bool
	// EnableIPv6 programs IPv6 rules and routing (AMBIENT_IPV6), node-wide.
	EnableIPv6 bool
	// ProbeSNATv4/v6: the source kubelet probes are SNATed to on the node
	// and let through uncaptured in the pod (HOST_PROBE_SNAT_IP[V6]).
	ProbeSNATv4 netip.Addr
	ProbeSNATv6 netip.Addr
}

// Families returns the address families the settings program.
func (n AmbientNode) Families() Family {
	if n.EnableIPv6 {
		return BothFamilies
	}
	return IPv4
}

// DNSOverride is a pod's ambient.istio.io/dns-capture annotation.
type DNSOverride uint8

const (
	DNSUnset DNSOverride = iota
	DNSEnabled
	DNSDisabled
)

func (d DNSOverride) String() string {
	switch d {
	case DNSEnabled:
		return "enabled"
	case DNSDisabled:
		return "disabled"
	}
	return "unset"
}

// PodOverrides are the per-pod settings read from annotations (A§2.2).
type PodOverrides struct {
	IngressMode       bool        // inbound capture bypassed
	DNS               DNSOverride // wins over AmbientNode.DNSCapture
	VirtualInterfaces []Iface     // inbound TCP on these goes to outbound capture
}

// AmbientPodConfig is everything the in-pod rules depend on.
type AmbientPodConfig struct {
	Node AmbientNode
	Pod  PodOverrides
}

// DNSEnabled is the pod's effective DNS capture (A§2.3): the annotation
// wins over the node setting.
func (c AmbientPodConfig) DNSEnabled() bool {
	switch c.Pod.DNS {
	case DNSEnabled:
		return true
	case DNSDisabled:
		return false
	}
	return c.Node.DNSCapture
}

// AmbientNodeConfig is what the node's probe SNAT rules depend on.
type AmbientNodeConfig struct {
	Node AmbientNode
	// ProbeAddrs are the enrolled pods' IPs whose locally generated TCP is
	// SNATed (the probe sets' elements). A node agent keeps them current
	// one pod at a time (nfintercept.AddProbeAddrs/RemoveProbeAddrs).
	ProbeAddrs []netip.Addr
}

// Pod annotations read in ambient mode (A§2.2), with
// AnnRerouteVirtualInterfaces (shared with the sidecar profile).
const (
	AnnBypassInboundCapture = "ambient.istio.io/bypass-inbound-capture"
	AnnDNSCapture           = "ambient.istio.io/dns-capture"
)

// Environment variables of Istio's node agent (A§2.1).
const (
	EnvAmbientDNSCapture = "AMBIENT_DNS_CAPTURE"
	EnvAmbientIPv6       = "AMBIENT_IPV6"
	EnvHostProbeSNATIP   = "HOST_PROBE_SNAT_IP"
	EnvHostProbeSNATIPv6 = "HOST_PROBE_SNAT_IPV6"
)

// AmbientOptions are the node settings as given: set by the caller (a
// command line), else read from the node agent's environment. Empty
// strings mean "not given".
type AmbientOptions struct {
	DNSCapture  string // AMBIENT_DNS_CAPTURE
	IPv6        string // AMBIENT_IPV6
	ProbeSNATv4 string // HOST_PROBE_SNAT_IP
	ProbeSNATv6 string // HOST_PROBE_SNAT_IPV6

	// Given marks the settings Set by the caller rather than read from
	// the environment, keyed by their environment variable name.
	Given map[string]bool
}

// ambientEnv are the node agent's variables, one per setting.
var ambientEnv = []string{EnvAmbientDNSCapture, EnvAmbientIPv6, EnvHostProbeSNATIP, EnvHostProbeSNATIPv6}

func (o *AmbientOptions) field(env string) *string {
	switch env {
	case EnvAmbientDNSCapture:
		return &o.DNSCapture
	case EnvAmbientIPv6:
		return &o.IPv6
	case EnvHostProbeSNATIP:
		return &o.ProbeSNATv4
	case EnvHostProbeSNATIPv6:
		return &o.ProbeSNATv6
	}
	return nil
}

// LoadEnv fills every setting not Set from the node agent's environment
// (Set values win).
func (o *AmbientOptions) LoadEnv(getenv func(string) (string, bool)) {
	for _, env := range ambientEnv {
		if o.Given[env] {
			continue
		}
		if v, ok := getenv(env); ok {
			*o.field(env) = v
		}
	}
}

// Set stores the value of the setting named by its environment variable
// (marking it given); other names are ignored.
func (o *AmbientOptions) Set(env, value string) {
	f := o.field(env)
	if f == nil {
		return
	}
	if o.Given == nil {
		o.Given = map[string]bool{}
	}
	o.Given[env] = true
	*f = value
}

// errorFor names the setting by its variable; Env is set too when the
// value came from the environment (a caller may rename Option).
func (o *AmbientOptions) errorFor(env, value, reason string) error {
	e := &OptionError{Option: env, Value: value, Reason: reason}
	if !o.Given[env] {
		e.Env = env
	}
	return e
}

// Node validates the options into the node settings. Booleans from the
// environment are read as the node agent reads them (Go bools, anything
// else is false); Set ones must parse. Addresses must be a single address
// of their family, wherever they come from (the node agent refuses to
// start on a bad one). Errors name the setting by its variable.
func (o *AmbientOptions) Node() (AmbientNode, error) {
	n := AmbientNode{ProbeSNATv4: DefaultProbeSNATv4, ProbeSNATv6: DefaultProbeSNATv6}
	var err error
	if n.DNSCapture, err = o.boolean(EnvAmbientDNSCapture, o.DNSCapture); err != nil {
		return n, err
	}
	if n.EnableIPv6, err = o.boolean(EnvAmbientIPv6, o.IPv6); err != nil {
		return n, err
	}
	if o.ProbeSNATv4 != "" {
		if n.ProbeSNATv4, err = o.addr(EnvHostProbeSNATIP, o.ProbeSNATv4, true); err != nil {
			return n, err
		}
	}
	if o.ProbeSNATv6 != "" {
		if n.ProbeSNATv6, err = o.addr(EnvHostProbeSNATIPv6, o.ProbeSNATv6, false); err != nil {
			return n, err
		}
	}
	return n, nil
}

func (o *AmbientOptions) boolean(env, raw string) (bool, error) {
	if raw == "" {
		return false, nil
	}
	v, err := strconv.ParseBool(raw)
	if err != nil {
		if !o.Given[env] {
			return false, nil // the node agent's reading: unparsable = false
		}
		return false, o.errorFor(env, raw, "want true or false")
	}
	return v, nil
}

func (o *AmbientOptions) addr(env, raw string, v4 bool) (netip.Addr, error) {
	a, why := parseProbeAddr(raw, v4)
	if why != "" {
		return netip.Addr{}, o.errorFor(env, raw, why)
	}
	return a, nil
}

// parseProbeAddr reads one address of the family, no prefix, no zone.
func parseProbeAddr(raw string, v4 bool) (netip.Addr, string) {
	a, err := netip.ParseAddr(strings.TrimSpace(raw))
	switch {
	case err != nil:
		return a, "not an IP address"
	case v4 && !a.Is4():
		return a, "not an IPv4 address"
	case !v4 && (!a.Is6() || a.Is4In6()):
		return a, "not an IPv6 address"
	case a.Zone() != "":
		return a, "an address with a zone cannot be a SNAT source"
	case a.IsUnspecified() || a.IsMulticast():
		return a, "not a unicast address"
	}
	return a, ""
}

// PodOverridesFromAnnotations reads a pod's ambient annotations (A§2.2).
// Unlike the node agent, which warns and ignores an unparsable boolean,
// a bad value is refused, naming the annotation. Other keys are ignored.
func PodOverridesFromAnnotations(ann map[string]string) (PodOverrides, error) {
	var p PodOverrides
	bypass, _, err := annBool(ann, AnnBypassInboundCapture)
	if err != nil {
		return p, err
	}
	p.IngressMode = bypass
	dns, ok, err := annBool(ann, AnnDNSCapture)
	if err != nil {
		return p, err
	}
	if ok {
		p.DNS = DNSDisabled
		if dns {
			p.DNS = DNSEnabled
		}
	}
	if v, ok := ann[AnnRerouteVirtualInterfaces]; ok {
		// The node agent splits on ',', trims, drops empty items, keeps
		// order and duplicates. Names go into rules, so they are checked.
		for _, item := range strings.Split(v, ",") {
			name := strings.TrimSpace(item)
			if name == "" {
				continue
			}
			if why := ifaceProblem(name); why != "" {
				return p, annError(AnnRerouteVirtualInterfaces, v, why)
			}
			p.VirtualInterfaces = append(p.VirtualInterfaces, Iface(name))
		}
	}
	return p, nil
}

// annBool reads a boolean annotation: its value and whether it is present;
// a value that does not parse is an *AnnotationError naming it.
func annBool(ann map[string]string, key string) (v, ok bool, err error) {
	raw, ok := ann[key]
	if !ok {
		return false, false, nil
	}
	if v, err = strconv.ParseBool(raw); err != nil {
		return false, true, annError(key, raw, "want true or false")
	}
	return v, true, nil
}
