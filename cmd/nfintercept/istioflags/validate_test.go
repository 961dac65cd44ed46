package istioflags

import (
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/nfintercept/nfintercept/translate"
)

// fakeSystem knows a few users and groups and serves a fixed resolv.conf.
type fakeSystem struct {
	users, groups map[string]uint32
	resolv        []byte
	resolvErr     error
	lookups       []string // names asked, "user:x" / "group:x"
	resolvReads   int
}

func (s *fakeSystem) LookupUser(name string) (uint32, error) {
	s.lookups = append(s.lookups, "user:"+name)
	if id, ok := s.users[name]; ok {
		return id, nil
	}
	return 0, fmt.Errorf("user: unknown user %s", name)
}

func (s *fakeSystem) LookupGroup(name string) (uint32, error) {
	s.lookups = append(s.lookups, "group:"+name)
	if id, ok := s.groups[name]; ok {
		return id, nil
	}
	return 0, fmt.Errorf("group: unknown group %s", name)
}

func (s *fakeSystem) ReadResolvConf() ([]byte, error) {
	s.resolvReads++
	return s.resolv, s.resolvErr
}

func newFake() *fakeSystem {
	return &fakeSystem{
		users:  map[string]uint32{"istio-proxy": 1337, "envoy": 101},
		groups: map[string]uint32{"istio-proxy": 1337, "wheel": 10},
	}
}

func configFor(t *testing.T, sys translate.System, env envMap, args ...string) (translate.Config, error) {
	t.Helper()
	o, err := parseOpts(t, env, args...)
	if err != nil {
		t.Fatalf("parse %q: %v", args, err)
	}
	return o.Config(sys)
}

func mustConfig(t *testing.T, env envMap, args ...string) translate.Config {
	t.Helper()
	c, err := configFor(t, newFake(), env, args...)
	if err != nil {
		t.Fatalf("config %q %v: %v", args, env, err)
	}
	return c
}

func port(raw string, from, to uint16) translate.Port {
	return translate.Port{Raw: raw, From: from, To: to}
}

func TestPortLists(t *testing.T) {
	for _, tc := range []struct {
		value string
		want  []translate.Port
	}{
		{"80", []translate.Port{port("80", 80, 80)}},
		{"80,,90,", []translate.Port{port("80", 80, 80), port("90", 90, 90)}},
		{" 80", []translate.Port{port(" 80", 80, 80)}},
		{"0,65535", []translate.Port{port("0", 0, 0), port("65535", 65535, 65535)}},
		{"8000:9000", []translate.Port{port("8000:9000", 8000, 9000)}},
		{":100", []translate.Port{port(":100", 0, 100)}},
		{"100:", []translate.Port{port("100:", 100, 65535)}},
		{"5:5", []translate.Port{port("5:5", 5, 5)}},
		{"", nil},
		{",", nil},
	} {
		for _, fl := range []string{"-q", "-o", "-b", "-d"} {
			args := []string{fl, tc.value}
			if fl == "-d" {
				args = append(args, "-b", "*")
			}
			c := mustConfig(t, nil, args...)
			got := map[string][]translate.Port{"-q": c.OutboundPortsInclude, "-o": c.OutboundPortsExclude,
				"-b": c.InboundPorts.Ports, "-d": c.InboundPortsExclude}[fl]
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("%s %q = %+v, want %+v", fl, tc.value, got, tc.want)
			}
		}
	}
}

// refused checks that args are refused with a one-line message containing
// every fragment.
func refused(t *testing.T, sys translate.System, env envMap, args []string, fragments ...string) {
	t.Helper()
	if sys == nil {
		sys = newFake()
	}
	_, err := configFor(t, sys, env, args...)
	if err == nil {
		t.Errorf("%q %v: accepted, want an error", args, env)
		return
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") {
		t.Errorf("%q: message has several lines: %q", args, msg)
	}
	for _, f := range fragments {
		if !strings.Contains(msg, f) {
			t.Errorf("%q: error %q does not mention %q", args, msg, f)
		}
	}
}

