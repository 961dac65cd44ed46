package translate

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Limits and reserved values istio-iptables (or the kernel) imposes.
const (
	maxOwnerGroupsInclude = 64 // istio-iptables' Validate()
	maxIfaceLen           = 15 // IFNAMSIZ - 1
	defaultProxyUID       = "1337"
)

// Config validates the options and turns them into a Config. It refuses
// bad input before anything is touched, with one line naming the option,
// the value and the reason (an *OptionError, or an I/O error naming the
// file). It is stricter than istio-iptables only where istio-iptables
// would fail late (at apply time) or let iptables misread a value; every
// configuration istio-iptables applies successfully is accepted.
//
// sys answers the user/group name and resolv.conf questions. Unknown user
// and group names are not an error here (see Config.CheckResolved).
func (o Options) Config(sys System) (Config, error) {
	var c Config
	var err error

	if c.ProxyPort, err = o.singlePort("envoy-port", o.EnvoyPort, 1); err != nil {
		return Config{}, err
	}
	if c.InboundCapturePort, err = o.singlePort("inbound-capture-port", o.InboundCapturePort, 1); err != nil {
		return Config{}, err
	}
	if c.InboundTunnelPort, err = o.tunnelPort(); err != nil {
		return Config{}, err
	}

	switch o.InboundInterceptionMode {
	case "", string(ModeRedirect):
		c.Mode = ModeRedirect
	case string(ModeTProxy):
		c.Mode = ModeTProxy
	default:
		return Config{}, o.optError("istio-inbound-interception-mode", o.InboundInterceptionMode,
			"must be REDIRECT or TPROXY (upper case; empty means REDIRECT; to disable interception, do not run nfintercept)")
	}

	if o.InboundPortsInclude == "*" {
		c.InboundPorts.All = true
	} else if c.InboundPorts.Ports, err = o.portList("istio-inbound-ports", o.InboundPortsInclude, true); err != nil {
		return Config{}, err
	}
	c.InboundPorts.Given = o.InboundPortsInclude != ""
	// -d is validated even when unused, but only kept when -b is "*" so
	// no consumer can apply it by mistake.
	exclude, err := o.portList("istio-local-exclude-ports", o.InboundPortsExclude, false)
	if err != nil {
		return Config{}, err
	}
	if c.InboundPorts.All {
		c.InboundPortsExclude = exclude
	}

	if c.ExcludeInterfaces, err = o.ifaceList("istio-exclude-interfaces", o.ExcludeInterfaces); err != nil {
		return Config{}, err
	}
	if c.RerouteVirtualInterfaces, err = o.ifaceList("kube-virt-interfaces", o.RerouteVirtualInterfaces); err != nil {
		return Config{}, err
	}

	if c.OutboundIPRangesInclude, err = o.cidrList("istio-service-cidr", o.OutboundIPRangesInclude, true); err != nil {
		return Config{}, err
	}
	if c.OutboundIPRangesExclude, err = o.cidrList("istio-service-exclude-cidr", o.OutboundIPRangesExclude, false); err != nil {
		return Config{}, err
	}
	if c.OutboundPortsInclude, err = o.portList("istio-outbound-ports", o.OutboundPortsInclude, false); err != nil {
		return Config{}, err
	}
	if c.OutboundPortsExclude, err = o.portList("istio-local-outbound-ports-exclude", o.OutboundPortsExclude, false); err != nil {
		return Config{}, err
	}

	if err := o.tproxySettings(&c); err != nil {
		return Config{}, err
	}

	if err := o.owners(&c, sys); err != nil {
		return Config{}, err
	}

	if c.HostIPv4Loopback, err = hostLoopback(o.HostIPv4LoopbackCidr); err != nil {
		return Config{}, err
	}

	switch o.ForceIptablesBinary {
	case "", "legacy", "nft":
	default:
		return Config{}, o.optError("force-iptables-binary", o.ForceIptablesBinary, `must be "", legacy or nft`)
	}

	c.RedirectDNS = o.RedirectDNS
	c.CaptureAllDNS = o.CaptureAllDNS
	c.DropInvalid = o.DropInvalid
	if o.RedirectDNS && !o.CaptureAllDNS {
		data, err := sys.ReadResolvConf()
		if err != nil {
			return Config{}, fmt.Errorf("--redirect-dns needs the nameservers of %s: %w", ResolvConfPath, err)
		}
		c.DNSServersV4, c.DNSServersV6 = Nameservers(data)
	}

	// The caller overrides this after looking at the namespace's addresses.
	c.DualStack = o.DualStack
	c.EnableIPv6 = o.DualStack
	return c, nil
}

