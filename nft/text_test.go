package nft

import (
	"strings"
	"testing"

	"github.com/nfintercept/nfintercept/translate"
)

const (
	v4   = translate.IPv4
	v6   = translate.IPv6
	both = translate.BothFamilies
)

// TestRuleText pins the text of single rules. The expectations are written
// from nft syntax (as `nft list` prints it: the family/protocol guard is left
// out when a later address/port match implies it), not copied from output.
func TestRuleText(t *testing.T) {
	excl := prefixSet("exclude-v4", true, "10.0.0.0/8")
	tests := []struct {
		name string
		r    *translate.Rule
		want string
	}{
		{"istio 11a", rule(v4, aJump("istio-in-redirect"),
			mOif("lo", false), mDaddr("127.0.0.1/32", true), mProto(translate.TCP), mDport(port(15008), true), mUID(owner(1337), false)),
			`oifname "lo" ip daddr != 127.0.0.1 tcp dport != 15008 meta skuid 1337 counter jump istio-in-redirect`},
		{"v4 guard kept without address", rule(v4, aReturn, mUID(owner(0), false)),
			`meta nfproto ipv4 meta skuid 0 counter return`},
		{"both families no guard", rule(both, aReturn, mIif("eth0", false)),
			`iifname "eth0" counter return`},
		{"wildcard iface negated", rule(both, aReturn, mIif("veth+", true)),
			`iifname != "veth*" counter return`},
		{"bare + matches all", rule(both, aReturn, mOif("+", false)),
			`counter return`},
		{"l4proto kept without port", rule(both, aRedirect(15001), mProto(translate.TCP)),
			`meta l4proto tcp counter redirect to :15001`},
		{"l4proto implied by port", rule(both, aReturn, mProto(translate.UDP), mDport(port(53), false)),
			`udp dport 53 counter return`},
		{"v6 guard kept, l4proto implied", rule(v6, aReturn, mProto(translate.TCP), mSport(port(80), false)),
			`meta nfproto ipv6 tcp sport 80 counter return`},
		{"negated proto", rule(both, aReturn, translate.Match{Kind: translate.MatchProto, Proto: translate.TCP, Negate: true}),
			`meta l4proto != tcp counter return`},
		{"port range", rule(both, aReturn, mProto(translate.TCP), mDport(portRng(8000, 9000), false)),
			`tcp dport 8000-9000 counter return`},
		{"port range negated", rule(both, aReturn, mProto(translate.TCP), mDport(portRng(8000, 9000), true)),
			`tcp dport != 8000-9000 counter return`},
		{"multiport merged", rule(both, aReturn, mProto(translate.TCP), mMulti(true, port(15008), port(53), port(53), portRng(80, 90), port(91))),
			`tcp dport != { 53, 80-91, 15008 } counter return`},
		{"multiport single", rule(both, aReturn, mProto(translate.TCP), mMulti(false, port(80), port(80))),
			`tcp dport 80 counter return`},
		{"prefix host bits", rule(v4, aReturn, mSaddr("10.1.2.3/16", false)),
			`ip saddr 10.1.0.0/16 counter return`},
		{"v6 host address", rule(v6, aReturn, mOif("lo", false), mSaddr("::6/128", false)),
			`oifname "lo" ip6 saddr ::6 counter return`},
		{"named set", rule(v4, aReturn, mDaddrSet(excl, false)),
			`ip daddr @exclude-v4 counter return`},
		{"named set negated, family from set", rule(both, aJump("istio-in-redirect"), mDaddrSet(excl, true)),
			`ip daddr != @exclude-v4 counter jump istio-in-redirect`},
		{"anonymous address set", rule(v4, aReturn, mDaddrSet(&translate.Set{Type: translate.SetIPv4Prefixes, Anonymous: true,
			Prefixes: []translate.Prefix{pfx("192.168.0.0/16"), pfx("10.0.0.0/8"), pfx("10.0.0.1/32")}}, false)),
			`ip daddr { 10.0.0.0/8, 192.168.0.0/16 } counter return`},
		{"anonymous set of one range", rule(v4, aReturn, mDaddrSet(&translate.Set{Type: translate.SetIPv4Prefixes, Anonymous: true,
			Prefixes: []translate.Prefix{pfx("10.0.1.0/24"), pfx("10.0.2.0/24")}}, true)),
			`ip daddr != 10.0.1.0-10.0.2.255 counter return`},
		{"gid range", rule(both, aReturn, mGID(translate.Owner{Raw: "1000-2000", From: 1000, To: 2000, Resolved: true}, true)),
			`meta skgid != 1000-2000 counter return`},
		{"ct state", rule(both, aJump("istio-in-redirect"), mProto(translate.TCP), mState(translate.CtRelated|translate.CtEstablished, false), mDport(port(80), false)),
			`tcp dport 80 ct state established,related counter jump istio-in-redirect`},
		{"ct state negated", rule(both, aReturn, mState(translate.CtInvalid, true)),
			`ct state ! invalid counter return`},
		{"marks", rule(both, aRestore, mProto(translate.TCP), mConnMark(1337), mMark(1338, true)),
			`meta l4proto tcp ct mark 0x00000539 meta mark != 0x0000053a counter meta mark set ct mark`},
		{"save mark", rule(both, aSave, mProto(translate.TCP), mMark(1337, false)),
			`meta l4proto tcp meta mark 0x00000539 counter ct mark set meta mark`},
		{"set mark", rule(both, aSetMark(1338)), `counter meta mark set 0x0000053a`},
		{"ct zone", rule(both, aZone(2), mProto(translate.UDP), mSport(port(15053), false), mUID(owner(1337), false)),
			`udp sport 15053 meta skuid 1337 counter ct zone set 2`},
		{"accept", rule(both, aAccept), `counter accept`},
		{"drop", rule(v4, aDrop), `meta nfproto ipv4 counter drop`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			txt, err := Text(oneRule(tt.r))
			if err != nil {
				t.Fatal(err)
			}
			got := textRules(txt)["nfintercept-nat/c"]
			if len(got) != 1 || got[0] != tt.want {
				t.Errorf("rule text\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

// TestTProxyText: a tproxy rule becomes the tproxy rule plus a drop with
// the same matches (nft's tproxy falls through when nothing listens).
func TestTProxyText(t *testing.T) {
	r := rule(v4, aTProxy(15006, 1337), mDaddr("127.0.0.1/32", true), mProto(translate.TCP))
	txt, err := Text(oneRule(r))
	if err != nil {
		t.Fatal(err)
	}
	got := textRules(txt)["nfintercept-nat/c"]
	want := []string{
		`meta l4proto tcp ip daddr != 127.0.0.1 tproxy ip to :15006 meta mark set 0x00000539 counter accept`,
		`meta l4proto tcp ip daddr != 127.0.0.1 counter drop`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestTextLayout(t *testing.T) {
	rs := &translate.Ruleset{Tables: []*translate.Table{{
		Kind: translate.TableNAT,
		Sets: []*translate.Set{prefixSet("exclude-v4", true, "10.245.0.0/16", "10.245.1.0/24")},
		Chains: []*translate.Chain{{
			Name:  "output",
			Base:  base(translate.ChainTypeNAT, translate.HookOutput, -100),
			Rules: []*translate.Rule{rule(v4, aReturn, mDaddrSet(prefixSet("exclude-v4", true), false))},
		}},
	}}}
	// The rule refers to a different *Set with the same name: refused.
	if _, err := Text(rs); err == nil {
		t.Fatal("two different sets with one name accepted")
	}
	rs.Tables[0].Chains[0].Rules[0] = rule(v4, aReturn, mDaddrSet(rs.Tables[0].Sets[0], false))
	got, err := Text(rs)
	if err != nil {
		t.Fatal(err)
	}
	want := `table inet nfintercept-nat
delete table inet nfintercept-nat
table inet nfintercept-mangle
delete table inet nfintercept-mangle
table inet nfintercept-raw
delete table inet nfintercept-raw

table inet nfintercept-nat {
	set exclude-v4 { type ipv4_addr; flags interval; elements = { 10.245.0.0/16 }; }

	chain output {
		type nat hook output priority -100; policy accept;
		ip daddr @exclude-v4 counter return
	}
}
`
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestLowerErrors(t *testing.T) {
	tests := []struct {
		name string
		r    *translate.Rule
		want string
	}{
		{"unresolved owner", rule(both, aReturn, mUID(translate.Owner{Raw: "nosuchuser"}, false)), `"nosuchuser"`},
		{"port without proto", rule(both, aReturn, mDport(port(80), false)), "protocol"},
		{"family conflict", rule(v6, aReturn, mDaddr("10.0.0.0/8", false)), "address"},
		{"missing jump target", rule(both, aJump("nope")), `"nope"`},
		{"redirect without proto", rule(both, aRedirect(1)), "protocol"},
		{"no family", rule(0, aReturn), "family"},
		{"redirect to a range", rule(both, translate.Action{Kind: translate.ActRedirect, Port: portRng(1, 2)}, mProto(translate.TCP)), "range"},
		{"long ifname", rule(both, aReturn, mIif("0123456789abcdef", false)), "15"},
	}
	for _, tt := range tests {
		_, err := Text(oneRule(tt.r))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want one mentioning %s", tt.name, err, tt.want)
		}
	}
}
