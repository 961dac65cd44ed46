package translate

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"sigs.k8s.io/yaml"
)

// Pod annotations that shape the interception (SPEC §6.1).
const (
	AnnInterceptionMode         = "sidecar.istio.io/interceptionMode"
	AnnIncludeOutboundIPRanges  = "traffic.sidecar.istio.io/includeOutboundIPRanges"
	AnnExcludeOutboundIPRanges  = "traffic.sidecar.istio.io/excludeOutboundIPRanges"
	AnnIncludeInboundPorts      = "traffic.sidecar.istio.io/includeInboundPorts"
	AnnExcludeInboundPorts      = "traffic.sidecar.istio.io/excludeInboundPorts"
	AnnStatusPort               = "status.sidecar.istio.io/port"
	AnnIncludeOutboundPorts     = "traffic.sidecar.istio.io/includeOutboundPorts"
	AnnExcludeOutboundPorts     = "traffic.sidecar.istio.io/excludeOutboundPorts"
	AnnRerouteVirtualInterfaces = "istio.io/reroute-virtual-interfaces"
	AnnKubevirtInterfaces       = "traffic.sidecar.istio.io/kubevirtInterfaces" // deprecated
	AnnExcludeInterfaces        = "traffic.sidecar.istio.io/excludeInterfaces"
)

// ErrInterceptionDisabled is returned (wrapped) for interceptionMode NONE:
// the injector adds no istio-init container, so there is nothing to install.
var ErrInterceptionDisabled = errors.New("interception disabled")

// Mesh defaults the sidecar injector falls back to (default mesh config
// and Helm values).
const (
	meshProxyListenPort        = "15001"
	meshProxyInboundListenPort = "15006"
	meshProxyUID               = "1337"
	meshInterceptionMode       = "REDIRECT"
	meshIncludeIPRanges        = "*"
	meshExcludeIPRanges        = ""
	meshIncludeInboundPorts    = "*"
	meshExcludeInboundPorts    = ""
	meshStatusPort             = "15020"
)

// InjectorOptions returns the istio-iptables options the Istio sidecar
// injector gives the istio-init container for a pod with these
// annotations, under the default mesh configuration (the injector's rules,
// not the CNI plugin's: see CNIPodDecision). Values are validated as
// Istio's CNI plugin validates them; errors are *AnnotationError.
// interceptionMode NONE is ErrInterceptionDisabled.
func InjectorOptions(ann map[string]string) (Options, error) {
	o := DefaultOptions()

	mode, none, err := annInterceptionMode(ann)
	if err != nil {
		return Options{}, err
	}
	if none {
		return Options{}, fmt.Errorf("annotation %s %q: %w (the injector adds no istio-init container)", AnnInterceptionMode, mode, ErrInterceptionDisabled)
	}
	include, exclude, err := annIPRanges(ann)
	if err != nil {
		return Options{}, err
	}
	inPorts, err := checkAnnPorts(AnnIncludeInboundPorts, annOr(ann, AnnIncludeInboundPorts, meshIncludeInboundPorts), true)
	if err != nil {
		return Options{}, err
	}
	exInPorts, err := checkAnnPorts(AnnExcludeInboundPorts, annOr(ann, AnnExcludeInboundPorts, meshExcludeInboundPorts), false)
	if err != nil {
		return Options{}, err
	}
	status := strings.TrimSpace(annOr(ann, AnnStatusPort, meshStatusPort))
	if status != "" {
		if _, why := parsePortNumber(status); why != "" {
			return Options{}, annError(AnnStatusPort, ann[AnnStatusPort], why)
		}
	}

	// The proxy UID comes from the injector (1337 unless OpenShift picks
	// one); TPROXY forces 1337. -g is not passed: it defaults to -u.
	o.EnvoyPort = meshProxyListenPort
	o.InboundCapturePort = meshProxyInboundListenPort
	o.ProxyUID = meshProxyUID
	o.InboundInterceptionMode = mode
	o.OutboundIPRangesInclude = include
	o.OutboundIPRangesExclude = exclude
	o.InboundPortsInclude = inPorts
	o.InboundPortsExclude = "15090,15021"
	if d := excludeInboundPort(status, exInPorts); d != "" {
		o.InboundPortsExclude = "15090,15021," + d
	}
	if o.OutboundPortsInclude, err = checkAnnPorts(AnnIncludeOutboundPorts, ann[AnnIncludeOutboundPorts], false); err != nil {
		return Options{}, err
	}
	if o.OutboundPortsExclude, err = checkAnnPorts(AnnExcludeOutboundPorts, ann[AnnExcludeOutboundPorts], false); err != nil {
		return Options{}, err
	}
	if err := annInterfaces(ann, &o); err != nil {
		return Options{}, err
	}
	return o, nil
}

