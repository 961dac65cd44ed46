package nft

import (
	"encoding/binary"
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/nfintercept/nfintercept/translate"
)

// maxSetChunk caps the elements of an anonymous set, which goes in one
// NEWSETELEM message whose element list has a 16-bit length (google/nftables
// v0.3.0 silently loses elements past it; the cap keeps both encodings
// comparable).
const maxSetChunk = 1000

// encoder appends lowered tables to a batch as nf_tables messages: one
// encoder for tables, chains, sets, elements and rules. The bytes are those
// google/nftables produces for the same objects (its marshalling serves as
// the oracle in tests, never here).
type encoder struct {
	msgs   []netlink.Message
	table  *nftables.Table
	named  map[*setRef]*nftables.Set
	nextID uint32
}

// id returns a set ID unique within the batch. IDs are assigned here, not
// by the library's package-global counter, so lookups can name them.
func (e *encoder) id() uint32 {
	e.nextID++
	return e.nextID
}

// bind implements setBinder: named sets were declared with the table;
// every use of an anonymous set creates a fresh one, queued before the rule.
func (e *encoder) bind(s *setRef) *nftables.Set {
	if s.name != "" {
		return e.named[s]
	}
	ks := &nftables.Set{
		Table:     e.table,
		Name:      "__set%d",
		ID:        e.id(),
		Anonymous: true,
		Constant:  true,
		Interval:  s.interval(),
		KeyType:   s.keyType(),
	}
	e.msgs = append(e.msgs, setMsg(ks, len(s.elements())))
	e.msgs = append(e.msgs, setElemMsgs(e.table.Name, ks.Name, ks.ID, s)...)
	return ks
}

// addTable appends the table, its chains, named sets with their elements,
// and rules.
func (e *encoder) addTable(lt *loweredTable) error {
	e.table = &nftables.Table{Family: nftables.TableFamilyINet, Name: lt.name}
	e.named = map[*setRef]*nftables.Set{}
	e.msgs = append(e.msgs, tableMsg(unix.NFT_MSG_NEWTABLE, lt.name))
	for _, lc := range lt.chains {
		m, err := chainMsg(lt.name, lc)
		if err != nil {
			return fmt.Errorf("table %s: %w", lt.name, err)
		}
		e.msgs = append(e.msgs, m)
	}
	for _, s := range lt.sets {
		ks := &nftables.Set{Table: e.table, Name: s.name, ID: e.id(), Interval: s.interval(), KeyType: s.keyType()}
		e.msgs = append(e.msgs, setMsg(ks, 0))
		e.msgs = append(e.msgs, setElemMsgs(lt.name, s.name, ks.ID, s)...)
		e.named[s] = ks
	}
	for _, lc := range lt.chains {
		if err := e.addRules(lt.name, lc); err != nil {
			return err
		}
	}
	return nil
}

// addRules appends the rules of lc to its chain in table.
func (e *encoder) addRules(table string, lc *loweredChain) error {
	for _, r := range lc.rules {
		var exprs []expr.Any
		for _, s := range r.stmts {
			exprs = append(exprs, s.exprs(e)...)
		}
		m, err := ruleMsg(table, lc.name, exprs)
		if err != nil {
			return fmt.Errorf("table %s chain %s: %w", table, lc.name, err)
		}
		e.msgs = append(e.msgs, m)
	}
	return nil
}

// nftMsg is one nf_tables request of the inet family.
func nftMsg(typ uint16, flags netlink.HeaderFlags, b attrBuf) netlink.Message {
	return netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(nftSubsys | typ), Flags: netlink.Request | flags},
		Data:   b,
	}
}

func inetHeader() attrBuf { return attrBuf(nfgenHeader(unix.NFPROTO_INET)) }

// tableMsg is "add table inet NAME" (NEWTABLE) or "delete table inet
// NAME" (DELTABLE).
func tableMsg(typ uint16, name string) netlink.Message {
	b := inetHeader()
	b.str(unix.NFTA_TABLE_NAME, name)
	b.u32(unix.NFTA_TABLE_FLAGS, 0)
	flags := netlink.HeaderFlags(0)
	if typ == unix.NFT_MSG_NEWTABLE {
		flags = netlink.Create
	}
	return nftMsg(typ, flags, b)
}