func TestPortListsRefused(t *testing.T) {
	for _, v := range []string{"99999", "abc", "-1", "8000-9000", "9000:8000", "080", "80,abc", "1:2:3", "http", "8 0", "+80", "0x50", "80:abc", "65536:"} {
		for _, fl := range []struct{ short, long string }{{"b", "istio-inbound-ports"}, {"d", "istio-local-exclude-ports"}, {"q", "istio-outbound-ports"}, {"o", "istio-local-outbound-ports-exclude"}} {
			refused(t, nil, nil, []string{"-" + fl.short, v}, "-"+fl.short+"/--"+fl.long, fmt.Sprintf("%q", v))
		}
	}
	// The example of the brief, verbatim.
	refused(t, nil, nil, []string{"-b", "80,abc"}, `invalid -b/--istio-inbound-ports "80,abc": "abc" is not a port number (0-65535) or range a:b`)
	refused(t, nil, nil, []string{"-b", "80,*"}, "-b/--istio-inbound-ports", "whole value")
	refused(t, nil, nil, []string{"-b", " *"}, "-b/--istio-inbound-ports", "whole value")
	refused(t, nil, nil, []string{"-d", "*", "-b", "*"}, "-d/--istio-local-exclude-ports", "not allowed")
	refused(t, nil, nil, []string{"-q", "*"}, "-q/--istio-outbound-ports")
	// -d is validated even when -b is not "*".
	refused(t, nil, nil, []string{"-b", "80", "-d", "x"}, "-d/--istio-local-exclude-ports")
}

func TestInboundPorts(t *testing.T) {
	c := mustConfig(t, nil, "-b", "*", "-d", "15020,15021")
	if !c.InboundPorts.All || len(c.InboundPortsExclude) != 2 {
		t.Errorf("-b * -d: %+v %+v", c.InboundPorts, c.InboundPortsExclude)
	}
	c = mustConfig(t, nil, "-b", "80", "-d", "15020")
	if c.InboundPorts.All || c.InboundPortsExclude != nil {
		t.Errorf("-d must only be kept with -b '*': %+v", c.InboundPortsExclude)
	}
	if c := mustConfig(t, nil); !c.InboundPorts.Empty() {
		t.Errorf("default -b must capture nothing: %+v", c.InboundPorts)
	}
}

func TestSinglePorts(t *testing.T) {
	c := mustConfig(t, nil, "-p", "1", "-z", "65535", "-e", "0")
	if c.ProxyPort != port("1", 1, 1) || c.InboundCapturePort != port("65535", 65535, 65535) || c.InboundTunnelPort != port("0", 0, 0) {
		t.Errorf("ports: %+v %+v %+v", c.ProxyPort, c.InboundCapturePort, c.InboundTunnelPort)
	}
	c = mustConfig(t, nil)
	if c.ProxyPort != port("15001", 15001, 15001) || c.InboundCapturePort != port("15006", 15006, 15006) || c.InboundTunnelPort != port("15008", 15008, 15008) {
		t.Errorf("default ports: %+v %+v %+v", c.ProxyPort, c.InboundCapturePort, c.InboundTunnelPort)
	}
	if c := mustConfig(t, nil, "-e", "15008:15010"); c.InboundTunnelPort != port("15008:15010", 15008, 15010) {
		t.Errorf("-e range: %+v", c.InboundTunnelPort)
	}
	for _, fl := range []struct{ short, long string }{{"p", "envoy-port"}, {"z", "inbound-capture-port"}} {
		for _, v := range []string{"0", "", "65536", "80:90", "80,81", "abc", "-5"} {
			refused(t, nil, nil, []string{"-" + fl.short, v}, "-"+fl.short+"/--"+fl.long, fmt.Sprintf("%q", v))
		}
	}
	for _, v := range []string{"", "15008,15009", "x", "70000"} {
		refused(t, nil, nil, []string{"-e", v}, "-e/--inbound-tunnel-port", fmt.Sprintf("%q", v))
	}
}

func pfx(s string) translate.Prefix {
	return translate.Prefix{Raw: s, Prefix: netip.MustParsePrefix(s)}
}

