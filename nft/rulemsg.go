package nft

import (
	"encoding/binary"
	"fmt"

	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Rules are encoded here rather than by google/nftables' AddRule, which
// builds every attribute of every expression as its own slice (about 60
// allocations per rule): on the path of every apply that was a quarter of
// the user-space time. The bytes are the library's (checked, message by
// message, by TestRuleMsgMatchesLibrary and TestRuleMsgExprs); an
// expression type not handled here is an error, never a second encoder.

// attrBuf appends netlink attributes; nested ones are opened and closed.
type attrBuf []byte

func (b *attrBuf) open(typ uint16) int {
	at := len(*b)
	*b = appendAttrHeader(*b, typ|unix.NLA_F_NESTED, 0)
	return at
}

func (b *attrBuf) close(at int) {
	binary.NativeEndian.PutUint16((*b)[at:], uint16(len(*b)-at))
}

func (b *attrBuf) u32(typ uint16, v uint32) {
	*b = binary.BigEndian.AppendUint32(appendAttrHeader(*b, typ, 4), v)
}

func (b *attrBuf) u64(typ uint16, v uint64) {
	*b = binary.BigEndian.AppendUint64(appendAttrHeader(*b, typ, 8), v)
}

func (b *attrBuf) bytes(typ uint16, v []byte) { *b = appendAttr(*b, typ, v) }

func (b *attrBuf) str(typ uint16, s string) {
	*b = appendAttrHeader(*b, typ, len(s)+1)
	*b = append(*b, s...)
	*b = append(*b, make([]byte, align4(len(s)+1)-len(s))...)
}

// data appends a nested attribute holding one NFTA_DATA_VALUE.
func (b *attrBuf) data(typ uint16, v []byte) {
	at := b.open(typ)
	b.bytes(unix.NFTA_DATA_VALUE, v)
	b.close(at)
}

// ruleMsg encodes "add rule inet TABLE CHAIN EXPRS" (appended).
func ruleMsg(table, chain string, exprs []expr.Any) (netlink.Message, error) {
	b := make(attrBuf, 0, 512)
	b = append(b, unix.NFPROTO_INET, unix.NFNETLINK_V0, 0, 0)
	b.str(unix.NFTA_RULE_TABLE, table)
	b.str(unix.NFTA_RULE_CHAIN, chain)
	list := b.open(unix.NFTA_RULE_EXPRESSIONS)
	for _, e := range exprs {
		elem := b.open(unix.NFTA_LIST_ELEM)
		if err := b.expr(e); err != nil {
			return netlink.Message{}, err
		}
		b.close(elem)
	}
	b.close(list)
	return netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(nftSubsys | unix.NFT_MSG_NEWRULE),
			Flags: netlink.Request | netlink.Create | unix.NLM_F_APPEND,
		},
		Data: b,
	}, nil
}