// destroyTableMsg is "destroy table inet NAME": delete it if it exists.
func destroyTableMsg(name string) netlink.Message {
	b := inetHeader()
	b.str(unix.NFTA_TABLE_NAME, name)
	return nftMsg(msgDestroyTable, 0, b)
}

// chainMsg is "add chain": base chains with their type, hook, priority and
// policy accept.
func chainMsg(table string, lc *loweredChain) (netlink.Message, error) {
	b := inetHeader()
	b.str(unix.NFTA_CHAIN_TABLE, table)
	b.str(unix.NFTA_CHAIN_NAME, lc.name)
	if lc.base != nil {
		if err := checkBase(lc.base); err != nil {
			return netlink.Message{}, fmt.Errorf("chain %s: %w", lc.name, err)
		}
		hook := b.open(unix.NFTA_CHAIN_HOOK)
		b.u32(unix.NFTA_HOOK_HOOKNUM, uint32(hooks[lc.base.Hook]))
		b.u32(unix.NFTA_HOOK_PRIORITY, uint32(lc.base.Priority))
		b.close(hook)
		b.u32(unix.NFTA_CHAIN_POLICY, uint32(nftables.ChainPolicyAccept))
		b.str(unix.NFTA_CHAIN_TYPE, string(lc.base.Type))
	}
	return nftMsg(unix.NFT_MSG_NEWCHAIN, netlink.Create, b), nil
}

// nftnlUdataSetKeyByteOrder is NFTNL_UDATA_SET_KEYBYTEORDER: nft records
// the key byte order (2: big endian) in the set's user data, and so do we
// for sets nft lists alike.
const nftnlUdataSetKeyByteOrder = 0

// setMsg is "add set": a named interval set, or an anonymous constant
// one of n elements.
func setMsg(s *nftables.Set, n int) netlink.Message {
	var flags uint32
	if s.Anonymous {
		flags |= unix.NFT_SET_ANONYMOUS
	}
	if s.Constant {
		flags |= unix.NFT_SET_CONSTANT
	}
	if s.Interval {
		flags |= unix.NFT_SET_INTERVAL
	}
	b := inetHeader()
	b.str(unix.NFTA_SET_TABLE, s.Table.Name)
	b.str(unix.NFTA_SET_NAME, s.Name)
	b.u32(unix.NFTA_SET_FLAGS, flags)
	b.u32(unix.NFTA_SET_KEY_TYPE, s.KeyType.GetNFTMagic())
	b.u32(unix.NFTA_SET_KEY_LEN, s.KeyType.Bytes)
	b.u32(unix.NFTA_SET_ID, s.ID)
	if s.Constant {
		desc := b.open(unix.NFTA_SET_DESC)
		b.u32(unix.NFTA_DATA_VALUE, uint32(n)) // nft's element count
		b.close(desc)
	}
	// One TLV: type, length, value (little-endian, as the library writes it).
	b.bytes(unix.NFTA_SET_USERDATA, binary.LittleEndian.AppendUint32([]byte{nftnlUdataSetKeyByteOrder, 4}, 2))
	return nftMsg(unix.NFT_MSG_NEWSET, netlink.Create, b)
}

func checkBase(b *translate.BaseChain) error {
	if _, ok := hooks[b.Hook]; !ok {
		return fmt.Errorf("unknown hook %q", b.Hook)
	}
	switch b.Type {
	case translate.ChainTypeNAT, translate.ChainTypeFilter, translate.ChainTypeRoute:
		return nil
	}
	return fmt.Errorf("unknown chain type %q", b.Type)
}

// hooks are the netfilter hooks of inet base chains, by nft name.
var hooks = map[translate.Hook]nftables.ChainHook{
	translate.HookPrerouting: *nftables.ChainHookPrerouting,
	"input":                  *nftables.ChainHookInput,
	"forward":                *nftables.ChainHookForward,
	translate.HookOutput:     *nftables.ChainHookOutput,
	"postrouting":            *nftables.ChainHookPostrouting,
}

// hookName is the reverse of hooks.
func hookName(h nftables.ChainHook) translate.Hook {
	for name, v := range hooks {
		if v == h {
			return name
		}
	}
	return translate.Hook(fmt.Sprintf("hook-%d", h))
}
