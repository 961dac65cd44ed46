package translate

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"
)

// Annotations and proxy environment the CNI plugin's pod selection reads.
const (
	AnnSidecarStatus = "sidecar.istio.io/status"
	AnnInject        = "sidecar.istio.io/inject"
	AnnProxyConfig   = "proxy.istio.io/config"

	EnvDNSCapture   = "ISTIO_META_DNS_CAPTURE"
	EnvDualStack    = "ISTIO_DUAL_STACK"
	EnvInvalidDrop  = "INVALID_DROP"
	EnvDisableEnvoy = "DISABLE_ENVOY"
)

// cniProxyID is the uid and gid the CNI plugin uses when the proxy
// container sets none (or 0).
const cniProxyID = 1337

// CNIPod is what Istio's CNI plugin knows about a pod on ADD, as far as a
// plugin without the Kubernetes API can know it: the pod's annotations and
// the facts of its istio-proxy container (which nfintercept-cni takes from
// its own configuration, the mesh-wide mirror of the injector's settings).
type CNIPod struct {
	Annotations map[string]string
	// ProxyUID and ProxyGID are the istio-proxy container's runAsUser and
	// runAsGroup; 0 means unset (1337 is used).
	ProxyUID, ProxyGID uint32
	// ProxyEnv is the istio-proxy container's environment before the pod's
	// proxy.istio.io/config proxyMetadata is applied over it.
	ProxyEnv map[string]string
}

// CNIDecision is what the CNI plugin does with a pod.
type CNIDecision struct {
	// Skip, when non-empty, says why the pod is passed through untouched.
	Skip string
	// Options are the istio-iptables options Istio's plugin would program
	// (only when Skip is empty).
	Options Options
	// Warnings are ignored inputs (unparsable booleans in the proxy
	// environment, read as false as Istio does).
	Warnings []string
}

// CNIPodDecision applies the CNI plugin's rules (SPEC §6.2–6.3), not the
// injector's: which pods are captured (sidecar status present and listing
// istio-proxy but no istio-init, injection not disabled, interception mode
// not NONE, envoy not disabled), then the options Istio's plugin derives
// from the annotations (its own defaults: -o 15020, 15020,15021,15090
// always excluded inbound, -i "*" and -b "*"), the proxy uid/gid (not
// forced to 1337 under TPROXY) and the proxy environment (DNS capture
// captures all port-53 traffic). processEnv supplies the settings Istio's
// plugin reads from its own process environment (owner groups, the IPv4
// loopback CIDR). A bad annotation is an *AnnotationError.
func CNIPodDecision(pod CNIPod, processEnv func(string) (string, bool)) (CNIDecision, error) {
	ann := pod.Annotations
	status, ok := ann[AnnSidecarStatus]
	if !ok {
		return CNIDecision{Skip: "no " + AnnSidecarStatus + " annotation (not injected)"}, nil
	}
	if why := statusSkip(status); why != "" {
		return CNIDecision{Skip: why}, nil
	}
	if v, ok := ann[AnnInject]; ok {
		if on, err := strconv.ParseBool(v); err == nil && !on {
			return CNIDecision{Skip: AnnInject + " is " + strconv.Quote(v)}, nil
		}
	}
	mode, none, err := annInterceptionMode(ann)
	if err != nil {
		return CNIDecision{}, err
	}
	if none {
		return CNIDecision{Skip: AnnInterceptionMode + " is NONE"}, nil
	}

	env, err := proxyEnv(pod)
	if err != nil {
		return CNIDecision{}, err
	}
	var d CNIDecision
	flag := func(name string) bool {
		v, ok := env[name]
		if !ok {
			return false
		}
		b, err := strconv.ParseBool(v)
		if err != nil {
			d.Warnings = append(d.Warnings, fmt.Sprintf("proxy environment %s=%q is not a boolean, read as false", name, v))
		}
		return b
	}
	if flag(EnvDisableEnvoy) {
		return CNIDecision{Skip: "proxy environment " + EnvDisableEnvoy + " is true"}, nil
	}

	o := DefaultOptions()
	o.InboundInterceptionMode = mode
	o.ProxyUID = cniID(pod.ProxyUID)
	o.ProxyGID = cniID(pod.ProxyGID)
	o.CNIMode = true
	o.RedirectDNS = flag(EnvDNSCapture)
	o.CaptureAllDNS = o.RedirectDNS
	o.DualStack = flag(EnvDualStack)
	o.DropInvalid = flag(EnvInvalidDrop)
	if processEnv != nil {
		o.LoadEnvOnly(processEnv)
	}

	if o.OutboundIPRangesInclude, o.OutboundIPRangesExclude, err = annIPRanges(ann); err != nil {
		return CNIDecision{}, err
	}
	// Port lists are validated trimmed; the raw value reaches the rules.
	for _, p := range []struct {
		key, def   string
		wildcardOK bool
		dst        *string
	}{
		{AnnIncludeInboundPorts, "*", true, &o.InboundPortsInclude},
		{AnnExcludeInboundPorts, "15020", false, &o.InboundPortsExclude},
		{AnnIncludeOutboundPorts, "", false, &o.OutboundPortsInclude},
		{AnnExcludeOutboundPorts, "15020", false, &o.OutboundPortsExclude},
	} {
		*p.dst = annOr(ann, p.key, p.def)
		if _, err := checkAnnPorts(p.key, *p.dst, p.wildcardOK); err != nil {
			return CNIDecision{}, err
		}
	}
	o.InboundPortsExclude = appendUnique(o.InboundPortsExclude, "15020", "15021", "15090")

	if err := annInterfaces(ann, &o); err != nil {
		return CNIDecision{}, err
	}
	d.Options = o
	return d, nil
}