// tunnelPort parses -e: one port or range, as it ends up in "! --dport T"
// and "--dports 53,T".
func (o *Options) tunnelPort() (Port, error) {
	const long = "inbound-tunnel-port"
	p, why := parsePort(o.InboundTunnelPort)
	if why != "" {
		return Port{}, o.optError(long, o.InboundTunnelPort, why)
	}
	return p, nil
}

// singlePort parses -p/-z: one port, no range, at least min.
func (o *Options) singlePort(long, raw string, min uint16) (Port, error) {
	s := strings.TrimSpace(raw)
	n, why := parsePortNumber(s)
	if why != "" {
		return Port{}, o.optError(long, raw, why)
	}
	if n < min {
		return Port{}, o.optError(long, raw, fmt.Sprintf("port must be %d-65535", min))
	}
	return Port{Raw: raw, From: n, To: n}, nil
}

// portList parses a comma list of ports/ranges. "*" is only meaningful
// as the whole value (handled by the caller); anywhere else it is refused.
func (o *Options) portList(long, raw string, wildcardOK bool) ([]Port, error) {
	var ports []Port
	for _, item := range Split(raw) {
		if strings.TrimSpace(item) == "*" {
			if wildcardOK {
				return nil, o.optError(long, raw, `"*" is only allowed as the whole value`)
			}
			return nil, o.optError(long, raw, `"*" is not allowed here`)
		}
		p, why := parsePort(item)
		if why != "" {
			return nil, o.optError(long, raw, why)
		}
		ports = append(ports, p)
	}
	return ports, nil
}

// parsePort parses one list item: a decimal port or an iptables range
// "a:b", ":b" (from 0) or "a:" (to 65535). It returns a reason on failure.
func parsePort(raw string) (Port, string) {
	s := strings.TrimSpace(raw)
	from, to, isRange := strings.Cut(s, ":")
	if !isRange {
		n, why := parsePortNumber(s)
		if why != "" {
			return Port{}, why
		}
		return Port{Raw: raw, From: n, To: n}, ""
	}
	lo, hi := uint16(0), uint16(65535)
	var why string
	if from != "" {
		if lo, why = parsePortNumber(from); why != "" {
			return Port{}, why
		}
	}
	if to != "" {
		if hi, why = parsePortNumber(to); why != "" {
			return Port{}, why
		}
	}
	if lo > hi {
		return Port{}, fmt.Sprintf("range %q is reversed (%d > %d)", s, lo, hi)
	}
	return Port{Raw: raw, From: lo, To: hi}, ""
}

