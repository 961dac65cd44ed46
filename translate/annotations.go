package translate

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
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

// ArgsFromAnnotations returns the istio-iptables arguments (without the
// program name) the Istio sidecar injector gives the istio-init container
// for a pod with these annotations, under the default mesh configuration.
// Values are validated as Istio's CNI plugin validates them; errors name
// the annotation.
func ArgsFromAnnotations(ann map[string]string) ([]string, error) {
	get := func(key, def string) string {
		if v, ok := ann[key]; ok {
			return v
		}
		return def
	}

	mode := get(AnnInterceptionMode, meshInterceptionMode)
	switch mode {
	case "REDIRECT", "TPROXY":
	case "NONE":
		return nil, fmt.Errorf("annotation %s %q: %w (the injector adds no istio-init container)", AnnInterceptionMode, mode, ErrInterceptionDisabled)
	default:
		return nil, annError(AnnInterceptionMode, mode, "must be REDIRECT, TPROXY or NONE")
	}

	include := get(AnnIncludeOutboundIPRanges, meshIncludeIPRanges)
	if err := checkAnnCIDRs(AnnIncludeOutboundIPRanges, include, true); err != nil {
		return nil, err
	}
	exclude := get(AnnExcludeOutboundIPRanges, meshExcludeIPRanges)
	if err := checkAnnCIDRs(AnnExcludeOutboundIPRanges, exclude, false); err != nil {
		return nil, err
	}
	inPorts, err := checkAnnPorts(AnnIncludeInboundPorts, get(AnnIncludeInboundPorts, meshIncludeInboundPorts), true)
	if err != nil {
		return nil, err
	}
	exInPorts, err := checkAnnPorts(AnnExcludeInboundPorts, get(AnnExcludeInboundPorts, meshExcludeInboundPorts), false)
	if err != nil {
		return nil, err
	}
	status := strings.TrimSpace(get(AnnStatusPort, meshStatusPort))
	if status != "" {
		if _, why := parsePortNumber(status); why != "" {
			return nil, annError(AnnStatusPort, ann[AnnStatusPort], why)
		}
	}

	// The proxy UID comes from the injector (1337 unless OpenShift picks
	// one); TPROXY forces 1337. -g is not passed: it defaults to -u.
	args := []string{
		"-p", meshProxyListenPort,
		"-z", meshProxyInboundListenPort,
		"-u", meshProxyUID,
		"-m", mode,
		"-i", include,
		"-x", exclude,
		"-b", inPorts,
		"-d", "15090,15021",
	}
	if d := excludeInboundPort(status, exInPorts); d != "" {
		args[len(args)-1] = "15090,15021," + d
	}

	for _, opt := range []struct{ key, flag string }{
		{AnnIncludeOutboundPorts, "-q"},
		{AnnExcludeOutboundPorts, "-o"},
	} {
		if v, ok := ann[opt.key]; ok {
			v, err := checkAnnPorts(opt.key, v, false)
			if err != nil {
				return nil, err
			}
			args = append(args, opt.flag, v)
		}
	}

	virt, virtKey, ok := "", AnnRerouteVirtualInterfaces, false
	if virt, ok = ann[AnnRerouteVirtualInterfaces]; !ok {
		virtKey = AnnKubevirtInterfaces
		virt, ok = ann[AnnKubevirtInterfaces]
	}
	if ok {
		if err := checkAnnIfaces(virtKey, virt); err != nil {
			return nil, err
		}
		args = append(args, "-k", virt)
	}
	if v, ok := ann[AnnExcludeInterfaces]; ok {
		if err := checkAnnIfaces(AnnExcludeInterfaces, v); err != nil {
			return nil, err
		}
		args = append(args, "-c", v)
	}
	return args, nil
}