// CNIConfig is CNIPodDecision followed by validation into a Config, for
// callers that want the typed configuration directly. skip is non-empty
// (and the Config zero) for pods the plugin passes through.
func CNIConfig(pod CNIPod, processEnv func(string) (string, bool), sys System) (cfg Config, skip string, err error) {
	d, err := CNIPodDecision(pod, processEnv)
	if err != nil || d.Skip != "" {
		return Config{}, d.Skip, err
	}
	cfg, err = d.Options.Config(sys)
	return cfg, "", err
}

func cniID(id uint32) string {
	if id == 0 {
		id = cniProxyID
	}
	return strconv.FormatUint(uint64(id), 10)
}

// appendUnique appends items to a comma-separated list and drops repeated
// items (exact strings, first occurrence kept), as Istio's plugin does.
func appendUnique(list string, items ...string) string {
	var out []string
	seen := map[string]bool{}
	for _, it := range append(strings.Split(list, ","), items...) {
		if !seen[it] {
			seen[it] = true
			out = append(out, it)
		}
	}
	return strings.Join(out, ",")
}

// statusSkip reads the injector's status annotation: a JSON object whose
// initContainers and containers name what was injected. A status listing
// istio-init (injection without CNI) or without istio-proxy is skipped. A
// value that is not such an object names nothing and is taken as injected.
func statusSkip(status string) string {
	var st struct {
		InitContainers *[]string `json:"initContainers"`
		Containers     *[]string `json:"containers"`
	}
	if json.Unmarshal([]byte(status), &st) != nil {
		return ""
	}
	if st.InitContainers != nil && slices.Contains(*st.InitContainers, "istio-init") {
		return AnnSidecarStatus + " lists the istio-init container (capture is installed by it)"
	}
	if st.Containers != nil && !slices.Contains(*st.Containers, "istio-proxy") {
		return AnnSidecarStatus + " lists no istio-proxy container"
	}
	return ""
}

// proxyEnv is the proxy container's environment: the given one, with the
// pod's proxy.istio.io/config proxyMetadata over it.
func proxyEnv(pod CNIPod) (map[string]string, error) {
	env := map[string]string{}
	for k, v := range pod.ProxyEnv {
		env[k] = v
	}
	raw, ok := pod.Annotations[AnnProxyConfig]
	if !ok {
		return env, nil
	}
	pc, err := ParseProxyConfig([]byte(raw))
	if err != nil {
		return nil, annError(AnnProxyConfig, raw, err.Error())
	}
	for k, v := range pc.ProxyMetadata {
		env[k] = v
	}
	return env, nil
}

// ProxyConfig is the part of Istio's ProxyConfig (mesh defaultConfig, or a
// pod's proxy.istio.io/config annotation) that shapes capture.
type ProxyConfig struct {
	// ProxyMetadata becomes the proxy container's environment.
	ProxyMetadata map[string]string `json:"proxyMetadata"`
	// InterceptionMode is REDIRECT, TPROXY or NONE.
	InterceptionMode string `json:"interceptionMode"`
}

// ParseProxyConfig reads a ProxyConfig in YAML or JSON. Fields other than
// those of ProxyConfig are ignored, as they do not shape capture.
func ParseProxyConfig(data []byte) (ProxyConfig, error) {
	var pc ProxyConfig
	if err := yaml.Unmarshal(data, &pc); err != nil {
		return ProxyConfig{}, fmt.Errorf("not a ProxyConfig: %v", oneLine(err))
	}
	return pc, nil
}

func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}
