package nft

import (
	"bytes"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"

	"github.com/nfintercept/nfintercept/translate"
)

// TableState is an nfintercept table as read back from the kernel.
type TableState struct {
	Name   string
	Chains []ChainState // kernel order
	Sets   []SetState   // named sets, kernel order
}

// ChainState describes one chain. Rules are only counted: the library's
// rule decoding is lossy (tproxy, ct set), so rules are never rebuilt from
// the kernel.
type ChainState struct {
	Name  string
	Base  *translate.BaseChain // nil for regular chains
	Rules int
}

// SetState is a named set with its elements.
type SetState struct {
	Name string
	Type translate.SetType // 0 when the key type is none of ours
	// Prefixes holds address elements, merged and split into CIDRs.
	Prefixes []netip.Prefix
	// Intervals holds the same addresses as disjoint ranges.
	Intervals []Interval
	// Ports holds port elements (From..To).
	Ports []translate.Port
}

// Tables reads back (over netlink) the nfintercept tables present, in
// translate.TableKinds order, then any other table with our prefix by name.
func Tables(nsPath string) ([]TableState, error) {
	var out []TableState
	err := withConn(nsPath, 0, func(c *nftables.Conn) error {
		names, err := ourTables(c)
		if err != nil {
			return err
		}
		slices.SortFunc(names, func(a, b string) int {
			if ka, kb := kindIndex(a), kindIndex(b); ka != kb {
				return ka - kb
			}
			return strings.Compare(a, b)
		})
		chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
		if err != nil {
			return fmt.Errorf("list chains: %w", err)
		}
		for _, name := range names {
			ts, err := readTable(c, name, chains)
			if err != nil {
				return fmt.Errorf("table %s: %w", name, err)
			}
			out = append(out, ts)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read nfintercept tables in %s: %w", nsName(nsPath), err)
	}
	return out, nil
}

func kindIndex(table string) int {
	for i, k := range translate.TableKinds {
		if table == translate.TablePrefix+string(k) {
			return i
		}
	}
	return len(translate.TableKinds)
}

func readTable(c *nftables.Conn, name string, chains []*nftables.Chain) (TableState, error) {
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: name}
	ts := TableState{Name: name}
	for _, ch := range chains {
		if ch.Table.Name != name {
			continue
		}
		rules, err := c.GetRules(t, ch)
		if err != nil {
			return ts, fmt.Errorf("chain %s: list rules: %w", ch.Name, err)
		}
		cs := ChainState{Name: ch.Name, Rules: len(rules)}
		if ch.Hooknum != nil {
			cs.Base = &translate.BaseChain{Type: translate.ChainType(ch.Type), Hook: hookName(*ch.Hooknum)}
			if ch.Priority != nil {
				cs.Base.Priority = int32(*ch.Priority)
			}
		}
		ts.Chains = append(ts.Chains, cs)
	}
	sets, err := c.GetSets(t)
	if err != nil {
		return ts, fmt.Errorf("list sets: %w", err)
	}
	for _, s := range sets {
		if s.Anonymous {
			continue
		}
		elems, err := c.GetSetElements(s)
		if err != nil {
			return ts, fmt.Errorf("set %s: list elements: %w", s.Name, err)
		}
		ss, err := setState(s, elems)
		if err != nil {
			return ts, fmt.Errorf("set %s: %w", s.Name, err)
		}
		ts.Sets = append(ts.Sets, ss)
	}
	return ts, nil
}

// setState rebuilds the ranges from set elements: a start element opens a
// range, the next end element (exclusive) closes it; an unclosed start runs
// to the top of the key space. Plain (non-interval) elements are single keys.
func setState(s *nftables.Set, elems []nftables.SetElement) (SetState, error) {
	ss := SetState{Name: s.Name}
	var width int
	switch s.KeyType.Name {
	case nftables.TypeIPAddr.Name:
		ss.Type, width = translate.SetIPv4Prefixes, 4
	case nftables.TypeIP6Addr.Name:
		ss.Type, width = translate.SetIPv6Prefixes, 16
	case nftables.TypeInetService.Name:
		ss.Type, width = translate.SetPorts, 2
	default:
		return ss, nil
	}
	for _, e := range elems {
		if len(e.Key) != width {
			return ss, fmt.Errorf("element key of %d bytes, want %d", len(e.Key), width)
		}
	}
	// Sort by key, end elements first on equal keys (an end at k closes
	// the range before the one starting at k).
	slices.SortStableFunc(elems, func(a, b nftables.SetElement) int {
		if c := bytes.Compare(a.Key, b.Key); c != 0 {
			return c
		}
		return endsFirst(a.IntervalEnd, b.IntervalEnd)
	})
	top := bytes.Repeat([]byte{0xff}, width)
	var ranges [][2][]byte // inclusive
	var open []byte
	for _, e := range elems {
		switch {
		case !s.Interval:
			ranges = append(ranges, [2][]byte{e.Key, e.Key})
		case e.IntervalEnd && open != nil:
			ranges = append(ranges, [2][]byte{open, decrement(e.Key)})
			open = nil
		case e.IntervalEnd:
			// an end with no start: nft's leading "0 end" element
		default:
			if open != nil { // start after start: the first one was a single key
				ranges = append(ranges, [2][]byte{open, open})
			}
			open = e.Key
		}
	}
	if open != nil {
		ranges = append(ranges, [2][]byte{open, top})
	}

	if ss.Type == translate.SetPorts {
		be := binaryutil.BigEndian
		var prs []translate.Port
		for _, r := range ranges {
			from, to := be.Uint16(r[0]), be.Uint16(r[1])
			prs = append(prs, translate.Port{Raw: portRange{from, to}.String(), From: from, To: to})
		}
		for _, r := range mergePorts(prs) {
			ss.Ports = append(ss.Ports, translate.Port{Raw: r.String(), From: r.first, To: r.last})
		}
		return ss, nil
	}
	v4 := width == 4
	nrs := make([]numRange, 0, len(ranges))
	for _, r := range ranges {
		a, _ := netip.AddrFromSlice(r[0])
		b, _ := netip.AddrFromSlice(r[1])
		nrs = append(nrs, numRange{addrNum(a), addrNum(b)})
	}
	for _, r := range mergeRanges(nrs, maxNum(v4)) {
		iv := Interval{numAddr(r.first, v4), numAddr(r.last, v4)}
		ss.Intervals = append(ss.Intervals, iv)
		ss.Prefixes = append(ss.Prefixes, iv.Prefixes()...)
	}
	return ss, nil
}

// decrement returns key-1 (big-endian); an end key is exclusive.
func decrement(key []byte) []byte {
	out := slices.Clone(key)
	for i := len(out) - 1; i >= 0; i-- {
		out[i]--
		if out[i] != 0xff {
			break
		}
	}
	return out
}
