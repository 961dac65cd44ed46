package compat

import (
	"fmt"

	"github.com/nfintercept/nfintercept/translate"
)

// Tokens of the matches and targets only ambient mode uses (Istio's node
// agent, AMBIENT.md §3, §6).

func ambientMatchTokens(m translate.Match, elem int) ([]string, bool) {
	switch m.Kind {
	case translate.MatchProtoModule:
		return []string{"-m", string(m.Proto)}, true
	case translate.MatchSocketExists:
		return append([]string{"-m", "owner"}, not(m.Negate, "--socket-exists")...), true
	case translate.MatchSaddr, translate.MatchDaddr:
		if m.Set == nil || !m.Set.IPSet() {
			return nil, false
		}
		dir := "dst"
		if m.Kind == translate.MatchSaddr {
			dir = "src"
		}
		return append([]string{"-m", "set"}, not(m.Negate, "--match-set", m.Set.Name, dir)...), true
	}
	return nil, false
}

func ambientActionTokens(a translate.Action) ([]string, bool) {
	switch a.Kind {
	case translate.ActSetConnMark:
		return []string{"-j", "CONNMARK", "--set-xmark", a.Mark.Raw}, true
	case translate.ActSNAT:
		return []string{"-j", "SNAT", "--to-source", a.Addr.String()}, true
	case translate.ActRestoreMark:
		if a.NfMask == 0 && a.CtMask == 0 {
			return nil, false
		}
		return []string{"-j", "CONNMARK", "--restore-mark",
			"--nfmask", fmt.Sprintf("%#x", a.NfMask), "--ctmask", fmt.Sprintf("%#x", a.CtMask)}, true
	}
	return nil, false
}
