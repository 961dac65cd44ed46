package nft

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"math/bits"
	"net/netip"
	"slices"

	"github.com/nfintercept/nfintercept/translate"
)

// The kernel rejects overlapping elements in interval sets, and the model
// keeps lists as written (duplicates, overlaps, host bits). This file turns
// such lists into sorted, disjoint, coalesced intervals: sort + one sweep, so
// 100,000 prefixes cost a sort.

// Interval is an inclusive address range of one family.
type Interval struct {
	First, Last netip.Addr
}

// u128 is an address as a number; IPv4 addresses use the low 32 bits.
type u128 struct{ hi, lo uint64 }

func (a u128) less(b u128) bool { return a.hi < b.hi || (a.hi == b.hi && a.lo < b.lo) }

func (a u128) inc() u128 {
	lo, carry := bits.Add64(a.lo, 1, 0)
	return u128{a.hi + carry, lo}
}

func addrNum(a netip.Addr) u128 {
	if a.Is4() {
		b := a.As4()
		return u128{0, uint64(binary.BigEndian.Uint32(b[:]))}
	}
	b := a.As16()
	return u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

func numAddr(n u128, v4 bool) netip.Addr {
	if v4 {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(n.lo))
		return netip.AddrFrom4(b)
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], n.hi)
	binary.BigEndian.PutUint64(b[8:], n.lo)
	return netip.AddrFrom16(b)
}

// maxNum is the highest address of the family.
func maxNum(v4 bool) u128 {
	if v4 {
		return u128{0, 0xffffffff}
	}
	return u128{^uint64(0), ^uint64(0)}
}

// prefixBounds returns the first and last address of p (host bits ignored).
func prefixBounds(p netip.Prefix) (first, last u128) {
	width := 128
	if p.Addr().Is4() {
		width = 32
	}
	host := width - p.Bits()
	first = addrNum(p.Masked().Addr())
	// host mask = low `host` bits set
	var mask u128
	switch {
	case host >= 128:
		mask = u128{^uint64(0), ^uint64(0)}
	case host >= 64:
		mask = u128{(uint64(1) << (host - 64)) - 1, ^uint64(0)}
	default:
		mask = u128{0, (uint64(1) << host) - 1}
	}
	return first, u128{first.hi | mask.hi, first.lo | mask.lo}
}

type numRange struct{ first, last u128 }

// MergePrefixes returns the disjoint intervals covered by ps, sorted, with
// overlapping and adjacent ranges coalesced. All prefixes must be valid and
// of family v4 (IPv4) or not (IPv6); IPv4-mapped IPv6 counts as IPv6.
func MergePrefixes(ps []netip.Prefix, v4 bool) ([]Interval, error) {
	if v4 {
		return mergeV4(ps)
	}
	rs := make([]numRange, 0, len(ps))
	for _, p := range ps {
		if !p.IsValid() {
			return nil, fmt.Errorf("invalid prefix %q", p)
		}
		if p.Addr().Is4() != v4 {
			return nil, fmt.Errorf("prefix %s is not %s", p, familyName(v4))
		}
		f, l := prefixBounds(p)
		rs = append(rs, numRange{f, l})
	}
	rs = mergeRanges(rs, maxNum(v4))
	out := make([]Interval, len(rs))
	for i, r := range rs {
		out[i] = Interval{numAddr(r.first, v4), numAddr(r.last, v4)}
	}
	return out, nil
}

// mergeV4 is MergePrefixes for IPv4, where a range packs into one uint64
// (first in the high half) and sorts without a comparison function: an
// exclude list can have 100,000s of entries.
func mergeV4(ps []netip.Prefix) ([]Interval, error) {
	rs := make([]uint64, 0, len(ps))
	for _, p := range ps {
		if !p.IsValid() {
			return nil, fmt.Errorf("invalid prefix %q", p)
		}
		if !p.Addr().Is4() {
			return nil, fmt.Errorf("prefix %s is not %s", p, familyName(true))
		}
		a := p.Addr().As4()
		first := binary.BigEndian.Uint32(a[:]) &^ (uint32(1)<<(32-p.Bits()) - 1)
		if p.Bits() == 0 {
			first = 0
		}
		last := first | ^uint32(0)>>p.Bits()
		if p.Bits() == 0 {
			last = ^uint32(0)
		}
		rs = append(rs, uint64(first)<<32|uint64(last))
	}
	rs = sortByHigh32(rs)
	out := make([]Interval, 0, len(rs))
	var cur [2]uint32
	for i, r := range rs {
		first, last := uint32(r>>32), uint32(r)
		if i > 0 && (cur[1] == ^uint32(0) || uint64(first) <= uint64(cur[1])+1) {
			cur[1] = max(cur[1], last)
			continue
		}
		if i > 0 {
			out = append(out, v4Interval(cur))
		}
		cur = [2]uint32{first, last}
	}
	if len(rs) > 0 {
		out = append(out, v4Interval(cur))
	}
	return out, nil
}

