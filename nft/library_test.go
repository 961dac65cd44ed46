package nft

import (
	"fmt"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// google/nftables' marshalling is the oracle the encoder is checked
// against, byte for byte: here the library encodes the same lowered tables
// into a Conn whose messages are captured through its test-dial hook,
// never sent.

// txn captures what a library Conn would send.
type txn struct {
	lib  *nftables.Conn
	msgs []netlink.Message
}

func newTxn() (*txn, error) {
	t := &txn{}
	// Lasting: one fake connection for every take, not one per Flush.
	lib, err := nftables.New(nftables.WithTestDial(t.capture), nftables.AsLasting())
	if err != nil {
		return nil, fmt.Errorf("netlink encoder: %w", err)
	}
	t.lib = lib
	return t, nil
}

// capture receives what Flush would have sent: the batch begin, the
// queued messages and the batch end. Acks it then waits for are answered
// with nothing, which it accepts.
func (t *txn) capture(req []netlink.Message) ([]netlink.Message, error) {
	if len(req) >= 2 && req[0].Header.Type == unix.NFNL_MSG_BATCH_BEGIN {
		t.msgs = append(t.msgs, req[1:len(req)-1]...)
	}
	return nil, nil
}

// take moves the messages queued on the library Conn into t.
func (t *txn) take() error {
	if err := t.lib.Flush(); err != nil {
		return fmt.Errorf("netlink encoding: %w", err)
	}
	return nil
}

// libBinder binds sets the way encoder does, through the library: the
// same set IDs, anonymous sets queued before their rule.
type libBinder struct {
	tx     *txn
	table  *nftables.Table
	named  map[*setRef]*nftables.Set
	nextID uint32
	err    error
}

func (b *libBinder) bind(s *setRef) *nftables.Set {
	if s.name != "" {
		return b.named[s]
	}
	b.nextID++
	ks := &nftables.Set{Table: b.table, Name: "__set%d", ID: b.nextID, Anonymous: true, Constant: true,
		Interval: s.interval(), KeyType: s.keyType()}
	if err := b.tx.lib.AddSet(ks, s.elements()); err != nil && b.err == nil {
		b.err = err
	}
	return ks
}

// libraryMsgs is replaceMsgs(tables, nil, destroy) encoded by the library
// (the table deletions, which it cannot express or which are ours, are
// taken from ours). Named sets' elements are split as ours are.
func libraryMsgs(t *testing.T, tables []*loweredTable, destroy bool, ours []netlink.Message) []netlink.Message {
	t.Helper()
	tx, err := newTxn()
	if err != nil {
		t.Fatal(err)
	}
	names := replacedTables(tables)
	if destroy {
		tx.msgs = append(tx.msgs, ours[:len(names)]...)
	} else {
		for _, name := range names {
			tb := &nftables.Table{Family: nftables.TableFamilyINet, Name: name}
			tx.lib.AddTable(tb)
			tx.lib.DelTable(tb)
		}
	}
	elemMsgs := map[string][]int{} // set → element count of each of our messages
	for _, m := range ours {
		if uint16(m.Header.Type)&^nftSubsys == unix.NFT_MSG_NEWSETELEM {
			set := stringAttr(m, unix.NFTA_SET_ELEM_LIST_SET)
			elemMsgs[set] = append(elemMsgs[set], elemCount(t, m))
		}
	}
	b := &libBinder{tx: tx}
	for _, lt := range tables {
		b.table = tx.lib.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: lt.name})
		b.named = map[*setRef]*nftables.Set{}
		chains := make([]*nftables.Chain, len(lt.chains))
		for i, lc := range lt.chains {
			c := &nftables.Chain{Table: b.table, Name: lc.name}
			if lc.base != nil {
				accept := nftables.ChainPolicyAccept
				c.Type = nftables.ChainType(lc.base.Type)
				c.Hooknum = nftables.ChainHookRef(hooks[lc.base.Hook])
				c.Priority = nftables.ChainPriorityRef(nftables.ChainPriority(lc.base.Priority))
				c.Policy = &accept
			}
			chains[i] = tx.lib.AddChain(c)
		}
		for _, s := range lt.sets {
			b.nextID++
			// Keys are big-endian; the library records it for non-interval
			// sets only when told.
			ks := &nftables.Set{Table: b.table, Name: s.name, ID: b.nextID, Interval: s.interval(), KeyType: s.keyType(),
				KeyByteOrder: binaryutil.BigEndian}
			if err := tx.lib.AddSet(ks, nil); err != nil {
				t.Fatal(err)
			}
			elems := s.elements()
			for _, n := range elemMsgs[s.name] {
				if err := tx.lib.SetAddElements(ks, elems[:n]); err != nil {
					t.Fatal(err)
				}
				elems = elems[n:]
			}
			b.named[s] = ks
		}
		for i, lc := range lt.chains {
			for _, r := range lc.rules {
				var exprs []expr.Any
				for _, s := range r.stmts {
					exprs = append(exprs, s.exprs(b)...)
				}
				tx.lib.AddRule(&nftables.Rule{Table: b.table, Chain: chains[i], Exprs: exprs})
			}
		}
	}
	if b.err != nil {
		t.Fatal(b.err)
	}
	if err := tx.take(); err != nil {
		t.Fatal(err)
	}
	return tx.msgs
}

// stringAttr returns a NUL-terminated top-level attribute of m.
func stringAttr(m netlink.Message, typ uint16) string {
	ad, err := netlink.NewAttributeDecoder(m.Data[4:])
	if err != nil {
		return ""
	}
	for ad.Next() {
		if ad.Type() == typ {
			return ad.String()
		}
	}
	return ""
}
