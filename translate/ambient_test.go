package translate

import (
	"net/netip"
	"strings"
	"testing"
)

func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestAmbientNodeFromEnvAndFlags(t *testing.T) {
	env := envOf(map[string]string{
		EnvAmbientDNSCapture: "true", EnvAmbientIPv6: "1",
		EnvHostProbeSNATIP: "169.254.9.9", EnvHostProbeSNATIPv6: "fd00::9",
	})
	var o AmbientOptions
	o.Set(EnvAmbientDNSCapture, "false") // Set wins
	o.Set(EnvHostProbeSNATIPv6, "FD00::0:7")
	o.LoadEnv(env)
	n, err := o.Node()
	if err != nil {
		t.Fatal(err)
	}
	want := AmbientNode{DNSCapture: false, EnableIPv6: true,
		ProbeSNATv4: netip.MustParseAddr("169.254.9.9"), ProbeSNATv6: netip.MustParseAddr("fd00::7")}
	if n != want {
		t.Fatalf("got %+v, want %+v", n, want)
	}

	// Nothing given: the node agent's defaults.
	var none AmbientOptions
	none.LoadEnv(envOf(nil))
	if n, err := none.Node(); err != nil || n.DNSCapture || n.EnableIPv6 ||
		n.ProbeSNATv4 != DefaultProbeSNATv4 || n.ProbeSNATv6 != DefaultProbeSNATv6 {
		t.Fatalf("defaults: %+v %v", n, err)
	}

	// The node agent reads an unparsable boolean variable as false.
	var junk AmbientOptions
	junk.LoadEnv(envOf(map[string]string{EnvAmbientIPv6: "yes please"}))
	if n, err := junk.Node(); err != nil || n.EnableIPv6 {
		t.Fatalf("unparsable env bool: %+v %v", n, err)
	}
}

func TestAmbientOptionErrors(t *testing.T) {
	for _, c := range []struct {
		set, env map[string]string
		want     string
	}{
		{set: map[string]string{EnvAmbientIPv6: "maybe"}, want: `invalid AMBIENT_IPV6 "maybe": want true or false`},
		{set: map[string]string{EnvHostProbeSNATIP: "fd00::1"}, want: `invalid HOST_PROBE_SNAT_IP "fd00::1": not an IPv4 address`},
		{set: map[string]string{EnvHostProbeSNATIP: "10.0.0.1/32"}, want: `invalid HOST_PROBE_SNAT_IP "10.0.0.1/32": not an IP address`},
		{set: map[string]string{EnvHostProbeSNATIPv6: "10.0.0.1"}, want: `invalid HOST_PROBE_SNAT_IPV6 "10.0.0.1": not an IPv6 address`},
		{env: map[string]string{EnvHostProbeSNATIP: "nope"}, want: `invalid HOST_PROBE_SNAT_IP "nope": not an IP address`},
		{env: map[string]string{EnvHostProbeSNATIPv6: "::"}, want: `invalid HOST_PROBE_SNAT_IPV6 "::": not a unicast address`},
	} {
		var o AmbientOptions
		for k, v := range c.set {
			o.Set(k, v)
		}
		o.LoadEnv(envOf(c.env))
		_, err := o.Node()
		if err == nil || err.Error() != c.want {
			t.Errorf("%v %v: got %v, want %s", c.set, c.env, err, c.want)
		}
		// Env says the value came from the environment (for a caller
		// naming its own option instead).
		if oe, ok := err.(*OptionError); !ok || (oe.Env != "") != (c.env != nil) {
			t.Errorf("%v %v: got %#v, want an *OptionError with Env set only from the environment", c.set, c.env, err)
		}
	}
}

