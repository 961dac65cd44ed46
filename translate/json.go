package translate

import "strings"

// Text forms of the model's enums, so `render --format json` reads well.

var matchKindNames = map[MatchKind]string{
	MatchProto: "proto", MatchInIface: "iifname", MatchOutIface: "oifname",
	MatchSaddr: "saddr", MatchDaddr: "daddr", MatchSport: "sport", MatchDport: "dport",
	MatchMultiDport: "dports", MatchUID: "skuid", MatchGID: "skgid",
	MatchCtState: "ct-state", MatchMark: "mark", MatchConnMark: "ct-mark",
}

var actionKindNames = map[ActionKind]string{
	ActReturn: "return", ActAccept: "accept", ActDrop: "drop", ActJump: "jump",
	ActRedirect: "redirect", ActTProxy: "tproxy", ActSetMark: "set-mark",
	ActSaveMark: "save-mark", ActRestoreMark: "restore-mark", ActCtZone: "ct-zone",
}

var setTypeNames = map[SetType]string{
	SetIPv4Prefixes: "ipv4_addr", SetIPv6Prefixes: "ipv6_addr", SetPorts: "inet_service",
}

func (k MatchKind) MarshalText() ([]byte, error)  { return []byte(matchKindNames[k]), nil }
func (k ActionKind) MarshalText() ([]byte, error) { return []byte(actionKindNames[k]), nil }
func (t SetType) MarshalText() ([]byte, error)    { return []byte(setTypeNames[t]), nil }
func (f Family) MarshalText() ([]byte, error)     { return []byte(f.String()), nil }

func (s CtState) MarshalText() ([]byte, error) {
	var names []string
	for _, st := range []struct {
		bit  CtState
		name string
	}{{CtInvalid, "invalid"}, {CtEstablished, "established"}, {CtRelated, "related"}} {
		if s&st.bit != 0 {
			names = append(names, st.name)
		}
	}
	return []byte(strings.Join(names, ",")), nil
}
