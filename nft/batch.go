package nft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// A transaction is assembled here and sent by us rather than by
// google/nftables' Flush. The library still marshals tables, chains, sets
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
//
// The socket is closed in the background: the transaction is committed
// once its ACK is read, and a close after a replacement still waits out
// the grace period.

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

// marshal lays the batch out for one sendmsg: batch begin, the messages
// numbered from 1 with NLM_F_ECHO and NLM_F_ACK cleared, an ACK requested
// on the last one only (errors are reported whatever the flags), batch end.
func (t *txn) marshal() []byte {
	size := 2 * (unix.NLMSG_HDRLEN + 4)
	for _, m := range t.msgs {
		size += unix.NLMSG_HDRLEN + align4(len(m.Data))
	}
	buf := make([]byte, 0, size)
	batchData := []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, unix.NFNL_SUBSYS_NFTABLES}
	buf = appendMsg(buf, unix.NFNL_MSG_BATCH_BEGIN, netlink.Request, 0, batchData)
	for i, m := range t.msgs {
		flags := m.Header.Flags &^ (netlink.Echo | netlink.Acknowledge)
		if i == len(t.msgs)-1 {
			flags |= netlink.Acknowledge
		}
		buf = appendMsg(buf, uint16(m.Header.Type), flags, uint32(i+1), m.Data)
	}
	return appendMsg(buf, unix.NFNL_MSG_BATCH_END, netlink.Request, uint32(len(t.msgs)+1), batchData)
}

func appendMsg(buf []byte, typ uint16, flags netlink.HeaderFlags, seq uint32, data []byte) []byte {
	ne := binary.NativeEndian
	buf = ne.AppendUint32(buf, uint32(unix.NLMSG_HDRLEN+len(data)))
	buf = ne.AppendUint16(buf, typ)
	buf = ne.AppendUint16(buf, uint16(flags))
	buf = ne.AppendUint32(buf, seq)
	buf = ne.AppendUint32(buf, 0) // pid: the kernel uses the socket's
	buf = append(buf, data...)
	return append(buf, make([]byte, align4(len(data))-len(data))...)
}

// commit sends the batch to the namespace at nsPath and waits for the
// kernel's verdict.
func (t *txn) commit(nsPath string) error {
	if len(t.msgs) == 0 {
		return nil
	}
	buf := t.marshal()
	fd, err := nfSocket(nsPath, len(buf))
	if err != nil {
		return err
	}
	// Closing waits for the kernel's deferred cleanup when the batch
	// deleted something; the caller need not wait for it.
	defer func() { go unix.Close(fd) }()
	for {
		err = unix.Sendto(fd, buf, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("send netlink batch (%d bytes): %w", len(buf), err)
	}
	return t.verdict(fd)
}

// verdict reads the kernel's replies: the ACK of the last message, or an
// error for each message refused. The kernel processes the batch inside
// sendmsg, so every reply is queued by the time we read; the socket's
// receive timeout only guards against the unexpected.
func (t *txn) verdict(fd int) error {
	last := uint32(len(t.msgs))
	var refused error
	acked := false
	buf := make([]byte, 64<<10)
	for !acked {
		flags := 0
		if refused != nil {
			// Drain what is queued: no ACK follows a failure that
			// stopped the batch early.
			flags = unix.MSG_DONTWAIT
		}
		n, _, err := unix.Recvfrom(fd, buf, flags)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN && refused != nil:
			return refused
		case err == unix.EAGAIN:
			return errors.New("receive netlink replies: no reply from the kernel")
		case err != nil:
			return errors.Join(refused, fmt.Errorf("receive netlink replies: %w", err))
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return fmt.Errorf("parse netlink reply: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Type != unix.NLMSG_ERROR || len(m.Data) < 4 {
				continue
			}
			errno := -int32(binary.NativeEndian.Uint32(m.Data))
			switch {
			case errno == 0 && m.Header.Seq == last:
				acked = true
			case errno != 0:
				refused = errors.Join(refused, t.refusal(m.Header.Seq, syscall.Errno(errno), m.Data))
			}
		}
	}
	return refused
}

// refusal describes an error reply to message number seq.
func (t *txn) refusal(seq uint32, errno syscall.Errno, data []byte) error {
	what := "the batch"
	if seq >= 1 && int(seq) <= len(t.msgs) {
		what = describe(t.msgs, int(seq)-1)
	}
	if msg := extackMsg(data); msg != "" {
		return &refusedError{what: what, errno: errno, detail: msg}
	}
	return &refusedError{what: what, errno: errno}
}

type refusedError struct {
	what   string
	errno  syscall.Errno
	detail string
}

func (e *refusedError) Error() string {
	s := fmt.Sprintf("kernel refused %s: %v", e.what, e.errno)
	if e.detail != "" {
		s += " (" + e.detail + ")"
	}
	return s
}

func (e *refusedError) Unwrap() error { return e.errno }

// destroyUnsupported reports whether err is the kernel rejecting
// DESTROYTABLE (before Linux 6.3). Those messages come first in the batch,
// so theirs is the first refusal.
func destroyUnsupported(err error) bool {
	var r *refusedError
	return errors.As(err, &r) && strings.HasPrefix(r.what, "destroy table") &&
		(r.errno == unix.EINVAL || r.errno == unix.EOPNOTSUPP)
}

