package nft

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
)

// mergeGeneric is MergePrefixes' family-independent path, applied to IPv4.
func mergeGeneric(ps []netip.Prefix) []Interval {
	rs := make([]numRange, 0, len(ps))
	for _, p := range ps {
		f, l := prefixBounds(p)
		rs = append(rs, numRange{f, l})
	}
	rs = mergeRanges(rs, maxNum(true))
	out := make([]Interval, len(rs))
	for i, r := range rs {
		out[i] = Interval{numAddr(r.first, true), numAddr(r.last, true)}
	}
	return out
}

// TestMergeV4MatchesGeneric: the packed, radix-sorted IPv4 merge agrees
// with the generic one on random lists (sizes around the radix cut-off,
// duplicates, adjacent and nested prefixes, /0, the top of the space).
func TestMergeV4MatchesGeneric(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for _, n := range []int{0, 1, 2, 255, 256, 257, 5000} {
		for round := range 5 {
			var ps []netip.Prefix
			for range n {
				var b [4]byte
				for i := range b {
					b[i] = byte(r.IntN(256))
				}
				if round%2 == 1 {
					b[0] = byte(r.IntN(4)) // crowded: many overlaps and neighbours
				}
				bits := r.IntN(33)
				if r.IntN(100) != 0 {
					bits = 8 + r.IntN(25)
				}
				ps = append(ps, netip.PrefixFrom(netip.AddrFrom4(b), bits))
				if r.IntN(20) == 0 {
					ps = append(ps, ps[r.IntN(len(ps))])
				}
			}
			if round == 4 && n > 0 {
				ps = append(ps, netip.MustParsePrefix("255.255.255.255/32"), netip.MustParsePrefix("240.0.0.0/4"))
			}
			got, err := MergePrefixes(ps, true)
			if err != nil {
				t.Fatal(err)
			}
			if want := mergeGeneric(ps); !slices.Equal(got, want) {
				t.Fatalf("n=%d round %d: %d intervals, generic merge gives %d", n, round, len(got), len(want))
			}
		}
	}
}