func TestCIDRLists(t *testing.T) {
	c := mustConfig(t, nil, "-i", "10.1.2.3/8,2001:db8::1/32,,::ffff:10.0.0.1/128", "-x", "1.1.0.0/16,1.1.0.0/16")
	in := c.OutboundIPRangesInclude
	if in.All || in.HasLoopback {
		t.Errorf("include flags: %+v", in)
	}
	if !reflect.DeepEqual(in.V4, []translate.Prefix{pfx("10.1.2.3/8")}) {
		t.Errorf("include v4 = %+v", in.V4)
	}
	if in.V4[0].Prefix.Addr() != netip.MustParseAddr("10.1.2.3") {
		t.Error("host bits must be kept (the nft layer masks)")
	}
	if !reflect.DeepEqual(in.V6, []translate.Prefix{pfx("2001:db8::1/32"), pfx("::ffff:10.0.0.1/128")}) {
		t.Errorf("include v6 = %+v", in.V6)
	}
	if ex := c.OutboundIPRangesExclude; len(ex.V4) != 2 || ex.All || len(ex.V6) != 0 {
		t.Errorf("exclude keeps duplicates: %+v", ex)
	}
	if c := mustConfig(t, nil, "-i", "*"); !c.OutboundIPRangesInclude.All {
		t.Error("-i * must be All")
	}
	if c := mustConfig(t, nil, "-i", ""); c.OutboundIPRangesInclude.All || len(c.OutboundIPRangesInclude.V4) != 0 {
		t.Error("-i '' must capture nothing")
	}
	for _, v := range []string{"127.1.2.3/32", "::1/128", "10.0.0.0/8,127.0.0.0/8", "::ffff:127.0.0.1/128"} {
		if c := mustConfig(t, nil, "-i", v); !c.OutboundIPRangesInclude.HasLoopback {
			t.Errorf("-i %s: HasLoopback not set", v)
		}
	}
	if c := mustConfig(t, nil, "-i", "128.0.0.0/1,::2/128"); c.OutboundIPRangesInclude.HasLoopback {
		t.Error("HasLoopback set without a loopback address")
	}
}

func TestCIDRListsRefused(t *testing.T) {
	for _, v := range []string{"10.0.0.0", " 10.0.0.0/8", "10.0.0.0/8 ", "fe80::1%eth0/64", "10.0.0.0/33", "010.0.0.0/8", "abc/8", "10.0.0.0/8,x"} {
		refused(t, nil, nil, []string{"-i", v}, "-i/--istio-service-cidr", fmt.Sprintf("%q", v))
		refused(t, nil, nil, []string{"-x", v}, "-x/--istio-service-exclude-cidr", fmt.Sprintf("%q", v))
	}
	refused(t, nil, nil, []string{"-x", "*"}, `-x/--istio-service-exclude-cidr "*"`, `"*" is not allowed for the exclude list`)
	refused(t, nil, nil, []string{"-x", "10.0.0.0/8,*"}, "-x/--istio-service-exclude-cidr", "not allowed for the exclude list")
	refused(t, nil, nil, []string{"-i", "*,10.0.0.0/8"}, "-i/--istio-service-cidr", "whole value")
}

func own(raw string, from, to uint32) translate.Owner {
	return translate.Owner{Raw: raw, From: from, To: to, Resolved: true}
}