// extackMsg returns the kernel's error text (NLMSGERR_ATTR_MSG) from an
// error reply, if any: errno, the capped original header, then TLVs.
func extackMsg(data []byte) string {
	const capped = 4 + unix.NLMSG_HDRLEN
	if len(data) <= capped {
		return ""
	}
	ad, err := netlink.NewAttributeDecoder(data[capped:])
	if err != nil {
		return ""
	}
	for ad.Next() {
		if ad.Type() == unix.NLMSGERR_ATTR_MSG {
			return ad.String()
		}
	}
	return ""
}

// describe names message i for an error: what it does and to which
// table, chain or set ("add rule 3 of chain istio-output in table ...").
func describe(msgs []netlink.Message, i int) string {
	m := msgs[i]
	attrs := map[uint16]string{}
	if len(m.Data) > 4 {
		if ad, err := netlink.NewAttributeDecoder(m.Data[4:]); err == nil {
			for ad.Next() {
				if b := ad.Bytes(); len(b) > 0 && b[len(b)-1] == 0 {
					attrs[ad.Type()] = string(b[:len(b)-1])
				}
			}
		}
	}
	table := " in table " + attrs[1] // *_TABLE is attribute 1 in every message
	switch uint16(m.Header.Type) &^ nftSubsys {
	case unix.NFT_MSG_NEWTABLE:
		return "add table " + attrs[unix.NFTA_TABLE_NAME]
	case unix.NFT_MSG_DELTABLE:
		return "delete table " + attrs[unix.NFTA_TABLE_NAME]
	case msgDestroyTable:
		return "destroy table " + attrs[unix.NFTA_TABLE_NAME]
	case unix.NFT_MSG_NEWCHAIN:
		return "add chain " + attrs[unix.NFTA_CHAIN_NAME] + table
	case unix.NFT_MSG_NEWSET:
		return "add set " + attrs[unix.NFTA_SET_NAME] + table
	case unix.NFT_MSG_NEWSETELEM:
		return "add elements to set " + attrs[unix.NFTA_SET_ELEM_LIST_SET] + table
	case unix.NFT_MSG_NEWRULE:
		chain := attrs[unix.NFTA_RULE_CHAIN]
		n := 0
		for _, p := range msgs[:i+1] {
			if uint16(p.Header.Type)&^nftSubsys == unix.NFT_MSG_NEWRULE && ruleChain(p) == chain {
				n++
			}
		}
		return fmt.Sprintf("add rule %d of chain %s%s", n, chain, table)
	}
	return fmt.Sprintf("message type %#x", uint16(m.Header.Type))
}

func ruleChain(m netlink.Message) string {
	if len(m.Data) <= 4 {
		return ""
	}
	ad, err := netlink.NewAttributeDecoder(m.Data[4:])
	if err != nil {
		return ""
	}
	for ad.Next() {
		if ad.Type() == unix.NFTA_RULE_CHAIN {
			return ad.String()
		}
	}
	return ""
}

// nfSocket opens an nfnetlink socket in the namespace at nsPath ("" = the
// current one) with buffers for a batch of batchBytes. Error replies are
// capped to the header of the refused message; reads time out after 30 s.
func nfSocket(nsPath string, batchBytes int) (int, error) {
	fd, err := nsSocket(nsPath, unix.NETLINK_NETFILTER)
	if err != nil {
		return -1, err
	}
	if err := setupNfSocket(fd, batchBytes); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("netlink socket: %w", err)
	}
	return fd, nil
}

func setupNfSocket(fd, batchBytes int) error {
	size := min(max(2*batchBytes, minSockBuf), maxSockBuf)
	// SO_*BUFFORCE (we run with CAP_NET_ADMIN) passes the wmem_max and
	// rmem_max caps; without the capability the capped size is used.
	for _, o := range [][2]int{{unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}, {unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}} {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, o[0], size); err != nil {
			if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, o[1], size); err != nil {
				return err
			}
		}
	}
	for _, o := range []int{unix.NETLINK_CAP_ACK, unix.NETLINK_EXT_ACK} {
		if err := unix.SetsockoptInt(fd, unix.SOL_NETLINK, o, 1); err != nil {
			return err
		}
	}
	return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 30})
}

// nsSocket opens a netlink socket in the namespace at nsPath ("" = the
// current one).
func nsSocket(nsPath string, proto int) (int, error) {
	fd := -1
	err := InNamespace(nsPath, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
		return err
	})
	if err != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return -1, fmt.Errorf("open netlink: %w", err)
	}
	return fd, nil
}

// InNamespace runs fn in the namespace at nsPath ("" = the current one),
// for opening sockets (or starting processes) there: they stay in that
// namespace for their life. The namespace is entered by a goroutine of its
// own on a locked thread, which is retired if it cannot switch back; the
// caller's thread is never touched.
func InNamespace(nsPath string, fn func() error) error {
	if nsPath == "" {
		return fn()
	}
	target, err := unix.Open(nsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open netns: %w", err)
	}
	defer unix.Close(target)
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("open current netns: %w", err)
			return
		}
		defer unix.Close(orig)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("enter netns %s: %w", nsPath, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			// The thread stays locked and exits with this goroutine.
			done <- errors.Join(ferr, fmt.Errorf("leave netns %s: %w", nsPath, err))
			return
		}
		runtime.UnlockOSThread()
		done <- ferr
	}()
	return <-done
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
