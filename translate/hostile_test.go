package translate_test

// Hostile input through the whole pure pipeline: options → Config → Build
// → nft.Text (what apply installs) and compat.Restore (the iptables view).
// Nothing may panic; input is either refused naming the option or
// rendered correctly.

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/nfintercept/nfintercept/cmd/nfintercept/istioflags"
	"github.com/nfintercept/nfintercept/compat"
	"github.com/nfintercept/nfintercept/nft"
	"github.com/nfintercept/nfintercept/translate"
)

// hostileSystem knows no names and has no resolv.conf entries.
type hostileSystem struct{}

func (hostileSystem) LookupUser(n string) (uint32, error) {
	return 0, fmt.Errorf("unknown user %q", n)
}
func (hostileSystem) LookupGroup(n string) (uint32, error) {
	return 0, fmt.Errorf("unknown group %q", n)
}
func (hostileSystem) ReadResolvConf() ([]byte, error) { return nil, nil }

func hostileOptions() translate.Options {
	o := translate.DefaultOptions()
	o.ProxyUID = "1337"
	return o
}

// renderAll runs the pipeline; the nft text error is returned, not fatal.
func renderAll(t *testing.T, o translate.Options) (text string, textErr error, v4, v6 string) {
	t.Helper()
	c, err := o.Config(hostileSystem{})
	if err != nil {
		t.Fatalf("Config: %v", err)
	}
	rs := translate.Build(c)
	text, textErr = nft.Text(rs)
	return text, textErr, compat.Restore(rs, translate.IPv4), compat.Restore(rs, translate.IPv6)
}

// refusedAs checks the options are refused with an OptionError naming the
// option.
func refusedAs(t *testing.T, o translate.Options, option string) {
	t.Helper()
	_, err := o.Config(hostileSystem{})
	var oe *translate.OptionError
	if !errors.As(err, &oe) || !strings.Contains(oe.Option, option) {
		t.Errorf("want an OptionError naming %s, got %v", option, err)
	}
}

func countMatches(re string, s string) int { return len(regexp.MustCompile(re).FindAllString(s, -1)) }

// TestHostileLongLists: 100,000 CIDRs per family and 100,000 ports (with
// duplicates) go through; the iptables view keeps one line per item as
// written, the nft text merges them.
func TestHostileLongLists(t *testing.T) {
	const n = 100000
	v4 := make([]string, n)
	v6 := make([]string, n)
	ports := make([]string, n)
	for i := range n {
		// Non-adjacent /24s (even third octet) and /64s: nothing merges.
		v4[i] = fmt.Sprintf("%d.%d.%d.0/24", 11+i/32768, (i/128)%256, 2*(i%128))
		v6[i] = fmt.Sprintf("2001:db8:%x:%x::/64", i/128, 2*(i%128))
		ports[i] = fmt.Sprint(1 + i%65535) // every port 1-65535, some twice
	}
	o := hostileOptions()
	o.OutboundIPRangesInclude = "*"
	o.OutboundIPRangesExclude = strings.Join(append(append([]string{}, v4...), v6...), ",")
	o.InboundPortsInclude = strings.Join(ports, ",")
	o.DualStack = true
	c, err := o.Config(hostileSystem{})
	if err != nil {
		t.Fatal(err)
	}
	c.EnableIPv6 = true
	if len(c.OutboundIPRangesExclude.V4) != n || len(c.OutboundIPRangesExclude.V6) != n || len(c.InboundPorts.Ports) != n {
		t.Fatalf("lists shortened: %d v4, %d v6, %d ports", len(c.OutboundIPRangesExclude.V4), len(c.OutboundIPRangesExclude.V6), len(c.InboundPorts.Ports))
	}
	rs := translate.Build(c)
	text, err := nft.Text(rs)
	if err != nil {
		t.Fatalf("nft text: %v", err)
	}
	// Every port 1-65535 is one range, in a named set (too long to inline).
	if !strings.Contains(text, "elements = { 1-65535 }") || !strings.Contains(text, "tcp dport @inbound-ports") {
		t.Errorf("the 100,000 ports do not merge into 1-65535")
	}
	for _, cidr := range []string{v4[0], v4[n-1], v6[0], v6[n-1]} {
		cidr = netip.MustParsePrefix(cidr).String() // as nft prints it
		if !strings.Contains(text, cidr) {
			t.Errorf("nft text lacks %s", cidr)
		}
	}
	r4, r6 := compat.Restore(rs, translate.IPv4), compat.Restore(rs, translate.IPv6)
	if got := countMatches(`(?m)^-A ISTIO_OUTPUT -d \S+ -j RETURN$`, r4); got != n+1 { // + 127.0.0.1/32
		t.Errorf("iptables view: %d exclude lines, want %d", got, n+1)
	}
	if got := countMatches(`(?m)^-A ISTIO_OUTPUT -d 2001:db8:\S+ -j RETURN$`, r6); got != n {
		t.Errorf("ip6tables view: %d exclude lines, want %d", got, n)
	}
	if got := countMatches(`(?m)^-A ISTIO_INBOUND -p tcp --dport \d+ -j ISTIO_IN_REDIRECT$`, r4); got != n {
		t.Errorf("iptables view: %d inbound port lines, want %d", got, n)
	}
}

