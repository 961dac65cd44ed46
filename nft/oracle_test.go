package nft

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nfintercept/nfintercept/translate"
)

// checkOracle is the encoder == renderer proof: Apply rs over netlink in
// namespace A, load Text(rs) with `nft -f` in namespace B; both must list
// the same ruleset. It also checks that `nft -c -f` accepts the text and
// that the text's rule lines are exactly what nft prints for them.
func checkOracle(t *testing.T, rs *translate.Ruleset) {
	t.Helper()
	nsA, pathA := newNetns(t)
	nsB, _ := newNetns(t)

	if err := Apply(rs, pathA); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	txt, err := Text(rs)
	if err != nil {
		t.Fatalf("Text: %v", err)
	}
	file := filepath.Join(t.TempDir(), "ruleset.nft")
	if err := os.WriteFile(file, []byte(txt), 0o644); err != nil {
		t.Fatal(err)
	}
	nftIn(t, nsB, "", "-c", "-f", file)
	nftIn(t, nsB, "", "-f", file)

	listA, listB := listRuleset(t, nsA), listRuleset(t, nsB)
	if listA != listB {
		t.Errorf("nft list ruleset differs\n--- Apply (netlink):\n%s\n--- nft -f Text:\n%s\n--- Text:\n%s", listA, listB, txt)
	}
	if listA == "" {
		t.Fatal("empty ruleset after Apply")
	}

	// Text prints rules the way nft lists them.
	want, got := listedRules(listA), textRules(txt)
	for chain, rules := range want {
		if !slices.Equal(got[chain], rules) {
			t.Errorf("chain %s: Text rules\n%s\nnft lists\n%s", chain, strings.Join(got[chain], "\n"), strings.Join(rules, "\n"))
		}
	}
	if len(got) != len(want) {
		t.Errorf("Text has %d chains, nft lists %d", len(got), len(want))
	}
}

func TestOracleFullRuleset(t *testing.T) {
	requireRoot(t)
	checkOracle(t, fullRuleset())
}

// TestOracleSingleTable: kinds missing from rs still get replaced.
func TestOracleSingleTable(t *testing.T) {
	requireRoot(t)
	rs := fullRuleset()
	rs.Tables = rs.Tables[1:2]
	checkOracle(t, rs)
}

// TestOracleBuild runs realistic configurations through translate.Build.
func TestOracleBuild(t *testing.T) {
	requireRoot(t)
	for name, cfg := range realisticConfigs() {
		t.Run(name, func(t *testing.T) {
			checkOracle(t, translate.Build(cfg))
		})
	}
}

// TestTablesReadBack compares Tables with the model.
func TestTablesReadBack(t *testing.T) {
	requireRoot(t)
	_, path := newNetns(t)
	rs := fullRuleset()
	if err := Apply(rs, path); err != nil {
		t.Fatal(err)
	}
	got, err := Tables(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(rs.Tables) {
		t.Fatalf("read %d tables, want %d", len(got), len(rs.Tables))
	}
	for i, tb := range rs.Tables {
		ts := got[i]
		if ts.Name != tb.Name() {
			t.Errorf("table %d: %s, want %s", i, ts.Name, tb.Name())
		}
		if len(ts.Chains) != len(tb.Chains) {
			t.Errorf("%s: %d chains, want %d", ts.Name, len(ts.Chains), len(tb.Chains))
			continue
		}
		for j, c := range tb.Chains {
			cs := ts.Chains[j]
			wantRules := len(c.Rules)
			for _, r := range c.Rules {
				if r.Action.Kind == translate.ActTProxy {
					wantRules++ // the drop twin
				}
			}
			if cs.Name != c.Name || cs.Rules != wantRules {
				t.Errorf("%s chain %d: %s with %d rules, want %s with %d", ts.Name, j, cs.Name, cs.Rules, c.Name, wantRules)
			}
			if (cs.Base == nil) != (c.Base == nil) || (c.Base != nil && *cs.Base != *c.Base) {
				t.Errorf("%s chain %s: base %+v, want %+v", ts.Name, c.Name, cs.Base, c.Base)
			}
		}
		var names []string
		for _, s := range ts.Sets {
			names = append(names, s.Name)
		}
		var wantNames []string
		for _, s := range tb.Sets {
			wantNames = append(wantNames, s.Name)
		}
		if !slices.Equal(names, wantNames) {
			t.Errorf("%s: sets %v, want %v", ts.Name, names, wantNames)
		}
	}
	// exclude-v4 as written: overlaps, duplicates, host bits, top of range.
	want := []string{"10.245.0.0/16", "100.64.0.0/22", "172.16.0.0/12", "192.168.0.0/16", "240.0.0.0/4"}
	var gotP []string
	for _, p := range got[0].Sets[0].Prefixes {
		gotP = append(gotP, p.String())
	}
	if !slices.Equal(gotP, want) {
		t.Errorf("exclude-v4 read back %v, want %v", gotP, want)
	}
	if got[0].Sets[0].Type != translate.SetIPv4Prefixes || got[0].Sets[1].Type != translate.SetIPv6Prefixes {
		t.Errorf("set types %d, %d", got[0].Sets[0].Type, got[0].Sets[1].Type)
	}
	want6 := []string{"2001:db8::/47", "fd00::/8"}
	gotP = nil
	for _, p := range got[0].Sets[1].Prefixes {
		gotP = append(gotP, p.String())
	}
	if !slices.Equal(gotP, want6) {
		t.Errorf("include-v6 read back %v, want %v", gotP, want6)
	}
}
