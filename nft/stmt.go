package nft

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/nfintercept/nfintercept/translate"
)

// Typed building blocks of a kernel rule. Each one knows its netlink
// expressions and the text nft prints for them, side by side, so the two
// renderings cannot drift apart. The expressions are the ones nft 1.0.6
// generates for that text (checked with `nft --debug=netlink`), except that
// our guards come first where nft puts them right before the load needing
// them, and interval sets lack nft's leading "0 end" element; `nft list`
// prints both the same, which the oracle tests check.
//
// Byte order traps handled here: ports and addresses are big-endian; mark,
// uid, gid, ct state and ct zone are host-endian; interface names are
// zero-padded to 16 bytes (a shorter cmp is a prefix match).

// stmt is one match or statement of a kernel rule.
type stmt interface {
	exprs(b setBinder) []expr.Any
	String() string
}

// setBinder turns a set reference into the kernel set a lookup names; for
// anonymous sets it queues the set in the rule's transaction.
type setBinder interface {
	bind(s *setRef) *nftables.Set
}

// Dependencies nft leaves out when printing: "meta nfproto" is implied by a
// later ip/ip6 address match, "meta l4proto tcp" by a later tcp/udp port
// match (nft adds them back when it parses the text).
type depKind uint8

const (
	depNone depKind = iota
	depNetwork
	depTransport
)

// dependent is implemented by stmts that are protocol dependencies.
type dependent interface{ dependency() depKind }

// payloadUser is implemented by stmts that load packet headers.
type payloadUser interface{ payloadBase() depKind }

const reg1 = unix.NFT_REG_1

// --- family and protocol guards ---

type nfprotoMatch struct{ fam translate.Family }

func (m nfprotoMatch) exprs(setBinder) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{nfproto(m.fam)}},
	}
}
func (m nfprotoMatch) String() string      { return "meta nfproto " + m.fam.String() }
func (m nfprotoMatch) dependency() depKind { return depNetwork }

func nfproto(f translate.Family) byte {
	if f == translate.IPv6 {
		return unix.NFPROTO_IPV6
	}
	return unix.NFPROTO_IPV4
}

type l4protoMatch struct {
	proto translate.Proto
	neg   bool
}

func (m l4protoMatch) exprs(setBinder) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
		&expr.Cmp{Op: cmpOp(m.neg), Register: reg1, Data: []byte{protoNum(m.proto)}},
	}
}
func (m l4protoMatch) String() string { return "meta l4proto " + neg(m.neg) + string(m.proto) }
func (m l4protoMatch) dependency() depKind {
	if m.neg {
		return depNone
	}
	return depTransport
}

func protoNum(p translate.Proto) byte {
	if p == translate.UDP {
		return unix.IPPROTO_UDP
	}
	return unix.IPPROTO_TCP
}

// --- interfaces ---

type ifaceMatch struct {
	out  bool
	name string // without the trailing "+"
	wild bool   // prefix match
	neg  bool
}

func (m ifaceMatch) exprs(setBinder) []expr.Any {
	key := expr.MetaKeyIIFNAME
	if m.out {
		key = expr.MetaKeyOIFNAME
	}
	data := []byte(m.name)
	if !m.wild {
		data = make([]byte, unix.IFNAMSIZ)
		copy(data, m.name)
	}
	return []expr.Any{
		&expr.Meta{Key: key, Register: reg1},
		&expr.Cmp{Op: cmpOp(m.neg), Register: reg1, Data: data},
	}
}

func (m ifaceMatch) String() string {
	kw := "iifname "
	if m.out {
		kw = "oifname "
	}
	name := m.name
	if m.wild {
		name += "*"
	}
	return kw + neg(m.neg) + `"` + name + `"`
}

// --- addresses ---

// addrLoad loads the source or destination address of the family.
func addrLoad(fam translate.Family, src bool, length uint32) *expr.Payload {
	off := uint32(16)
	switch {
	case fam == translate.IPv4 && src:
		off = 12
	case fam == translate.IPv6 && src:
		off = 8
	case fam == translate.IPv6:
		off = 24
	}
	return &expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: length}
}

func addrKeyword(fam translate.Family, src bool) string {
	kw := "ip"
	if fam == translate.IPv6 {
		kw = "ip6"
	}
	if src {
		return kw + " saddr "
	}
	return kw + " daddr "
}

func addrBytes(a netip.Addr) []byte { return a.AsSlice() }

func famOf(a netip.Addr) translate.Family {
	if a.Is4() {
		return translate.IPv4
	}
	return translate.IPv6
}