func TestOwners(t *testing.T) {
	for _, tc := range []struct {
		name       string
		env        envMap
		args       []string
		uids, gids []translate.Owner
	}{
		{"default: uid of ENVOY_USER", nil, nil, []translate.Owner{own("1337", 1337, 1337)}, []translate.Owner{own("1337", 1337, 1337)}},
		{"ENVOY_USER other user", envMap{translate.EnvEnvoyUser: "envoy"}, nil, []translate.Owner{own("101", 101, 101)}, []translate.Owner{own("101", 101, 101)}},
		{"ENVOY_USER unknown → 1337", envMap{translate.EnvEnvoyUser: "ghost"}, nil, []translate.Owner{own("1337", 1337, 1337)}, []translate.Owner{own("1337", 1337, 1337)}},
		{"lists, -g defaults to -u string", nil, []string{"-u", "3,4"}, []translate.Owner{own("3", 3, 3), own("4", 4, 4)}, []translate.Owner{own("3", 3, 3), own("4", 4, 4)}},
		{"separate -g", nil, []string{"-u", "3,4", "-g", "1,2"}, []translate.Owner{own("3", 3, 3), own("4", 4, 4)}, []translate.Owner{own("1", 1, 1), own("2", 2, 2)}},
		{"ranges and spaces", nil, []string{"-u", "1000-2000, 7", "-g", "0"}, []translate.Owner{own("1000-2000", 1000, 2000), own(" 7", 7, 7)}, []translate.Owner{own("0", 0, 0)}},
		{"names", nil, []string{"-u", "envoy", "-g", "wheel"}, []translate.Owner{own("envoy", 101, 101)}, []translate.Owner{own("wheel", 10, 10)}},
		{"unknown names stay unresolved", nil, []string{"-u", "ghost", "-g", "java"}, []translate.Owner{{Raw: "ghost"}}, []translate.Owner{{Raw: "java"}}},
		{"-g copies a -u name and looks it up as a group", nil, []string{"-u", "istio-proxy"}, []translate.Owner{own("istio-proxy", 1337, 1337)}, []translate.Owner{own("istio-proxy", 1337, 1337)}},
		{"max uint32", nil, []string{"-u", "4294967295"}, []translate.Owner{own("4294967295", 4294967295, 4294967295)}, []translate.Owner{own("4294967295", 4294967295, 4294967295)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := mustConfig(t, tc.env, tc.args...)
			if !reflect.DeepEqual(c.ProxyUIDs, tc.uids) || !reflect.DeepEqual(c.ProxyGIDs, tc.gids) {
				t.Errorf("uids %+v gids %+v, want %+v %+v", c.ProxyUIDs, c.ProxyGIDs, tc.uids, tc.gids)
			}
		})
	}
}

func TestEnvoyUserLookup(t *testing.T) {
	sys := newFake()
	if _, err := configFor(t, sys, envMap{translate.EnvEnvoyUser: ""}); err != nil {
		t.Fatal(err)
	}
	for _, l := range sys.lookups {
		if strings.HasPrefix(l, "user:") {
			t.Errorf("empty ENVOY_USER must not be looked up, got %s", l)
		}
	}
	sys = newFake()
	if _, err := configFor(t, sys, nil, "-u", "5"); err != nil {
		t.Fatal(err)
	}
	if len(sys.lookups) != 0 {
		t.Errorf("numeric ids must not be looked up: %v", sys.lookups)
	}
}

func TestOwnersRefused(t *testing.T) {
	for _, v := range []string{"2000-1000", "4294967296", "1-", "-1", "1-2-3", "007", "a b", "!1337", "*", "1337,*", " "} {
		refused(t, nil, nil, []string{"-u", v}, "-u/--proxy-uid", fmt.Sprintf("%q", v))
		refused(t, nil, nil, []string{"-g", v}, "-g/--proxy-gid", fmt.Sprintf("%q", v))
	}
	refused(t, nil, envMap{translate.EnvOwnerGroupsInclude: "5-1"}, nil, translate.EnvOwnerGroupsInclude, `"5-1"`)
	refused(t, nil, envMap{translate.EnvOwnerGroupsExclude: "x y"}, nil, translate.EnvOwnerGroupsExclude, `"x y"`)
}

