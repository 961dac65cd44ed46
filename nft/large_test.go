package nft

import (
	"cmp"
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/nfintercept/nfintercept/translate"
)

// randomV4 returns n random IPv4 CIDRs, a share of them wide enough to
// overlap others, plus exact duplicates.
func randomV4(r *rand.Rand, n int) []translate.Prefix {
	out := make([]translate.Prefix, 0, n)
	for len(out) < n {
		bits := 16 + r.IntN(17) // /16../32
		if r.IntN(1000) == 0 {
			bits = 10 + r.IntN(6) // a few wide ones swallow many
		}
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], r.Uint32())
		p := netip.PrefixFrom(netip.AddrFrom4(b), bits) // host bits kept
		out = append(out, translate.Prefix{Raw: p.String(), Prefix: p})
		if r.IntN(50) == 0 {
			out = append(out, out[len(out)-1])
		}
	}
	return out[:n]
}

// sweepMerge is the test's own merge, by coverage counting instead of the
// sort-and-extend of MergePrefixes: +1 at each start, -1 after each end;
// covered runs are where the count is positive.
func sweepMerge(ps []translate.Prefix) [][2]uint64 {
	type ev struct {
		at    uint64
		delta int
	}
	evs := make([]ev, 0, 2*len(ps))
	for _, p := range ps {
		a := p.Prefix.Addr().As4()
		start := uint64(binary.BigEndian.Uint32(a[:])) &^ (1<<(32-p.Prefix.Bits()) - 1)
		size := uint64(1) << (32 - p.Prefix.Bits())
		evs = append(evs, ev{start, +1}, ev{start + size, -1})
	}
	slices.SortFunc(evs, func(a, b ev) int { return cmp.Compare(a.at, b.at) })
	var out [][2]uint64
	depth := 0
	for i := 0; i < len(evs); {
		at := evs[i].at
		was := depth
		for ; i < len(evs) && evs[i].at == at; i++ {
			depth += evs[i].delta
		}
		switch {
		case was == 0 && depth > 0:
			out = append(out, [2]uint64{at, 0})
		case was > 0 && depth == 0:
			out[len(out)-1][1] = at - 1
		}
	}
	// Runs that touch are one run once merged.
	merged := out[:0]
	for _, r := range out {
		if n := len(merged); n > 0 && merged[n-1][1]+1 == r[0] {
			merged[n-1][1] = r[1]
			continue
		}
		merged = append(merged, r)
	}
	return merged
}

// excludeRuleset is one nat output chain returning for the addresses of
// a named IPv4 set holding prefixes.
func excludeRuleset(prefixes []translate.Prefix) *translate.Ruleset {
	set := &translate.Set{Name: "exclude-v4", Type: translate.SetIPv4Prefixes, Prefixes: prefixes}
	return &translate.Ruleset{Tables: []*translate.Table{{
		Kind: translate.TableNAT,
		Sets: []*translate.Set{set},
		Chains: []*translate.Chain{{
			Name:  "output",
			Base:  base(translate.ChainTypeNAT, translate.HookOutput, -100),
			Rules: []*translate.Rule{rule(v4, aReturn, mDaddrSet(set, false))},
		}},
	}}}
}

func TestLargeSet(t *testing.T) {
	requireRoot(t)
	if testing.Short() {
		t.Skip("large set skipped in -short mode")
	}
	_, path := newNetns(t)
	r := rand.New(rand.NewPCG(1, 2))
	prefixes := randomV4(r, 100_000)
	rs := excludeRuleset(prefixes)

	start := time.Now()
	if err := Apply(rs, path); err != nil {
		t.Fatal(err)
	}
	t.Logf("Apply of %d CIDRs took %v", len(prefixes), time.Since(start))

	got, err := Tables(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || len(got[0].Sets) != 1 {
		t.Fatalf("read back %+v", got)
	}
	want := sweepMerge(prefixes)
	var have [][2]uint64
	for _, iv := range got[0].Sets[0].Intervals {
		f, l := iv.First.As4(), iv.Last.As4()
		have = append(have, [2]uint64{uint64(binary.BigEndian.Uint32(f[:])), uint64(binary.BigEndian.Uint32(l[:]))})
	}
	t.Logf("%d CIDRs merged into %d intervals", len(prefixes), len(want))
	if len(want) < 50_000 {
		t.Errorf("only %d intervals: the input does not exercise chunking", len(want))
	}
	if !slices.Equal(have, want) {
		t.Errorf("kernel set has %d intervals, want %d", len(have), len(want))
		for i := range min(len(have), len(want)) {
			if have[i] != want[i] {
				t.Fatalf("first difference at %d: got %v, want %v", i, have[i], want[i])
			}
		}
	}
	// Read back as prefixes, they cover the same addresses.
	var back []netip.Prefix
	back = append(back, got[0].Sets[0].Prefixes...)
	ivs, err := MergePrefixes(back, true)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ivs, got[0].Sets[0].Intervals) {
		t.Error("Prefixes and Intervals of the read-back set disagree")
	}
}

// TestLargeSetV6 exercises chunking with 16-byte keys.
func TestLargeSetV6(t *testing.T) {
	requireRoot(t)
	if testing.Short() {
		t.Skip("large set skipped in -short mode")
	}
	ns, path := newNetns(t)
	r := rand.New(rand.NewPCG(3, 4))
	set := &translate.Set{Name: "include-v6", Type: translate.SetIPv6Prefixes}
	for range 20_000 {
		var b [16]byte
		binary.BigEndian.PutUint64(b[:8], r.Uint64())
		binary.BigEndian.PutUint64(b[8:], r.Uint64())
		p := netip.PrefixFrom(netip.AddrFrom16(b), 32+r.IntN(97))
		set.Prefixes = append(set.Prefixes, translate.Prefix{Raw: p.String(), Prefix: p})
	}
	rs := &translate.Ruleset{Tables: []*translate.Table{{
		Kind: translate.TableNAT,
		Sets: []*translate.Set{set},
		Chains: []*translate.Chain{{
			Name:  "output",
			Base:  base(translate.ChainTypeNAT, translate.HookOutput, -100),
			Rules: []*translate.Rule{rule(v6, aReturn, mDaddrSet(set, true))},
		}},
	}}}
	if err := Apply(rs, path); err != nil {
		t.Fatal(err)
	}
	got, err := Tables(path)
	if err != nil {
		t.Fatal(err)
	}
	var ps []netip.Prefix
	for _, p := range set.Prefixes {
		ps = append(ps, p.Prefix)
	}
	want, err := MergePrefixes(ps, false)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got[0].Sets[0].Intervals, want) {
		t.Errorf("read back %d intervals, want %d", len(got[0].Sets[0].Intervals), len(want))
	}
	// nft itself sees the full set.
	out := nftIn(t, ns, "", "-j", "list", "set", "inet", "nfintercept-nat", "include-v6")
	if len(out) < 20_000*10 {
		t.Errorf("nft lists only %d bytes for the set", len(out))
	}
}