type prefixMatch struct {
	src bool
	p   netip.Prefix // masked
	neg bool
}

// exprs follows nft: a byte-aligned prefix loads only its bytes; any other
// prefix loads the whole address and masks it.
func (m prefixMatch) exprs(setBinder) []expr.Any {
	fam := famOf(m.p.Addr())
	addr := addrBytes(m.p.Addr())
	n := m.p.Bits()
	if n > 0 && n%8 == 0 {
		return []expr.Any{
			addrLoad(fam, m.src, uint32(n/8)),
			&expr.Cmp{Op: cmpOp(m.neg), Register: reg1, Data: addr[:n/8]},
		}
	}
	mask := make([]byte, len(addr))
	for i := 0; i < n; i++ {
		mask[i/8] |= 0x80 >> (i % 8)
	}
	return []expr.Any{
		addrLoad(fam, m.src, uint32(len(addr))),
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: uint32(len(addr)), Mask: mask, Xor: make([]byte, len(addr))},
		&expr.Cmp{Op: cmpOp(m.neg), Register: reg1, Data: addr},
	}
}

func (m prefixMatch) String() string {
	v := m.p.String()
	if m.p.IsSingleIP() {
		v = m.p.Addr().String()
	}
	return addrKeyword(famOf(m.p.Addr()), m.src) + neg(m.neg) + v
}
func (m prefixMatch) payloadBase() depKind { return depNetwork }

// addrRangeMatch is a range that is not a single prefix.
type addrRangeMatch struct {
	src bool
	iv  Interval
	neg bool
}

func (m addrRangeMatch) exprs(setBinder) []expr.Any {
	fam := famOf(m.iv.First)
	from, to := addrBytes(m.iv.First), addrBytes(m.iv.Last)
	return append([]expr.Any{addrLoad(fam, m.src, uint32(len(from)))}, rangeExprs(from, to, m.neg)...)
}
func (m addrRangeMatch) String() string {
	return addrKeyword(famOf(m.iv.First), m.src) + neg(m.neg) + m.iv.String()
}
func (m addrRangeMatch) payloadBase() depKind { return depNetwork }

// rangeExprs compares register 1 (big-endian data) with [from, to] like nft:
// two cmps for ==, one range expression for !=.
func rangeExprs(from, to []byte, negate bool) []expr.Any {
	if negate {
		return []expr.Any{&expr.Range{Op: expr.CmpOpNeq, Register: reg1, FromData: from, ToData: to}}
	}
	return []expr.Any{
		&expr.Cmp{Op: expr.CmpOpGte, Register: reg1, Data: from},
		&expr.Cmp{Op: expr.CmpOpLte, Register: reg1, Data: to},
	}
}

type addrSetMatch struct {
	src bool
	fam translate.Family
	set *setRef
	neg bool
}

func (m addrSetMatch) exprs(b setBinder) []expr.Any {
	n := uint32(4)
	if m.fam == translate.IPv6 {
		n = 16
	}
	return []expr.Any{addrLoad(m.fam, m.src, n), lookup(b.bind(m.set), m.neg)}
}
func (m addrSetMatch) String() string {
	return addrKeyword(m.fam, m.src) + neg(m.neg) + m.set.String()
}
func (m addrSetMatch) payloadBase() depKind { return depNetwork }

func lookup(s *nftables.Set, negate bool) *expr.Lookup {
	return &expr.Lookup{SourceRegister: reg1, SetName: s.Name, SetID: s.ID, Invert: negate}
}

// --- ports ---

type portMatch struct {
	proto translate.Proto
	src   bool
	r     portRange
	neg   bool
}

func portLoad(src bool) *expr.Payload {
	off := uint32(2)
	if src {
		off = 0
	}
	return &expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: off, Len: 2}
}

func portKeyword(p translate.Proto, src bool) string {
	if src {
		return string(p) + " sport "
	}
	return string(p) + " dport "
}

func (m portMatch) exprs(setBinder) []expr.Any {
	be := binaryutil.BigEndian
	if m.r.first == m.r.last {
		return []expr.Any{portLoad(m.src), &expr.Cmp{Op: cmpOp(m.neg), Register: reg1, Data: be.PutUint16(m.r.first)}}
	}
	return append([]expr.Any{portLoad(m.src)}, rangeExprs(be.PutUint16(m.r.first), be.PutUint16(m.r.last), m.neg)...)
}
func (m portMatch) String() string       { return portKeyword(m.proto, m.src) + neg(m.neg) + m.r.String() }
func (m portMatch) payloadBase() depKind { return depTransport }