func annError(key, value, why string) error {
	return fmt.Errorf("annotation %s %q: %s", key, value, why)
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
//   - a Pod manifest in JSON or YAML (metadata.annotations).
//
// The YAML reader is a small extractor, not a YAML implementation: it
// understands block mappings, plain, single- and double-quoted scalars,
// literal and folded block scalars, and rejects what it cannot read
// (anchors, aliases, tags, flow collections as values) with an error.
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
	return annotationsFromYAML(text)
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

func annotationsFromJSON(text string) (map[string]string, error) {
	var pod struct {
		Kind     string `json:"kind"`
		Metadata *struct {
			Annotations map[string]string `json:"annotations"`
		} `json:"metadata"`
	}
	dec := json.NewDecoder(strings.NewReader(text))
	if err := dec.Decode(&pod); err != nil {
		return nil, fmt.Errorf("annotations: reading JSON manifest: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("annotations: JSON manifest is followed by more data")
	}
	if pod.Kind != "" && pod.Kind != "Pod" {
		return nil, fmt.Errorf("annotations: manifest is a %s, want a Pod", pod.Kind)
	}
	if pod.Metadata == nil {
		return nil, errors.New("annotations: JSON manifest has no metadata (want a Pod manifest)")
	}
	if pod.Metadata.Annotations == nil {
		return map[string]string{}, nil
	}
	return pod.Metadata.Annotations, nil
}

// --- YAML extraction -------------------------------------------------

// yamlDoc is the part of one YAML document we look at.
type yamlDoc struct {
	kind        string
	hasMetadata bool
	annotations map[string]string
}

func annotationsFromYAML(text string) (map[string]string, error) {
	lines := strings.Split(text, "\n")
	var found []yamlDoc
	start := 0
	flush := func(end int) error {
		doc, err := readYAMLDoc(lines, start, end)
		if err != nil {
			return err
		}
		if doc.hasMetadata || doc.kind != "" {
			found = append(found, doc)
		}
		return nil
	}
	for i, l := range lines {
		if l == "---" || strings.HasPrefix(l, "--- ") || l == "..." {
			if err := flush(i); err != nil {
				return nil, err
			}
			start = i + 1
		}
	}
	if err := flush(len(lines)); err != nil {
		return nil, err
	}
	switch {
	case len(found) == 0:
		return nil, errors.New("annotations: YAML has no top-level metadata (want a Pod manifest)")
	case len(found) > 1:
		return nil, fmt.Errorf("annotations: YAML has %d documents, want one Pod", len(found))
	}
	doc := found[0]
	if doc.kind != "" && doc.kind != "Pod" {
		return nil, fmt.Errorf("annotations: manifest is a %s, want a Pod", doc.kind)
	}
	if !doc.hasMetadata {
		return nil, errors.New("annotations: YAML has no top-level metadata (want a Pod manifest)")
	}
	if doc.annotations == nil {
		doc.annotations = map[string]string{}
	}
	return doc.annotations, nil
}

// yamlError names the 1-based line.
func yamlError(line int, format string, args ...any) error {
	return fmt.Errorf("annotations: YAML line %d: %s", line+1, fmt.Sprintf(format, args...))
}

// indentOf counts leading spaces; tab reports a tab inside the indentation.
func indentOf(l string) (n int, tab bool) {
	for n < len(l) && l[n] == ' ' {
		n++
	}
	return n, n < len(l) && l[n] == '\t'
}

// insignificant reports blank and comment-only lines.
func insignificant(l string) bool {
	t := strings.TrimSpace(l)
	return t == "" || t[0] == '#'
}

// isSeqItem reports a block sequence entry ("- x" or "-").
func isSeqItem(t string) bool {
	return t == "-" || strings.HasPrefix(t, "- ") || strings.HasPrefix(t, "-\t")
}

// readYAMLDoc scans lines[start:end] for top-level kind and
// metadata.annotations; other content is skipped by indentation.
func readYAMLDoc(lines []string, start, end int) (yamlDoc, error) {
	var doc yamlDoc
	lines = lines[:end]
	for i := start; i < end; {
		l := lines[i]
		if insignificant(l) || strings.HasPrefix(l, "%") {
			i++
			continue
		}
		ind, tab := indentOf(l)
		if tab {
			return doc, yamlError(i, "tab in indentation")
		}
		if ind > 0 || isSeqItem(l) {
			i++ // content of a previous top-level key
			continue
		}
		key, rest, err := yamlKey(l, i)
		if err != nil {
			return doc, err
		}
		switch key {
		case "kind":
			v, next, err := yamlValue(lines, i, 0, rest)
			if err != nil {
				return doc, err
			}
			doc.kind = v
			i = next
		case "metadata":
			doc.hasMetadata = true
			ann, next, err := readMetadata(lines, i, rest)
			if err != nil {
				return doc, err
			}
			doc.annotations = ann
			i = next
		default:
			i++
		}
	}
	return doc, nil
}

// readMetadata reads the metadata mapping starting after line i (whose
// value part is rest) and returns its annotations and the next line.
func readMetadata(lines []string, i int, rest string) (map[string]string, int, error) {
	switch v := stripComment(rest); v {
	case "":
	case "{}", "null", "~":
		return nil, i + 1, nil
	default:
		return nil, 0, yamlError(i, "metadata must be a block mapping, got %q", v)
	}
	var ann map[string]string
	child := -1
	j := i + 1
	for j < len(lines) {
		l := lines[j]
		if insignificant(l) {
			j++
			continue
		}
		ind, tab := indentOf(l)
		if tab {
			return nil, 0, yamlError(j, "tab in indentation")
		}
		if ind == 0 {
			break
		}
		if child < 0 {
			child = ind
		}
		t := l[ind:]
		if ind > child || isSeqItem(t) {
			j++ // nested content or a sequence under the previous key
			continue
		}
		if ind < child {
			return nil, 0, yamlError(j, "inconsistent indentation in metadata")
		}
		key, rest, err := yamlKey(t, j)
		if err != nil {
			return nil, 0, err
		}
		if key != "annotations" {
			j++
			continue
		}
		if ann != nil {
			return nil, 0, yamlError(j, "metadata.annotations given twice")
		}
		ann, j, err = readAnnotations(lines, j, child, rest)
		if err != nil {
			return nil, 0, err
		}
		if ann == nil {
			ann = map[string]string{}
		}
	}
	return ann, j, nil
}

// readAnnotations reads the mapping under "annotations:" (line i, at
// indentation parent) and returns it with the next line to look at.
func readAnnotations(lines []string, i, parent int, rest string) (map[string]string, int, error) {
	switch v := stripComment(rest); {
	case v == "":
	case v == "{}" || v == "null" || v == "~":
		return map[string]string{}, i + 1, nil
	case v[0] == '{':
		return nil, 0, yamlError(i, "flow-style annotations ({...}) are not supported, use one \"key: value\" line per annotation")
	default:
		return nil, 0, yamlError(i, "metadata.annotations must be a mapping, got %q", v)
	}
	out := map[string]string{}
	ai := -1
	j := i + 1
	for j < len(lines) {
		l := lines[j]
		if insignificant(l) {
			j++
			continue
		}
		ind, tab := indentOf(l)
		if tab {
			return nil, 0, yamlError(j, "tab in indentation")
		}
		if ind <= parent {
			if ai < 0 && ind == parent && isSeqItem(l[ind:]) {
				return nil, 0, yamlError(j, "metadata.annotations must be a mapping, not a list")
			}
			break
		}
		if ai < 0 {
			ai = ind
		}
		if ind != ai {
			return nil, 0, yamlError(j, "unexpected indentation in metadata.annotations (a nested value?)")
		}
		t := l[ind:]
		if isSeqItem(t) {
			return nil, 0, yamlError(j, "metadata.annotations must be a mapping, not a list")
		}
		key, rest, err := yamlKey(t, j)
		if err != nil {
			return nil, 0, err
		}
		v, next, err := yamlValue(lines, j, ai, rest)
		if err != nil {
			return nil, 0, fmt.Errorf("%w (annotation %s)", err, key)
		}
		if _, dup := out[key]; dup {
			return nil, 0, yamlError(j, "annotation %s given twice", key)
		}
		out[key] = v
		j = next
	}
	return out, j, nil
}

// stripComment trims a value part and drops a trailing "# comment".
func stripComment(s string) string {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "#") {
		return ""
	}
	if k := strings.Index(s, " #"); k >= 0 {
		s = s[:k]
	}
	if k := strings.Index(s, "\t#"); k >= 0 {
		s = s[:k]
	}
	return strings.TrimSpace(s)
}

// yamlKey splits "key: rest" (t starts at the key). Quoted keys allowed.
func yamlKey(t string, line int) (key, rest string, err error) {
	if t == "" {
		return "", "", yamlError(line, "expected \"key: value\"")
	}
	switch t[0] {
	case '"', '\'':
		k, _, after, err := scanQuoted([]string{t}, 0, 0, line)
		if err != nil {
			return "", "", err
		}
		after = strings.TrimLeft(after, " \t")
		if !strings.HasPrefix(after, ":") || (len(after) > 1 && after[1] != ' ' && after[1] != '\t') {
			return "", "", yamlError(line, "expected ':' after key %q", k)
		}
		return k, after[1:], nil
	case '?':
		return "", "", yamlError(line, "complex keys (?) are not supported")
	case '&', '*', '!', '{', '[':
		return "", "", yamlError(line, "anchors, aliases, tags and flow keys are not supported")
	}
	for k := 0; k < len(t); k++ {
		if t[k] == ':' && (k+1 == len(t) || t[k+1] == ' ' || t[k+1] == '\t') {
			key = strings.TrimRight(t[:k], " \t")
			if key == "" {
				break
			}
			return key, t[k+1:], nil
		}
		if t[k] == '#' && k > 0 && (t[k-1] == ' ' || t[k-1] == '\t') {
			break
		}
	}
	return "", "", yamlError(line, "expected \"key: value\", got %q", t)
}

// yamlValue reads the scalar value of the entry on line i (at indentation
// ind) whose text after the colon is rest. It returns the value and the
// next line to look at.
func yamlValue(lines []string, i, ind int, rest string) (string, int, error) {
	t := strings.TrimLeft(rest, " \t")
	if t == "" || t[0] == '#' {
		// The value may start on the next, more indented line.
		j := i + 1
		for j < len(lines) && insignificant(lines[j]) {
			j++
		}
		if j == len(lines) {
			return "", j, nil
		}
		if n, _ := indentOf(lines[j]); n <= ind {
			return "", j, nil // empty (null) value
		}
		n, _ := indentOf(lines[j])
		next := strings.TrimSpace(lines[j])
		if isSeqItem(next) {
			return "", 0, yamlError(j, "value is a list, want a string")
		}
		if next[0] != '"' && next[0] != '\'' {
			if _, _, err := yamlKey(next, j); err == nil {
				return "", 0, yamlError(j, "value is a mapping, want a string")
			}
		}
		return yamlValue(lines, j, ind, lines[j][n:])
	}
	switch t[0] {
	case '"', '\'':
		col := len(lines[i]) - len(t)
		v, end, after, err := scanQuoted(lines, i, col, i)
		if err != nil {
			return "", 0, err
		}
		if a := strings.TrimSpace(after); a != "" && a[0] != '#' {
			return "", 0, yamlError(end, "unexpected %q after quoted value", a)
		}
		return v, end + 1, nil
	case '|', '>':
		return blockScalar(lines, i, ind, t)
	case '{', '[':
		return "", 0, yamlError(i, "value is a flow collection, want a string (quote it)")
	case '&', '*', '!', '@', '`', '%':
		return "", 0, yamlError(i, "values starting with %q (anchors, aliases, tags, reserved) are not supported; quote the value", t[0])
	}
	if isSeqItem(t) {
		return "", 0, yamlError(i, "value is a list, want a string")
	}
	return plainScalar(lines, i, ind, t)
}

// plainScalar reads an unquoted value, folding continuation lines that
// are more indented than the entry.
func plainScalar(lines []string, i, ind int, t string) (string, int, error) {
	v := stripComment(t)
	var b strings.Builder
	b.WriteString(v)
	next := i + 1
	empties := 0
	for j := i + 1; j < len(lines); j++ {
		l := lines[j]
		if strings.TrimSpace(l) == "" {
			empties++
			continue
		}
		if n, _ := indentOf(l); n <= ind {
			break
		}
		c := strings.TrimSpace(l)
		if c[0] == '#' {
			break
		}
		if empties == 0 {
			b.WriteByte(' ')
		} else {
			b.WriteString(strings.Repeat("\n", empties))
		}
		b.WriteString(stripComment(c))
		next, empties = j+1, 0
	}
	s := b.String()
	if strings.Contains(s, ": ") || strings.HasSuffix(s, ":") {
		return "", 0, yamlError(i, "plain value %q contains \": \"; quote it", s)
	}
	if s == "null" || s == "~" {
		s = ""
	}
	return s, next, nil
}

// scanQuoted decodes a single- or double-quoted scalar whose opening quote
// is lines[i][col]; it may span lines (line breaks fold to spaces, empty
// lines to newlines). It returns the value, the line holding the closing
// quote and the text after it. at is the line number for errors.
func scanQuoted(lines []string, i, col, at int) (string, int, string, error) {
	q := lines[i][col]
	var buf []byte
	protect := 0 // bytes before this are never trimmed as line-end blanks
	s := lines[i][col+1:]
	for li := i; ; {
		escapedBreak := false
	line:
		for p := 0; p < len(s); p++ {
			ch := s[p]
			switch {
			case ch == '\'' && q == '\'':
				if p+1 < len(s) && s[p+1] == '\'' {
					buf = append(buf, '\'')
					protect = len(buf)
					p++
					continue
				}
				return string(buf), li, s[p+1:], nil
			case ch == '"' && q == '"':
				return string(buf), li, s[p+1:], nil
			case ch == '\\' && q == '"':
				if p+1 == len(s) {
					escapedBreak = true
					break line
				}
				r, n, err := yamlEscape(s[p+1:])
				if err != nil {
					return "", 0, "", yamlError(at+li-i, "%v", err)
				}
				buf = utf8.AppendRune(buf, r)
				protect = len(buf)
				p += n
			default:
				buf = append(buf, ch)
			}
		}
		li++
		if !escapedBreak {
			for len(buf) > protect && (buf[len(buf)-1] == ' ' || buf[len(buf)-1] == '\t') {
				buf = buf[:len(buf)-1]
			}
		}
		empties := 0
		for li < len(lines) && strings.TrimSpace(lines[li]) == "" {
			empties++
			li++
		}
		if li >= len(lines) {
			return "", 0, "", yamlError(at, "unterminated quoted value")
		}
		switch {
		case empties > 0:
			buf = append(buf, strings.Repeat("\n", empties)...)
		case !escapedBreak:
			buf = append(buf, ' ')
		}
		protect = len(buf)
		s = strings.TrimLeft(lines[li], " \t")
	}
}

// yamlEscape decodes the escape after a backslash, returning the rune and
// the number of bytes consumed.
func yamlEscape(s string) (rune, int, error) {
	simple := map[byte]rune{
		'0': 0, 'a': '\a', 'b': '\b', 't': '\t', '\t': '\t', 'n': '\n', 'v': '\v',
		'f': '\f', 'r': '\r', 'e': 0x1b, ' ': ' ', '"': '"', '/': '/', '\\': '\\',
		'N': 0x85, '_': 0xa0, 'L': 0x2028, 'P': 0x2029,
	}
	if r, ok := simple[s[0]]; ok {
		return r, 1, nil
	}
	width := map[byte]int{'x': 2, 'u': 4, 'U': 8}[s[0]]
	if width == 0 || len(s) < 1+width {
		return 0, 0, fmt.Errorf("invalid escape \\%c in double-quoted value", s[0])
	}
	n, err := strconv.ParseUint(s[1:1+width], 16, 32)
	if err != nil || !utf8.ValidRune(rune(n)) {
		return 0, 0, fmt.Errorf("invalid escape \\%s in double-quoted value", s[:1+width])
	}
	return rune(n), 1 + width, nil
}

// blockScalar reads a literal (|) or folded (>) block scalar whose header
// is on line i (entry at indentation ind).
func blockScalar(lines []string, i, ind int, header string) (string, int, error) {
	folded := header[0] == '>'
	chomp := byte(0)
	explicit := 0
	h := stripComment(header[1:])
	for k := 0; k < len(h); k++ {
		switch c := h[k]; {
		case (c == '-' || c == '+') && chomp == 0:
			chomp = c
		case c >= '1' && c <= '9' && explicit == 0:
			explicit = int(c - '0')
		default:
			return "", 0, yamlError(i, "invalid block scalar header %q", header)
		}
	}
	blockIndent := 0
	if explicit > 0 {
		blockIndent = ind + explicit
	}
	var content []string
	j := i + 1
scan:
	for ; j < len(lines); j++ {
		l := lines[j]
		n, _ := indentOf(l)
		if blockIndent == 0 && strings.TrimSpace(l) != "" {
			if n <= ind {
				break
			}
			blockIndent = n
		}
		switch {
		case blockIndent > 0 && n >= blockIndent:
			content = append(content, l[blockIndent:])
		case strings.TrimSpace(l) == "":
			content = append(content, "")
		default:
			break scan
		}
	}
	last := len(content) - 1
	for last >= 0 && content[last] == "" {
		last--
	}
	body, trailing := content[:last+1], len(content)-(last+1)
	var b strings.Builder
	if folded {
		foldLines(&b, body)
	} else {
		b.WriteString(strings.Join(body, "\n"))
	}
	switch {
	case chomp == '-':
	case chomp == '+':
		if len(body) > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(strings.Repeat("\n", trailing))
	case len(body) > 0:
		b.WriteByte('\n')
	}
	return b.String(), j, nil
}

// foldLines joins folded block scalar lines: a single break between two
// normal lines becomes a space, empty lines become newlines, and breaks
// around more-indented lines are kept.
func foldLines(b *strings.Builder, body []string) {
	empties := 0
	prevNormal := false
	started := false
	for _, l := range body {
		if l == "" {
			empties++
			continue
		}
		more := l[0] == ' ' || l[0] == '\t'
		switch {
		case !started:
			b.WriteString(strings.Repeat("\n", empties))
		case prevNormal && !more && empties == 0:
			b.WriteByte(' ')
		case prevNormal && !more:
			b.WriteString(strings.Repeat("\n", empties))
		default:
			b.WriteString(strings.Repeat("\n", empties+1))
		}
		b.WriteString(l)
		started, prevNormal, empties = true, !more, 0
	}
}
