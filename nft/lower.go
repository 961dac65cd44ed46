package nft

import (
	"fmt"
	"strings"

	"github.com/google/nftables/expr"

	"github.com/nfintercept/nfintercept/translate"
)

// Lowering: the model (tables, chains, rules in iptables token order) into
// kernel rules made of typed stmts in the order nft wants them. Pure; both
// the netlink encoder and the text renderer consume its result.

// kernelRule is one rule as installed.
type kernelRule struct{ stmts []stmt }

// String renders the rule as `nft list` prints it: protocol dependencies
// implied by a later header match are left out, like nft does.
func (r kernelRule) String() string {
	var parts []string
	for i, s := range r.stmts {
		if d, ok := s.(dependent); ok && d.dependency() != depNone && impliedLater(r.stmts[i+1:], d.dependency()) {
			continue
		}
		parts = append(parts, s.String())
	}
	return strings.Join(parts, " ")
}

func impliedLater(rest []stmt, dep depKind) bool {
	for _, s := range rest {
		if p, ok := s.(payloadUser); ok && p.payloadBase() == dep {
			return true
		}
	}
	return false
}

type loweredChain struct {
	name  string
	base  *translate.BaseChain
	rules []kernelRule
}

type loweredTable struct {
	name   string
	sets   []*setRef // named sets, declaration order
	chains []*loweredChain
}

// lowerRuleset lowers every table and checks the ruleset's structure.
func lowerRuleset(rs *translate.Ruleset) ([]*loweredTable, error) {
	if rs == nil {
		return nil, nil
	}
	seen := map[translate.TableKind]bool{}
	var out []*loweredTable
	for _, t := range rs.Tables {
		if t == nil || t.Kind == "" {
			return nil, fmt.Errorf("table without a kind")
		}
		if seen[t.Kind] {
			return nil, fmt.Errorf("table %s defined twice", t.Name())
		}
		seen[t.Kind] = true
		lt, err := lowerTable(t)
		if err != nil {
			return nil, fmt.Errorf("table %s: %w", t.Name(), err)
		}
		out = append(out, lt)
	}
	return out, nil
}

// tableLowering holds the per-table state: declared sets and chain names.
type tableLowering struct {
	lt     *loweredTable
	sets   map[string]*setRef
	models map[string]*translate.Set
	chains map[string]bool
}

func lowerTable(t *translate.Table) (*loweredTable, error) {
	tl := &tableLowering{
		lt:     &loweredTable{name: t.Name()},
		sets:   map[string]*setRef{},
		models: map[string]*translate.Set{},
		chains: map[string]bool{},
	}
	for _, c := range t.Chains {
		if c.Name == "" {
			return nil, fmt.Errorf("chain without a name")
		}
		if tl.chains[c.Name] {
			return nil, fmt.Errorf("chain %s defined twice", c.Name)
		}
		if c.Base != nil {
			if err := checkBase(c.Base); err != nil {
				return nil, fmt.Errorf("chain %s: %w", c.Name, err)
			}
		}
		tl.chains[c.Name] = true
	}
	for _, s := range t.Sets {
		if _, err := tl.namedSet(s); err != nil {
			return nil, err
		}
	}
	for _, c := range t.Chains {
		lc := &loweredChain{name: c.Name, base: c.Base}
		for i, r := range c.Rules {
			krs, err := tl.lowerRule(r)
			if err != nil {
				return nil, fmt.Errorf("chain %s rule %d: %w", c.Name, i+1, err)
			}
			lc.rules = append(lc.rules, krs...)
		}
		tl.lt.chains = append(tl.lt.chains, lc)
	}
	return tl.lt, nil
}