// annOr is the annotation's value, or def when it is absent (present
// but empty is kept: Istio distinguishes them).
func annOr(ann map[string]string, key, def string) string {
	if v, ok := ann[key]; ok {
		return v
	}
	return def
}

// annInterceptionMode reads the interception mode (REDIRECT when absent)
// the same for the injector and the CNI plugin; none reports NONE, which
// each of them handles in its own way.
func annInterceptionMode(ann map[string]string) (mode string, none bool, err error) {
	mode = annOr(ann, AnnInterceptionMode, meshInterceptionMode)
	switch mode {
	case string(ModeRedirect), string(ModeTProxy):
		return mode, false, nil
	case "NONE":
		return mode, true, nil
	}
	return mode, false, annError(AnnInterceptionMode, mode, "must be REDIRECT, TPROXY or NONE")
}

// annIPRanges reads and checks the outbound ranges (-i, default "*";
// -x, default empty), the same for the injector and the CNI plugin.
func annIPRanges(ann map[string]string) (include, exclude string, err error) {
	include = annOr(ann, AnnIncludeOutboundIPRanges, meshIncludeIPRanges)
	if err := checkAnnCIDRs(AnnIncludeOutboundIPRanges, include, true); err != nil {
		return "", "", err
	}
	exclude = annOr(ann, AnnExcludeOutboundIPRanges, meshExcludeIPRanges)
	if err := checkAnnCIDRs(AnnExcludeOutboundIPRanges, exclude, false); err != nil {
		return "", "", err
	}
	return include, exclude, nil
}

// annInterfaces sets -k (istio.io/reroute-virtual-interfaces, else the
// deprecated kubevirtInterfaces) and -c from the annotations, the same for
// the injector and the CNI plugin.
func annInterfaces(ann map[string]string, o *Options) error {
	virtKey := AnnRerouteVirtualInterfaces
	if _, ok := ann[virtKey]; !ok {
		virtKey = AnnKubevirtInterfaces
	}
	o.RerouteVirtualInterfaces = ann[virtKey]
	if err := checkAnnIfaces(virtKey, o.RerouteVirtualInterfaces); err != nil {
		return err
	}
	o.ExcludeInterfaces = ann[AnnExcludeInterfaces]
	return checkAnnIfaces(AnnExcludeInterfaces, o.ExcludeInterfaces)
}

// InjectorConfig is InjectorOptions validated into a Config.
func InjectorConfig(ann map[string]string, sys System) (Config, error) {
	o, err := InjectorOptions(ann)
	if err != nil {
		return Config{}, err
	}
	return o.Config(sys)
}

// ArgsFromAnnotations returns the istio-init container's arguments
// (without the program name) for InjectorOptions(ann), spelled as the
// injection template spells them: the optional flags only when their
// annotation is present.
func ArgsFromAnnotations(ann map[string]string) ([]string, error) {
	o, err := InjectorOptions(ann)
	if err != nil {
		return nil, err
	}
	args := []string{
		"-p", o.EnvoyPort,
		"-z", o.InboundCapturePort,
		"-u", o.ProxyUID,
		"-m", o.InboundInterceptionMode,
		"-i", o.OutboundIPRangesInclude,
		"-x", o.OutboundIPRangesExclude,
		"-b", o.InboundPortsInclude,
		"-d", o.InboundPortsExclude,
	}
	has := func(keys ...string) bool {
		for _, k := range keys {
			if _, ok := ann[k]; ok {
				return true
			}
		}
		return false
	}
	for _, opt := range []struct {
		keys  []string
		flag  string
		value string
	}{
		{[]string{AnnIncludeOutboundPorts}, "-q", o.OutboundPortsInclude},
		{[]string{AnnExcludeOutboundPorts}, "-o", o.OutboundPortsExclude},
		{[]string{AnnRerouteVirtualInterfaces, AnnKubevirtInterfaces}, "-k", o.RerouteVirtualInterfaces},
		{[]string{AnnExcludeInterfaces}, "-c", o.ExcludeInterfaces},
	} {
		if has(opt.keys...) {
			args = append(args, opt.flag, opt.value)
		}
	}
	return args, nil
}

