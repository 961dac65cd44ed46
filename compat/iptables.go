// Package compat prints the rule model as the iptables-restore input
// istio-iptables generates for the same options, so users can compare the
// two. It only prints: every decision was made in translate.
package compat

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/nfintercept/nfintercept/translate"
)

// iptables tables in the order istio-iptables prints them.
var tableOrder = []translate.TableKind{translate.TableMangle, translate.TableNAT, translate.TableRaw}

func builtinChain(name string) bool {
	switch name {
	case "INPUT", "OUTPUT", "FORWARD", "PREROUTING", "POSTROUTING":
		return true
	}
	return false
}

// Restore returns the iptables-restore (family IPv4) or ip6tables-restore
// (IPv6) input for rs: tables in lexical order, "-N" lines in order of first
// use, rules in istio-iptables' emission order, sets expanded to one rule per
// element. It is empty when the family gets no rules.
func Restore(rs *translate.Ruleset, family translate.Family) string {
	if !rs.Families.Has(family) {
		return ""
	}
	byTable := map[translate.TableKind][]translate.IptablesLine{}
	for _, l := range rs.EmissionOrder(family) {
		byTable[l.Table.Kind] = append(byTable[l.Table.Kind], l)
	}
	var b strings.Builder
	for _, kind := range tableOrder {
		lines := byTable[kind]
		if len(lines) == 0 {
			continue
		}
		b.WriteString("* " + string(kind) + "\n")
		for _, name := range declaredChains(lines) {
			b.WriteString("-N " + name + "\n")
		}
		for _, l := range lines {
			b.WriteString(ruleLine(l) + "\n")
		}
		b.WriteString("COMMIT\n")
	}
	return b.String()
}

// declaredChains lists the user chains of one table: first those holding
// rules, in order of their first rule, then chains only jumped to.
func declaredChains(lines []translate.IptablesLine) []string {
	var names []string
	seen := map[string]bool{}
	declare := func(name string) {
		if !builtinChain(name) && !seen[name] {
			seen[name] = true
			names = append(names, name)
		}
	}
	for _, l := range lines {
		declare(ChainName(l.Chain.Name))
	}
	for _, l := range lines {
		if l.Rule.Action.Kind == translate.ActJump {
			declare(ChainName(l.Rule.Action.Chain))
		}
	}
	return names
}

