package nft

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/nfintercept/nfintercept/translate"
)

// --- namespaces and the nft oracle ---

var nsCounter atomic.Int32

// requireRoot skips tests that need to create network namespaces.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	for _, bin := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("needs %s as the test oracle: %v", bin, err)
		}
	}
}

// newNetns creates a throwaway named namespace and returns its name and
// path; it is deleted when the test ends, failed or not.
func newNetns(t *testing.T) (name, path string) {
	t.Helper()
	name = fmt.Sprintf("nfi-nft-%d-%d", os.Getpid(), nsCounter.Add(1))
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	return name, "/var/run/netns/" + name
}

// newNetnsRoot is newNetns for tests that need root (skipped otherwise).
func newNetnsRoot(t *testing.T) (name, path string) {
	t.Helper()
	requireRoot(t)
	return newNetns(t)
}

// newNetnsLoUp is newNetns with lo up.
func newNetnsLoUp(t *testing.T) (name, path string) {
	t.Helper()
	name, path = newNetns(t)
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up in %s: %v: %s", name, err, out)
	}
	return name, path
}

// nftIn runs nft inside the namespace, feeding stdin, and fails on error.
func nftIn(t *testing.T, ns, stdin string, args ...string) string {
	t.Helper()
	out, err := nftTry(ns, stdin, args...)
	if err != nil {
		t.Fatalf("nft %s in %s: %v\n%s", strings.Join(args, " "), ns, err, out)
	}
	return out
}

func nftTry(ns, stdin string, args ...string) (string, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, "nft"}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	return out.String(), err
}

func listRuleset(t *testing.T, ns string) string {
	t.Helper()
	return nftIn(t, ns, "", "list", "ruleset")
}

var counterRE = regexp.MustCompile(`counter packets \d+ bytes \d+`)

// listedRules parses `nft list ruleset` into "table/chain" → rule lines,
// with counter values dropped.
func listedRules(listing string) map[string][]string {
	out := map[string][]string{}
	var table, chain string
	inSet := false
	for _, line := range strings.Split(listing, "\n") {
		l := strings.TrimSpace(line)
		switch {
		case inSet:
			inSet = l != "}"
		case strings.HasPrefix(l, "set ") && strings.HasSuffix(l, "{"):
			inSet = true
		case strings.HasPrefix(l, "table "):
			table = strings.Fields(l)[2]
		case strings.HasPrefix(l, "chain "):
			chain = strings.Fields(l)[1]
			out[table+"/"+chain] = []string{}
		case l == "}":
			if chain != "" {
				chain = ""
			} else {
				table = ""
			}
		case chain != "" && l != "" && !strings.HasPrefix(l, "type "):
			out[table+"/"+chain] = append(out[table+"/"+chain], counterRE.ReplaceAllString(l, "counter"))
		}
	}
	return out
}

// textRules parses our own Text output the same way.
func textRules(text string) map[string][]string { return listedRules(text) }

// --- model builders ---

func pfx(s string) translate.Prefix {
	return translate.Prefix{Raw: s, Prefix: netip.MustParsePrefix(s)}
}

func port(n uint16) translate.Port { return translate.Port{Raw: fmt.Sprint(n), From: n, To: n} }

func portRng(a, b uint16) translate.Port {
	return translate.Port{Raw: fmt.Sprintf("%d:%d", a, b), From: a, To: b}
}

func owner(id uint32) translate.Owner {
	return translate.Owner{Raw: fmt.Sprint(id), From: id, To: id, Resolved: true}
}

func mark(v uint32) translate.Mark { return translate.Mark{Raw: fmt.Sprint(v), Value: v} }