type portSetMatch struct {
	proto translate.Proto
	src   bool
	set   *setRef
	neg   bool
}

func (m portSetMatch) exprs(b setBinder) []expr.Any {
	return []expr.Any{portLoad(m.src), lookup(b.bind(m.set), m.neg)}
}
func (m portSetMatch) String() string {
	return portKeyword(m.proto, m.src) + neg(m.neg) + m.set.String()
}
func (m portSetMatch) payloadBase() depKind { return depTransport }

// --- socket owner ---

type ownerMatch struct {
	gid      bool
	from, to uint32
	neg      bool
}

// exprs: uid/gid are host-endian; a range needs nft's byteorder conversion
// first because cmp/range compare bytes as big-endian numbers.
func (m ownerMatch) exprs(setBinder) []expr.Any {
	key := expr.MetaKeySKUID
	if m.gid {
		key = expr.MetaKeySKGID
	}
	load := &expr.Meta{Key: key, Register: reg1}
	if m.from == m.to {
		return []expr.Any{load, &expr.Cmp{Op: cmpOp(m.neg), Register: reg1, Data: binaryutil.NativeEndian.PutUint32(m.from)}}
	}
	be := binaryutil.BigEndian
	conv := &expr.Byteorder{SourceRegister: reg1, DestRegister: reg1, Op: expr.ByteorderHton, Len: 4, Size: 4}
	return append([]expr.Any{load, conv}, rangeExprs(be.PutUint32(m.from), be.PutUint32(m.to), m.neg)...)
}

func (m ownerMatch) String() string {
	kw := "meta skuid "
	if m.gid {
		kw = "meta skgid "
	}
	v := fmt.Sprint(m.from)
	if m.from != m.to {
		v = fmt.Sprintf("%d-%d", m.from, m.to)
	}
	return kw + neg(m.neg) + v
}

// --- conntrack state and marks ---

type ctStateMatch struct {
	state translate.CtState
	neg   bool
}

// exprs: ct state is a bit field; "ct state a,b" means any of the bits,
// "ct state ! a,b" none of them.
func (m ctStateMatch) exprs(setBinder) []expr.Any {
	ne := binaryutil.NativeEndian
	op := expr.CmpOpNeq
	if m.neg {
		op = expr.CmpOpEq
	}
	return []expr.Any{
		&expr.Ct{Key: expr.CtKeySTATE, Register: reg1},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: ne.PutUint32(ctStateBits(m.state)), Xor: make([]byte, 4)},
		&expr.Cmp{Op: op, Register: reg1, Data: make([]byte, 4)},
	}
}

func (m ctStateMatch) String() string {
	var names []string
	// nft prints flags in bit order.
	if m.state&translate.CtInvalid != 0 {
		names = append(names, "invalid")
	}
	if m.state&translate.CtEstablished != 0 {
		names = append(names, "established")
	}
	if m.state&translate.CtRelated != 0 {
		names = append(names, "related")
	}
	s := "ct state "
	if m.neg {
		s += "! "
	}
	return s + strings.Join(names, ",")
}

func ctStateBits(s translate.CtState) uint32 {
	var b uint32
	if s&translate.CtInvalid != 0 {
		b |= expr.CtStateBitINVALID
	}
	if s&translate.CtEstablished != 0 {
		b |= expr.CtStateBitESTABLISHED
	}
	if s&translate.CtRelated != 0 {
		b |= expr.CtStateBitRELATED
	}
	return b
}

type markMatch struct {
	ct    bool // conntrack mark instead of packet mark
	value uint32
	mask  uint32 // bits compared; 0 = all ("-m mark --mark V/MASK")
	neg   bool
}

func (m markMatch) exprs(setBinder) []expr.Any {
	ne := binaryutil.NativeEndian
	var load expr.Any = &expr.Meta{Key: expr.MetaKeyMARK, Register: reg1}
	if m.ct {
		load = &expr.Ct{Key: expr.CtKeyMARK, Register: reg1}
	}
	out := []expr.Any{load}
	if m.mask != 0 && m.mask != 0xffffffff {
		out = append(out, &expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: ne.PutUint32(m.mask), Xor: make([]byte, 4)})
	}
	return append(out, &expr.Cmp{Op: cmpOp(m.neg), Register: reg1, Data: ne.PutUint32(m.value)})
}

