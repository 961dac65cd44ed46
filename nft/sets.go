package nft

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"

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
	if s.typ == translate.SetIPv6Prefixes {
		return translate.IPv6
	}
	return translate.IPv4
}

func (s *setRef) keyType() nftables.SetDatatype {
	switch s.typ {
	case translate.SetIPv4Prefixes:
		return nftables.TypeIPAddr
	case translate.SetIPv6Prefixes:
		return nftables.TypeIP6Addr
	}
	return nftables.TypeInetService
}

// interval reports whether the set needs the interval flag. Named sets
// always have it (declared "flags interval"); anonymous ones only when an
// element is a range, as nft does.
func (s *setRef) interval() bool {
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

// elements encodes the set's kernel elements. An interval [a, b] is the
// start element a and the end element b+1 flagged IntervalEnd; a range that
// reaches the top of the key space has no end element.
func (s *setRef) elements() []nftables.SetElement {
	interval := s.interval()
	var out []nftables.SetElement
	add := func(first, endKey []byte, top bool) {
		out = append(out, nftables.SetElement{Key: first})
		if interval && !top {
			out = append(out, nftables.SetElement{Key: endKey, IntervalEnd: true})
		}
	}
	if s.typ == translate.SetPorts {
		be := binaryutil.BigEndian
		for _, r := range s.ports {
			add(be.PutUint16(r.first), be.PutUint16(r.last+1), r.last == 0xffff)
		}
		return out
	}
	v4 := s.typ == translate.SetIPv4Prefixes
	width := 16
	if v4 {
		width = 4
	}
	top := maxNum(v4)
	// One backing array for all keys: sets can have 100,000s of elements.
	keys := make([]byte, 0, 2*width*len(s.intervals))
	key := func(n u128) []byte {
		at := len(keys)
		if v4 {
			keys = binary.BigEndian.AppendUint32(keys, uint32(n.lo))
		} else {
			keys = binary.BigEndian.AppendUint64(keys, n.hi)
			keys = binary.BigEndian.AppendUint64(keys, n.lo)
		}
		return keys[at:len(keys):len(keys)]
	}
	out = make([]nftables.SetElement, 0, 2*len(s.intervals))
	for _, iv := range s.intervals {
		last := addrNum(iv.Last)
		first := key(addrNum(iv.First))
		var end []byte
		if last != top {
			end = key(last.inc())
		}
		add(first, end, last == top)
	}
	return out
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
	d := fmt.Sprintf("set %s { type %s; flags interval;", s.name, s.keyType().Name)
	if s.len() > 0 {
		d += " elements = { " + s.elementsText() + " };"
	}
	return d + " }"
}