// TestHostileScatteredPorts: a port list that merges into no ranges is
// either rendered whole or refused with an error about the port set; the
// iptables view still prints every item.
func TestHostileScatteredPorts(t *testing.T) {
	var ports []string
	for p := 1; p <= 65535; p += 2 {
		ports = append(ports, fmt.Sprint(p))
	}
	o := hostileOptions()
	o.InboundPortsInclude = strings.Join(ports, ",")
	text, err, v4, _ := renderAll(t, o)
	t.Logf("nft text: %v", err)
	switch {
	case err != nil && !strings.Contains(err.Error(), "port set"):
		t.Errorf("refused without naming the port set: %v", err)
	case err == nil && (!strings.Contains(text, "1, 3, 5") || !strings.Contains(text, "65535 }")):
		t.Errorf("rendered without all ports")
	}
	if got := countMatches(`(?m)^-A ISTIO_INBOUND -p tcp --dport \d+ -j ISTIO_IN_REDIRECT$`, v4); got != len(ports) {
		t.Errorf("iptables view: %d lines, want %d", got, len(ports))
	}
}

// TestHostileDuplicatesOverlaps: duplicated, overlapping, adjacent and
// host-bit prefixes and ports are kept as written in the iptables view and
// merged in nft.
func TestHostileDuplicatesOverlaps(t *testing.T) {
	o := hostileOptions()
	o.OutboundIPRangesInclude = "10.0.0.0/8,10.1.0.0/16,10.0.0.0/8,10.1.2.3/8,192.168.1.0/24,192.168.0.0/24," +
		"2001:db8::/32,2001:db8:1::/48,2001:db8::1/32"
	o.InboundPortsInclude = "80,80,81,82,8080:8090,8085,82"
	o.DualStack = true
	text, err, v4, v6 := renderAll(t, o)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"elements = { 10.0.0.0/8, 192.168.0.0/23 }", // 10.1/16 inside 10/8; the /24s adjacent
		"elements = { 2001:db8::/32 }",
		"tcp dport { 80-82, 8080-8090 }",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("nft text lacks %q:\n%s", want, text)
		}
	}
	for _, want := range []string{"-d 10.0.0.0/8 ", "-d 10.1.0.0/16 ", "-d 10.1.2.3/8 ", "-d 192.168.1.0/24 "} {
		if !strings.Contains(v4, want) {
			t.Errorf("iptables view lacks %q", want)
		}
	}
	if got := countMatches(`-d 10\.0\.0\.0/8 -j ISTIO_REDIRECT`, v4); got != 2 {
		t.Errorf("iptables view: duplicate kept %d times, want 2", got)
	}
	if got := countMatches(`--dport 82 `, v4); got != 2 {
		t.Errorf("iptables view: duplicate port kept %d times, want 2", got)
	}
	if !strings.Contains(v6, "-d 2001:db8::1/32 ") {
		t.Errorf("ip6tables view lost the host bits of 2001:db8::1/32")
	}
}