// namedSet returns the table's set of that name, declaring it on first use
// (sets referenced by rules but missing from Table.Sets are declared too).
func (tl *tableLowering) namedSet(s *translate.Set) (*setRef, error) {
	if s.Anonymous || s.Name == "" {
		return nil, fmt.Errorf("set %q is anonymous, cannot be declared", s.Name)
	}
	if prev, ok := tl.models[s.Name]; ok {
		if prev != s {
			return nil, fmt.Errorf("two different sets named %q", s.Name)
		}
		return tl.sets[s.Name], nil
	}
	ref, err := newSetRef(s)
	if err != nil {
		return nil, err
	}
	tl.models[s.Name] = s
	tl.sets[s.Name] = ref
	tl.lt.sets = append(tl.lt.sets, ref)
	return ref, nil
}

func (tl *tableLowering) setRef(s *translate.Set) (*setRef, error) {
	if s.Anonymous {
		return newSetRef(s)
	}
	return tl.namedSet(s)
}

// lowerRule turns one model rule into one kernel rule, or two for TPROXY.
//
// Order of the stmts: family guard, interfaces, l4 protocol, addresses,
// ports, then the remaining matches as written, counter, action.
func (tl *tableLowering) lowerRule(r *translate.Rule) ([]kernelRule, error) {
	if r == nil {
		return nil, fmt.Errorf("nil rule")
	}
	fam := r.Family
	if fam != translate.IPv4 && fam != translate.IPv6 && fam != translate.BothFamilies {
		return nil, fmt.Errorf("rule has no address family")
	}
	// The protocol first: port matches and targets depend on it.
	var proto *l4protoMatch
	for _, m := range r.Matches {
		if m.Kind != translate.MatchProto {
			continue
		}
		if m.Proto != translate.TCP && m.Proto != translate.UDP {
			return nil, fmt.Errorf("unsupported protocol %q", m.Proto)
		}
		p := l4protoMatch{proto: m.Proto, neg: m.Negate}
		if proto != nil && *proto != p {
			return nil, fmt.Errorf("conflicting protocol matches")
		}
		proto = &p
	}
	var ifaces, addrs, ports, rest []stmt
	for i := range r.Matches {
		m := &r.Matches[i]
		if s, ok, err := lowerAmbientMatch(m, proto); ok || err != nil {
			if err != nil {
				return nil, err
			}
			if s != nil {
				rest = append(rest, s)
			}
			continue
		}
		switch m.Kind {
		case translate.MatchProto:
		case translate.MatchInIface, translate.MatchOutIface:
			s, err := lowerIface(m)
			if err != nil {
				return nil, err
			}
			if s != nil {
				ifaces = append(ifaces, s)
			}
		case translate.MatchSaddr, translate.MatchDaddr:
			s, af, err := tl.lowerAddr(m)
			if err != nil {
				return nil, err
			}
			switch {
			case fam == translate.BothFamilies:
				fam = af // an address match implies its family
			case fam != af:
				return nil, fmt.Errorf("%s rule matches an %s address", fam, af)
			}
			addrs = append(addrs, s)
		case translate.MatchSport, translate.MatchDport, translate.MatchMultiDport:
			if proto == nil || proto.neg {
				return nil, fmt.Errorf("port match without a tcp/udp protocol match")
			}
			s, err := tl.lowerPorts(m, proto.proto)
			if err != nil {
				return nil, err
			}
			ports = append(ports, s)
		case translate.MatchUID, translate.MatchGID:
			o := m.Owner
			if !o.Resolved {
				return nil, fmt.Errorf("owner %q is not a known user/group on this machine, cannot be installed", o.Raw)
			}
			to := max(o.To, o.From) // To == 0: a single id
			rest = append(rest, ownerMatch{gid: m.Kind == translate.MatchGID, from: o.From, to: to, neg: m.Negate})
		case translate.MatchCtState:
			if m.State == 0 || ctStateBits(m.State) == 0 {
				return nil, fmt.Errorf("empty conntrack state match")
			}
			rest = append(rest, ctStateMatch{state: m.State, neg: m.Negate})
		case translate.MatchMark, translate.MatchConnMark:
			rest = append(rest, markMatch{ct: m.Kind == translate.MatchConnMark, value: m.Mark.Value, mask: m.Mark.Mask, neg: m.Negate})
		default:
			return nil, fmt.Errorf("unsupported match kind %d", m.Kind)
		}
	}

	var matches []stmt
	if fam != translate.BothFamilies {
		matches = append(matches, nfprotoMatch{fam})
	}
	matches = append(matches, ifaces...)
	if proto != nil {
		matches = append(matches, *proto)
	}
	matches = append(matches, addrs...)
	matches = append(matches, ports...)
	matches = append(matches, rest...)

	rule := func(tail ...stmt) kernelRule {
		return kernelRule{stmts: append(append([]stmt(nil), matches...), tail...)}
	}
	a := r.Action
	if s, ok, err := lowerAmbientAction(a, fam); ok || err != nil {
		if err != nil {
			return nil, err
		}
		return []kernelRule{rule(counterStmt{}, s)}, nil
	}
	switch a.Kind {
	case translate.ActReturn:
		return []kernelRule{rule(counterStmt{}, verdictStmt{kind: expr.VerdictReturn})}, nil
	case translate.ActAccept:
		return []kernelRule{rule(counterStmt{}, verdictStmt{kind: expr.VerdictAccept})}, nil
	case translate.ActDrop:
		return []kernelRule{rule(counterStmt{}, verdictStmt{kind: expr.VerdictDrop})}, nil
	case translate.ActJump:
		if !tl.chains[a.Chain] {
			return nil, fmt.Errorf("jump to chain %q, which the table does not define", a.Chain)
		}
		return []kernelRule{rule(counterStmt{}, verdictStmt{kind: expr.VerdictJump, chain: a.Chain})}, nil
	case translate.ActRedirect:
		if proto == nil || proto.neg {
			return nil, fmt.Errorf("redirect needs a tcp/udp protocol match")
		}
		p, err := targetPort(a.Port)
		if err != nil {
			return nil, err
		}
		return []kernelRule{rule(counterStmt{}, redirectStmt{port: p})}, nil
	case translate.ActTProxy:
		if proto == nil || proto.neg {
			return nil, fmt.Errorf("tproxy needs a tcp/udp protocol match")
		}
		p, err := targetPort(a.Port)
		if err != nil {
			return nil, err
		}
		tfam := fam
		if tfam == translate.BothFamilies {
			tfam = 0 // one tproxy for both families
		}
		// nft's tproxy gives up (NFT_BREAK) and lets the packet go on to
		// the next rule when no socket listens, whereas iptables' TPROXY
		// target drops it. The second rule restores the drop: same
		// matches, so only packets the tproxy rule took and failed to
		// divert are dropped.
		return []kernelRule{
			rule(tproxyStmt{fam: tfam, port: p}, setMarkStmt{a.Mark.Value}, counterStmt{}, verdictStmt{kind: expr.VerdictAccept}),
			rule(counterStmt{}, verdictStmt{kind: expr.VerdictDrop}),
		}, nil
	case translate.ActSetMark:
		return []kernelRule{rule(counterStmt{}, setMarkStmt{a.Mark.Value})}, nil
	case translate.ActSaveMark:
		return []kernelRule{rule(counterStmt{}, saveMarkStmt{})}, nil
	case translate.ActRestoreMark:
		return []kernelRule{rule(counterStmt{}, restoreMarkStmt{})}, nil
	case translate.ActCtZone:
		return []kernelRule{rule(counterStmt{}, ctZoneStmt{a.Zone})}, nil
	}
	return nil, fmt.Errorf("unsupported action kind %d", a.Kind)
}