// AnnotationError reports an unusable annotation value: one line naming
// the annotation, the value and the reason.
type AnnotationError struct {
	Annotation, Value, Reason string
}

func (e *AnnotationError) Error() string {
	return fmt.Sprintf("annotation %s %q: %s", e.Annotation, e.Value, e.Reason)
}

func annError(key, value, why string) error {
	return &AnnotationError{Annotation: key, Value: value, Reason: why}
}

// excludeInboundPort is the injector's template function: add the status
// port to the excluded inbound ports unless present (or 0/empty).
func excludeInboundPort(status, excluded string) string {
	if status == "" || status == "0" {
		return excluded
	}
	var out []string
	for _, p := range strings.Split(excluded, ",") {
		if p == status {
			return excluded
		}
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(append(out, status), ",")
}

// checkAnnPorts validates a port list like the CNI plugin: the value is
// trimmed, every item trimmed and parsed as a decimal port; empty items
// and ranges are errors; "*" alone where allowed. It returns the trimmed
// value, which is what reaches the rules.
func checkAnnPorts(key, raw string, wildcardOK bool) (string, error) {
	v := strings.TrimSpace(raw)
	if v == "" || (wildcardOK && v == "*") {
		return v, nil
	}
	for _, item := range strings.Split(v, ",") {
		item = strings.TrimSpace(item)
		switch {
		case item == "":
			return "", annError(key, raw, "empty item in port list")
		case item == "*":
			if wildcardOK {
				return "", annError(key, raw, `"*" must be used alone`)
			}
			return "", annError(key, raw, `"*" is not allowed here`)
		}
		if _, why := parsePortNumber(item); why != "" {
			return "", annError(key, raw, why)
		}
	}
	return v, nil
}

// checkAnnCIDRs validates a CIDR list like the CNI plugin: every comma
// item (untrimmed, empty ones included) must parse as a prefix.
func checkAnnCIDRs(key, raw string, wildcardOK bool) error {
	if raw == "" || (wildcardOK && raw == "*") {
		return nil
	}
	for _, item := range strings.Split(raw, ",") {
		if item == "*" && !wildcardOK {
			return annError(key, raw, `"*" is not allowed for excluded ranges`)
		}
		if _, err := parseCIDRItem(item); err != nil {
			return annError(key, raw, err.Error())
		}
	}
	return nil
}

// checkAnnIfaces validates interface names like the CNI plugin: trimmed,
// non-empty, at most 15 bytes, [a-zA-Z][a-zA-Z0-9_.-]*.
func checkAnnIfaces(key, raw string) error {
	if strings.TrimSpace(raw) == "" {
		return nil
	}
	for _, item := range strings.Split(raw, ",") {
		name := strings.TrimSpace(item)
		if why := annIfaceProblem(name); why != "" {
			return annError(key, raw, why)
		}
	}
	return nil
}

func annIfaceProblem(name string) string {
	if name == "" {
		return "empty interface name"
	}
	if len(name) > maxIfaceLen {
		return fmt.Sprintf("interface name %q is longer than %d bytes", name, maxIfaceLen)
	}
	for i := 0; i < len(name); i++ {
		ch := name[i]
		letter := ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z'
		if i == 0 && !letter {
			return fmt.Sprintf("interface name %q must start with a letter", name)
		}
		if !letter && !(ch >= '0' && ch <= '9') && !strings.ContainsRune("_.-", rune(ch)) {
			return fmt.Sprintf("interface name %q may only contain letters, digits, '_', '.' and '-'", name)
		}
	}
	return ""
}

// ParseAnnotations reads pod annotations from either
//   - key=value lines (blank lines and # comments ignored), or
//   - a Pod manifest in JSON or YAML (metadata.annotations), read with
//     sigs.k8s.io/yaml as Kubernetes tooling reads manifests.
func ParseAnnotations(r io.Reader) (map[string]string, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("reading annotations: %w", err)
	}
	if !utf8.Valid(data) {
		return nil, errors.New("annotations: input is not UTF-8")
	}
	text := strings.TrimPrefix(string(data), "\ufeff")
	text = strings.ReplaceAll(text, "\r\n", "\n")
	trimmed := strings.TrimSpace(text)
	switch {
	case trimmed == "":
		return map[string]string{}, nil
	case trimmed[0] == '{':
		return annotationsFromJSON(trimmed)
	case looksLikeKeyValue(text):
		return annotationsFromKeyValue(text)
	}
	return annotationsFromManifest(text)
}

