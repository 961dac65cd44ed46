package nft

import (
	"testing"

	"github.com/nfintercept/nfintercept/translate"
)

// fullRuleset is a hand-built ruleset with every match and action kind,
// both families, named sets with overlaps/duplicates/host bits/top of
// range, anonymous sets, tproxy, ct zones and marks.
func fullRuleset() *translate.Ruleset {
	tcp, udp := mProto(translate.TCP), mProto(translate.UDP)
	excl4 := prefixSet("exclude-v4", true,
		"10.245.0.0/16", "10.245.3.0/24", "10.245.0.0/16", "192.168.1.77/16", "172.16.0.0/12",
		"240.0.0.0/4", "255.255.255.255/32", "100.64.0.0/24", "100.64.1.0/24", "100.64.2.0/23")
	incl6 := prefixSet("include-v6", false, "fd00::/8", "fd00:1::1/32", "2001:db8::/48", "2001:db8:0:1::/64", "2001:db8:1::/48")
	anonAddrs := &translate.Set{Type: translate.SetIPv4Prefixes, Anonymous: true,
		Prefixes: []translate.Prefix{pfx("203.0.113.0/24"), pfx("198.51.100.7/32"), pfx("203.0.113.9/32")}}
	anonPorts := &translate.Set{Type: translate.SetPorts, Anonymous: true,
		Ports: []translate.Port{port(53), port(15008), portRng(20000, 20010)}}

	nat := &translate.Table{Kind: translate.TableNAT, Sets: []*translate.Set{excl4, incl6}}
	nat.Chains = []*translate.Chain{
		{Name: "prerouting", Base: base(translate.ChainTypeNAT, translate.HookPrerouting, -100), Rules: []*translate.Rule{
			rule(v4, aJump("istio-redirect"), mIif("eth1", false), mDaddr("10.96.0.0/12", false)),
			rule(both, aReturn, mIif("eth1", false)),
			rule(both, aReturn, mIif("veth+", false)),
			rule(both, aJump("istio-inbound"), tcp),
		}},
		{Name: "output", Base: base(translate.ChainTypeNAT, translate.HookOutput, -100), Rules: []*translate.Rule{
			rule(both, aReturn, mOif("eth9", false)),
			rule(v6, aReturn, mOif("eth8+", true), mProto(translate.UDP), mSport(port(7), true)),
			rule(both, aJump("istio-output")),
		}},
		{Name: "istio-inbound", Rules: []*translate.Rule{
			rule(both, aReturn, tcp, mDport(port(15008), false)),
			rule(both, aReturn, tcp, mDport(portRng(15020, 15021), false)),
			rule(both, aJump("istio-in-redirect"), tcp, mDport(portRng(30000, 30100), true)),
			rule(both, aJump("istio-in-redirect"), tcp, mDport(port(65535), false)),
		}},
		{Name: "istio-redirect", Rules: []*translate.Rule{rule(both, aRedirect(15001), tcp)}},
		{Name: "istio-in-redirect", Rules: []*translate.Rule{rule(both, aRedirect(15006), tcp)}},
		{Name: "istio-output", Rules: []*translate.Rule{
			rule(both, aReturn, tcp, mMulti(false, port(80), port(443), portRng(8080, 8090), port(443))),
			rule(both, aReturn, udp, mDport(translate.Port{}, false)), // port 0
			rule(both, aReturn, udp, translate.Match{Kind: translate.MatchDport, Set: anonPorts}),
			rule(v4, aReturn, mOif("lo", false), mSaddr("127.0.0.6/32", false)),
			rule(v6, aReturn, mOif("lo", false), mSaddr("::6/128", false)),
			rule(v4, aJump("istio-in-redirect"), mOif("lo", false), mDaddr("127.0.0.1/32", true), tcp,
				mMulti(true, port(53), port(15008)), mUID(owner(1337), false)),
			rule(v6, aJump("istio-in-redirect"), mOif("lo", false), mDaddr("::1/128", true), tcp,
				mDport(port(15008), true), mGID(owner(1337), false)),
			rule(both, aReturn, mOif("lo", false), tcp, mDport(port(53), true), mUID(owner(1337), true)),
			rule(both, aReturn, mUID(owner(1337), false)),
			rule(both, aReturn, mUID(translate.Owner{Raw: "1000-2000", From: 1000, To: 2000, Resolved: true}, false)),
			rule(both, aReturn, mGID(owner(5), true), mGID(owner(6), true)),
			rule(v4, aReturn, mUID(owner(0), false)),
			rule(v4, aReturn, mDaddr("127.0.0.1/32", false)),
			rule(v6, aReturn, mDaddr("::1/128", false)),
			rule(v4, aReturn, mDaddrSet(excl4, false)),
			rule(v4, aReturn, mDaddr("10.1.2.3/16", false), mSaddr("172.16.5.4/12", true)),
			rule(v4, aReturn, mDaddr("0.0.0.0/0", false)),
			rule(v4, aReturn, mDaddrSet(anonAddrs, false)),
			rule(v4, aReturn, mDaddrSet(anonAddrs, true)), // same anonymous set used by a second rule
			rule(both, aJump("istio-redirect"), tcp, mDport(port(9080), false)),
			rule(v6, aJump("istio-redirect"), mDaddrSet(incl6, false)),
			rule(v6, aJump("istio-redirect"), mDaddr("fd00:1:2::/47", true)),
			rule(v4, aJump("istio-redirect")),
		}},
		{Name: "istio-output-dns", Rules: []*translate.Rule{
			rule(v4, aRedirect(15053), tcp, mDport(port(53), false), mDaddr("10.0.0.10/32", false)),
			rule(v6, aRedirect(15053), udp, mDport(port(53), false), mDaddr("fd00::10/128", false)),
		}},
		{Name: "istio-empty"},
	}

	mangle := &translate.Table{Kind: translate.TableMangle}
	mangle.Chains = []*translate.Chain{
		{Name: "prerouting", Base: base(translate.ChainTypeFilter, translate.HookPrerouting, -150), Rules: []*translate.Rule{
			rule(both, aJump("istio-drop"), mState(translate.CtInvalid, false)),
			rule(both, aReturn, mIif("eth2", true)),
			rule(both, aJump("istio-inbound"), tcp),
			rule(both, aSave, tcp, mMark(1337, false)),
		}},
		{Name: "output", Base: base(translate.ChainTypeRoute, translate.HookOutput, -150), Rules: []*translate.Rule{
			rule(both, aReturn, tcp, mOif("lo", false), mMark(1337, false)),
			rule(v4, aSetMark(1338), mDaddr("127.0.0.1/32", true), tcp, mOif("lo", false), mUID(owner(1337), false)),
			rule(v6, aSetMark(1338), mDaddr("::1/128", true), tcp, mOif("lo", false), mGID(owner(1337), false)),
			rule(both, aRestore, tcp, mConnMark(1337)),
		}},
		{Name: "istio-drop", Rules: []*translate.Rule{rule(both, aDrop)}},
		{Name: "istio-divert", Rules: []*translate.Rule{
			rule(both, aSetMark(1337)),
			rule(both, aAccept),
		}},
		{Name: "istio-tproxy", Rules: []*translate.Rule{
			rule(v4, aTProxy(15006, 1337), mDaddr("127.0.0.1/32", true), tcp),
			rule(v6, aTProxy(15006, 1337), mDaddr("::1/128", true), tcp),
			rule(both, aTProxy(15007, 0xffffffff), udp, mDport(port(5000), false)),
		}},
		{Name: "istio-inbound", Rules: []*translate.Rule{
			rule(both, aReturn, tcp, mMark(1337, false)),
			rule(v4, aReturn, tcp, mSaddr("127.0.0.6/32", false), mIif("lo", false)),
			rule(v6, aReturn, tcp, mSaddr("::6/128", false), mIif("lo", false)),
			rule(both, aReturn, tcp, mIif("lo", false), mMark(1338, true)),
			rule(both, aReturn, tcp, mDport(port(15020), false)),
			rule(both, aJump("istio-divert"), tcp, mDport(port(8080), false), mState(translate.CtRelated|translate.CtEstablished, false)),
			rule(both, aReturn, tcp, mState(translate.CtEstablished, true)),
			rule(both, aJump("istio-tproxy"), tcp),
		}},
	}

	raw := &translate.Table{Kind: translate.TableRaw}
	raw.Chains = []*translate.Chain{
		{Name: "prerouting", Base: base(translate.ChainTypeFilter, translate.HookPrerouting, -300), Rules: []*translate.Rule{
			rule(both, aJump("istio-inbound")),
		}},
		{Name: "output", Base: base(translate.ChainTypeFilter, translate.HookOutput, -300), Rules: []*translate.Rule{
			rule(both, aJump("istio-output-dns")),
		}},
		{Name: "istio-output-dns", Rules: []*translate.Rule{
			rule(both, aZone(1), udp, mDport(port(53), false), mUID(owner(1337), false)),
			rule(both, aZone(2), udp, mSport(port(15053), false), mGID(owner(1337), false)),
			rule(v4, aZone(2), udp, mDport(port(53), false), mDaddr("10.0.0.10/32", false)),
			rule(v6, aZone(65535), udp, mDport(port(53), false), mDaddr("fd00::10/128", false)),
		}},
		{Name: "istio-inbound", Rules: []*translate.Rule{
			rule(v4, aZone(1), udp, mSport(port(53), false), mSaddr("10.0.0.10/32", false)),
		}},
	}
	return &translate.Ruleset{Tables: []*translate.Table{nat, mangle, raw}, Families: both}
}

