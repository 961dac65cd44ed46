package translate

import (
	"net/netip"
	"sort"
)

// The rule model: what nfintercept installs, as data. It is shaped like the
// nftables ruleset (tables → chains → rules in final order, plus sets) and
// keeps, on every rule, the ordering information the iptables view needs
// (emission step and insert position), so both renderings come from here.

// Family says which address families a rule applies to.
type Family uint8

const (
	IPv4 Family = 1 << iota
	IPv6
	BothFamilies = IPv4 | IPv6
)

// Has reports whether f includes every family in g.
func (f Family) Has(g Family) bool { return f&g == g }

func (f Family) String() string {
	switch f {
	case IPv4:
		return "ipv4"
	case IPv6:
		return "ipv6"
	case BothFamilies:
		return "ipv4+ipv6"
	}
	return "none"
}

// TableKind names the iptables table a group of chains corresponds to. The
// nftables table is named after it (see TablePrefix).
type TableKind string

const (
	TableMangle TableKind = "mangle"
	TableNAT    TableKind = "nat"
	TableRaw    TableKind = "raw"
)

// TablePrefix is prepended to the kind to name our inet tables. Everything
// nfintercept owns in the kernel lives in tables with this prefix.
const TablePrefix = "nfintercept-"

// TableKinds lists every table nfintercept may own, in the order they are
// created in a transaction.
var TableKinds = []TableKind{TableNAT, TableMangle, TableRaw}

// Ruleset is the whole desired state of one network namespace.
type Ruleset struct {
	// Tables in creation order; only tables holding at least one rule.
	Tables []*Table
	// Families the configuration programs (IPv6 only when enabled).
	Families Family
	// Routes holds the policy routing the rules need (TPROXY), empty in
	// REDIRECT mode.
	Routes []PolicyRoute `json:",omitzero"`
	// LoopbackAddrs are addresses the proxy needs on lo (::6 for IPv6
	// inbound passthrough; 127.0.0.6 is local without assignment).
	LoopbackAddrs []netip.Prefix `json:",omitzero"`
}

// Table is one inet table.
type Table struct {
	Kind   TableKind
	Chains []*Chain // declaration order
	Sets   []*Set   `json:",omitzero"` // named sets, declaration order
}

// Name is the nftables table name.
func (t *Table) Name() string { return TablePrefix + string(t.Kind) }