// String: nft prints a masked mark as "meta mark & MASK == V".
func (m markMatch) String() string {
	kw := "meta mark "
	if m.ct {
		kw = "ct mark "
	}
	if m.mask != 0 && m.mask != 0xffffffff {
		op := "== "
		if m.neg {
			op = "!= "
		}
		return kw + "& " + markText(m.mask) + " " + op + markText(m.value)
	}
	return kw + neg(m.neg) + markText(m.value)
}

func markText(v uint32) string { return fmt.Sprintf("0x%08x", v) }

// --- statements and verdicts ---

type counterStmt struct{}

func (counterStmt) exprs(setBinder) []expr.Any { return []expr.Any{&expr.Counter{}} }
func (counterStmt) String() string             { return "counter" }

type verdictStmt struct {
	kind  expr.VerdictKind
	chain string
}

func (v verdictStmt) exprs(setBinder) []expr.Any {
	return []expr.Any{&expr.Verdict{Kind: v.kind, Chain: v.chain}}
}

func (v verdictStmt) String() string {
	switch v.kind {
	case expr.VerdictReturn:
		return "return"
	case expr.VerdictAccept:
		return "accept"
	case expr.VerdictDrop:
		return "drop"
	case expr.VerdictJump:
		return "jump " + v.chain
	}
	return fmt.Sprintf("verdict(%d)", v.kind)
}

type redirectStmt struct{ port uint16 }

func (r redirectStmt) exprs(setBinder) []expr.Any {
	return []expr.Any{
		&expr.Immediate{Register: reg1, Data: binaryutil.BigEndian.PutUint16(r.port)},
		&expr.Redir{RegisterProtoMin: reg1, RegisterProtoMax: reg1, Flags: unix.NF_NAT_RANGE_PROTO_SPECIFIED},
	}
}
func (r redirectStmt) String() string { return fmt.Sprintf("redirect to :%d", r.port) }

// tproxyStmt diverts to a local socket; fam 0 means both families.
type tproxyStmt struct {
	fam  translate.Family
	port uint16
}

func (t tproxyStmt) exprs(setBinder) []expr.Any {
	f := byte(unix.NFPROTO_UNSPEC)
	if t.fam == translate.IPv4 || t.fam == translate.IPv6 {
		f = nfproto(t.fam)
	}
	return []expr.Any{
		&expr.Immediate{Register: reg1, Data: binaryutil.BigEndian.PutUint16(t.port)},
		&expr.TProxy{Family: f, RegPort: reg1},
	}
}

func (t tproxyStmt) String() string {
	switch t.fam {
	case translate.IPv4:
		return fmt.Sprintf("tproxy ip to :%d", t.port)
	case translate.IPv6:
		return fmt.Sprintf("tproxy ip6 to :%d", t.port)
	}
	return fmt.Sprintf("tproxy to :%d", t.port)
}

type setMarkStmt struct{ value uint32 }

func (s setMarkStmt) exprs(setBinder) []expr.Any {
	return []expr.Any{
		&expr.Immediate{Register: reg1, Data: binaryutil.NativeEndian.PutUint32(s.value)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: reg1},
	}
}
func (s setMarkStmt) String() string { return "meta mark set " + markText(s.value) }

// saveMarkStmt copies the packet mark to the conntrack mark.
type saveMarkStmt struct{}

func (saveMarkStmt) exprs(setBinder) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1},
		&expr.Ct{Key: expr.CtKeyMARK, SourceRegister: true, Register: reg1},
	}
}
func (saveMarkStmt) String() string { return "ct mark set meta mark" }

// restoreMarkStmt copies the conntrack mark to the packet mark.
type restoreMarkStmt struct{}

func (restoreMarkStmt) exprs(setBinder) []expr.Any {
	return []expr.Any{
		&expr.Ct{Key: expr.CtKeyMARK, Register: reg1},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: reg1},
	}
}
func (restoreMarkStmt) String() string { return "meta mark set ct mark" }

// ctZoneStmt sets the conntrack zone (a 2-byte host-endian value).
type ctZoneStmt struct{ zone uint16 }

func (z ctZoneStmt) exprs(setBinder) []expr.Any {
	return []expr.Any{
		&expr.Immediate{Register: reg1, Data: binaryutil.NativeEndian.PutUint16(z.zone)},
		&expr.Ct{Key: expr.CtKeyZONE, SourceRegister: true, Register: reg1},
	}
}
func (z ctZoneStmt) String() string { return fmt.Sprintf("ct zone set %d", z.zone) }

func cmpOp(negate bool) expr.CmpOp {
	if negate {
		return expr.CmpOpNeq
	}
	return expr.CmpOpEq
}

func neg(negate bool) string {
	if negate {
		return "!= "
	}
	return ""
}
