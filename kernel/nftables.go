package kernel

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"syscall"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// The nf_tables transport: one socket per operation, dumps, the ruleset
// generation, and batches sent in one sendmsg with one ACK.
//
// A batch is committed by the kernel inside sendmsg and atomically: a
// refusal leaves the previous ruleset. What the caller cannot know from an
// error alone is whether a batch whose send went out was committed when its
// verdict could not be read; Commit reports that case as *AmbiguousError,
// and the caller decides from the kernel's state (Generation, a read back).

const (
	nftSubsys   = unix.NFNL_SUBSYS_NFTABLES << 8
	nlaTypeMask = 0x3fff // attribute type without the nested/byte-order flags
)

// NFTablesConn is an nf_tables netlink socket in one namespace.
type NFTablesConn struct {
	c   *netlink.Conn
	ns  *Namespace
	buf []byte // Dump's receive buffer, kept across the dumps of a read
}

// DialNFTables opens the nf_tables socket of ns (nil: the current
// namespace) through its descriptor; the process never changes namespace.
func DialNFTables(ns *Namespace) (*NFTablesConn, error) {
	cfg := &netlink.Config{}
	if !ns.Own() {
		cfg.NetNS = ns.Fd()
	}
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, cfg)
	if err != nil {
		return nil, fmt.Errorf("nf_tables socket in %s: %w", ns, err)
	}
	return &NFTablesConn{c: c, ns: ns}, nil
}

// Close closes the socket. Closing after a batch that deleted tables waits
// for the kernel's deferred cleanup (an RCU grace period, milliseconds);
// callers that need not wait close in the background.
func (c *NFTablesConn) Close() error { return c.c.Close() }

// Generation is the ruleset generation (NFT_MSG_GETGEN): every committed
// batch increments it.
func (c *NFTablesConn) Generation() (uint32, error) {
	msgs, err := c.c.Execute(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(nftSubsys | unix.NFT_MSG_GETGEN), Flags: netlink.Request},
		Data:   genmsg(unix.NFPROTO_UNSPEC),
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
	return 0, errors.New("get ruleset generation: no generation in the answer")
}

// genmsg is the nfnetlink header: family, version 0, resource id 0.
func genmsg(family byte) []byte { return []byte{family, unix.NFNETLINK_V0, 0, 0} }

// dumpBufSize is the receive buffer for dumps. The kernel sizes each dump
// batch after the largest recvmsg buffer seen (capped at 32 KiB), and
// walks an interval set from its first element again for every batch: the
// page-sized reads of mdlayher/netlink make dumping a set of 100,000
// prefixes take seconds; 32 KiB batches cut that eightfold.
const dumpBufSize = 64 << 10

// Dump runs an nf_tables dump request for the inet family and returns the
// answers, each with at least its nfgenmsg header.
func (c *NFTablesConn) Dump(msgType uint16, attrs ...netlink.Attribute) ([]netlink.Message, error) {
	data, err := netlink.MarshalAttributes(attrs)
	if err != nil {
		return nil, err
	}
	req, err := c.c.Send(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(nftSubsys | int(msgType)), Flags: netlink.Request | netlink.Dump},
		Data:   append(genmsg(unix.NFPROTO_INET), data...),
	})
	if err != nil {
		return nil, err
	}
	rc, err := c.c.SyscallConn()
	if err != nil {
		return nil, err
	}
	if c.buf == nil {
		c.buf = make([]byte, dumpBufSize)
	}
	buf := c.buf
	var out []netlink.Message
	for {
		var n int
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			n, _, rerr = unix.Recvfrom(int(fd), buf, 0)
			return rerr != unix.EAGAIN && rerr != unix.EINTR
		})
		if err == nil {
			err = rerr
		}
		if err != nil {
			return nil, fmt.Errorf("receive: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return nil, fmt.Errorf("receive: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Seq != req.Header.Sequence {
				continue // not an answer to this request
			}
			switch m.Header.Type {
			case unix.NLMSG_DONE, unix.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if code := int32(binary.NativeEndian.Uint32(m.Data)); code < 0 {
						return nil, syscall.Errno(-code)
					}
				}
				if m.Header.Type == unix.NLMSG_DONE {
					return out, nil
				}
			default:
				if len(m.Data) >= 4 {
					out = append(out, netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(m.Header.Type)}, Data: slices.Clone(m.Data)})
				}
			}
		}
	}
}