// TestHostileZones: an IPv6 zone is refused wherever an address or prefix
// is an option.
func TestHostileZones(t *testing.T) {
	for _, c := range []struct {
		option string
		set    func(*translate.Options)
	}{
		{"-i/--istio-service-cidr", func(o *translate.Options) { o.OutboundIPRangesInclude = "fe80::1%eth0/64" }},
		{"-x/--istio-service-exclude-cidr", func(o *translate.Options) { o.OutboundIPRangesExclude = "10.0.0.0/8,fe80::%lo/10" }},
		{"-i/--istio-service-cidr", func(o *translate.Options) { o.OutboundIPRangesInclude = "::1%1/128" }},
		{translate.EnvHostIPv4LoopbackCidr, func(o *translate.Options) { o.HostIPv4LoopbackCidr = "127.0.0.1%lo/8" }},
	} {
		o := hostileOptions()
		c.set(&o)
		refusedAs(t, o, c.option)
	}
}

// TestHostileWhitespaceAndEmpty: empty items are dropped, spaces around
// ports and interface names are kept in the iptables view (as istio-iptables
// pastes them) and never reach nft; a list of only blanks is refused.
func TestHostileWhitespaceAndEmpty(t *testing.T) {
	o := hostileOptions()
	o.InboundPortsInclude = " 80,\t90,,"
	o.ExcludeInterfaces = " eth0,,eth1 "
	o.OutboundIPRangesInclude = ",10.0.0.0/8,,"
	text, err, v4, _ := renderAll(t, o)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`iifname "eth0" counter return`, `oifname "eth1" counter return`, "tcp dport { 80, 90 }", "elements = { 10.0.0.0/8 }"} {
		if !strings.Contains(text, want) {
			t.Errorf("nft text lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, `" eth0"`) || strings.Contains(text, `"eth1 "`) {
		t.Errorf("nft text kept blanks in an interface name:\n%s", text)
	}
	for _, want := range []string{"-i  eth0 -j RETURN", "--dport  80 ", "--dport \t90 "} {
		if !strings.Contains(v4, want) {
			t.Errorf("iptables view lacks %q:\n%s", want, v4)
		}
	}
	o = hostileOptions()
	o.InboundPortsInclude = " "
	refusedAs(t, o, "-b/--istio-inbound-ports")
	o = hostileOptions()
	o.OutboundIPRangesInclude = " 10.0.0.0/8"
	refusedAs(t, o, "-i/--istio-service-cidr")
	o = hostileOptions()
	o.ExcludeInterfaces = "eth0\x00"
	refusedAs(t, o, "-c/--istio-exclude-interfaces")
}

// TestHostilePortBounds: 0 and 65535 are ports in lists and render;
// 65536 and negative numbers are refused naming the option; the proxy
// ports refuse 0.
func TestHostilePortBounds(t *testing.T) {
	o := hostileOptions()
	o.InboundPortsInclude = "0,65535"
	o.OutboundPortsExclude = "0"
	text, err, v4, _ := renderAll(t, o)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text, "tcp dport { 0, 65535 }") || !strings.Contains(text, "tcp dport 0 counter return") {
		t.Errorf("nft text lacks port 0 or 65535:\n%s", text)
	}
	if !strings.Contains(v4, "--dport 0 -j ISTIO_IN_REDIRECT") {
		t.Errorf("iptables view lacks port 0")
	}
	for _, c := range []struct {
		option string
		set    func(*translate.Options, string)
		values []string
	}{
		{"-b/--istio-inbound-ports", func(o *translate.Options, v string) { o.InboundPortsInclude = v }, []string{"65536", "-1", "80,65536"}},
		{"-q/--istio-outbound-ports", func(o *translate.Options, v string) { o.OutboundPortsInclude = v }, []string{"65536", "1:65536"}},
		{"-p/--envoy-port", func(o *translate.Options, v string) { o.EnvoyPort = v }, []string{"0", "65536"}},
		{"-z/--inbound-capture-port", func(o *translate.Options, v string) { o.InboundCapturePort = v }, []string{"0", "65536"}},
	} {
		for _, v := range c.values {
			o := hostileOptions()
			c.set(&o, v)
			refusedAs(t, o, c.option)
		}
	}
}

