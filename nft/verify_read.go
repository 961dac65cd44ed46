package nft

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/nfintercept/nfintercept/translate"
)

// kernelState is a consistent snapshot of our tables, as Verify reads it.
type kernelState struct{ tables []*kernelTable }

type kernelTable struct {
	name    string
	flags   uint32
	chains  []*kernelChainState // kernel order
	sets    []*kernelSet        // named sets and maps, kernel order
	anon    map[string]string   // anonymous set name → content key
	objects []string            // stateful objects ("counter NAME"): we never create any
}

type kernelChainState struct {
	name   string
	base   *translate.BaseChain
	policy *nftables.ChainPolicy
	rules  []kernelRuleState
}

type kernelRuleState struct {
	handle uint64
	exprs  []canonExpr
	key    string
}

type kernelSet struct {
	name     string
	keyType  string
	interval bool
	isMap    bool
	content  setContent
	elems    []dumpedElem // as dumped, for an incremental update
}

func (s *kernelState) table(name string) *kernelTable {
	for _, t := range s.tables {
		if t.name == name {
			return t
		}
	}
	return nil
}

func (t *kernelTable) chain(name string) *kernelChainState {
	for _, c := range t.chains {
		if c.name == name {
			return c
		}
	}
	return nil
}

func (t *kernelTable) set(name string) *kernelSet {
	for _, s := range t.sets {
		if s.name == name {
			return s
		}
	}
	return nil
}

func (s *kernelSet) declText() string {
	kind := "set"
	if s.isMap {
		kind = "map"
	}
	flags := ""
	if s.interval {
		flags = " flags interval;"
	}
	return fmt.Sprintf("%s %s { type %s;%s }", kind, s.name, s.keyType, flags)
}

// snapshotRetries bounds the reads restarted because the ruleset changed
// while it was read.
const snapshotRetries = 20

// Read reads our tables through d: tables, chains, sets, elements and
// rules, all parsed here (the library's rule decoding loses data). The
// ruleset generation is read before and after; a change in between means
// another process committed meanwhile, and the read restarts.
func Read(d Dumper) (*Snapshot, error) {
	for attempt := range snapshotRetries {
		if attempt > 0 {
			// Let a burst of commits pass; jitter keeps two readers from
			// retrying in step with two writers.
			time.Sleep(time.Duration(rand.Int64N(int64(attempt) * int64(time.Millisecond))))
		}
		before, err := d.Generation()
		if err != nil {
			return nil, err
		}
		st, rerr := readKernelOnce(d)
		after, err := d.Generation()
		if err != nil {
			return nil, err
		}
		if before != after {
			continue // an object read a moment ago may be gone: read again
		}
		if rerr != nil {
			return nil, rerr
		}
		return &Snapshot{Generation: after, state: st}, nil
	}
	return nil, fmt.Errorf("the ruleset changed during each of %d reads", snapshotRetries)
}

// ReadForUpdate reads our tables for a batch that will be sent against
// the snapshot's generation: the generation is read once, before. If
// anything is committed after it, the snapshot may mix two rulesets, but
// the kernel then refuses the batch computed from it (CommitAt), so the
// second look Read takes is not needed. A read that fails (an object gone
// midway) is retried the way Read does.
func ReadForUpdate(d Dumper) (*Snapshot, error) {
	gen, err := d.Generation()
	if err != nil {
		return nil, err
	}
	if st, err := readKernelOnce(d); err == nil {
		return &Snapshot{Generation: gen, state: st}, nil
	}
	return Read(d)
}

// OurTables lists the names of the inet tables with our prefix.
func OurTables(d Dumper) ([]string, error) {
	ts, err := ourKernelTables(d)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, t := range ts {
		names = append(names, t.name)
	}
	return names, nil
}

func readKernelOnce(d Dumper) (*kernelState, error) {
	ts, err := ourKernelTables(d)
	if err != nil {
		return nil, err
	}
	st := &kernelState{}
	for _, kt := range ts {
		if err := readChains(d, kt); err != nil {
			return nil, fmt.Errorf("table %s: %w", kt.name, err)
		}
		if err := readSets(d, kt); err != nil {
			return nil, fmt.Errorf("table %s: %w", kt.name, err)
		}
		if err := readRules(d, kt); err != nil {
			return nil, fmt.Errorf("table %s: %w", kt.name, err)
		}
		if err := readObjects(d, kt); err != nil {
			return nil, fmt.Errorf("table %s: %w", kt.name, err)
		}
		st.tables = append(st.tables, kt)
	}
	return st, nil
}