// looksLikeKeyValue decides the format from the first significant line:
// "key=value" where the key has no ':' or blanks cannot start a manifest.
func looksLikeKeyValue(text string) bool {
	for _, line := range strings.Split(text, "\n") {
		t := strings.TrimSpace(line)
		if t == "" || t[0] == '#' || t == "---" || strings.HasPrefix(t, "%") {
			continue
		}
		key, _, ok := strings.Cut(t, "=")
		return ok && strings.TrimSpace(key) != "" && !strings.ContainsAny(strings.TrimSpace(key), ": \t\"'")
	}
	return false
}

func annotationsFromKeyValue(text string) (map[string]string, error) {
	out := map[string]string{}
	for n, line := range strings.Split(text, "\n") {
		t := strings.TrimSpace(line)
		if t == "" || t[0] == '#' {
			continue
		}
		key, value, ok := strings.Cut(t, "=")
		key = strings.TrimSpace(key)
		if !ok || key == "" {
			return nil, fmt.Errorf("annotations line %d: expected key=value, got %q", n+1, t)
		}
		if _, dup := out[key]; dup {
			return nil, fmt.Errorf("annotations line %d: %s given twice", n+1, key)
		}
		out[key] = strings.TrimSpace(value)
	}
	return out, nil
}

// podManifest is the part of a Pod manifest annotations are read from.
type podManifest struct {
	Kind     string `json:"kind"`
	Metadata *struct {
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
}

// annotationsFromJSON reads a JSON manifest strictly: annotation values
// must be strings and nothing may follow the object.
func annotationsFromJSON(text string) (map[string]string, error) {
	var p podManifest
	dec := json.NewDecoder(strings.NewReader(text))
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("annotations: reading JSON manifest: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("annotations: JSON manifest is followed by more data")
	}
	return podAnnotations([]podManifest{p})
}

// annotationsFromManifest reads the one Pod manifest (JSON, or YAML with
// optional "---" separators around it) and returns its annotations.
func annotationsFromManifest(text string) (map[string]string, error) {
	var found []podManifest
	for _, doc := range yamlDocuments(text) {
		var p podManifest
		if err := yaml.Unmarshal([]byte(doc), &p); err != nil {
			return nil, fmt.Errorf("annotations: reading manifest: %s", oneLine(err))
		}
		if p.Kind != "" || p.Metadata != nil {
			found = append(found, p)
		}
	}
	return podAnnotations(found)
}

// podAnnotations returns the annotations of the one Pod manifest found.
func podAnnotations(found []podManifest) (map[string]string, error) {
	switch {
	case len(found) == 0:
		return nil, errors.New("annotations: manifest has no metadata (want a Pod manifest)")
	case len(found) > 1:
		return nil, fmt.Errorf("annotations: input has %d manifests, want one Pod", len(found))
	}
	p := found[0]
	if p.Kind != "" && p.Kind != "Pod" {
		return nil, fmt.Errorf("annotations: manifest is a %s, want a Pod", p.Kind)
	}
	if p.Metadata == nil {
		return nil, errors.New("annotations: manifest has no metadata (want a Pod manifest)")
	}
	if p.Metadata.Annotations == nil {
		return map[string]string{}, nil
	}
	return p.Metadata.Annotations, nil
}

// yamlDocuments splits a YAML stream at its document markers ("---" and
// "..." lines), dropping documents that hold only blanks and comments.
func yamlDocuments(text string) []string {
	var docs []string
	var cur []string
	meaningful := false
	flush := func() {
		if meaningful {
			docs = append(docs, strings.Join(cur, "\n"))
		}
		cur, meaningful = nil, false
	}
	for _, l := range strings.Split(text, "\n") {
		if l == "---" || strings.HasPrefix(l, "--- ") || l == "..." {
			flush()
			if rest, ok := strings.CutPrefix(l, "--- "); ok {
				cur = append(cur, rest)
				meaningful = strings.TrimSpace(rest) != ""
			}
			continue
		}
		cur = append(cur, l)
		if t := strings.TrimSpace(l); t != "" && t[0] != '#' && t[0] != '%' {
			meaningful = true
		}
	}
	flush()
	return docs
}
