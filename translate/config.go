package translate

import "net/netip"

// Mode is the inbound interception mode.
type Mode string

const (
	ModeRedirect Mode = "REDIRECT"
	ModeTProxy   Mode = "TPROXY"
)

// Config is a validated configuration: every value parsed, every list split
// the way istio-iptables splits it (empty items dropped, order and duplicates
// kept, raw spelling kept for the iptables view). Build turns it into the
// rule model without further checks; Options.Config produces it.
type Config struct {
	ProxyPort          Port // -p: outbound capture (REDIRECT target)
	InboundCapturePort Port // -z: inbound REDIRECT/TPROXY target
	InboundTunnelPort  Port // -e: HBONE, never captured inbound

	ProxyUIDs []Owner // -u: traffic of these users is not captured
	ProxyGIDs []Owner // -g: likewise for groups (defaults to the -u list)

	Mode Mode // -m

	InboundPorts        PortList // -b: captured inbound ports, or all
	InboundPortsExclude []Port   // -d: only used when InboundPorts.All

	ExcludeInterfaces        []Iface // -c
	RerouteVirtualInterfaces []Iface // -k

	OutboundIPRangesInclude CIDRList // -i
	OutboundIPRangesExclude CIDRList // -x (never All)
	OutboundPortsInclude    []Port   // -q
	OutboundPortsExclude    []Port   // -o

	TProxyMark       Mark   // -t
	TProxyRouteTable uint32 // -r

	RedirectDNS   bool
	CaptureAllDNS bool
	DropInvalid   bool
	DNSServersV4  []netip.Addr // from resolv.conf, when RedirectDNS && !CaptureAllDNS
	DNSServersV6  []netip.Addr

	OwnerGroupsInclude OwnerList // ISTIO_OUTBOUND_OWNER_GROUPS
	OwnerGroupsExclude []Owner   // ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE

	// HostIPv4Loopback is ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR, used verbatim.
	HostIPv4Loopback Prefix

	// DualStack is --dual-stack: how IPv6 enablement is detected from the
	// namespace's addresses (and, rendering offline, whether it is on).
	DualStack bool
	// EnableIPv6 programs IPv6 rules; without it IPv6 traffic is left alone.
	EnableIPv6 bool
}

// PortList is a port list that may be the wildcard "*".
type PortList struct {
	All   bool
	Ports []Port
	// Given is set when the option was non-empty, even if it held only
	// separators (","): istio-iptables then still installs the inbound jump.
	Given bool
}

// Empty reports whether the option was left empty (no inbound capture).
func (l PortList) Empty() bool { return !l.All && !l.Given && len(l.Ports) == 0 }

// CIDRList is a CIDR list that may be the wildcard "*", split by family.
type CIDRList struct {
	All bool
	V4  []Prefix
	V6  []Prefix
	// HasLoopback is set when any prefix's address is a loopback address.
	HasLoopback bool
}

// OwnerList is a uid/gid list that may be the wildcard "*".
type OwnerList struct {
	All    bool
	Owners []Owner
}

// DNSEnabled is the effective DNS capture switch (istio-iptables' rule:
// capture-all, or any resolver of either family).
func (c *Config) DNSEnabled() bool {
	return c.RedirectDNS && (c.CaptureAllDNS || len(c.DNSServersV4) > 0 || len(c.DNSServersV6) > 0)
}

// Families returns the address families the configuration programs.
func (c *Config) Families() Family {
	if c.EnableIPv6 {
		return BothFamilies
	}
	return IPv4
}
