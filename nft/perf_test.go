package nft

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/nfintercept/nfintercept/translate"
)

// Benchmarks of the encoding work that grows with the exclude list (run
// with -bench; nothing here asserts timing).

func benchPrefixes(n int) []translate.Prefix {
	r := rand.New(rand.NewPCG(1, 2))
	out := make([]translate.Prefix, 0, n)
	for range n {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], r.Uint32())
		p := netip.PrefixFrom(netip.AddrFrom4(b), 16+r.IntN(17))
		out = append(out, translate.Prefix{Raw: p.String(), Prefix: p})
	}
	return out
}

func BenchmarkNewSetRef(b *testing.B) {
	s := &translate.Set{Name: "exclude-v4", Type: translate.SetIPv4Prefixes, Prefixes: benchPrefixes(100_000)}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := newSetRef(s); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSetElemMsgs(b *testing.B) {
	ref, err := newSetRef(&translate.Set{Name: "exclude-v4", Type: translate.SetIPv4Prefixes, Prefixes: benchPrefixes(100_000)})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		setElemMsgs("nfintercept-nat", ref.name, 1, ref)
	}
}