// targetPort is the single port a redirect/tproxy sends to.
func targetPort(p translate.Port) (uint16, error) {
	r := modelPort(p)
	if r.first != r.last {
		return 0, fmt.Errorf("target port %q is a range; only a single port is supported", p.Raw)
	}
	if r.first == 0 {
		return 0, fmt.Errorf("target port 0")
	}
	return r.first, nil
}

// lowerIface handles "-i X" / "-o X"; a trailing "+" is a prefix match.
// A bare "+" matches every interface and needs no stmt at all.
func lowerIface(m *translate.Match) (stmt, error) {
	name := strings.TrimSpace(string(m.Iface)) // raw spelling may carry spaces
	wild := strings.HasSuffix(name, "+")
	if wild {
		name = strings.TrimSuffix(name, "+")
	}
	switch {
	case name == "" && !wild:
		return nil, fmt.Errorf("empty interface name")
	case name == "" && m.Negate:
		return nil, fmt.Errorf("interface match \"! +\" matches nothing")
	case name == "":
		return nil, nil
	case len(name) >= 16:
		return nil, fmt.Errorf("interface name %q longer than 15 bytes", name)
	case strings.ContainsAny(name, "\"\\*\x00"):
		return nil, fmt.Errorf("interface name %q has characters nft cannot quote", name)
	}
	return ifaceMatch{out: m.Kind == translate.MatchOutIface, name: name, wild: wild, neg: m.Negate}, nil
}