func TestOwnerGroups(t *testing.T) {
	c := mustConfig(t, nil)
	if !c.OwnerGroupsInclude.All || c.OwnerGroupsExclude != nil {
		t.Errorf("default owner groups: %+v %+v", c.OwnerGroupsInclude, c.OwnerGroupsExclude)
	}
	c = mustConfig(t, envMap{translate.EnvOwnerGroupsInclude: "java,202"})
	want := translate.OwnerList{Owners: []translate.Owner{{Raw: "java"}, own("202", 202, 202)}}
	if !reflect.DeepEqual(c.OwnerGroupsInclude, want) {
		t.Errorf("include = %+v, want %+v", c.OwnerGroupsInclude, want)
	}
	c = mustConfig(t, envMap{translate.EnvOwnerGroupsInclude: ""})
	if !reflect.DeepEqual(c.OwnerGroupsInclude, translate.OwnerList{}) {
		t.Errorf("set-but-empty include must be an empty, non-wildcard list: %+v", c.OwnerGroupsInclude)
	}
	c = mustConfig(t, envMap{translate.EnvOwnerGroupsExclude: "888,wheel"})
	if !reflect.DeepEqual(c.OwnerGroupsExclude, []translate.Owner{own("888", 888, 888), own("wheel", 10, 10)}) {
		t.Errorf("exclude = %+v", c.OwnerGroupsExclude)
	}
	// The exclude list is ignored (not even read) unless include is "*".
	c = mustConfig(t, envMap{translate.EnvOwnerGroupsInclude: "10", translate.EnvOwnerGroupsExclude: "x y"})
	if c.OwnerGroupsExclude != nil {
		t.Errorf("exclude kept with include != *: %+v", c.OwnerGroupsExclude)
	}

	groups := func(n int) string {
		var l []string
		for i := 0; i < n; i++ {
			l = append(l, fmt.Sprint(i))
		}
		return strings.Join(l, ",")
	}
	if c := mustConfig(t, envMap{translate.EnvOwnerGroupsInclude: groups(64)}); len(c.OwnerGroupsInclude.Owners) != 64 {
		t.Errorf("64 groups: got %d", len(c.OwnerGroupsInclude.Owners))
	}
	refused(t, nil, envMap{translate.EnvOwnerGroupsInclude: groups(65)}, nil, translate.EnvOwnerGroupsInclude, "65 groups, at most 64")
	if c := mustConfig(t, envMap{translate.EnvOwnerGroupsExclude: groups(100)}); len(c.OwnerGroupsExclude) != 100 {
		t.Errorf("exclude list is unlimited, got %d", len(c.OwnerGroupsExclude))
	}
}

func TestCheckResolved(t *testing.T) {
	for _, tc := range []struct {
		env       envMap
		args      []string
		fragments []string
	}{
		{nil, []string{"-u", "1,ghost"}, []string{"-u/--proxy-uid", `user "ghost"`}},
		{nil, []string{"-u", "1", "-g", "java"}, []string{"-g/--proxy-gid", `group "java"`}},
		{envMap{translate.EnvOwnerGroupsInclude: "java,202"}, nil, []string{translate.EnvOwnerGroupsInclude, `group "java"`}},
		{envMap{translate.EnvOwnerGroupsExclude: "888,ftp"}, nil, []string{translate.EnvOwnerGroupsExclude, `group "ftp"`}},
	} {
		c := mustConfig(t, tc.env, tc.args...)
		err := c.CheckResolved()
		if err == nil {
			t.Errorf("%v %q: CheckResolved accepted unknown names", tc.env, tc.args)
			continue
		}
		for _, f := range tc.fragments {
			if !strings.Contains(err.Error(), f) {
				t.Errorf("CheckResolved error %q does not mention %q", err, f)
			}
		}
	}
	c := mustConfig(t, envMap{translate.EnvOwnerGroupsExclude: "wheel"}, "-u", "envoy,5-6", "-g", "wheel,7")
	if err := c.CheckResolved(); err != nil {
		t.Errorf("all resolved, got %v", err)
	}
}

func TestMode(t *testing.T) {
	for v, want := range map[string]translate.Mode{"": translate.ModeRedirect, "REDIRECT": translate.ModeRedirect, "TPROXY": translate.ModeTProxy} {
		if c := mustConfig(t, nil, "-m", v); c.Mode != want {
			t.Errorf("-m %q = %s, want %s", v, c.Mode, want)
		}
	}
	for _, v := range []string{"tproxy", "NONE", "redirect", " TPROXY"} {
		refused(t, nil, nil, []string{"-m", v}, "-m/--istio-inbound-interception-mode", fmt.Sprintf("%q", v), "REDIRECT or TPROXY")
	}
	refused(t, nil, envMap{"INBOUND_INTERCEPTION_MODE": "tproxy"}, nil, "INBOUND_INTERCEPTION_MODE", "-m/--istio-inbound-interception-mode")
}