// socketBuffer is the socket buffer size for a batch of n bytes: twice the
// batch (the kernel's copy and its replies), at least 4 MiB, at most 1 GiB.
func socketBuffer(n int) int { return min(max(2*n, 4<<20), 1<<30) }

// Commit sends the batch msgs (without begin and end, which it adds) in
// one sendmsg and reads the kernel's verdict. A refusal is a
// *RefusedError naming the refused message; a batch that went out but
// whose verdict could not be read is an *AmbiguousError.
func (c *NFTablesConn) Commit(ctx context.Context, msgs []netlink.Message) error {
	return c.CommitAt(ctx, 0, msgs)
}

// CommitAt is Commit for a batch computed from the ruleset at generation
// gen (0: any). The batch begin carries it (NFNL_BATCH_GENID), and the
// kernel, holding its commit lock, refuses the whole batch with ERESTART
// when the ruleset is at another generation: see Stale.
func (c *NFTablesConn) CommitAt(ctx context.Context, gen uint32, msgs []netlink.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	buf := marshalBatch(gen, msgs)
	rc, err := c.c.SyscallConn()
	if err != nil {
		return fmt.Errorf("nf_tables socket: %w", err)
	}
	var serr error
	err = rc.Control(func(fd uintptr) { serr = setupBatchSocket(int(fd), len(buf)) })
	if err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("nf_tables socket: %w", err)
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(30 * time.Second)
	}
	if err := c.c.SetDeadline(deadline); err != nil {
		return fmt.Errorf("nf_tables socket: %w", err)
	}
	var sendErr error
	err = rc.Write(func(fd uintptr) bool {
		sendErr = unix.Sendto(int(fd), buf, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
		return sendErr != unix.EAGAIN && sendErr != unix.EINTR
	})
	if err == nil {
		err = sendErr
	}
	if err != nil {
		// Nothing reached nf_tables: the batch is processed inside a
		// sendmsg that succeeds.
		return fmt.Errorf("send netlink batch (%d bytes): %w", len(buf), err)
	}
	return verdict(rc, msgs)
}

// setupBatchSocket sizes the buffers for one batch of n bytes and asks for
// capped, extended ACKs. SO_*BUFFORCE (CAP_NET_ADMIN) passes the
// wmem_max/rmem_max caps; without it the capped size is used.
func setupBatchSocket(fd, n int) error {
	size := socketBuffer(n)
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
	return nil
}

// marshalBatch lays the batch out for one sendmsg: batch begin (with the
// generation the batch is valid at, unless 0), the messages numbered from
// 1 with NLM_F_ECHO and NLM_F_ACK cleared, an ACK requested on the last
// one only (errors are reported whatever the flags), batch end.
func marshalBatch(gen uint32, msgs []netlink.Message) []byte {
	size := 2*(unix.NLMSG_HDRLEN+4) + 8
	for _, m := range msgs {
		size += unix.NLMSG_HDRLEN + align4(len(m.Data))
	}
	buf := make([]byte, 0, size)
	batchData := []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, unix.NFNL_SUBSYS_NFTABLES}
	begin := batchData
	if gen != 0 {
		begin = slices.Clone(batchData)
		begin = binary.NativeEndian.AppendUint16(begin, 8)
		begin = binary.NativeEndian.AppendUint16(begin, unix.NFNL_BATCH_GENID)
		begin = binary.BigEndian.AppendUint32(begin, gen)
	}
	buf = appendMsg(buf, unix.NFNL_MSG_BATCH_BEGIN, netlink.Request, 0, begin)
	for i, m := range msgs {
		flags := m.Header.Flags &^ (netlink.Echo | netlink.Acknowledge)
		if i == len(msgs)-1 {
			flags |= netlink.Acknowledge
		}
		buf = appendMsg(buf, uint16(m.Header.Type), flags, uint32(i+1), m.Data)
	}
	return appendMsg(buf, unix.NFNL_MSG_BATCH_END, netlink.Request, uint32(len(msgs)+1), batchData)
}