// parsePortNumber accepts plain decimal 0-65535. Leading zeros are refused:
// iptables reads "080" as octal 64 while nftables reads 80.
func parsePortNumber(s string) (uint16, string) {
	bad := fmt.Sprintf("%q is not a port number (0-65535) or range a:b", s)
	if !isDigits(s) {
		return 0, bad
	}
	if len(s) > 1 && s[0] == '0' {
		return 0, fmt.Sprintf("%q has a leading zero (iptables would read it as octal)", s)
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, bad
	}
	return uint16(n), ""
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// cidrList parses a CIDR list. Items must parse with netip.ParsePrefix as
// written (no trimming, as istio-iptables); host bits are kept.
func (o *Options) cidrList(long, raw string, wildcardOK bool) (CIDRList, error) {
	var l CIDRList
	if raw == "*" {
		if !wildcardOK {
			return CIDRList{}, o.optError(long, raw, `"*" is not allowed for the exclude list`)
		}
		l.All = true
		return l, nil
	}
	items := Split(raw)
	// Sized up front: a list can hold 100,000s of CIDRs.
	l.V4 = make([]Prefix, 0, len(items))
	for _, item := range items {
		if strings.TrimSpace(item) == "*" {
			if wildcardOK {
				return CIDRList{}, o.optError(long, raw, `"*" is only allowed as the whole value`)
			}
			return CIDRList{}, o.optError(long, raw, `"*" is not allowed for the exclude list`)
		}
		pr, err := parseCIDRItem(item)
		if err != nil {
			return CIDRList{}, o.optError(long, raw, err.Error())
		}
		p := pr.Prefix
		if p.Addr().Is4() {
			l.V4 = append(l.V4, pr)
		} else {
			l.V6 = append(l.V6, pr)
		}
		if p.Addr().IsLoopback() {
			l.HasLoopback = true
		}
	}
	if len(l.V4) == 0 {
		l.V4 = nil
	}
	return l, nil
}

// parseCIDRItem parses one CIDR exactly as written (host bits kept).
func parseCIDRItem(item string) (Prefix, error) {
	p, err := netip.ParsePrefix(item)
	if err != nil {
		return Prefix{}, fmt.Errorf("%q is not a CIDR (address/length, no spaces): %s", item, cidrReason(err))
	}
	return Prefix{Raw: item, Prefix: p}, nil
}

// cidrReason strips netip's echo of the input, which the message already
// quotes.
func cidrReason(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, "): "); i >= 0 {
		return s[i+3:]
	}
	if i := strings.LastIndex(s, ": "); i >= 0 {
		return s[i+2:]
	}
	return s
}

// ifaceList parses an interface list. Items keep their spelling for the
// iptables view (iptables-restore re-tokenises " eth0"); the name itself is
// validated trimmed, and the nft layer matches the trimmed name.
func (o *Options) ifaceList(long, raw string) ([]Iface, error) {
	var l []Iface
	for _, item := range Split(raw) {
		if why := ifaceProblem(strings.TrimSpace(item)); why != "" {
			return nil, o.optError(long, raw, why)
		}
		l = append(l, Iface(item))
	}
	return l, nil
}

