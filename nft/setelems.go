package nft

import (
	"encoding/binary"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// maxElemList bounds the element list attribute of one NEWSETELEM
// message: its length is a 16-bit field.
const maxElemList = 0xffff

// setElemMsgs encodes the elements of s as NEWSETELEM messages for the set
// named name (id: its ID in this batch) of table. The bytes are those
// google/nftables' SetAddElements produces for the same elements (checked
// by TestSetElemMsgsMatchLibrary), written straight into each message
// instead of through per-element attribute slices, and split by size.
func setElemMsgs(table, name string, id uint32, s *setRef) []netlink.Message {
	return elemMsgs(unix.NFT_MSG_NEWSETELEM, table, name, id, s.keyLen(), s.len(), s.walk)
}

// elemMsgs encodes the elements walk yields (count: their intervals, for
// sizing) as messages of type msgType (NEWSETELEM, DELSETELEM) for the set
// of table named name; id 0 leaves the batch ID out (an existing set).
func elemMsgs(msgType uint16, table, name string, id uint32, keyLen, count int, walk func(yield func(key []byte, end bool))) []netlink.Message {
	var head []byte
	head = appendAttr(head, unix.NFTA_SET_ELEM_LIST_SET, cstring(name))
	if id != 0 {
		head = binary.BigEndian.AppendUint32(appendAttrHeader(head, unix.NFTA_SET_ELEM_LIST_SET_ID, 4), id)
	}
	head = appendAttr(head, unix.NFTA_SET_ELEM_LIST_TABLE, cstring(table))
	flags := netlink.Request | netlink.Create
	if msgType != unix.NFT_MSG_NEWSETELEM {
		flags = netlink.Request
	}

	valueAttr := 4 + keyLen          // NFTA_DATA_VALUE
	keyAttr := 4 + align4(valueAttr) // NFTA_SET_ELEM_KEY, nested
	elemLen := func(end bool) int {  // one list item, nested
		if end {
			return 4 + 8 + keyAttr // + NFTA_SET_ELEM_FLAGS
		}
		return 4 + keyAttr
	}
	var out []netlink.Message
	var data []byte
	listAt, n := 0, 0                 // where the current list attribute starts; its items
	left := 2 * count * elemLen(true) // bytes still to encode, at most
	flush := func() {
		if n == 0 {
			return
		}
		binary.NativeEndian.PutUint16(data[listAt:], uint16(len(data)-listAt))
		out = append(out, netlink.Message{
			Header: netlink.Header{
				Type:  netlink.HeaderType(nftSubsys | int(msgType)),
				Flags: flags,
			},
			Data: data,
		})
		data, n = nil, 0
	}
	walk(func(key []byte, end bool) {
		size := elemLen(end)
		if n > 0 && len(data)-listAt+size > maxElemList {
			flush()
		}
		if n == 0 {
			data = make([]byte, 0, 8+len(head)+min(left, maxElemList))
			data = append(data, unix.NFPROTO_INET, unix.NFNETLINK_V0, 0, 0)
			data = append(data, head...)
			listAt = len(data)
			data = appendAttrHeader(data, unix.NFTA_SET_ELEM_LIST_ELEMENTS|unix.NLA_F_NESTED, 0) // length set by flush
		}
		n++
		left -= size
		// The library numbers list items 1, 2, ... (the kernel ignores it).
		data = appendAttrHeader(data, uint16(n)|unix.NLA_F_NESTED, size-4)
		if end {
			data = appendAttrHeader(data, unix.NFTA_SET_ELEM_FLAGS|unix.NLA_F_NESTED, 4)
			data = binary.BigEndian.AppendUint32(data, unix.NFT_SET_ELEM_INTERVAL_END)
		}
		data = appendAttrHeader(data, unix.NFTA_SET_ELEM_KEY|unix.NLA_F_NESTED, align4(valueAttr))
		data = appendAttr(data, unix.NFTA_DATA_VALUE, key)
	})
	flush()
	return out
}