// TestHostileUnknownOwners: names of users and groups that do not exist
// stay printable in the iptables view but cannot be installed: the kernel
// paths refuse them with an error naming the option and the name.
func TestHostileUnknownOwners(t *testing.T) {
	for _, c := range []struct {
		option, name string
		set          func(*translate.Options)
	}{
		{"-u/--proxy-uid", "ghost-user", func(o *translate.Options) { o.ProxyUID = "ghost-user" }},
		{"-g/--proxy-gid", "ghost-group", func(o *translate.Options) { o.ProxyGID = "ghost-group" }},
		{translate.EnvOwnerGroupsInclude, "ghost-team", func(o *translate.Options) { o.OwnerGroupsInclude = "1000,ghost-team" }},
		{translate.EnvOwnerGroupsExclude, "ghost-team", func(o *translate.Options) {
			o.OwnerGroupsInclude = "*"
			o.OwnerGroupsExclude = "ghost-team"
		}},
	} {
		o := hostileOptions()
		c.set(&o)
		cfg, err := o.Config(hostileSystem{})
		if err != nil {
			t.Errorf("%s: Config refused an unknown name (only the kernel paths may): %v", c.option, err)
			continue
		}
		if err := cfg.CheckResolved(); err == nil || !strings.Contains(err.Error(), c.option) || !strings.Contains(err.Error(), c.name) {
			t.Errorf("%s: CheckResolved = %v, want an error naming the option and %q", c.option, err, c.name)
		}
		rs := translate.Build(cfg)
		if _, err := nft.Text(rs); err == nil || !strings.Contains(err.Error(), c.name) {
			t.Errorf("%s: nft text = %v, want a refusal naming %q", c.option, err, c.name)
		}
		if v4 := compat.Restore(rs, translate.IPv4); !strings.Contains(v4, c.name) {
			t.Errorf("%s: the iptables view does not print %q", c.option, c.name)
		}
	}
}

// FuzzConfigText: whatever the options, the pipeline to the nft text and
// the iptables view never panics.
func FuzzConfigText(f *testing.F) {
	for _, s := range []string{
		"-p 15001 -z 15006 -u 1337 -m REDIRECT -i * -x 10.0.0.0/8 -b * -d 15090,15021",
		"-m TPROXY -b 80,80,0,65535 -i 10.0.0.0/8,10.1.2.3/8,fd00::/8 -k eth0,eth1+ -c + --dual-stack --redirect-dns",
		"-u ghost -g nobody-here -q 1:65535 -o 0 -e 15008:15009 --capture-all-dns --drop-invalid",
		"-b  80,,\t90 -c  eth0,eth1  -i ,,",
		"-x ::/0,0.0.0.0/0 -i * -b * -d * --dual-stack",
		"-m TPROXY -t 0xffffffff -r 4294967295 -b 1:2,3:4",
	} {
		f.Add(s, true)
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, argLine string, ipv6 bool) {
		o := translate.DefaultOptions()
		fs := pflag.NewFlagSet("fuzz", pflag.ContinueOnError)
		fs.SetOutput(new(strings.Builder))
		istioflags.Add(fs, &o, func(string) (string, bool) { return "", false })
		if err := fs.Parse(strings.Fields(argLine)); err != nil {
			return
		}
		c, err := o.Config(hostileSystem{})
		if err != nil {
			return
		}
		c.EnableIPv6 = ipv6
		rs := translate.Build(c)
		_, _ = nft.Text(rs) // an error is fine; a panic is not
		_ = compat.Restore(rs, translate.IPv4)
		_ = compat.Restore(rs, translate.IPv6)
	})
}
