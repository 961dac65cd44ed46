package nft

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/nfintercept/nfintercept/translate"
)

// Matches and statements of the ambient profiles (AMBIENT.md): setting
// masked conntrack marks, SNAT, and "has a local socket" (masked mark
// matches are markMatch's). The expressions are those nft 1.0.6 generates
// for the text (checked with `nft --debug=netlink`).

// setConnMarkStmt is iptables' "CONNMARK --set-xmark VALUE/MASK": the
// masked bits of the conntrack mark become VALUE, the others stay.
type setConnMarkStmt struct{ value, mask uint32 }

func (s setConnMarkStmt) exprs(setBinder) []expr.Any {
	ne := binaryutil.NativeEndian
	return []expr.Any{
		&expr.Ct{Key: expr.CtKeyMARK, Register: reg1},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: ne.PutUint32(^s.mask), Xor: ne.PutUint32(s.value)},
		&expr.Ct{Key: expr.CtKeyMARK, SourceRegister: true, Register: reg1},
	}
}

// String: nft prints (ct & ^mask) ^ value as "& (^mask | value) | value".
func (s setConnMarkStmt) String() string {
	return "ct mark set ct mark & " + markText(^s.mask|s.value) + " | " + markText(s.value)
}

// snatStmt rewrites the source address (nat postrouting).
type snatStmt struct{ addr netip.Addr }

func (s snatStmt) exprs(setBinder) []expr.Any {
	return []expr.Any{
		&expr.Immediate{Register: reg1, Data: s.addr.AsSlice()},
		&expr.NAT{Type: expr.NATTypeSourceNAT, Family: uint32(nfproto(famOf(s.addr))), RegAddrMin: reg1, RegAddrMax: reg1},
	}
}

func (s snatStmt) String() string {
	kw := "snat ip to "
	if s.addr.Is6() {
		kw = "snat ip6 to "
	}
	return kw + s.addr.String()
}

// socketExists is iptables' "-m owner --socket-exists": the packet belongs
// to a local socket. Loading skuid fails (the rule does not match) exactly
// when there is none, so any uid matches the rest.
var socketExists = ownerMatch{from: 0, to: 0xffffffff}

// lowerAmbientMatch lowers the matches only ambient uses; ok is false for
// any other kind. A nil stmt means the match needs nothing in nftables.
func lowerAmbientMatch(m *translate.Match, proto *l4protoMatch) (s stmt, ok bool, err error) {
	switch m.Kind {
	case translate.MatchProtoModule:
		// iptables' "-m tcp": loads the module the protocol match names.
		if proto == nil || proto.neg || proto.proto != m.Proto {
			return nil, true, fmt.Errorf("\"-m %s\" without \"-p %s\"", m.Proto, m.Proto)
		}
		return nil, true, nil
	case translate.MatchSocketExists:
		if m.Negate {
			return nil, true, fmt.Errorf("negated socket-exists match is not supported")
		}
		return socketExists, true, nil
	}
	return nil, false, nil
}

// lowerAmbientAction lowers the actions only ambient uses.
func lowerAmbientAction(a translate.Action, fam translate.Family) (s stmt, ok bool, err error) {
	switch a.Kind {
	case translate.ActSetConnMark:
		if a.Mark.Value&^a.Mark.Bits() != 0 {
			return nil, true, fmt.Errorf("conntrack mark %s sets bits outside its mask", a.Mark.Raw)
		}
		return setConnMarkStmt{value: a.Mark.Value, mask: a.Mark.Bits()}, true, nil
	case translate.ActSNAT:
		if !a.Addr.IsValid() {
			return nil, true, fmt.Errorf("snat without an address")
		}
		if famOf(a.Addr) != fam {
			return nil, true, fmt.Errorf("snat to %s in a rule for %s", a.Addr, fam)
		}
		return snatStmt{addr: a.Addr}, true, nil
	case translate.ActRestoreMark:
		if a.NfMask == 0 && a.CtMask == 0 {
			return nil, false, nil
		}
		if a.NfMask != 0xffffffff || a.CtMask != 0xffffffff {
			return nil, true, fmt.Errorf("restore-mark with partial masks %#x/%#x is not supported", a.NfMask, a.CtMask)
		}
		return restoreMarkStmt{}, true, nil
	}
	return nil, false, nil
}

// natFlagsMapIPs is what the kernel adds to a nat expression given an
// address register (it reports it back in NFTA_NAT_FLAGS).
const natFlagsMapIPs = unix.NF_NAT_RANGE_MAP_IPS

func addrSetType(t translate.SetType) bool {
	switch t {
	case translate.SetIPv4Prefixes, translate.SetIPv6Prefixes, translate.SetIPv4Addrs, translate.SetIPv6Addrs:
		return true
	}
	return false
}

// hostElements are the addresses of a runtime address set, sorted, each its
// own element (never merged: a node agent removes them one by one).
func hostElements(s *translate.Set) ([]Interval, error) {
	v4 := s.Type == translate.SetIPv4Addrs
	seen := map[netip.Addr]bool{}
	var out []Interval
	for _, p := range s.Prefixes {
		a := p.Prefix.Addr().Unmap()
		if !p.Prefix.IsValid() || !p.Prefix.IsSingleIP() || a.Is4() != v4 || a.Zone() != "" {
			return nil, fmt.Errorf("element %q is not a single %s address", p.Raw, map[bool]string{true: "IPv4", false: "IPv6"}[v4])
		}
		if !seen[a] {
			seen[a] = true
			out = append(out, Interval{First: a, Last: a})
		}
	}
	slices.SortFunc(out, func(x, y Interval) int { return x.First.Compare(y.First) })
	return out, nil
}

// canonNATFlags drops the flag the kernel adds to a nat expression with an
// address register (NF_NAT_RANGE_MAP_IPS): it is implied, and the library
// cannot send it.
func canonNATFlags(exprName string, typ uint16, v []byte) []byte {
	if exprName != "nat" || typ != unix.NFTA_NAT_FLAGS || len(v) != 4 {
		return v
	}
	f := binaryutil.BigEndian.Uint32(v) &^ natFlagsMapIPs
	return binaryutil.BigEndian.PutUint32(f)
}