func align4(n int) int { return (n + 3) &^ 3 }

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

// AmbiguousError is a batch that was sent but whose verdict could not be
// read: the kernel may or may not have committed it.
type AmbiguousError struct{ Err error }

func (e *AmbiguousError) Error() string {
	return "netlink batch sent, but its outcome is unknown: " + e.Err.Error()
}

func (e *AmbiguousError) Unwrap() error { return e.Err }

// verdict reads the kernel's replies: the ACK of the last message, or an
// error for each message refused. The kernel processes the batch inside
// sendmsg, so every reply is queued by the time we read.
func verdict(rc syscall.RawConn, msgs []netlink.Message) error {
	last := uint32(len(msgs))
	var refused error
	acked := false
	buf := make([]byte, 64<<10)
	for !acked {
		var n int
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			n, _, rerr = unix.Recvfrom(int(fd), buf, unix.MSG_DONTWAIT)
			if rerr == unix.EAGAIN && refused != nil {
				return true // no ACK follows a failure that stopped the batch
			}
			return rerr != unix.EAGAIN && rerr != unix.EINTR
		})
		if err == nil {
			err = rerr
		}
		switch {
		case err == unix.EAGAIN && refused != nil:
			return refused
		case refused != nil && err != nil:
			return refused // the refusal is definite; what follows is not needed
		case err != nil:
			return &AmbiguousError{Err: fmt.Errorf("receive netlink replies: %w", err)}
		}
		replies, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return &AmbiguousError{Err: fmt.Errorf("parse netlink reply: %w", err)}
		}
		for _, m := range replies {
			if m.Header.Type != unix.NLMSG_ERROR || len(m.Data) < 4 {
				continue
			}
			errno := -int32(binary.NativeEndian.Uint32(m.Data))
			switch {
			case errno == 0 && m.Header.Seq == last:
				acked = true
			case errno != 0:
				refused = errors.Join(refused, refusal(msgs, m.Header.Seq, syscall.Errno(errno), m.Data))
			}
		}
	}
	return refused
}

// refusal describes an error reply to message number seq (1-based).
func refusal(msgs []netlink.Message, seq uint32, errno syscall.Errno, data []byte) error {
	e := &RefusedError{Index: -1, Errno: errno, Detail: extackMsg(data)}
	if seq >= 1 && int(seq) <= len(msgs) {
		e.Index = int(seq) - 1
		e.Type = uint16(msgs[e.Index].Header.Type)
	}
	return e
}

// RefusedError is the kernel refusing a message of a batch; the batch was
// not committed.
type RefusedError struct {
	Index  int    // of the refused message in the batch, -1 if unknown
	Type   uint16 // its netlink message type
	What   string // what it does, when the encoder has named it
	Errno  syscall.Errno
	Detail string // the kernel's extended-ACK text, if any
}

func (e *RefusedError) Error() string {
	what := e.What
	if what == "" {
		what = "the batch"
		if e.Index >= 0 {
			what = fmt.Sprintf("message %d of the batch", e.Index+1)
		}
	}
	s := fmt.Sprintf("kernel refused %s: %v", what, e.Errno)
	if e.Detail != "" {
		s += " (" + e.Detail + ")"
	}
	return s
}

func (e *RefusedError) Unwrap() error { return e.Errno }

// Stale reports whether err is the kernel refusing a batch sent with
// CommitAt because the ruleset is no longer at the batch's generation:
// nothing was applied, and the batch must be computed again.
func Stale(err error) bool {
	var r *RefusedError
	return errors.As(err, &r) && r.Index < 0 && r.Errno == unix.ERESTART
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