func TestTProxyMarkAndTable(t *testing.T) {
	tp := []string{"-m", "TPROXY", "-b", "80"}
	c := mustConfig(t, nil, append(tp, "-t", "0x539", "-r", "100")...)
	if c.TProxyMark != (translate.Mark{Raw: "0x539", Value: 1337}) || c.TProxyRouteTable != 100 {
		t.Errorf("mark %+v table %d", c.TProxyMark, c.TProxyRouteTable)
	}
	c = mustConfig(t, nil, tp...)
	if c.TProxyMark != (translate.Mark{Raw: "1337", Value: 1337}) || c.TProxyRouteTable != 133 {
		t.Errorf("default mark %+v table %d", c.TProxyMark, c.TProxyRouteTable)
	}
	if c := mustConfig(t, nil, append(tp, "-t", "4294967295", "-r", "4294967295")...); c.TProxyMark.Value != 4294967295 || c.TProxyRouteTable != 4294967295 {
		t.Errorf("max mark/table: %+v %d", c.TProxyMark, c.TProxyRouteTable)
	}
	for _, v := range []string{"abc", "", "1_337", "0b101", "0o17", "4294967296", "-1", "0"} {
		refused(t, nil, nil, append(tp, "-t", v), "-t/--istio-inbound-tproxy-mark", fmt.Sprintf("%q", v))
	}
	for _, v := range []string{"0", "253", "254", "255", "abc", "0x85", "", "-1", "4294967296"} {
		refused(t, nil, nil, append(tp, "-r", v), "-r/--istio-inbound-tproxy-route-table", fmt.Sprintf("%q", v))
	}
	// Malformed values are refused in every mode; reserved tables only
	// matter where the table is used (TPROXY with inbound ports).
	refused(t, nil, nil, []string{"-t", "abc"}, "-t/--istio-inbound-tproxy-mark", `"abc"`)
	refused(t, nil, nil, []string{"-r", "main"}, "-r/--istio-inbound-tproxy-route-table", `"main"`)
	mustConfig(t, nil, "-t", "0", "-r", "254")
	mustConfig(t, nil, "-m", "TPROXY", "-b", "", "-r", "254")
}

func TestInterfaces(t *testing.T) {
	c := mustConfig(t, nil, "-c", "eth0,,veth+, eth1", "-k", "abcdefghijklmno")
	if !reflect.DeepEqual(c.ExcludeInterfaces, []translate.Iface{"eth0", "veth+", " eth1"}) || !reflect.DeepEqual(c.RerouteVirtualInterfaces, []translate.Iface{"abcdefghijklmno"}) {
		t.Errorf("interfaces: %q %q", c.ExcludeInterfaces, c.RerouteVirtualInterfaces)
	}
	for _, v := range []string{"abcdefghijklmnop", "a/b", "a b", "e+th", " ", "eth0,x\x00"} {
		refused(t, nil, nil, []string{"-c", v}, "-c/--istio-exclude-interfaces", fmt.Sprintf("%q", v))
		refused(t, nil, nil, []string{"-k", v}, "-k/--kube-virt-interfaces", fmt.Sprintf("%q", v))
	}
}

func TestHostLoopback(t *testing.T) {
	c := mustConfig(t, envMap{translate.EnvHostIPv4LoopbackCidr: "127.0.0.1/8"})
	if c.HostIPv4Loopback != pfx("127.0.0.1/8") {
		t.Errorf("loopback = %+v, want verbatim 127.0.0.1/8", c.HostIPv4Loopback)
	}
	if c := mustConfig(t, nil); c.HostIPv4Loopback != pfx("127.0.0.1/32") {
		t.Errorf("default loopback = %+v", c.HostIPv4Loopback)
	}
	for _, v := range []string{"", "10.0.0.1/32", "127.0.0.1/7", "127.0.0.1", "::1/128", "::ffff:127.0.0.1/104", "127.0.0.1/33"} {
		refused(t, nil, envMap{translate.EnvHostIPv4LoopbackCidr: v}, nil, translate.EnvHostIPv4LoopbackCidr, fmt.Sprintf("%q", v))
	}
}

