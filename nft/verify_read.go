package nft

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"strings"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/nfintercept/nfintercept/translate"
)

// kernelState is a consistent snapshot of our tables, as Verify reads it.
type kernelState struct{ tables []*kernelTable }

type kernelTable struct {
	name   string
	flags  uint32
	chains []*kernelChainState // kernel order
	sets   []*kernelSet        // named sets and maps, kernel order
	anon   map[string]string   // anonymous set name → content key
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

// readKernelState reads our tables over netlink: tables, chains, sets and
// elements through the library (those decode without loss), rules as raw
// attributes. The ruleset generation is read before and after; a change in
// between means another process committed meanwhile, and the read restarts.
func readKernelState(nsPath string) (*kernelState, error) {
	fd := 0
	if nsPath != "" {
		h, err := netns.GetFromPath(nsPath)
		if err != nil {
			return nil, fmt.Errorf("open netns: %w", err)
		}
		defer h.Close()
		fd = int(h)
	}
	raw, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: fd})
	if err != nil {
		return nil, fmt.Errorf("open netlink: %w", err)
	}
	defer raw.Close()
	opts := []nftables.ConnOption{}
	if fd != 0 {
		opts = append(opts, nftables.WithNetNSFd(fd))
	}
	for range snapshotRetries {
		before, err := rulesetGeneration(raw)
		if err != nil {
			return nil, err
		}
		c, err := nftables.New(opts...)
		if err != nil {
			return nil, fmt.Errorf("open netlink: %w", err)
		}
		st, err := readKernelOnce(c, raw)
		if err != nil {
			return nil, err
		}
		after, err := rulesetGeneration(raw)
		if err != nil {
			return nil, err
		}
		if before == after {
			return st, nil
		}
	}
	return nil, fmt.Errorf("the ruleset changed during each of %d reads", snapshotRetries)
}

func readKernelOnce(c *nftables.Conn, raw *netlink.Conn) (*kernelState, error) {
	ts, err := ourTableFlags(raw)
	if err != nil {
		return nil, err
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, fmt.Errorf("list chains: %w", err)
	}
	st := &kernelState{}
	for _, kt := range ts {
		t := &nftables.Table{Family: nftables.TableFamilyINet, Name: kt.name}
		for _, ch := range chains {
			if ch.Table.Name != t.Name {
				continue
			}
			kc := &kernelChainState{name: ch.Name, policy: ch.Policy}
			if ch.Hooknum != nil {
				kc.base = &translate.BaseChain{Type: translate.ChainType(ch.Type), Hook: hookName(*ch.Hooknum)}
				if ch.Priority != nil {
					kc.base.Priority = int32(*ch.Priority)
				}
			}
			kt.chains = append(kt.chains, kc)
		}
		if err := readSets(c, t, kt); err != nil {
			return nil, fmt.Errorf("table %s: %w", t.Name, err)
		}
		if err := readRules(raw, kt); err != nil {
			return nil, fmt.Errorf("table %s: %w", t.Name, err)
		}
		st.tables = append(st.tables, kt)
	}
	return st, nil
}

func readSets(c *nftables.Conn, t *nftables.Table, kt *kernelTable) error {
	sets, err := c.GetSets(t)
	if err != nil {
		return fmt.Errorf("list sets: %w", err)
	}
	for _, s := range sets {
		elems, err := c.GetSetElements(s)
		if err != nil {
			return fmt.Errorf("set %s: list elements: %w", s.Name, err)
		}
		ss, err := setState(s, elems)
		if err != nil {
			return fmt.Errorf("set %s: %w", s.Name, err)
		}
		content := contentOfState(s.KeyType.Name, ss)
		if s.Anonymous {
			kt.anon[s.Name] = content.key()
			continue
		}
		kt.sets = append(kt.sets, &kernelSet{name: s.Name, keyType: s.KeyType.Name, interval: s.Interval, isMap: s.IsMap, content: content})
	}
	return nil
}

// readRules dumps the table's rules (NFT_MSG_GETRULE filtered by table)
// and canonicalises their expressions.
func readRules(raw *netlink.Conn, kt *kernelTable) error {
	attrs, err := netlink.MarshalAttributes([]netlink.Attribute{{Type: unix.NFTA_RULE_TABLE, Data: []byte(kt.name + "\x00")}})
	if err != nil {
		return err
	}
	msgs, err := raw.Execute(netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETRULE),
			Flags: netlink.Request | netlink.Dump,
		},
		Data: append(nfgenmsg(unix.NFPROTO_INET), attrs...),
	})
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
		if len(m.Data) < 4 {
			continue
		}
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

// ourTableFlags dumps the inet tables (NFT_MSG_GETTABLE) and returns ours
// with their flags, which v0.3.0 decodes in the wrong byte order.
func ourTableFlags(raw *netlink.Conn) ([]*kernelTable, error) {
	msgs, err := raw.Execute(netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETTABLE),
			Flags: netlink.Request | netlink.Dump,
		},
		Data: nfgenmsg(unix.NFPROTO_INET),
	})
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	var out []*kernelTable
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
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

// rulesetGeneration asks for the ruleset generation (NFT_MSG_GETGEN); each
// committed transaction increments it.
func rulesetGeneration(raw *netlink.Conn) (uint32, error) {
	msgs, err := raw.Execute(netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETGEN),
			Flags: netlink.Request,
		},
		Data: nfgenmsg(unix.NFPROTO_UNSPEC),
	})
	if err != nil {
		return 0, fmt.Errorf("get ruleset generation: %w", err)
	}
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
		as, err := netlink.UnmarshalAttributes(m.Data[4:])
		if err != nil {
			return 0, fmt.Errorf("ruleset generation: %w", err)
		}
		for _, a := range as {
			if a.Type&nlaTypeMask == unix.NFTA_GEN_ID && len(a.Data) == 4 {
				return binary.BigEndian.Uint32(a.Data), nil
			}
		}
	}
	return 0, fmt.Errorf("get ruleset generation: no generation in the answer")
}

// nfgenmsg is the nfnetlink header: family, version 0, resource id 0.
func nfgenmsg(family byte) []byte { return []byte{family, unix.NFNETLINK_V0, 0, 0} }

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
	for _, iv := range s.intervals {
		c.ranges = append(c.ranges, numRange{addrNum(iv.First), addrNum(iv.Last)})
	}
	for _, r := range s.ports {
		c.ranges = append(c.ranges, numRange{u128{0, uint64(r.first)}, u128{0, uint64(r.last)}})
	}
	return c
}

func contentOfState(keyType string, ss SetState) setContent {
	c := setContent{keyType: keyType, typ: ss.Type}
	for _, iv := range ss.Intervals {
		c.ranges = append(c.ranges, numRange{addrNum(iv.First), addrNum(iv.Last)})
	}
	for _, p := range ss.Ports {
		c.ranges = append(c.ranges, numRange{u128{0, uint64(p.From)}, u128{0, uint64(p.To)}})
	}
	return c
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