// ChainName is the iptables spelling of a model chain name.
func ChainName(name string) string {
	return strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

func ruleLine(l translate.IptablesLine) string {
	tokens := []string{"-A", ChainName(l.Chain.Name)}
	if n := l.Rule.Order.Insert; n > 0 {
		tokens = []string{"-I", ChainName(l.Chain.Name), strconv.Itoa(n)}
	}
	for _, m := range l.Rule.Matches {
		tokens = append(tokens, matchTokens(m, l.Elem)...)
	}
	tokens = append(tokens, actionTokens(l.Rule)...)
	return strings.Join(tokens, " ")
}

func not(neg bool, tokens ...string) []string {
	if neg {
		return append([]string{"!"}, tokens...)
	}
	return tokens
}

func matchTokens(m translate.Match, elem int) []string {
	switch m.Kind {
	case translate.MatchProto:
		return not(m.Negate, "-p", string(m.Proto))
	case translate.MatchInIface:
		return not(m.Negate, "-i", string(m.Iface))
	case translate.MatchOutIface:
		return not(m.Negate, "-o", string(m.Iface))
	case translate.MatchSaddr:
		if m.Set != nil && m.Set.IPSet() {
			return ipsetTokens(m, "src")
		}
		return not(m.Negate, "-s", prefixAt(m, elem))
	case translate.MatchDaddr:
		if m.Set != nil && m.Set.IPSet() {
			return ipsetTokens(m, "dst")
		}
		return not(m.Negate, "-d", prefixAt(m, elem))
	case translate.MatchSport:
		return not(m.Negate, "--sport", portAt(m, elem))
	case translate.MatchDport:
		return not(m.Negate, "--dport", portAt(m, elem))
	case translate.MatchMultiDport:
		raws := make([]string, len(m.Ports))
		for i, p := range m.Ports {
			raws[i] = p.Raw
		}
		return append([]string{"-m", "multiport"}, not(m.Negate, "--dports", strings.Join(raws, ","))...)
	case translate.MatchUID:
		return append([]string{"-m", "owner"}, not(m.Negate, "--uid-owner", m.Owner.Raw)...)
	case translate.MatchGID:
		return append([]string{"-m", "owner"}, not(m.Negate, "--gid-owner", m.Owner.Raw)...)
	case translate.MatchCtState:
		return append([]string{"-m", "conntrack"}, not(m.Negate, "--ctstate", ctStates(m.State))...)
	case translate.MatchMark:
		return append([]string{"-m", "mark"}, not(m.Negate, "--mark", m.Mark.Raw)...)
	case translate.MatchConnMark:
		return append([]string{"-m", "connmark"}, not(m.Negate, "--mark", m.Mark.Raw)...)
	case translate.MatchProtoModule:
		return []string{"-m", string(m.Proto)}
	case translate.MatchSocketExists:
		return append([]string{"-m", "owner"}, not(m.Negate, "--socket-exists")...)
	}
	panic("compat: unknown match kind " + strconv.Itoa(int(m.Kind)))
}

// ipsetTokens matches a runtime set by name (ambient's probe sets, an
// ipset in Istio's rules) rather than one rule per element.
func ipsetTokens(m translate.Match, dir string) []string {
	return append([]string{"-m", "set"}, not(m.Negate, "--match-set", m.Set.Name, dir)...)
}

func prefixAt(m translate.Match, elem int) string {
	if m.Set != nil {
		return m.Set.Prefixes[elem].Raw
	}
	return m.Prefix.Raw
}

func portAt(m translate.Match, elem int) string {
	if m.Set != nil {
		return m.Set.Ports[elem].Raw
	}
	return m.Ports[0].Raw
}

func ctStates(s translate.CtState) string {
	var names []string
	for _, st := range []struct {
		bit  translate.CtState
		name string
	}{{translate.CtInvalid, "INVALID"}, {translate.CtRelated, "RELATED"}, {translate.CtEstablished, "ESTABLISHED"}} {
		if s&st.bit != 0 {
			names = append(names, st.name)
		}
	}
	return strings.Join(names, ",")
}

func actionTokens(r *translate.Rule) []string {
	a := r.Action
	switch a.Kind {
	case translate.ActReturn:
		return []string{"-j", "RETURN"}
	case translate.ActAccept:
		return []string{"-j", "ACCEPT"}
	case translate.ActDrop:
		return []string{"-j", "DROP"}
	case translate.ActJump:
		return []string{"-j", ChainName(a.Chain)}
	case translate.ActRedirect:
		// istio-iptables spells the UDP (DNS) redirect "--to-port"; both
		// spellings are the same option to iptables.
		opt := "--to-ports"
		if ruleProto(r) == translate.UDP {
			opt = "--to-port"
		}
		return []string{"-j", "REDIRECT", opt, a.Port.Raw}
	case translate.ActTProxy:
		return []string{"-j", "TPROXY", "--tproxy-mark", a.Mark.Raw + "/0xffffffff", "--on-port", a.Port.Raw}
	case translate.ActSetMark:
		return []string{"-j", "MARK", "--set-mark", a.Mark.Raw}
	case translate.ActSaveMark:
		return []string{"-j", "CONNMARK", "--save-mark"}
	case translate.ActRestoreMark:
		if a.NfMask == 0 && a.CtMask == 0 {
			return []string{"-j", "CONNMARK", "--restore-mark"}
		}
		return []string{"-j", "CONNMARK", "--restore-mark",
			"--nfmask", fmt.Sprintf("%#x", a.NfMask), "--ctmask", fmt.Sprintf("%#x", a.CtMask)}
	case translate.ActCtZone:
		return []string{"-j", "CT", "--zone", strconv.Itoa(int(a.Zone))}
	case translate.ActSetConnMark:
		return []string{"-j", "CONNMARK", "--set-xmark", a.Mark.Raw}
	case translate.ActSNAT:
		return []string{"-j", "SNAT", "--to-source", a.Addr.String()}
	}
	panic("compat: unknown action kind " + strconv.Itoa(int(a.Kind)))
}

func ruleProto(r *translate.Rule) translate.Proto {
	for _, m := range r.Matches {
		if m.Kind == translate.MatchProto && !m.Negate {
			return m.Proto
		}
	}
	return ""
}