func TestForceIptablesBinary(t *testing.T) {
	for _, v := range []string{"", "legacy", "nft"} {
		mustConfig(t, nil, "--force-iptables-binary", v)
	}
	refused(t, nil, nil, []string{"--force-iptables-binary", "Legacy"}, `--force-iptables-binary "Legacy"`)
	refused(t, nil, envMap{"FORCE_IPTABLES_BINARY": "x"}, nil, "FORCE_IPTABLES_BINARY", "--force-iptables-binary")
}

func TestDNSServers(t *testing.T) {
	sys := newFake()
	sys.resolv = []byte("# generated\nsearch svc.cluster.local\nnameserver 127.0.0.53\nnameserver ::127.0.0.53\nnameserver fe80::1%eth0\n")
	c, err := configFor(t, sys, nil, "--redirect-dns")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.DNSServersV4, []netip.Addr{netip.MustParseAddr("127.0.0.53")}) ||
		len(c.DNSServersV6) != 1 || c.DNSServersV6[0].String() != "::7f00:35" {
		t.Errorf("servers %v %v", c.DNSServersV4, c.DNSServersV6)
	}
	if !c.RedirectDNS || c.CaptureAllDNS || !c.DNSEnabled() {
		t.Errorf("DNS flags: %+v", c)
	}

	// capture-all and no redirect never read resolv.conf.
	for _, args := range [][]string{{"--redirect-dns", "--capture-all-dns"}, nil, {"--capture-all-dns"}} {
		sys := newFake()
		sys.resolvErr = errors.New("must not be read")
		c, err := configFor(t, sys, nil, args...)
		if err != nil || sys.resolvReads != 0 || c.DNSServersV4 != nil {
			t.Errorf("%q: err %v, reads %d", args, err, sys.resolvReads)
		}
	}

	sys = newFake()
	sys.resolvErr = errors.New("open /etc/resolv.conf: permission denied")
	refused(t, sys, nil, []string{"--redirect-dns"}, "--redirect-dns", "/etc/resolv.conf", "permission denied")
}

func TestOptionErrorType(t *testing.T) {
	_, err := configFor(t, newFake(), envMap{"ISTIO_INBOUND_PORTS": "x"})
	var oe *translate.OptionError
	if !errors.As(err, &oe) || oe.Option != "-b/--istio-inbound-ports" || oe.Env != "ISTIO_INBOUND_PORTS" || oe.Value != "x" || oe.Reason == "" {
		t.Errorf("got %#v", err)
	}
}

func TestMiscFlagsCarried(t *testing.T) {
	c := mustConfig(t, nil, "--drop-invalid", "--dual-stack")
	if !c.DropInvalid || !c.EnableIPv6 {
		t.Errorf("drop-invalid/dual-stack not carried: %+v", c)
	}
	if c := mustConfig(t, nil); c.DropInvalid || c.EnableIPv6 || c.RedirectDNS {
		t.Errorf("defaults: %+v", c)
	}
}

// TestAcceptsIstioCorpusArgs: every argv of the conformance corpus (what
// istio-iptables applies) must be accepted.
func TestAcceptsIstioCorpusArgs(t *testing.T) {
	dirs, err := corpusDirs()
	if err != nil {
		t.Skip(err)
	}
	for _, d := range dirs {
		o, err := parseOpts(t, d.env, d.args...)
		if err != nil {
			t.Errorf("%s: parse: %v", d.name, err)
			continue
		}
		sys := newFake()
		sys.resolv = d.resolv
		if _, err := o.Config(sys); err != nil {
			t.Errorf("%s: %v", d.name, err)
		}
	}
}