// nftObjectTypes names NFT_OBJECT_* types.
var nftObjectTypes = map[uint32]string{1: "counter", 2: "quota", 3: "ct helper", 4: "limit", 5: "connlimit",
	6: "tunnel", 7: "ct timeout", 8: "secmark", 9: "ct expectation", 10: "synproxy"}

// readObjects dumps the table's stateful objects (NFT_MSG_GETOBJ).
func readObjects(d Dumper, kt *kernelTable) error {
	msgs, err := d.Dump(unix.NFT_MSG_GETOBJ, netlink.Attribute{Type: unix.NFTA_OBJ_TABLE, Data: []byte(kt.name + "\x00")})
	if err != nil {
		return fmt.Errorf("list objects: %w", err)
	}
	for _, m := range msgs {
		as, err := netlink.UnmarshalAttributes(m.Data[4:])
		if err != nil {
			return fmt.Errorf("object message: %w", err)
		}
		var table, name, typ string
		for _, a := range as {
			switch a.Type & nlaTypeMask {
			case unix.NFTA_OBJ_TABLE:
				table = strings.TrimRight(string(a.Data), "\x00")
			case unix.NFTA_OBJ_NAME:
				name = strings.TrimRight(string(a.Data), "\x00")
			case unix.NFTA_OBJ_TYPE:
				if len(a.Data) == 4 {
					n := binary.BigEndian.Uint32(a.Data)
					if typ = nftObjectTypes[n]; typ == "" {
						typ = fmt.Sprintf("object type %d", n)
					}
				}
			}
		}
		if table == kt.name {
			kt.objects = append(kt.objects, typ+" "+name)
		}
	}
	return nil
}

// readChains dumps the table's chains (NFT_MSG_GETCHAIN) with their hook,
// priority, type and policy.
func readChains(d Dumper, kt *kernelTable) error {
	msgs, err := d.Dump(unix.NFT_MSG_GETCHAIN, netlink.Attribute{Type: unix.NFTA_CHAIN_TABLE, Data: []byte(kt.name + "\x00")})
	if err != nil {
		return fmt.Errorf("list chains: %w", err)
	}
	for _, m := range msgs {
		as, err := netlink.UnmarshalAttributes(m.Data[4:])
		if err != nil {
			return fmt.Errorf("chain message: %w", err)
		}
		var table, typ string
		kc := &kernelChainState{}
		var hook *translate.BaseChain
		for _, a := range as {
			switch a.Type & nlaTypeMask {
			case unix.NFTA_CHAIN_TABLE:
				table = strings.TrimRight(string(a.Data), "\x00")
			case unix.NFTA_CHAIN_NAME:
				kc.name = strings.TrimRight(string(a.Data), "\x00")
			case unix.NFTA_CHAIN_TYPE:
				typ = strings.TrimRight(string(a.Data), "\x00")
			case unix.NFTA_CHAIN_POLICY:
				if len(a.Data) == 4 {
					p := nftables.ChainPolicy(binary.BigEndian.Uint32(a.Data))
					kc.policy = &p
				}
			case unix.NFTA_CHAIN_HOOK:
				hs, err := netlink.UnmarshalAttributes(a.Data)
				if err != nil {
					return fmt.Errorf("chain hook: %w", err)
				}
				hook = &translate.BaseChain{}
				for _, h := range hs {
					if len(h.Data) != 4 {
						continue
					}
					switch h.Type & nlaTypeMask {
					case unix.NFTA_HOOK_HOOKNUM:
						hook.Hook = hookName(nftables.ChainHook(binary.BigEndian.Uint32(h.Data)))
					case unix.NFTA_HOOK_PRIORITY:
						hook.Priority = int32(binary.BigEndian.Uint32(h.Data))
					}
				}
			}
		}
		if table != kt.name {
			continue
		}
		if hook != nil {
			hook.Type = translate.ChainType(typ)
			kc.base = hook
		}
		kt.chains = append(kt.chains, kc)
	}
	return nil
}