// ifaceProblem says what is wrong with an interface name, or "".
func ifaceProblem(name string) string {
	switch {
	case name == "":
		return "empty interface name"
	case len(name) > maxIfaceLen:
		return fmt.Sprintf("interface name %q is longer than %d bytes", name, maxIfaceLen)
	case strings.ContainsAny(name, "/\x00") || strings.ContainsFunc(name, isSpace):
		return fmt.Sprintf("interface name %q contains whitespace, '/' or NUL", name)
	case strings.ContainsAny(name, `*"\`):
		// Refused by the kernel step, and not writable in nft's syntax:
		// refused here, before anything is touched.
		return fmt.Sprintf("interface name %q contains '*', '\"' or '\\'", name)
	case strings.Contains(strings.TrimSuffix(name, "+"), "+"):
		return fmt.Sprintf("interface name %q has '+' other than at the end (the wildcard)", name)
	}
	return ""
}

func isSpace(r rune) bool {
	return r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '\v' || r == '\f'
}

// tproxySettings parses -t and -r. A malformed value is refused in every
// mode (istio-iptables pastes it and fails late, or silently ignores it);
// values that are well-formed but unusable for TPROXY (mark 0, a reserved
// table) only matter where istio-iptables uses them: TPROXY mode, and for
// the table only with inbound capture.
func (o *Options) tproxySettings(c *Config) error {
	tproxy := c.Mode == ModeTProxy
	mark, why := parseMark(o.InboundTProxyMark)
	if why == "" && mark == 0 && tproxy {
		why = "mark 0 would send every unmarked packet to the TPROXY routing table"
	}
	if why != "" {
		return o.optError("istio-inbound-tproxy-mark", o.InboundTProxyMark, why)
	}
	c.TProxyMark = Mark{Raw: o.InboundTProxyMark, Value: mark}

	table, reserved, why := parseRouteTable(o.InboundTProxyRouteTable)
	if why != "" && (!reserved || tproxy && !c.InboundPorts.Empty()) {
		return o.optError("istio-inbound-tproxy-route-table", o.InboundTProxyRouteTable, why)
	}
	c.TProxyRouteTable = table
	return nil
}

// parseMark reads a mark like iptables does: decimal, 0x hex or 0 octal.
// Go-only spellings (underscores, 0b, 0o) are refused since the raw value
// is also given to iptables.
func parseMark(raw string) (uint32, string) {
	s := strings.TrimSpace(raw)
	bad := fmt.Sprintf("%q is not a 32-bit mark (decimal or 0x hex)", s)
	if s == "" || strings.Contains(s, "_") {
		return 0, bad
	}
	if len(s) > 1 && s[0] == '0' && strings.ContainsAny(s[1:2], "bBoO") {
		return 0, bad
	}
	n, err := strconv.ParseUint(s, 0, 32)
	if err != nil {
		return 0, bad
	}
	return uint32(n), ""
}

// parseRouteTable reads a decimal routing table id. The reserved tables
// are reported separately: installing "local default dev lo" in
// unspec/default/main/local would break the namespace's routing.
func parseRouteTable(raw string) (table uint32, reserved bool, why string) {
	s := strings.TrimSpace(raw)
	n, err := strconv.ParseUint(s, 10, 32)
	if !isDigits(s) || err != nil {
		return 0, false, fmt.Sprintf("%q is not a routing table number (decimal)", s)
	}
	switch n {
	case 0, 253, 254, 255:
		return 0, true, fmt.Sprintf("table %d is reserved (unspec/default/main/local)", n)
	}
	return uint32(n), false, ""
}

// owners fills the uid/gid lists and owner groups.
func (o *Options) owners(c *Config, sys System) error {
	uidRaw := o.ProxyUID
	if uidRaw == "" {
		uidRaw = defaultProxyUID
		if o.EnvoyUser != "" {
			if uid, err := sys.LookupUser(o.EnvoyUser); err == nil {
				uidRaw = strconv.FormatUint(uint64(uid), 10)
			}
		}
	}
	var err error
	if c.ProxyUIDs, err = o.ownerList("proxy-uid", uidRaw, sys.LookupUser); err != nil {
		return err
	}
	gidRaw := o.ProxyGID
	if gidRaw == "" {
		gidRaw = uidRaw // istio-iptables copies the whole -u string
	}
	if c.ProxyGIDs, err = o.ownerList("proxy-gid", gidRaw, sys.LookupGroup); err != nil {
		return err
	}

	if o.OwnerGroupsInclude == "*" {
		c.OwnerGroupsInclude.All = true
		// The exclude list only matters (and is only read) with include "*".
		if c.OwnerGroupsExclude, err = o.ownerList(EnvOwnerGroupsExclude, o.OwnerGroupsExclude, sys.LookupGroup); err != nil {
			return err
		}
		return nil
	}
	if n := len(Split(o.OwnerGroupsInclude)); n > maxOwnerGroupsInclude {
		return envError(EnvOwnerGroupsInclude, o.OwnerGroupsInclude,
			fmt.Sprintf("%d groups, at most %d are allowed", n, maxOwnerGroupsInclude))
	}
	c.OwnerGroupsInclude.Owners, err = o.ownerList(EnvOwnerGroupsInclude, o.OwnerGroupsInclude, sys.LookupGroup)
	return err
}

// ownerList parses uid/gid items: a number, a range a-b, or a name
// resolved through lookup (unknown names stay unresolved). where is a long
// flag name or an env-only variable name.
func (o *Options) ownerList(where, raw string, lookup func(string) (uint32, error)) ([]Owner, error) {
	fail := func(why string) error {
		if _, isFlag := shortOf[where]; isFlag {
			return o.optError(where, raw, why)
		}
		return envError(where, raw, why)
	}
	var l []Owner
	for _, item := range Split(raw) {
		s := strings.TrimSpace(item)
		if s == "*" {
			return nil, fail(`"*" is not a user or group (only ` + EnvOwnerGroupsInclude + ` takes "*", as its whole value)`)
		}
		if s == "" || strings.Trim(s, "0123456789-") == "" {
			from, to, why := parseIDRange(s)
			if why != "" {
				return nil, fail(why)
			}
			l = append(l, Owner{Raw: item, From: from, To: to, Resolved: true})
			continue
		}
		if strings.HasPrefix(s, "!") || strings.ContainsFunc(s, isSpace) || strings.ContainsAny(s, ":\x00") {
			return nil, fail(fmt.Sprintf("%q is not a number, range a-b or user/group name", s))
		}
		id, err := lookup(s)
		if err != nil {
			l = append(l, Owner{Raw: item}) // kernel paths refuse it via CheckResolved
			continue
		}
		l = append(l, Owner{Raw: item, From: id, To: id, Resolved: true})
	}
	return l, nil
}

// parseIDRange parses "n" or "a-b" (decimal uint32, a <= b).
func parseIDRange(s string) (uint32, uint32, string) {
	bad := fmt.Sprintf("%q is not a number (0-4294967295), range a-b or name", s)
	num := func(t string) (uint32, bool) {
		if !isDigits(t) || (len(t) > 1 && t[0] == '0') {
			return 0, false
		}
		n, err := strconv.ParseUint(t, 10, 32)
		return uint32(n), err == nil
	}
	a, b, isRange := strings.Cut(s, "-")
	from, ok := num(a)
	if !ok {
		return 0, 0, bad
	}
	if !isRange {
		return from, from, ""
	}
	to, ok := num(b)
	if !ok {
		return 0, 0, bad
	}
	if from > to {
		return 0, 0, fmt.Sprintf("range %q is reversed", s)
	}
	return from, to, ""
}

// hostLoopback validates ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR as
// istio-iptables does: IPv4 loopback prefix of length 8 to 32.
func hostLoopback(raw string) (Prefix, error) {
	p, err := netip.ParsePrefix(raw)
	if err != nil {
		return Prefix{}, envError(EnvHostIPv4LoopbackCidr, raw, "not a CIDR: "+cidrReason(err))
	}
	if !p.Addr().Is4() || !p.Addr().IsLoopback() {
		return Prefix{}, envError(EnvHostIPv4LoopbackCidr, raw, "must be an IPv4 loopback prefix (127.x.x.x/n)")
	}
	if p.Bits() < 8 || p.Bits() > 32 {
		return Prefix{}, envError(EnvHostIPv4LoopbackCidr, raw, "prefix length must be 8 to 32")
	}
	return Prefix{Raw: raw, Prefix: p}, nil
}

// Split splits a comma list like istio-iptables: empty items are dropped,
// the others kept as written (no trimming).
func Split(s string) []string {
	parts := strings.Split(s, ",")
	out := parts[:0] // in place: lists can hold 100,000s of CIDRs
	for _, item := range parts {
		if item != "" {
			out = append(out, item)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// CheckResolved reports the first user or group name that could not be
// resolved on this machine. The iptables view can print names, but rules
// in the kernel need numbers, so the kernel paths call this.
func (c *Config) CheckResolved() error {
	lists := []struct {
		what, option string
		owners       []Owner
	}{
		{"user", flagDisplay("proxy-uid"), c.ProxyUIDs},
		{"group", flagDisplay("proxy-gid") + " (defaults to the --proxy-uid value)", c.ProxyGIDs},
		{"group", EnvOwnerGroupsInclude, c.OwnerGroupsInclude.Owners},
		{"group", EnvOwnerGroupsExclude, c.OwnerGroupsExclude},
	}
	for _, l := range lists {
		for _, ow := range l.owners {
			if !ow.Resolved {
				return fmt.Errorf("%s: unknown %s %q on this machine (use a numeric id)", l.option, l.what, strings.TrimSpace(ow.Raw))
			}
		}
	}
	return nil
}
