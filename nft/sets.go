package nft

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"

	"github.com/google/nftables"

	"github.com/nfintercept/nfintercept/translate"
)

// setRef is a model set as the kernel holds it: elements merged into
// disjoint intervals. Named sets are declared in their table; anonymous ones
// are created once per kernel rule that uses them (the kernel binds an
// anonymous set to a single rule).
type setRef struct {
	name      string // "" for anonymous
	typ       translate.SetType
	intervals []Interval  // SetIPv4Prefixes / SetIPv6Prefixes
	ports     []portRange // SetPorts
}

// newSetRef merges the elements of a model set.
func newSetRef(s *translate.Set) (*setRef, error) {
	r := &setRef{typ: s.Type}
	if !s.Anonymous {
		r.name = s.Name
	}
	switch s.Type {
	case translate.SetIPv4Prefixes, translate.SetIPv6Prefixes:
		ps := make([]netip.Prefix, 0, len(s.Prefixes))
		for _, p := range s.Prefixes {
			ps = append(ps, p.Prefix)
		}
		ivs, err := MergePrefixes(ps, s.Type == translate.SetIPv4Prefixes)
		if err != nil {
			return nil, fmt.Errorf("set %s: %w", r.label(), err)
		}
		r.intervals = ivs
	case translate.SetPorts:
		r.ports = mergePorts(s.Ports)
	case translate.SetIPv4Addrs, translate.SetIPv6Addrs:
		ivs, err := hostElements(s)
		if err != nil {
			return nil, fmt.Errorf("set %s: %w", r.label(), err)
		}
		r.intervals = ivs
	default:
		return nil, fmt.Errorf("set %s: unknown element type %d", r.label(), s.Type)
	}
	return r, nil
}

func (s *setRef) label() string {
	if s.name == "" {
		return "(anonymous)"
	}
	return fmt.Sprintf("%q", s.name)
}

func (s *setRef) len() int {
	if s.typ == translate.SetPorts {
		return len(s.ports)
	}
	return len(s.intervals)
}

// family of an address set.
func (s *setRef) family() translate.Family {
	if s.typ == translate.SetIPv6Prefixes || s.typ == translate.SetIPv6Addrs {
		return translate.IPv6
	}
	return translate.IPv4
}

func (s *setRef) keyType() nftables.SetDatatype {
	switch s.typ {
	case translate.SetIPv4Prefixes, translate.SetIPv4Addrs:
		return nftables.TypeIPAddr
	case translate.SetIPv6Prefixes, translate.SetIPv6Addrs:
		return nftables.TypeIP6Addr
	}
	return nftables.TypeInetService
}

// interval reports whether the set needs the interval flag. Named sets
// always have it (declared "flags interval"); anonymous ones only when an
// element is a range, as nft does.
func (s *setRef) interval() bool {
	if s.typ == translate.SetIPv4Addrs || s.typ == translate.SetIPv6Addrs {
		return false // single addresses, added and removed one by one
	}
	if s.name != "" {
		return true
	}
	for _, iv := range s.intervals {
		if iv.First != iv.Last {
			return true
		}
	}
	for _, r := range s.ports {
		if r.first != r.last {
			return true
		}
	}
	return false
}

// elements lists the set's kernel elements (see walk).
func (s *setRef) elements() []nftables.SetElement {
	out := make([]nftables.SetElement, 0, 2*s.len())
	// One backing array for all keys: sets can have 100,000s of elements.
	keys := make([]byte, 0, 2*s.keyLen()*s.len())
	s.walk(func(key []byte, end bool) {
		at := len(keys)
		keys = append(keys, key...)
		out = append(out, nftables.SetElement{Key: keys[at:len(keys):len(keys)], IntervalEnd: end})
	})
	return out
}

// keyLen is the byte length of the set's keys.
func (s *setRef) keyLen() int {
	switch s.typ {
	case translate.SetIPv4Prefixes, translate.SetIPv4Addrs:
		return 4
	case translate.SetIPv6Prefixes, translate.SetIPv6Addrs:
		return 16
	}
	return 2
}

// walk yields the set's kernel elements in order, keys big-endian (key is
// only valid during the call). An interval [a, b] is the start element a
// and, in interval sets, the end element b+1 flagged end; a range that
// reaches the top of the key space has no end element.
func (s *setRef) walk(yield func(key []byte, end bool)) {
	interval := s.interval()
	var kb [16]byte
	if s.typ == translate.SetPorts {
		be := binary.BigEndian
		for _, r := range s.ports {
			yield(be.AppendUint16(kb[:0], r.first), false)
			if interval && r.last != 0xffff {
				yield(be.AppendUint16(kb[:0], r.last+1), true)
			}
		}
		return
	}
	v4 := s.keyLen() == 4
	top := maxNum(v4)
	key := func(n u128) []byte {
		if v4 {
			return binary.BigEndian.AppendUint32(kb[:0], uint32(n.lo))
		}
		return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(kb[:0], n.hi), n.lo)
	}
	for _, iv := range s.intervals {
		yield(key(addrNum(iv.First)), false)
		if last := addrNum(iv.Last); interval && last != top {
			yield(key(last.inc()), true)
		}
	}
}

// elementsText lists the elements the way nft prints them.
func (s *setRef) elementsText() string {
	var parts []string
	for _, iv := range s.intervals {
		parts = append(parts, iv.String())
	}
	for _, r := range s.ports {
		parts = append(parts, r.String())
	}
	return strings.Join(parts, ", ")
}

// String is how a rule refers to the set: "@name" or an inline "{ ... }".
func (s *setRef) String() string {
	if s.name != "" {
		return "@" + s.name
	}
	return "{ " + s.elementsText() + " }"
}

// declText is the set's declaration inside a table block.
func (s *setRef) declText() string {
	d := fmt.Sprintf("set %s { type %s;", s.name, s.keyType().Name)
	if s.interval() {
		d += " flags interval;"
	}
	if s.len() > 0 {
		d += " elements = { " + s.elementsText() + " };"
	}
	return d + " }"
}