// lowerAddr returns the stmt for an address match and its family.
func (tl *tableLowering) lowerAddr(m *translate.Match) (stmt, translate.Family, error) {
	src := m.Kind == translate.MatchSaddr
	if m.Set == nil {
		p := m.Prefix.Prefix
		if !p.IsValid() {
			return nil, 0, fmt.Errorf("invalid address %q", m.Prefix.Raw)
		}
		p = p.Masked()
		return prefixMatch{src: src, p: p, neg: m.Negate}, famOf(p.Addr()), nil
	}
	if !addrSetType(m.Set.Type) {
		return nil, 0, fmt.Errorf("address match against a non-address set %q", m.Set.Name)
	}
	ref, err := tl.setRef(m.Set)
	if err != nil {
		return nil, 0, err
	}
	fam := ref.family()
	if ref.name == "" {
		// nft turns a one-element anonymous set into a plain comparison.
		switch ref.len() {
		case 0:
			return nil, 0, fmt.Errorf("empty anonymous address set")
		case 1:
			iv := ref.intervals[0]
			if p, ok := iv.prefix(); ok {
				return prefixMatch{src: src, p: p, neg: m.Negate}, fam, nil
			}
			return addrRangeMatch{src: src, iv: iv, neg: m.Negate}, fam, nil
		}
		if len(ref.elements()) > maxSetChunk {
			return nil, 0, fmt.Errorf("anonymous set with %d elements: more than one netlink message holds, use a named set", ref.len())
		}
	}
	return addrSetMatch{src: src, fam: fam, set: ref, neg: m.Negate}, fam, nil
}

func (tl *tableLowering) lowerPorts(m *translate.Match, proto translate.Proto) (stmt, error) {
	src := m.Kind == translate.MatchSport
	var ref *setRef
	if m.Set != nil {
		if m.Set.Type != translate.SetPorts {
			return nil, fmt.Errorf("port match against a non-port set %q", m.Set.Name)
		}
		var err error
		if ref, err = tl.setRef(m.Set); err != nil {
			return nil, err
		}
	} else {
		if len(m.Ports) == 0 {
			return nil, fmt.Errorf("port match without ports")
		}
		ref = &setRef{typ: translate.SetPorts, ports: mergePorts(m.Ports)}
	}
	if ref.name == "" {
		switch ref.len() {
		case 0:
			return nil, fmt.Errorf("empty anonymous port set")
		case 1:
			return portMatch{proto: proto, src: src, r: ref.ports[0], neg: m.Negate}, nil
		}
		if len(ref.elements()) > maxSetChunk {
			return nil, fmt.Errorf("anonymous port set with %d elements: more than one netlink message holds, use a named set", ref.len())
		}
	}
	return portSetMatch{proto: proto, src: src, set: ref, neg: m.Negate}, nil
}