// Chain returns the chain with the given name, or nil.
func (t *Table) Chain(name string) *Chain {
	for _, c := range t.Chains {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// Table returns the table of the given kind, or nil.
func (r *Ruleset) Table(kind TableKind) *Table {
	for _, t := range r.Tables {
		if t.Kind == kind {
			return t
		}
	}
	return nil
}

// ChainType is the nftables base chain type.
type ChainType string

const (
	ChainTypeNAT    ChainType = "nat"
	ChainTypeFilter ChainType = "filter"
	ChainTypeRoute  ChainType = "route"
)

// Hook is the netfilter hook a base chain is attached to.
type Hook string

const (
	HookPrerouting  Hook = "prerouting"
	HookOutput      Hook = "output"
	HookPostrouting Hook = "postrouting"
)

// BaseChain describes how a base chain attaches to netfilter.
type BaseChain struct {
	Type     ChainType
	Hook     Hook
	Priority int32 // -100 dstnat, -150 mangle, -300 raw
}

// Chain is a chain with its rules in the order the kernel evaluates them.
// Names follow nft conventions ("prerouting", "istio-inbound"); the
// iptables view upper-cases them ("PREROUTING", "ISTIO_INBOUND").
type Chain struct {
	Name  string
	Base  *BaseChain `json:",omitzero"` // nil for regular chains
	Rules []*Rule
}

// Rule is one match-list plus one action. Matches are kept in the token
// order istio-iptables writes them; the nft renderings reorder as nft needs
// (protocol and family guards first).
type Rule struct {
	// Families whose packets the rule applies to. A single-family rule
	// without an address match gets a "meta nfproto" guard in nftables.
	Family  Family
	Matches []Match `json:",omitzero"`
	Action  Action

	// Order records where istio-iptables emits the rule (iptables view).
	Order Order
}

// Order places a rule in istio-iptables' emission sequence. Lines of the
// iptables view are sorted by (Step, set element index, Sub): rules sharing a
// Step and a set are expanded element by element, interleaved by Sub, which
// reproduces loops like "for each port: tcp rule, udp rule".
type Order struct {
	Step int
	Sub  int `json:",omitzero"`
	// Insert is 0 for an append ("-A chain"), n for "-I chain n".
	Insert int `json:",omitzero"`
}

// MatchKind enumerates the conditions the model can express.
type MatchKind uint8

const (
	MatchProto        MatchKind = iota + 1 // Proto
	MatchInIface                           // Iface; "-i X" / iifname
	MatchOutIface                          // Iface; "-o X" / oifname
	MatchSaddr                             // Prefix
	MatchDaddr                             // Prefix or Set
	MatchSport                             // Ports
	MatchDport                             // Ports or Set
	MatchMultiDport                        // Ports (several); "-m multiport --dports a,b"
	MatchUID                               // Owner; "-m owner --uid-owner"
	MatchGID                               // Owner; "-m owner --gid-owner"
	MatchCtState                           // CtState
	MatchMark                              // Mark; "-m mark --mark"
	MatchConnMark                          // Mark; "-m connmark --mark"
	MatchProtoModule                       // Proto; "-m tcp" alone: no condition of its own (iptables spelling)
	MatchSocketExists                      // "-m owner --socket-exists": the packet has a local socket
)

// Proto is a layer-4 protocol.
type Proto string

const (
	TCP Proto = "tcp"
	UDP Proto = "udp"
)

// CtState is a set of conntrack states.
type CtState uint8

const (
	CtInvalid CtState = 1 << iota
	CtEstablished
	CtRelated
)

// Match is one condition. Which fields are meaningful depends on Kind.
type Match struct {
	Kind   MatchKind
	Negate bool    `json:",omitzero"`
	Proto  Proto   `json:",omitzero"`
	Iface  Iface   `json:",omitzero"`
	Prefix Prefix  `json:",omitzero"`
	Set    *Set    `json:",omitzero"` // element list instead of a single Prefix/Port
	Ports  []Port  `json:",omitzero"` // one port/range; several for MatchMultiDport
	Owner  Owner   `json:",omitzero"`
	State  CtState `json:",omitzero"`
	Mark   Mark    `json:",omitzero"`
}

// Iface is an interface name as written. A trailing "+" (iptables
// wildcard) makes it a prefix match.
type Iface string

// Prefix is a CIDR as written plus its parsed value. Raw keeps host bits and
// spelling for the iptables view; the kernel masks them.
type Prefix struct {
	Raw    string
	Prefix netip.Prefix
}

// Port is a port or inclusive range as written ("80", " 80", "8000:9000").
type Port struct {
	Raw      string
	From, To uint16
}

// Owner is a uid or gid (or range) as written. Name resolution happens
// while building the config: Resolved is false when the name is unknown on
// this machine, which only the kernel renderings refuse.
type Owner struct {
	Raw      string
	From, To uint32
	Resolved bool
}

// Mark is a packet/conntrack mark as written plus its value, and the bits
// it applies to ("0x539/0xfff"); Mask 0 means the whole 32-bit mark.
type Mark struct {
	Raw   string
	Value uint32
	Mask  uint32 `json:",omitzero"`
}

// Bits is the mask the mark applies to.
func (m Mark) Bits() uint32 { return maskBits(m.Mask) }

// maskBits reads a mark mask where 0 means "not written": all 32 bits.
func maskBits(mask uint32) uint32 {
	if mask == 0 {
		return 0xffffffff
	}
	return mask
}

// SetType is the element type of a set.
type SetType uint8

const (
	SetIPv4Prefixes SetType = iota + 1
	SetIPv6Prefixes
	SetPorts
	// SetIPv4Addrs / SetIPv6Addrs hold single addresses that change at
	// runtime (a node agent adds and removes pod IPs): plain hash sets in
	// nftables, referenced by name as an ipset in the iptables view.
	SetIPv4Addrs
	SetIPv6Addrs
)

// IPSet reports whether the iptables view matches the set by name
// ("-m set --match-set NAME dst") instead of one rule per element.
func (s *Set) IPSet() bool { return s.Type == SetIPv4Addrs || s.Type == SetIPv6Addrs }

// Set is a list that one rule matches against. Elements stay as written
// (order, duplicates, overlaps) so the iptables view can expand the rule
// back into one line per element; the nft layer merges them into intervals.
// Named sets are declared in the table; anonymous ones are inlined.
type Set struct {
	Name      string `json:",omitzero"` // empty for anonymous sets
	Type      SetType
	Prefixes  []Prefix `json:",omitzero"` // SetIPv4Prefixes / SetIPv6Prefixes
	Ports     []Port   `json:",omitzero"` // SetPorts
	Anonymous bool     `json:",omitzero"`
}

// Len is the number of elements as written.
func (s *Set) Len() int {
	if s.Type == SetPorts {
		return len(s.Ports)
	}
	return len(s.Prefixes)
}

// ActionKind enumerates what a rule does when it matches.
type ActionKind uint8

const (
	ActReturn      ActionKind = iota + 1
	ActAccept                 //
	ActDrop                   //
	ActJump                   // Chain
	ActRedirect               // Port; nat only
	ActTProxy                 // Port, Mark; set the mark and accept
	ActSetMark                // Mark
	ActSaveMark               // conntrack mark := packet mark
	ActRestoreMark            // packet mark := conntrack mark
	ActCtZone                 // Zone
	ActSetConnMark            // Mark (with Mask): ct mark = (ct mark & ^Mask) ^ Value
	ActSNAT                   // Addr; nat postrouting only
)

// Action is the verdict or statement of a rule.
type Action struct {
	Kind  ActionKind
	Chain string `json:",omitzero"` // ActJump: target chain in the same table
	Port  Port   `json:",omitzero"` // ActRedirect, ActTProxy
	Mark  Mark   `json:",omitzero"` // ActTProxy, ActSetMark
	Zone  uint16 `json:",omitzero"` // ActCtZone
	// ActRestoreMark: the masks as iptables' CONNMARK spells them
	// (--nfmask/--ctmask); 0 means not written (the whole mark).
	NfMask uint32     `json:",omitzero"`
	CtMask uint32     `json:",omitzero"`
	Addr   netip.Addr `json:",omitzero"` // ActSNAT: new source address
}

// PolicyRoute is "ip rule fwmark Mark/Mask [pref Priority] lookup Table"
// with "ip route add local default dev lo table Table", for one family:
// how marked packets are delivered locally (TPROXY; ambient's transparent
// replies).
type PolicyRoute struct {
	Family Family // IPv4 or IPv6
	Mark   uint32
	Mask   uint32 `json:",omitzero"` // 0: all 32 bits
	Table  uint32
	// Priority 0 lets the kernel choose.
	Priority uint32 `json:",omitzero"`
	// RouteNeedsLoIPv6 leaves the IPv6 local route out (the rule stays)
	// where lo has IPv6 disabled, as Istio's ambient node agent does.
	RouteNeedsLoIPv6 bool `json:",omitzero"`
}

// MarkMask is the mask of the mark match (Mask, or all bits when unset).
func (r PolicyRoute) MarkMask() uint32 { return maskBits(r.Mask) }

// IptablesLine is one rule of the iptables view in emission order; a rule
// that matches a set yields one line per element (Elem = element index,
// -1 otherwise).
type IptablesLine struct {
	Table *Table
	Chain *Chain
	Rule  *Rule
	Elem  int
}

// EmissionOrder lists the rules that apply to family f in the order
// istio-iptables emits them, with set rules expanded per element. It is the
// sequence the iptables view prints.
func (r *Ruleset) EmissionOrder(f Family) []IptablesLine {
	var lines []IptablesLine
	for _, t := range r.Tables {
		for _, c := range t.Chains {
			for _, rule := range c.Rules {
				if !rule.Family.Has(f) {
					continue
				}
				set := rule.SetMatch()
				if set == nil || set.IPSet() {
					lines = append(lines, IptablesLine{t, c, rule, -1})
					continue
				}
				for i := 0; i < set.Len(); i++ {
					lines = append(lines, IptablesLine{t, c, rule, i})
				}
			}
		}
	}
	sort.SliceStable(lines, func(i, j int) bool {
		a, b := lines[i], lines[j]
		if a.Rule.Order.Step != b.Rule.Order.Step {
			return a.Rule.Order.Step < b.Rule.Order.Step
		}
		if a.Elem != b.Elem {
			return a.Elem < b.Elem
		}
		return a.Rule.Order.Sub < b.Rule.Order.Sub
	})
	return lines
}

// SetMatch returns the set the rule matches against, or nil. A rule matches
// at most one set.
func (r *Rule) SetMatch() *Set {
	for i := range r.Matches {
		if r.Matches[i].Set != nil {
			return r.Matches[i].Set
		}
	}
	return nil
}