// expr appends the name and data of one expression.
func (b *attrBuf) expr(e expr.Any) error {
	begin := func(name string) int {
		b.str(unix.NFTA_EXPR_NAME, name)
		return b.open(unix.NFTA_EXPR_DATA)
	}
	switch e := e.(type) {
	case *expr.Meta:
		at := begin("meta")
		b.u32(unix.NFTA_META_KEY, uint32(e.Key))
		if e.SourceRegister {
			b.u32(unix.NFTA_META_SREG, e.Register)
		} else {
			b.u32(unix.NFTA_META_DREG, e.Register)
		}
		b.close(at)
	case *expr.Cmp:
		at := begin("cmp")
		b.u32(unix.NFTA_CMP_SREG, e.Register)
		b.u32(unix.NFTA_CMP_OP, uint32(e.Op))
		b.data(unix.NFTA_CMP_DATA, e.Data)
		b.close(at)
	case *expr.Payload:
		if e.OperationType == expr.PayloadWrite || e.CsumType > 0 {
			return fmt.Errorf("no encoding for a payload write")
		}
		at := begin("payload")
		b.u32(unix.NFTA_PAYLOAD_DREG, e.DestRegister)
		b.u32(unix.NFTA_PAYLOAD_BASE, uint32(e.Base))
		b.u32(unix.NFTA_PAYLOAD_OFFSET, e.Offset)
		b.u32(unix.NFTA_PAYLOAD_LEN, e.Len)
		b.close(at)
	case *expr.Counter:
		at := begin("counter")
		b.u64(unix.NFTA_COUNTER_BYTES, e.Bytes)
		b.u64(unix.NFTA_COUNTER_PACKETS, e.Packets)
		b.close(at)
	case *expr.Verdict:
		at := begin("immediate")
		b.u32(unix.NFTA_IMMEDIATE_DREG, unix.NFT_REG_VERDICT)
		imm := b.open(unix.NFTA_IMMEDIATE_DATA)
		v := b.open(unix.NFTA_DATA_VERDICT)
		b.u32(unix.NFTA_VERDICT_CODE, uint32(e.Kind))
		if e.Chain != "" {
			b.str(unix.NFTA_VERDICT_CHAIN, e.Chain)
		}
		b.close(v)
		b.close(imm)
		b.close(at)
	case *expr.Immediate:
		at := begin("immediate")
		b.u32(unix.NFTA_IMMEDIATE_DREG, e.Register)
		b.data(unix.NFTA_IMMEDIATE_DATA, e.Data)
		b.close(at)
	case *expr.Bitwise:
		at := begin("bitwise")
		b.u32(unix.NFTA_BITWISE_SREG, e.SourceRegister)
		b.u32(unix.NFTA_BITWISE_DREG, e.DestRegister)
		b.u32(unix.NFTA_BITWISE_LEN, e.Len)
		b.data(unix.NFTA_BITWISE_MASK, e.Mask)
		b.data(unix.NFTA_BITWISE_XOR, e.Xor)
		b.close(at)
	case *expr.Lookup:
		at := begin("lookup")
		if e.SourceRegister != 0 {
			b.u32(unix.NFTA_LOOKUP_SREG, e.SourceRegister)
		}
		if e.IsDestRegSet {
			b.u32(unix.NFTA_LOOKUP_DREG, e.DestRegister)
		}
		if e.Invert {
			b.u32(unix.NFTA_LOOKUP_FLAGS, unix.NFT_LOOKUP_F_INV)
		}
		b.str(unix.NFTA_LOOKUP_SET, e.SetName)
		b.u32(unix.NFTA_LOOKUP_SET_ID, e.SetID)
		b.close(at)
	case *expr.Ct:
		at := begin("ct")
		b.u32(unix.NFTA_CT_KEY, uint32(e.Key))
		if e.SourceRegister {
			b.u32(unix.NFTA_CT_SREG, e.Register)
		} else {
			b.u32(unix.NFTA_CT_DREG, e.Register)
		}
		switch e.Key {
		case expr.CtKeySRC, expr.CtKeyDST, expr.CtKeyPROTOSRC, expr.CtKeyPROTODST:
			b.u32(unix.NFTA_CT_DIRECTION, e.Direction)
		}
		b.close(at)
	case *expr.Range:
		at := begin("range")
		if e.Register > 0 {
			b.u32(unix.NFTA_RANGE_SREG, e.Register)
		}
		b.u32(unix.NFTA_RANGE_OP, uint32(e.Op))
		if len(e.FromData) > 0 {
			b.data(unix.NFTA_RANGE_FROM_DATA, e.FromData)
		}
		if len(e.ToData) > 0 {
			b.data(unix.NFTA_RANGE_TO_DATA, e.ToData)
		}
		b.close(at)
	case *expr.Redir:
		at := begin("redir")
		if e.RegisterProtoMin > 0 {
			b.u32(unix.NFTA_REDIR_REG_PROTO_MIN, e.RegisterProtoMin)
		}
		if e.RegisterProtoMax > 0 {
			b.u32(unix.NFTA_REDIR_REG_PROTO_MAX, e.RegisterProtoMax)
		}
		if e.Flags > 0 {
			b.u32(unix.NFTA_REDIR_FLAGS, e.Flags)
		}
		b.close(at)
	case *expr.NAT:
		// As the library marshals it (only what snatStmt uses: addresses).
		if e.RegProtoMin != 0 || e.Random || e.FullyRandom || e.Persistent || e.Prefix || e.Specified {
			return fmt.Errorf("no encoding for nat with ports or flags")
		}
		at := begin("nat")
		b.u32(unix.NFTA_NAT_TYPE, uint32(e.Type))
		b.u32(unix.NFTA_NAT_FAMILY, e.Family)
		if e.RegAddrMin != 0 {
			b.u32(unix.NFTA_NAT_REG_ADDR_MIN, e.RegAddrMin)
			if e.RegAddrMax != 0 {
				b.u32(unix.NFTA_NAT_REG_ADDR_MAX, e.RegAddrMax)
			}
		}
		b.close(at)
	case *expr.TProxy:
		at := begin("tproxy")
		b.u32(expr.NFTA_TPROXY_FAMILY, uint32(e.Family))
		b.u32(expr.NFTA_TPROXY_REG_PORT, e.RegPort)
		if e.RegAddr != 0 {
			b.u32(expr.NFTA_TPROXY_REG_ADDR, e.RegAddr)
		}
		b.close(at)
	case *expr.Byteorder:
		at := begin("byteorder")
		b.u32(unix.NFTA_BYTEORDER_SREG, e.SourceRegister)
		b.u32(unix.NFTA_BYTEORDER_DREG, e.DestRegister)
		b.u32(unix.NFTA_BYTEORDER_OP, uint32(e.Op))
		b.u32(unix.NFTA_BYTEORDER_LEN, e.Len)
		b.u32(unix.NFTA_BYTEORDER_SIZE, e.Size)
		b.close(at)
	default:
		// Forms no statement produces (a payload write): refused rather
		// than encoded by a second encoder.
		return fmt.Errorf("no encoding for %T", e)
	}
	return nil
}