// ourKernelTables dumps the inet tables (NFT_MSG_GETTABLE) and returns ours with
// their flags (which v0.3.0 decodes in the wrong byte order).
func ourKernelTables(d Dumper) ([]*kernelTable, error) {
	msgs, err := d.Dump(unix.NFT_MSG_GETTABLE)
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	var out []*kernelTable
	for _, m := range msgs {
		as, err := netlink.UnmarshalAttributes(m.Data[4:])
		if err != nil {
			return nil, fmt.Errorf("table message: %w", err)
		}
		kt := &kernelTable{anon: map[string]string{}}
		for _, a := range as {
			switch a.Type & nlaTypeMask {
			case unix.NFTA_TABLE_NAME:
				kt.name = strings.TrimRight(string(a.Data), "\x00")
			case unix.NFTA_TABLE_FLAGS:
				if len(a.Data) == 4 {
					kt.flags = binary.BigEndian.Uint32(a.Data)
				}
			}
		}
		if strings.HasPrefix(kt.name, translate.TablePrefix) {
			out = append(out, kt)
		}
	}
	return out, nil
}

// --- set contents ---

// setContent is a set's elements as sorted, disjoint, coalesced ranges, the
// form both sides are compared in. Ports use the low 16 bits.
type setContent struct {
	keyType string
	typ     translate.SetType // 0 when the key type is none of ours
	ranges  []numRange
}

func contentOfRef(s *setRef) setContent {
	c := setContent{keyType: s.keyType().Name, typ: s.typ}
	switch s.typ { // the kernel only knows the key type
	case translate.SetIPv4Addrs:
		c.typ = translate.SetIPv4Prefixes
	case translate.SetIPv6Addrs:
		c.typ = translate.SetIPv6Prefixes
	}
	for _, iv := range s.intervals {
		c.ranges = append(c.ranges, numRange{addrNum(iv.First), addrNum(iv.Last)})
	}
	for _, r := range s.ports {
		c.ranges = append(c.ranges, numRange{u128{0, uint64(r.first)}, u128{0, uint64(r.last)}})
	}
	return c
}

// endsFirst orders two elements of equal key by kind: an end element at
// k closes the range before the one starting at k, so it sorts first.
func endsFirst(aEnd, bEnd bool) int {
	switch {
	case aEnd == bEnd:
		return 0
	case aEnd:
		return -1
	}
	return 1
}

// contentOfElements rebuilds the ranges of a kernel set, as setState does
// for Tables but without its costly sort of library elements: in an
// interval set a start element opens a range and the next end element
// (exclusive) closes it, an unclosed start runs to the top of the key
// space; elements of other sets are single keys.
func contentOfElements(s *nftables.Set, elems []dumpedElem) (setContent, error) {
	c := setContent{keyType: s.KeyType.Name}
	var width int
	switch s.KeyType.Name {
	case nftables.TypeIPAddr.Name:
		c.typ, width = translate.SetIPv4Prefixes, 4
	case nftables.TypeIP6Addr.Name:
		c.typ, width = translate.SetIPv6Prefixes, 16
	case nftables.TypeInetService.Name:
		c.typ, width = translate.SetPorts, 2
	default:
		// Not a type we create: compare the element count at least.
		c.keyType += fmt.Sprintf(" (%d elements)", len(elems))
		return c, nil
	}
	type elem struct {
		n   u128
		end bool
	}
	es := make([]elem, 0, len(elems))
	for _, e := range elems {
		if len(e.key) != width {
			return c, fmt.Errorf("element key of %d bytes, want %d", len(e.key), width)
		}
		var n u128
		switch width {
		case 16:
			n = u128{binary.BigEndian.Uint64(e.key[:8]), binary.BigEndian.Uint64(e.key[8:])}
		case 4:
			n = u128{0, uint64(binary.BigEndian.Uint32(e.key))}
		default:
			n = u128{0, uint64(binary.BigEndian.Uint16(e.key))}
		}
		es = append(es, elem{n, e.end})
	}
	slices.SortFunc(es, func(a, b elem) int {
		switch {
		case a.n.less(b.n):
			return -1
		case b.n.less(a.n):
			return 1
		}
		return endsFirst(a.end, b.end)
	})
	top := maxNum(width == 4)
	if width == 2 {
		top = u128{0, 0xffff}
	}
	var rs []numRange
	var open *u128
	for i := range es {
		e := es[i]
		switch {
		case !s.Interval:
			rs = append(rs, numRange{e.n, e.n})
		case e.end && open != nil:
			rs = append(rs, numRange{*open, e.n.dec()})
			open = nil
		case e.end:
			// an end without a start: nft's leading "0 end" element
		default:
			if open != nil { // start after start: the first was a single key
				rs = append(rs, numRange{*open, *open})
			}
			open = &es[i].n
		}
	}
	if open != nil {
		rs = append(rs, numRange{*open, top})
	}
	c.ranges = mergeRanges(rs, top)
	return c, nil
}

