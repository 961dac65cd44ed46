package translate

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// defaultArgs is what the injector gives istio-init for a pod without
// annotations under the default mesh config (SPEC §6.1).
func defaultArgs() []string {
	return []string{"-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT",
		"-i", "*", "-x", "", "-b", "*", "-d", "15090,15021,15020"}
}

// withArg replaces the value after flag, or appends flag and value.
func withArg(args []string, flag, value string) []string {
	out := append([]string(nil), args...)
	for i := 0; i+1 < len(out); i += 2 {
		if out[i] == flag {
			out[i+1] = value
			return out
		}
	}
	return append(out, flag, value)
}

func TestArgsFromAnnotationsSeed(t *testing.T) {
	got, err := ArgsFromAnnotations(map[string]string{
		"traffic.sidecar.istio.io/excludeOutboundIPRanges": "10.245.0.0/16",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT",
		"-i", "*", "-x", "10.245.0.0/16", "-b", "*", "-d", "15090,15021,15020"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

func TestArgsFromAnnotations(t *testing.T) {
	d := defaultArgs()
	for _, tc := range []struct {
		name string
		ann  map[string]string
		want []string
	}{
		{"none", nil, d},
		{"unrelated annotations ignored", map[string]string{"foo/bar": "x", "sidecar.istio.io/inject": "true"}, d},
		{"interceptionMode TPROXY", map[string]string{AnnInterceptionMode: "TPROXY"}, withArg(d, "-m", "TPROXY")},
		{"interceptionMode REDIRECT", map[string]string{AnnInterceptionMode: "REDIRECT"}, d},
		{"includeOutboundIPRanges", map[string]string{AnnIncludeOutboundIPRanges: "10.0.0.0/8,fd00::/8"}, withArg(d, "-i", "10.0.0.0/8,fd00::/8")},
		{"includeOutboundIPRanges empty", map[string]string{AnnIncludeOutboundIPRanges: ""}, withArg(d, "-i", "")},
		{"excludeOutboundIPRanges", map[string]string{AnnExcludeOutboundIPRanges: "10.245.0.0/16,1.1.1.1/32"}, withArg(d, "-x", "10.245.0.0/16,1.1.1.1/32")},
		{"includeInboundPorts", map[string]string{AnnIncludeInboundPorts: "80,443"}, withArg(d, "-b", "80,443")},
		{"includeInboundPorts trimmed", map[string]string{AnnIncludeInboundPorts: " * "}, d},
		{"includeInboundPorts empty", map[string]string{AnnIncludeInboundPorts: ""}, withArg(d, "-b", "")},
		{"excludeInboundPorts", map[string]string{AnnExcludeInboundPorts: "8080,9090"}, withArg(d, "-d", "15090,15021,8080,9090,15020")},
		{"excludeInboundPorts has status port", map[string]string{AnnExcludeInboundPorts: "15020,8080"}, withArg(d, "-d", "15090,15021,15020,8080")},
		{"status port", map[string]string{AnnStatusPort: "15555"}, withArg(d, "-d", "15090,15021,15555")},
		{"status port 0", map[string]string{AnnStatusPort: "0"}, withArg(d, "-d", "15090,15021")},
		{"status port empty", map[string]string{AnnStatusPort: ""}, withArg(d, "-d", "15090,15021")},
		{"status port 0 with excludes", map[string]string{AnnStatusPort: "0", AnnExcludeInboundPorts: "7"}, withArg(d, "-d", "15090,15021,7")},
		{"includeOutboundPorts", map[string]string{AnnIncludeOutboundPorts: "5000,6000"}, append(defaultArgs(), "-q", "5000,6000")},
		{"includeOutboundPorts present but empty", map[string]string{AnnIncludeOutboundPorts: ""}, append(defaultArgs(), "-q", "")},
		{"excludeOutboundPorts", map[string]string{AnnExcludeOutboundPorts: "3306"}, append(defaultArgs(), "-o", "3306")},
		{"both outbound port lists", map[string]string{AnnExcludeOutboundPorts: "1", AnnIncludeOutboundPorts: "2"}, append(defaultArgs(), "-q", "2", "-o", "1")},
		{"reroute-virtual-interfaces", map[string]string{AnnRerouteVirtualInterfaces: "eth1,eth2"}, append(defaultArgs(), "-k", "eth1,eth2")},
		{"kubevirtInterfaces (deprecated)", map[string]string{AnnKubevirtInterfaces: "net1"}, append(defaultArgs(), "-k", "net1")},
		{"reroute wins over kubevirt", map[string]string{AnnKubevirtInterfaces: "net1", AnnRerouteVirtualInterfaces: "net2"}, append(defaultArgs(), "-k", "net2")},
		{"excludeInterfaces", map[string]string{AnnExcludeInterfaces: "eth9"}, append(defaultArgs(), "-c", "eth9")},
		{"all optional flags in template order", map[string]string{AnnExcludeInterfaces: "c0", AnnKubevirtInterfaces: "k0", AnnExcludeOutboundPorts: "2", AnnIncludeOutboundPorts: "1"},
			append(defaultArgs(), "-q", "1", "-o", "2", "-k", "k0", "-c", "c0")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ArgsFromAnnotations(tc.ann)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
			// What the injector would run must be a valid configuration.
			if _, err := InjectorConfig(tc.ann, HostSystem()); err != nil {
				t.Errorf("args %q refused: %v", got, err)
			}
		})
	}
}

func TestArgsFromAnnotationsRefused(t *testing.T) {
	_, err := ArgsFromAnnotations(map[string]string{AnnInterceptionMode: "NONE"})
	if !errors.Is(err, ErrInterceptionDisabled) || !strings.Contains(err.Error(), AnnInterceptionMode) {
		t.Errorf("NONE: %v, want interception disabled naming the annotation", err)
	}
	for _, tc := range []struct{ key, value string }{
		{AnnInterceptionMode, "tproxy"},
		{AnnInterceptionMode, ""},
		{AnnIncludeOutboundIPRanges, "10.0.0.0/8, 10.1.0.0/16"},
		{AnnIncludeOutboundIPRanges, "10.0.0.0/8,"},
		{AnnIncludeOutboundIPRanges, "*,10.0.0.0/8"},
		{AnnIncludeOutboundIPRanges, "10.0.0.0"},
		{AnnExcludeOutboundIPRanges, "*"},
		{AnnExcludeOutboundIPRanges, "fe80::1%eth0/64"},
		{AnnIncludeInboundPorts, "80,*"},
		{AnnIncludeInboundPorts, "80,,90"},
		{AnnIncludeInboundPorts, "8000:9000"},
		{AnnIncludeInboundPorts, "80-90"},
		{AnnIncludeInboundPorts, "70000"},
		{AnnExcludeInboundPorts, "*"},
		{AnnExcludeInboundPorts, "http"},
		{AnnStatusPort, "abc"},
		{AnnStatusPort, "65536"},
		{AnnIncludeOutboundPorts, "*"},
		{AnnIncludeOutboundPorts, "1,"},
		{AnnExcludeOutboundPorts, "-1"},
		{AnnRerouteVirtualInterfaces, "1eth"},
		{AnnRerouteVirtualInterfaces, "eth0,,eth1"},
		{AnnKubevirtInterfaces, "averyveryverylongname"},
		{AnnExcludeInterfaces, "eth+"},
		{AnnExcludeInterfaces, "a/b"},
	} {
		_, err := ArgsFromAnnotations(map[string]string{tc.key: tc.value})
		if err == nil {
			t.Errorf("%s=%q accepted", tc.key, tc.value)
			continue
		}
		if !strings.Contains(err.Error(), tc.key) || !strings.Contains(err.Error(), tc.value) {
			t.Errorf("%s=%q: error %q does not name annotation and value", tc.key, tc.value, err)
		}
	}
}

func parseAnn(t *testing.T, in string) map[string]string {
	t.Helper()
	m, err := ParseAnnotations(strings.NewReader(in))
	if err != nil {
		t.Fatalf("ParseAnnotations: %v\ninput:\n%s", err, in)
	}
	return m
}

func TestParseAnnotationsKeyValue(t *testing.T) {
	got := parseAnn(t, `
# pod annotations
traffic.sidecar.istio.io/excludeOutboundIPRanges=10.245.0.0/16

sidecar.istio.io/interceptionMode = TPROXY
traffic.sidecar.istio.io/includeOutboundIPRanges=fd00::/8
x/eq=a=b
x/empty=
`)
	want := map[string]string{
		AnnExcludeOutboundIPRanges: "10.245.0.0/16",
		AnnInterceptionMode:        "TPROXY",
		AnnIncludeOutboundIPRanges: "fd00::/8",
		"x/eq":                     "a=b",
		"x/empty":                  "",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if m := parseAnn(t, ""); m == nil || len(m) != 0 {
		t.Errorf("empty input: %v", m)
	}
	for _, in := range []string{"a=1\na=2\n", "a=1\nnot a pair\n", "a=1\n=2\n"} {
		if _, err := ParseAnnotations(strings.NewReader(in)); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

func TestParseAnnotationsJSON(t *testing.T) {
	got := parseAnn(t, `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","labels":{"a":"b"},
	  "annotations":{"traffic.sidecar.istio.io/excludeOutboundIPRanges":"10.245.0.0/16","x":"a\"b"}},
	  "spec":{"containers":[{"name":"c","image":"i"}]}}`)
	want := map[string]string{AnnExcludeOutboundIPRanges: "10.245.0.0/16", "x": `a"b`}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if m := parseAnn(t, `{"kind":"Pod","metadata":{"name":"p"}}`); m == nil || len(m) != 0 {
		t.Errorf("no annotations: %v", m)
	}
	for _, in := range []string{
		`{"kind":"Deployment","metadata":{"annotations":{"a":"b"}}}`,
		`{"kind":"Pod"}`,
		`{"metadata":{"annotations":{"a":1}}}`,
		`{"metadata":{}} {"metadata":{}}`,
		`{"metadata":`,
	} {
		if _, err := ParseAnnotations(strings.NewReader(in)); err == nil {
			t.Errorf("%s accepted", in)
		}
	}
}

// kubectlPod looks like "kubectl get pod -o yaml" output: sequences at
// the parent's indentation, managedFields keys that mention annotations,
// a block scalar with JSON, status after spec.
const kubectlPod = `apiVersion: v1
kind: Pod
metadata:
  annotations:
    kubectl.kubernetes.io/last-applied-configuration: |
      {"apiVersion":"v1","kind":"Pod","metadata":{"annotations":{"traffic.sidecar.istio.io/excludeOutboundIPRanges":"10.0.0.0/8"}}}
    sidecar.istio.io/status: '{"initContainers":["istio-init"],"containers":["istio-proxy"],"revision":"default"}'
    traffic.sidecar.istio.io/excludeOutboundIPRanges: 10.245.0.0/16
    traffic.sidecar.istio.io/includeInboundPorts: '*'
    status.sidecar.istio.io/port: "15020"
  creationTimestamp: "2024-01-01T00:00:00Z"
  labels:
    app: web
    annotations: not-these
  managedFields:
  - apiVersion: v1
    fieldsType: FieldsV1
    fieldsV1:
      f:metadata:
        f:annotations:
          .: {}
          f:traffic.sidecar.istio.io/excludeOutboundIPRanges: {}
    manager: kubectl
  name: web
  namespace: default
  ownerReferences:
  - apiVersion: apps/v1
    kind: ReplicaSet
    name: web-1
spec:
  containers:
  - image: nginx
    name: web
    env:
    - name: X
      value: "metadata:"
status:
  phase: Running
`

func TestParseAnnotationsYAMLKubectl(t *testing.T) {
	got := parseAnn(t, kubectlPod)
	want := map[string]string{
		"kubectl.kubernetes.io/last-applied-configuration": `{"apiVersion":"v1","kind":"Pod","metadata":{"annotations":{"traffic.sidecar.istio.io/excludeOutboundIPRanges":"10.0.0.0/8"}}}` + "\n",
		"sidecar.istio.io/status":                          `{"initContainers":["istio-init"],"containers":["istio-proxy"],"revision":"default"}`,
		AnnExcludeOutboundIPRanges:                         "10.245.0.0/16",
		AnnIncludeInboundPorts:                             "*",
		AnnStatusPort:                                      "15020",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	// And straight through to the arguments.
	args, err := ArgsFromAnnotations(got)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(args, withArg(defaultArgs(), "-x", "10.245.0.0/16")) {
		t.Errorf("args %q", args)
	}
}

func TestParseAnnotationsYAMLScalars(t *testing.T) {
	for _, tc := range []struct {
		name, value, want string
	}{
		{"plain", "10.0.0.0/8", "10.0.0.0/8"},
		{"plain with colons", "fd00::/8,10.0.0.0/8", "fd00::/8,10.0.0.0/8"},
		{"plain comment", "80,443   # web ports", "80,443"},
		{"plain hash inside", "a#b", "a#b"},
		{"plain number", "15020", "15020"},
		{"plain null", "null", ""},
		{"plain tilde", "~", ""},
		{"empty", "", ""},
		{"empty with comment", "  # nothing", ""},
		{"single quoted", "'*'", "*"},
		{"single quoted quote", "'it''s # not a comment'", "it's # not a comment"},
		{"single quoted with comment", "'x'  # c", "x"},
		{"double quoted", `"TPROXY"`, "TPROXY"},
		{"double escapes", `"a\tb\\c\"d\u00e9\x41\ \n"`, "a\tb\\c\"d\u00e9A \n"},
		{"double long escape", `"\U0001F600"`, "\U0001F600"},
		{"double multi-line", "\"first\n      second\n\n      third  \\\n      fourth\"", "first second\nthird  fourth"},
		{"double trailing spaces folded", "\"a   \n      b\"", "a b"},
		{"single multi-line", "'it''s\n      here'", "it's here"},
		{"plain multi-line", "one\n      two\n\n      three", "one two\nthree"},
		{"value on next line", "\n      10.0.0.0/8", "10.0.0.0/8"},
		{"literal", "|\n      line1\n        indented\n      line3\n", "line1\n  indented\nline3\n"},
		{"literal strip", "|-\n      line1\n      line2\n\n", "line1\nline2"},
		{"literal keep", "|+\n      line1\n", "line1\n\n"},
		{"literal explicit indent", "|2\n        lead\n      x\n", "  lead\nx\n"},
		{"literal leading blank", "|\n\n      x\n", "\nx\n"},
		{"folded", ">\n      folded\n      text\n\n      para\n        more\n      end\n", "folded text\npara\n  more\nend\n"},
		{"folded strip", ">-\n      a\n      b\n", "a b"},
		{"empty block", "|\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := "kind: Pod\nmetadata:\n  name: p\n  annotations:\n    before: 1\n    the/key: " + tc.value + "\n    after: 2\nspec: {}\n"
			got := parseAnn(t, in)
			want := map[string]string{"before": "1", "the/key": tc.want, "after": "2"}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got %q, want %q\ninput:\n%s", got, want, in)
			}
		})
	}
}

func TestParseAnnotationsYAMLShapes(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     map[string]string
	}{
		{"no annotations", "kind: Pod\nmetadata:\n  name: p\n", map[string]string{}},
		{"empty flow annotations", "metadata:\n  annotations: {}\n  name: p\n", map[string]string{}},
		{"null annotations", "metadata:\n  annotations:\n  name: p\n", map[string]string{}},
		{"document markers and comments", "%YAML 1.2\n---\n# a pod\nmetadata:   # meta\n  annotations:  # ann\n    # inside\n    a: b   \n\n    c: d\n...\n", map[string]string{"a": "b", "c": "d"}},
		{"quoted keys", "metadata:\n  annotations:\n    \"x/y\": 1\n    'p/q' : 2\n", map[string]string{"x/y": "1", "p/q": "2"}},
		{"other indentation", "metadata:\n    name: p\n    annotations:\n          a: b\nspec:\n    x: y\n", map[string]string{"a": "b"}},
		{"CRLF", "metadata:\r\n  annotations:\r\n    a: b\r\n", map[string]string{"a": "b"}},
		{"other documents ignored", "foo: bar\n---\nmetadata:\n  annotations:\n    a: b\n---\n# empty\n", map[string]string{"a": "b"}},
		{"metadata after spec", "spec:\n  containers:\n  - name: c\nmetadata:\n  annotations:\n    a: b\n", map[string]string{"a": "b"}},
		{"BOM", "\ufeffmetadata:\n  annotations:\n    a: b\n", map[string]string{"a": "b"}},
		{"anchor and alias", "metadata:\n  annotations:\n    a: &x b\n    c: *x\n", map[string]string{"a": "b", "c": "b"}},
		{"tag", "metadata:\n  annotations:\n    a: !!str 80\n", map[string]string{"a": "80"}},
		{"flow annotations", "metadata:\n  annotations: {a: b, c: '*'}\n", map[string]string{"a": "b", "c": "*"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := parseAnn(t, tc.in); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestParseAnnotationsYAMLRefused(t *testing.T) {
	for _, tc := range []struct{ name, in, fragment string }{
		{"alias", "metadata:\n  annotations:\n    a: *x\n", "anchor"},
		{"flow value", "metadata:\n  annotations:\n    a: [1, 2]\n", "array"},
		{"nested mapping value", "metadata:\n  annotations:\n    a:\n      b: c\n", "object"},
		{"list value", "metadata:\n  annotations:\n    a:\n    - b\n", "array"},
		{"annotations list", "metadata:\n  annotations:\n  - a\n", "array"},
		{"tab indentation", "metadata:\n  annotations:\n\ta: b\n", "line 3"},
		{"unterminated quote", "metadata:\n  annotations:\n    a: \"b\n", "end of stream"},
		{"junk after quote", "metadata:\n  annotations:\n    a: \"b\" c\n", "line 2"},
		{"bad escape", "metadata:\n  annotations:\n    a: \"\\q\"\n", "escape"},
		{"colon in plain", "metadata:\n  annotations:\n    a: b: c\n", "mapping values"},
		{"several pods", "kind: Pod\nmetadata:\n  name: a\n---\nkind: Pod\nmetadata:\n  name: b\n", "2 manifests"},
		{"not a pod", "kind: Deployment\nmetadata:\n  annotations:\n    a: b\n", "Deployment"},
		{"no metadata", "kind: Pod\nspec: {}\n", "metadata"},
		{"not yaml", "just some words\n", "string"},
		{"bad indentation", "metadata:\n  annotations:\n      a: b\n    c: d\n", "line 3"},
		{"bad block header", "metadata:\n  annotations:\n    a: |x\n      b\n", "line 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseAnnotations(strings.NewReader(tc.in))
			if err == nil {
				t.Fatalf("accepted:\n%s", tc.in)
			}
			if !strings.HasPrefix(err.Error(), "annotations: ") || !strings.Contains(err.Error(), tc.fragment) {
				t.Errorf("error %q does not mention %q", err, tc.fragment)
			}
		})
	}
}

func FuzzParseAnnotations(f *testing.F) {
	f.Add(kubectlPod)
	f.Add("a=b\n# c\n")
	f.Add(`{"metadata":{"annotations":{"a":"b"}}}`)
	f.Add("metadata:\n  annotations:\n    a: \"x\\\n  y\"\n    b: >-\n      c\n\n      d\n    e: 'f''g\n      h'\n")
	f.Fuzz(func(t *testing.T, in string) {
		m, err := ParseAnnotations(strings.NewReader(in))
		if err == nil && m == nil {
			t.Fatal("nil map without error")
		}
		if err == nil {
			_, _ = ArgsFromAnnotations(m)
		}
	})
}