// TestFixtureCoversModel keeps fullRuleset honest: every match and action
// kind of the model appears in it.
func TestFixtureCoversModel(t *testing.T) {
	matches := map[translate.MatchKind]bool{}
	actions := map[translate.ActionKind]bool{}
	negated := map[translate.MatchKind]bool{}
	for _, tb := range fullRuleset().Tables {
		for _, c := range tb.Chains {
			for _, r := range c.Rules {
				actions[r.Action.Kind] = true
				for _, m := range r.Matches {
					matches[m.Kind] = true
					if m.Negate {
						negated[m.Kind] = true
					}
				}
			}
		}
	}
	for k := translate.MatchProto; k <= translate.MatchConnMark; k++ {
		if !matches[k] {
			t.Errorf("match kind %d not covered", k)
		}
	}
	for k := translate.ActReturn; k <= translate.ActCtZone; k++ {
		if !actions[k] {
			t.Errorf("action kind %d not covered", k)
		}
	}
	for _, k := range []translate.MatchKind{translate.MatchInIface, translate.MatchOutIface, translate.MatchSaddr,
		translate.MatchDaddr, translate.MatchDport, translate.MatchMultiDport, translate.MatchUID, translate.MatchGID,
		translate.MatchCtState, translate.MatchMark} {
		if !negated[k] {
			t.Errorf("negated match kind %d not covered", k)
		}
	}
}
