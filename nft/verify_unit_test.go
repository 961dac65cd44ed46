package nft

import (
	"math/rand"
	"slices"
	"strings"
	"testing"

	"github.com/nfintercept/nfintercept/translate"
)

// TestSubtractRanges checks range subtraction against a bitmap over a small
// port space.
func TestSubtractRanges(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	const space = 64
	random := func() ([]numRange, [space]bool) {
		var ps []translate.Port
		for range r.Intn(6) {
			a := uint16(r.Intn(space))
			b := min(a+uint16(r.Intn(8)), space-1)
			ps = append(ps, translate.Port{From: a, To: b})
		}
		var bits [space]bool
		var out []numRange
		for _, pr := range mergePorts(ps) {
			out = append(out, numRange{u128{0, uint64(pr.first)}, u128{0, uint64(pr.last)}})
			for p := pr.first; p <= pr.last; p++ {
				bits[p] = true
			}
		}
		return out, bits
	}
	for i := 0; i < 2000; i++ {
		a, abits := random()
		b, bbits := random()
		var got [space]bool
		for _, rg := range subtractRanges(a, b) {
			if rg.last.less(rg.first) {
				t.Fatalf("empty range %v in %v - %v", rg, a, b)
			}
			for p := rg.first.lo; p <= rg.last.lo; p++ {
				got[p] = true
			}
		}
		for p := range space {
			if want := abits[p] && !bbits[p]; got[p] != want {
				t.Fatalf("%v - %v: port %d in result = %v, want %v", a, b, p, got[p], want)
			}
		}
	}
}

// TestAlignRuns: the unmatched stretches, checked by rebuilding both
// sequences from them.
func TestAlignRuns(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want string // hunks as "want indexes/have indexes"
	}{
		{"abcd", "abcd", ""},
		{"abcd", "abd", "2/"},
		{"abd", "abxd", "/2"},
		{"abcd", "abXd", "2/2"},
		{"abcd", "Xabcd", "/0"},
		{"", "ab", "/0,1"},
		{"abcdef", "abXdeYf", "2/2 /5"},
	} {
		var got []string
		for _, h := range alignRuns(strings.Split(tc.a, ""), strings.Split(tc.b, "")) {
			got = append(got, ints(h.want)+"/"+ints(h.have))
		}
		if s := strings.Join(got, " "); s != tc.want {
			t.Errorf("alignRuns(%q, %q) = %q, want %q", tc.a, tc.b, s, tc.want)
		}
	}
}

func ints(xs []int) string {
	var s []string
	for _, x := range xs {
		s = append(s, string(rune('0'+x)))
	}
	return strings.Join(s, ",")
}

// TestDesiredRulesDistinct: the canonical form keeps every difference the
// fixture's rules have (no two different rule texts share a key) and is
// stable.
func TestDesiredRulesDistinct(t *testing.T) {
	for name, rs := range verifyRulesets() {
		want, err := desiredState(rs)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		again, _ := desiredState(rs)
		keys := map[string]string{}
		for ti, tb := range want {
			for ci, c := range tb.chains {
				for ri, r := range c.rules {
					if prev, ok := keys[r.key]; ok && prev != r.text {
						t.Errorf("%s: %q and %q have the same canonical form", name, prev, r.text)
					}
					keys[r.key] = r.text
					if again[ti].chains[ci].rules[ri].key != r.key {
						t.Errorf("%s: canonical form of %q not stable", name, r.text)
					}
					if slices.ContainsFunc(r.exprs, func(e canonExpr) bool { return strings.HasPrefix(e.name, "attr") }) {
						t.Errorf("%s: unnamed expression in %q", name, r.text)
					}
				}
			}
		}
	}
}

// TestExprDiff: a changed value is shown with both versions; a reordering
// alone is named as such.
func TestExprDiff(t *testing.T) {
	e := func(name string, v byte) canonExpr {
		return canonExpr{name: name, attrs: []exprAttr{{typ: 1, spec: attrSpec{name: "v", kind: aRaw}, value: []byte{v}}}}
	}
	want := []canonExpr{e("a", 1), e("b", 2), e("c", 3)}
	got := exprDiff(want, []canonExpr{e("a", 1), e("b", 9), e("c", 3)})
	if len(got) != 1 || !strings.Contains(got[0], "expression 2") || !strings.Contains(got[0], "0x09") || !strings.Contains(got[0], "0x02") {
		t.Errorf("changed value: %q", got)
	}
	got = exprDiff(want, []canonExpr{e("b", 2), e("a", 1), e("c", 3)})
	if len(got) != 1 || !strings.HasPrefix(got[0], "in another order") {
		t.Errorf("reordered: %q", got)
	}
	got = exprDiff(want, []canonExpr{e("a", 1), e("c", 3)})
	if len(got) != 1 || !strings.Contains(got[0], "missing expression (want position 2)") {
		t.Errorf("missing: %q", got)
	}
}
