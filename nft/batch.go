package nft

import (
	"encoding/binary"
	"fmt"
	"sync/atomic"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// A transaction is assembled here, and sent by package kernel rather than
// by google/nftables' Flush. The library still marshals tables, chains, sets
// and rules (captured through its test-dial hook, never sent by it); set
// elements are encoded directly (there can be 100,000s of them) and the
// table replacement is ours. Owning the batch gives what v0.3.0 cannot:
//
//   - DESTROYTABLE (Linux 6.3+) instead of NEWTABLE+DELTABLE to replace our
//     tables. In a namespace without them the batch then deletes nothing,
//     and a commit that deletes nothing leaves no RCU-deferred cleanup
//     behind. Closing an nf_tables socket waits for pending cleanup
//     (nft_rcv_nl_event flushes it), which costs a grace period: 4–20 ms
//     on a 250 Hz kernel, far more than the transaction itself.
//   - no NLM_F_ECHO on rules and one ACK for the whole batch instead of
//     one per message;
//   - errors that name the message the kernel refused.

const (
	msgDestroyTable = 0x1a // NFT_MSG_DESTROYTABLE (Linux 6.3+)
	nftSubsys       = unix.NFNL_SUBSYS_NFTABLES << 8
)

// noDestroy is set once the kernel rejected DESTROYTABLE; from then on
// tables are replaced the old way (NEWTABLE+DELTABLE).
var noDestroy atomic.Bool

// txn is one nf_tables batch being assembled.
type txn struct {
	lib  *nftables.Conn // marshals into msgs through capture
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

// capture receives what the library's Flush would have sent: the batch
// begin, the queued messages and the batch end. Acks it then waits for are
// answered with nothing, which it accepts.
func (t *txn) capture(req []netlink.Message) ([]netlink.Message, error) {
	if len(req) >= 2 && req[0].Header.Type == unix.NFNL_MSG_BATCH_BEGIN {
		t.msgs = append(t.msgs, req[1:len(req)-1]...)
	}
	return nil, nil
}

// take moves the messages queued on the library Conn into t, so that our
// own messages can follow them.
func (t *txn) take() error {
	if err := t.lib.Flush(); err != nil {
		return fmt.Errorf("netlink encoding: %w", err)
	}
	return nil
}

// destroyTable queues "destroy table inet NAME": delete it if it exists.
func (t *txn) destroyTable(name string) {
	data := nfgenHeader(unix.NFPROTO_INET)
	data = appendAttr(data, unix.NFTA_TABLE_NAME, cstring(name))
	t.msgs = append(t.msgs, netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(nftSubsys | msgDestroyTable), Flags: netlink.Request},
		Data:   data,
	})
}

// --- attribute encoding (native-endian TLV headers, 4-byte aligned) ---

func align4(n int) int { return (n + 3) &^ 3 }

func nfgenHeader(family byte) []byte {
	return []byte{family, unix.NFNETLINK_V0, 0, 0}
}

func cstring(s string) []byte { return append([]byte(s), 0) }

// appendAttr appends one attribute with its padding.
func appendAttr(b []byte, typ uint16, data []byte) []byte {
	b = appendAttrHeader(b, typ, len(data))
	b = append(b, data...)
	return append(b, make([]byte, align4(len(data))-len(data))...)
}

func appendAttrHeader(b []byte, typ uint16, dataLen int) []byte {
	b = binary.NativeEndian.AppendUint16(b, uint16(4+dataLen))
	return binary.NativeEndian.AppendUint16(b, typ)
}