// sortByHigh32 orders vs by their high 32 bits (the range start; the
// merge does not care about the order of equal starts): an LSD radix sort,
// four passes of a byte, linear in len(vs). It may return a new slice.
func sortByHigh32(vs []uint64) []uint64 {
	if len(vs) < 256 {
		slices.Sort(vs)
		return vs
	}
	tmp := make([]uint64, len(vs))
	for shift := 32; shift < 64; shift += 8 {
		var count [256]int
		for _, v := range vs {
			count[byte(v>>shift)]++
		}
		pos := 0
		for i, c := range count {
			count[i] = pos
			pos += c
		}
		for _, v := range vs {
			b := byte(v >> shift)
			tmp[count[b]] = v
			count[b]++
		}
		vs, tmp = tmp, vs
	}
	return vs
}

func v4Interval(r [2]uint32) Interval {
	var a, b [4]byte
	binary.BigEndian.PutUint32(a[:], r[0])
	binary.BigEndian.PutUint32(b[:], r[1])
	return Interval{netip.AddrFrom4(a), netip.AddrFrom4(b)}
}

// mergeRanges sorts rs by start and merges overlapping or adjacent ranges.
func mergeRanges(rs []numRange, max u128) []numRange {
	slices.SortFunc(rs, func(a, b numRange) int {
		if a.first == b.first {
			return 0
		}
		if a.first.less(b.first) {
			return -1
		}
		return 1
	})
	out := rs[:0]
	for _, r := range rs {
		if n := len(out); n > 0 {
			cur := &out[n-1]
			// Adjacent when r starts right after cur; cur reaching the top
			// of the address space swallows everything after it.
			if cur.last == max || !cur.last.inc().less(r.first) {
				if cur.last.less(r.last) {
					cur.last = r.last
				}
				continue
			}
		}
		out = append(out, r)
	}
	return out
}

// Prefixes decomposes the interval into the shortest list of CIDR prefixes
// covering exactly it.
func (iv Interval) Prefixes() []netip.Prefix {
	v4 := iv.First.Is4()
	width := 128
	if v4 {
		width = 32
	}
	first, last := addrNum(iv.First), addrNum(iv.Last)
	var out []netip.Prefix
	for !last.less(first) {
		// Largest block aligned at first: limited by first's trailing zeros.
		host := trailingZeros(first, width)
		for host > 0 {
			_, end := prefixBounds(netip.PrefixFrom(numAddr(first, v4), width-host))
			if !last.less(end) {
				break
			}
			host--
		}
		p := netip.PrefixFrom(numAddr(first, v4), width-host)
		out = append(out, p)
		_, end := prefixBounds(p)
		if end == maxNum(v4) {
			break
		}
		first = end.inc()
	}
	return out
}

func trailingZeros(n u128, width int) int {
	var tz int
	if n.lo != 0 {
		tz = bits.TrailingZeros64(n.lo)
	} else if n.hi != 0 {
		tz = 64 + bits.TrailingZeros64(n.hi)
	} else {
		tz = 128
	}
	return min(tz, width)
}

// prefix returns the interval as a single prefix when it is exactly one.
func (iv Interval) prefix() (netip.Prefix, bool) {
	ps := iv.Prefixes()
	if len(ps) != 1 {
		return netip.Prefix{}, false
	}
	return ps[0], true
}

// String renders the interval as nft prints a set element: "10.0.0.1",
// "10.0.0.0/8" or "10.0.1.0-10.0.2.255".
func (iv Interval) String() string {
	if p, ok := iv.prefix(); ok {
		if p.IsSingleIP() {
			return p.Addr().String()
		}
		return p.String()
	}
	return iv.First.String() + "-" + iv.Last.String()
}

// portRange is an inclusive port range.
type portRange struct{ first, last uint16 }

func (r portRange) String() string {
	if r.first == r.last {
		return fmt.Sprint(r.first)
	}
	return fmt.Sprintf("%d-%d", r.first, r.last)
}

// modelPort normalises a model port: To == 0 means a single port.
func modelPort(p translate.Port) portRange {
	lo, hi := p.From, p.To
	if hi == 0 {
		hi = lo
	}
	if hi < lo {
		lo, hi = hi, lo
	}
	return portRange{lo, hi}
}

// mergePorts returns the disjoint, coalesced ranges covered by ps.
func mergePorts(ps []translate.Port) []portRange {
	rs := make([]portRange, 0, len(ps))
	for _, p := range ps {
		rs = append(rs, modelPort(p))
	}
	slices.SortFunc(rs, func(a, b portRange) int { return cmp.Compare(a.first, b.first) })
	out := rs[:0]
	for _, r := range rs {
		if n := len(out); n > 0 {
			cur := &out[n-1]
			if cur.last == 0xffff || uint32(r.first) <= uint32(cur.last)+1 {
				cur.last = max(cur.last, r.last)
				continue
			}
		}
		out = append(out, r)
	}
	return out
}

func familyName(v4 bool) string {
	if v4 {
		return "IPv4"
	}
	return "IPv6"
}
