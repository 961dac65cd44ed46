package translate

import "strings"

// Text forms of the model's enums, so `render --format json` reads well.
// Switches rather than package-level maps: nothing to build at start-up.

func (k MatchKind) MarshalText() ([]byte, error) {
	var s string
	switch k {
	case MatchProto:
		s = "proto"
	case MatchInIface:
		s = "iifname"
	case MatchOutIface:
		s = "oifname"
	case MatchSaddr:
		s = "saddr"
	case MatchDaddr:
		s = "daddr"
	case MatchSport:
		s = "sport"
	case MatchDport:
		s = "dport"
	case MatchMultiDport:
		s = "dports"
	case MatchUID:
		s = "skuid"
	case MatchGID:
		s = "skgid"
	case MatchCtState:
		s = "ct-state"
	case MatchMark:
		s = "mark"
	case MatchConnMark:
		s = "ct-mark"
	case MatchProtoModule:
		s = "proto-module"
	case MatchSocketExists:
		s = "socket-exists"
	}
	return []byte(s), nil
}

func (k ActionKind) MarshalText() ([]byte, error) {
	var s string
	switch k {
	case ActReturn:
		s = "return"
	case ActAccept:
		s = "accept"
	case ActDrop:
		s = "drop"
	case ActJump:
		s = "jump"
	case ActRedirect:
		s = "redirect"
	case ActTProxy:
		s = "tproxy"
	case ActSetMark:
		s = "set-mark"
	case ActSaveMark:
		s = "save-mark"
	case ActRestoreMark:
		s = "restore-mark"
	case ActCtZone:
		s = "ct-zone"
	case ActSetConnMark:
		s = "set-ct-mark"
	case ActSNAT:
		s = "snat"
	}
	return []byte(s), nil
}

func (t SetType) MarshalText() ([]byte, error) {
	var s string
	switch t {
	case SetIPv4Prefixes:
		s = "ipv4_addr"
	case SetIPv6Prefixes:
		s = "ipv6_addr"
	case SetPorts:
		s = "inet_service"
	case SetIPv4Addrs:
		s = "ipv4_hosts"
	case SetIPv6Addrs:
		s = "ipv6_hosts"
	}
	return []byte(s), nil
}
func (f Family) MarshalText() ([]byte, error) { return []byte(f.String()), nil }

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