// A§2.3: the pod annotation always wins over the node setting.
func TestAmbientDNSPrecedence(t *testing.T) {
	for _, c := range []struct {
		node bool
		ann  string // "" = absent
		want bool
	}{
		{false, "", false}, {true, "", true},
		{false, "true", true}, {true, "false", false},
		{true, "true", true}, {false, "false", false},
	} {
		ann := map[string]string{}
		if c.ann != "" {
			ann[AnnDNSCapture] = c.ann
		}
		pod, err := PodOverridesFromAnnotations(ann)
		if err != nil {
			t.Fatal(err)
		}
		cfg := AmbientPodConfig{Node: AmbientNode{DNSCapture: c.node}, Pod: pod}
		if got := cfg.DNSEnabled(); got != c.want {
			t.Errorf("node %v annotation %q: DNS %v, want %v", c.node, c.ann, got, c.want)
		}
		// DNS decides the raw table.
		if hasRaw := BuildAmbientPod(cfg).Table(TableRaw) != nil; hasRaw != c.want {
			t.Errorf("node %v annotation %q: raw table %v", c.node, c.ann, hasRaw)
		}
	}
}

func TestPodOverridesFromAnnotations(t *testing.T) {
	p, err := PodOverridesFromAnnotations(map[string]string{
		AnnBypassInboundCapture:     "True",
		AnnRerouteVirtualInterfaces: " net1, ,net2,net1,",
		"unrelated":                 "x",
	})
	if err != nil {
		t.Fatal(err)
	}
	if !p.IngressMode || p.DNS != DNSUnset || strings.Join(ifaceStrings(p.VirtualInterfaces), ",") != "net1,net2,net1" {
		t.Fatalf("got %+v", p)
	}
	for ann, want := range map[string]string{
		AnnBypassInboundCapture:     `annotation ambient.istio.io/bypass-inbound-capture "yes": want true or false`,
		AnnDNSCapture:               `annotation ambient.istio.io/dns-capture "yes": want true or false`,
		AnnRerouteVirtualInterfaces: `annotation istio.io/reroute-virtual-interfaces "yes": interface name "yes/no" contains whitespace, '/' or NUL`,
	} {
		v := "yes"
		if ann == AnnRerouteVirtualInterfaces {
			v = "yes/no"
			want = strings.Replace(want, `"yes"`, `"yes/no"`, 1)
		}
		if _, err := PodOverridesFromAnnotations(map[string]string{ann: v}); err == nil || err.Error() != want {
			t.Errorf("%s=%s: got %v, want %s", ann, v, err, want)
		}
	}
}

func ifaceStrings(l []Iface) []string {
	var s []string
	for _, i := range l {
		s = append(s, string(i))
	}
	return s
}

func TestAmbientRouting(t *testing.T) {
	rs := BuildAmbientPod(AmbientPodConfig{Node: AmbientNode{EnableIPv6: true, ProbeSNATv4: DefaultProbeSNATv4, ProbeSNATv6: DefaultProbeSNATv6}})
	want := []PolicyRoute{
		{Family: IPv4, Mark: 0x111, Mask: 0xfff, Table: 100, Priority: 32764},
		{Family: IPv6, Mark: 0x111, Mask: 0xfff, Table: 100, Priority: 32764, RouteNeedsLoIPv6: true},
	}
	if len(rs.Routes) != 2 || rs.Routes[0] != want[0] || rs.Routes[1] != want[1] || len(rs.LoopbackAddrs) != 0 {
		t.Fatalf("routes %+v, loopback %v", rs.Routes, rs.LoopbackAddrs)
	}
}

func TestAmbientNodeProbeAddrs(t *testing.T) {
	cfg := AmbientNodeConfig{Node: AmbientNode{ProbeSNATv4: DefaultProbeSNATv4, ProbeSNATv6: DefaultProbeSNATv6},
		ProbeAddrs: []netip.Addr{netip.MustParseAddr("10.1.0.5"), netip.MustParseAddr("fd00::5")}}
	rs := BuildAmbientNode(cfg)
	sets := rs.Table(TableNAT).Sets
	if len(sets) != 1 || sets[0].Name != ProbeSetV4 || len(sets[0].Prefixes) != 1 {
		t.Fatalf("IPv6 off: sets %+v", sets)
	}
	cfg.Node.EnableIPv6 = true
	sets = BuildAmbientNode(cfg).Table(TableNAT).Sets
	if len(sets) != 2 || sets[1].Name != ProbeSetV6 || sets[1].Prefixes[0].Raw != "fd00::5/128" {
		t.Fatalf("IPv6 on: sets %+v", sets)
	}
}