func mProto(p translate.Proto) translate.Match {
	return translate.Match{Kind: translate.MatchProto, Proto: p}
}
func mIif(n string, neg bool) translate.Match {
	return translate.Match{Kind: translate.MatchInIface, Iface: translate.Iface(n), Negate: neg}
}
func mOif(n string, neg bool) translate.Match {
	return translate.Match{Kind: translate.MatchOutIface, Iface: translate.Iface(n), Negate: neg}
}
func mSaddr(s string, neg bool) translate.Match {
	return translate.Match{Kind: translate.MatchSaddr, Prefix: pfx(s), Negate: neg}
}
func mDaddr(s string, neg bool) translate.Match {
	return translate.Match{Kind: translate.MatchDaddr, Prefix: pfx(s), Negate: neg}
}
func mDaddrSet(s *translate.Set, neg bool) translate.Match {
	return translate.Match{Kind: translate.MatchDaddr, Set: s, Negate: neg}
}
func mSport(p translate.Port, neg bool) translate.Match {
	return translate.Match{Kind: translate.MatchSport, Ports: []translate.Port{p}, Negate: neg}
}
func mDport(p translate.Port, neg bool) translate.Match {
	return translate.Match{Kind: translate.MatchDport, Ports: []translate.Port{p}, Negate: neg}
}
func mMulti(neg bool, ps ...translate.Port) translate.Match {
	return translate.Match{Kind: translate.MatchMultiDport, Ports: ps, Negate: neg}
}
func mUID(o translate.Owner, neg bool) translate.Match {
	return translate.Match{Kind: translate.MatchUID, Owner: o, Negate: neg}
}
func mGID(o translate.Owner, neg bool) translate.Match {
	return translate.Match{Kind: translate.MatchGID, Owner: o, Negate: neg}
}
func mState(s translate.CtState, neg bool) translate.Match {
	return translate.Match{Kind: translate.MatchCtState, State: s, Negate: neg}
}
func mMark(v uint32, neg bool) translate.Match {
	return translate.Match{Kind: translate.MatchMark, Mark: mark(v), Negate: neg}
}
func mConnMark(v uint32) translate.Match {
	return translate.Match{Kind: translate.MatchConnMark, Mark: mark(v)}
}

func rule(f translate.Family, a translate.Action, ms ...translate.Match) *translate.Rule {
	return &translate.Rule{Family: f, Matches: ms, Action: a}
}

var (
	aReturn  = translate.Action{Kind: translate.ActReturn}
	aAccept  = translate.Action{Kind: translate.ActAccept}
	aDrop    = translate.Action{Kind: translate.ActDrop}
	aSave    = translate.Action{Kind: translate.ActSaveMark}
	aRestore = translate.Action{Kind: translate.ActRestoreMark}
)

func aJump(c string) translate.Action { return translate.Action{Kind: translate.ActJump, Chain: c} }
func aRedirect(p uint16) translate.Action {
	return translate.Action{Kind: translate.ActRedirect, Port: port(p)}
}
func aTProxy(p uint16, m uint32) translate.Action {
	return translate.Action{Kind: translate.ActTProxy, Port: port(p), Mark: mark(m)}
}
func aSetMark(m uint32) translate.Action {
	return translate.Action{Kind: translate.ActSetMark, Mark: mark(m)}
}
func aZone(z uint16) translate.Action { return translate.Action{Kind: translate.ActCtZone, Zone: z} }

func base(t translate.ChainType, h translate.Hook, prio int32) *translate.BaseChain {
	return &translate.BaseChain{Type: t, Hook: h, Priority: prio}
}

func prefixSet(name string, v4 bool, cidrs ...string) *translate.Set {
	s := &translate.Set{Name: name, Type: translate.SetIPv6Prefixes}
	if v4 {
		s.Type = translate.SetIPv4Prefixes
	}
	for _, c := range cidrs {
		s.Prefixes = append(s.Prefixes, pfx(c))
	}
	return s
}

// oneRule wraps a rule in a minimal table for text tests.
func oneRule(r *translate.Rule) *translate.Ruleset {
	return &translate.Ruleset{Tables: []*translate.Table{{
		Kind: translate.TableNAT,
		Chains: []*translate.Chain{
			{Name: "c", Rules: []*translate.Rule{r}},
			{Name: "istio-in-redirect"},
		},
	}}}
}

// insideUnshare reports whether this test process was re-executed inside a
// throwaway namespace by a test that needs to own the current namespace.
func insideUnshare() bool { return os.Getenv("NFI_NFT_IN_UNSHARE") == "1" }

func testBinary() string { return os.Args[0] }