// key identifies the content; it stands for an anonymous set in a lookup.
func (c setContent) key() string {
	return "{ type " + c.keyType + "; " + strings.Join(c.texts(c.ranges), ", ") + " }"
}

// texts renders ranges as nft writes elements; address ranges that are not
// one prefix are split into prefixes.
func (c setContent) texts(rs []numRange) []string {
	var out []string
	for _, r := range rs {
		switch c.typ {
		case translate.SetPorts:
			out = append(out, portRange{uint16(r.first.lo), uint16(r.last.lo)}.String())
		case translate.SetIPv4Prefixes, translate.SetIPv6Prefixes:
			v4 := c.typ == translate.SetIPv4Prefixes
			for _, p := range (Interval{numAddr(r.first, v4), numAddr(r.last, v4)}).Prefixes() {
				out = append(out, p.String())
			}
		default:
			out = append(out, fmt.Sprintf("%x-%x", r.first, r.last))
		}
	}
	return out
}

// minus lists the elements of c that o lacks.
func (c setContent) minus(o setContent) []string {
	return c.texts(subtractRanges(c.ranges, o.ranges))
}

// subtractRanges returns a minus b; both are sorted and disjoint.
func subtractRanges(a, b []numRange) []numRange {
	var out []numRange
	j := 0
	for _, r := range a {
		for j < len(b) && b[j].last.less(r.first) {
			j++
		}
		cur, alive := r, true
		for k := j; alive && k < len(b) && !cur.last.less(b[k].first); k++ {
			if cur.first.less(b[k].first) {
				out = append(out, numRange{cur.first, b[k].first.dec()})
			}
			if b[k].last.less(cur.last) {
				cur.first = b[k].last.inc()
			} else {
				alive = false
			}
		}
		if alive {
			out = append(out, cur)
		}
	}
	return out
}

func (a u128) dec() u128 {
	lo, borrow := bits.Sub64(a.lo, 1, 0)
	return u128{a.hi - borrow, lo}
}

// --- raw dumps ---

// readSets dumps the table's sets (NFT_MSG_GETSET) and each one's elements
// (NFT_MSG_GETSETELEM). Anonymous sets are kept by name for the lookups
// that use them.
func readSets(d Dumper, kt *kernelTable) error {
	msgs, err := d.Dump(unix.NFT_MSG_GETSET, netlink.Attribute{Type: unix.NFTA_SET_TABLE, Data: []byte(kt.name + "\x00")})
	if err != nil {
		return fmt.Errorf("list sets: %w", err)
	}
	for _, m := range msgs {
		s, err := parseSetMsg(m)
		if err != nil {
			return err
		}
		if s.Table.Name != kt.name {
			continue
		}
		elems, err := readElements(d, kt.name, s.Name)
		if err != nil {
			return fmt.Errorf("set %s: list elements: %w", s.Name, err)
		}
		content, err := contentOfElements(s, elems)
		if err != nil {
			return fmt.Errorf("set %s: %w", s.Name, err)
		}
		if s.Anonymous {
			kt.anon[s.Name] = content.key()
			continue
		}
		kt.sets = append(kt.sets, &kernelSet{name: s.Name, keyType: s.KeyType.Name, interval: s.Interval, isMap: s.IsMap, content: content, elems: elems})
	}
	return nil
}

// verifyKeyTypes are the set key types Verify knows by their nft magic number.
var verifyKeyTypes = []nftables.SetDatatype{nftables.TypeIPAddr, nftables.TypeIP6Addr, nftables.TypeInetService}

func parseSetMsg(m netlink.Message) (*nftables.Set, error) {
	as, err := netlink.UnmarshalAttributes(m.Data[4:])
	if err != nil {
		return nil, fmt.Errorf("set message: %w", err)
	}
	s := &nftables.Set{Table: &nftables.Table{Family: nftables.TableFamilyINet}}
	for _, a := range as {
		switch a.Type & nlaTypeMask {
		case unix.NFTA_SET_TABLE:
			s.Table.Name = strings.TrimRight(string(a.Data), "\x00")
		case unix.NFTA_SET_NAME:
			s.Name = strings.TrimRight(string(a.Data), "\x00")
		case unix.NFTA_SET_FLAGS:
			if len(a.Data) == 4 {
				f := binary.BigEndian.Uint32(a.Data)
				s.Anonymous = f&unix.NFT_SET_ANONYMOUS != 0
				s.Constant = f&unix.NFT_SET_CONSTANT != 0
				s.Interval = f&unix.NFT_SET_INTERVAL != 0
				s.IsMap = f&(unix.NFT_SET_MAP|unix.NFT_SET_OBJECT) != 0
			}
		case unix.NFTA_SET_KEY_TYPE:
			if len(a.Data) == 4 {
				magic := binary.BigEndian.Uint32(a.Data)
				s.KeyType = nftables.SetDatatype{Name: fmt.Sprintf("type-%d", magic)}
				for _, kt := range verifyKeyTypes {
					if kt.GetNFTMagic() == magic {
						s.KeyType = kt
					}
				}
			}
		}
	}
	return s, nil
}

