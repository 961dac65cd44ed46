package nft

import (
	"encoding/binary"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// A transaction is encoded here (encode.go, rulemsg.go, setelems.go) and
// sent by package kernel, rather than by google/nftables' Flush, whose
// expression types are the rule vocabulary and whose marshalling is the
// tests' oracle. Owning the batch gives what v0.3.0 cannot:
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
