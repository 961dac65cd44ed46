package kernel

import (
	"syscall"
	"testing"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// TestMarshalBatch: the batch is framed by begin and end, messages are
// numbered from 1, none is echoed and only the last asks for an ACK.
func TestMarshalBatch(t *testing.T) {
	var msgs []netlink.Message
	for i := range 5 {
		msgs = append(msgs, netlink.Message{
			Header: netlink.Header{Type: netlink.HeaderType(nftSubsys | unix.NFT_MSG_NEWRULE), Flags: netlink.Request | netlink.Echo | netlink.Acknowledge},
			Data:   make([]byte, 4+i), // unaligned lengths are padded
		})
	}
	b := marshalBatch(0, msgs)
	got, err := syscall.ParseNetlinkMessage(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(msgs)+2 {
		t.Fatalf("%d messages marshalled, want %d", len(got), len(msgs)+2)
	}
	if got[0].Header.Type != unix.NFNL_MSG_BATCH_BEGIN || got[len(got)-1].Header.Type != unix.NFNL_MSG_BATCH_END {
		t.Errorf("batch not framed by begin/end: %#x … %#x", got[0].Header.Type, got[len(got)-1].Header.Type)
	}
	for i, m := range got[1 : len(got)-1] {
		if m.Header.Flags&unix.NLM_F_ECHO != 0 {
			t.Errorf("message %d asks for an echo", i)
		}
		if ack := m.Header.Flags&unix.NLM_F_ACK != 0; ack != (i == len(msgs)-1) {
			t.Errorf("message %d of %d: ack %v", i, len(msgs), ack)
		}
		if m.Header.Seq != uint32(i+1) {
			t.Errorf("message %d has sequence %d", i, m.Header.Seq)
		}
		if len(m.Data) != 4+i {
			t.Errorf("message %d carries %d bytes, want %d", i, len(m.Data), 4+i)
		}
	}
}