// dumpedElem is a set element as dumped: its key and the interval-end flag.
type dumpedElem struct {
	key []byte
	end bool
}

// readElements dumps a set's elements.
func readElements(d Dumper, table, set string) ([]dumpedElem, error) {
	msgs, err := d.Dump(unix.NFT_MSG_GETSETELEM,
		netlink.Attribute{Type: unix.NFTA_SET_ELEM_LIST_TABLE, Data: []byte(table + "\x00")},
		netlink.Attribute{Type: unix.NFTA_SET_ELEM_LIST_SET, Data: []byte(set + "\x00")})
	if err != nil {
		return nil, err
	}
	var out []dumpedElem
	for _, m := range msgs {
		as, err := netlink.UnmarshalAttributes(m.Data[4:])
		if err != nil {
			return nil, fmt.Errorf("element message: %w", err)
		}
		for _, a := range as {
			if a.Type&nlaTypeMask != unix.NFTA_SET_ELEM_LIST_ELEMENTS {
				continue
			}
			list, err := netlink.UnmarshalAttributes(a.Data)
			if err != nil {
				return nil, fmt.Errorf("element list: %w", err)
			}
			for _, le := range list {
				e, err := parseElement(le.Data)
				if err != nil {
					return nil, err
				}
				out = append(out, e)
			}
		}
	}
	return out, nil
}

func parseElement(b []byte) (dumpedElem, error) {
	var e dumpedElem
	as, err := netlink.UnmarshalAttributes(b)
	if err != nil {
		return e, fmt.Errorf("element: %w", err)
	}
	for _, a := range as {
		switch a.Type & nlaTypeMask {
		case unix.NFTA_SET_ELEM_KEY:
			var key exprAttr
			if err := parseData(a.Data, &key); err != nil {
				return e, fmt.Errorf("element key: %w", err)
			}
			e.key = key.value
		case unix.NFTA_SET_ELEM_FLAGS:
			if len(a.Data) == 4 {
				e.end = binary.BigEndian.Uint32(a.Data)&unix.NFT_SET_ELEM_INTERVAL_END != 0
			}
		}
	}
	return e, nil
}

// readRules dumps the table's rules (NFT_MSG_GETRULE filtered by table)
// and canonicalises their expressions.
func readRules(d Dumper, kt *kernelTable) error {
	msgs, err := d.Dump(unix.NFT_MSG_GETRULE, netlink.Attribute{Type: unix.NFTA_RULE_TABLE, Data: []byte(kt.name + "\x00")})
	if err != nil {
		return fmt.Errorf("dump rules: %w", err)
	}
	resolve := func(name string) string {
		if k, ok := kt.anon[name]; ok {
			return k
		}
		return "@" + name
	}
	for _, m := range msgs {
		as, err := netlink.UnmarshalAttributes(m.Data[4:])
		if err != nil {
			return fmt.Errorf("rule message: %w", err)
		}
		var table, chain string
		var r kernelRuleState
		for _, a := range as {
			switch a.Type & nlaTypeMask {
			case unix.NFTA_RULE_TABLE:
				table = strings.TrimRight(string(a.Data), "\x00")
			case unix.NFTA_RULE_CHAIN:
				chain = strings.TrimRight(string(a.Data), "\x00")
			case unix.NFTA_RULE_HANDLE:
				if len(a.Data) == 8 {
					r.handle = binary.BigEndian.Uint64(a.Data)
				}
			case unix.NFTA_RULE_EXPRESSIONS:
				if r.exprs, err = parseExprs(a.Data, resolve); err != nil {
					return fmt.Errorf("chain %s rule handle %d: %w", chain, r.handle, err)
				}
			}
		}
		if table != kt.name {
			continue
		}
		kc := kt.chain(chain)
		if kc == nil {
			return fmt.Errorf("rule in unknown chain %q", chain)
		}
		r.key = exprsKey(r.exprs)
		kc.rules = append(kc.rules, r)
	}
	return nil
}
