package nft

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Rule comparison for Verify works on the netlink attributes of each
// expression (NFTA_LIST_ELEM of NFTA_RULE_EXPRESSIONS), not on the library's
// decoded expressions, which lose tproxy and "ct ... set". Both sides, the
// bytes the kernel dumps and the bytes our lowering sends, go through the
// same parser into a canonical form: attributes sorted by type, strings
// without their NUL, volatile or batch-only attributes dropped (counter
// values, set IDs), attributes the kernel always reports dropped when they
// hold their default, and set names resolved (an anonymous set is replaced
// by its elements, whose kernel name means nothing).

type attrKind uint8

const (
	aRaw    attrKind = iota // compared as bytes, printed as hex
	aNum                    // big-endian u32
	aString                 // NUL-terminated string
	aData                   // nested nft_data: a value or a verdict
	aSet                    // set name, resolved by the caller
	aSkip                   // not compared: counter values, batch-local IDs
)

// attrSpec describes one attribute of an expression. With zeroDefault the
// attribute is dropped when it is 0: the kernel always reports it, the
// library sends it only when it is not 0.
type attrSpec struct {
	name        string
	kind        attrKind
	zeroDefault bool
}

// exprSpecs lists, per expression, its attributes by type number
// (linux/netfilter/nf_tables.h). Expressions we never emit, and attributes
// missing here, are compared as raw bytes: unknown is never equal by accident.
var exprSpecs = map[string][]attrSpec{
	"payload": {1: {"dreg", aNum, false}, 2: {"base", aNum, false}, 3: {"offset", aNum, false}, 4: {"len", aNum, false},
		5: {"sreg", aNum, false}, 6: {"csum_type", aNum, true}, 7: {"csum_offset", aNum, true}, 8: {"csum_flags", aNum, true}},
	"meta":  {1: {"dreg", aNum, false}, 2: {"key", aNum, false}, 3: {"sreg", aNum, false}},
	"cmp":   {1: {"sreg", aNum, false}, 2: {"op", aNum, false}, 3: {"data", aData, false}},
	"range": {1: {"sreg", aNum, false}, 2: {"op", aNum, false}, 3: {"from", aData, false}, 4: {"to", aData, false}},
	"bitwise": {1: {"sreg", aNum, false}, 2: {"dreg", aNum, false}, 3: {"len", aNum, false}, 4: {"mask", aData, false},
		5: {"xor", aData, false}, 6: {"op", aNum, true}, 7: {"data", aData, false}},
	"lookup":    {1: {"set", aSet, false}, 2: {"sreg", aNum, false}, 3: {"dreg", aNum, false}, 4: {"set_id", aSkip, false}, 5: {"flags", aNum, true}},
	"immediate": {1: {"dreg", aNum, false}, 2: {"data", aData, false}},
	"counter":   {1: {"bytes", aSkip, false}, 2: {"packets", aSkip, false}, 3: {"pad", aSkip, false}},
	"ct":        {1: {"dreg", aNum, false}, 2: {"key", aNum, false}, 3: {"direction", aRaw, false}, 4: {"sreg", aNum, false}},
	"redir":     {1: {"reg_proto_min", aNum, false}, 2: {"reg_proto_max", aNum, false}, 3: {"flags", aNum, true}},
	"nat": {1: {"type", aNum, false}, 2: {"family", aNum, false}, 3: {"reg_addr_min", aNum, false}, 4: {"reg_addr_max", aNum, false},
		5: {"reg_proto_min", aNum, false}, 6: {"reg_proto_max", aNum, false}, 7: {"flags", aNum, true}},
	"tproxy":    {1: {"family", aNum, false}, 2: {"reg_addr", aNum, false}, 3: {"reg_port", aNum, false}},
	"byteorder": {1: {"sreg", aNum, false}, 2: {"dreg", aNum, false}, 3: {"op", aNum, false}, 4: {"len", aNum, false}, 5: {"size", aNum, false}},
}

// exprAttr is one canonical attribute.
type exprAttr struct {
	typ    uint16
	spec   attrSpec
	value  []byte     // aRaw, aNum; the value of an nft_data
	text   string     // aString, aSet
	code   *int32     // verdict code of an nft_data verdict
	nested []exprAttr // unknown nested attributes, raw
}

// canonExpr is one expression in canonical form.
type canonExpr struct {
	name  string
	attrs []exprAttr // sorted by type
}

// setResolver maps the set name in a lookup to what the comparison uses:
// "@name" for a named set, the element list for an anonymous one.
type setResolver func(name string) string

// parseExprs canonicalises the contents of NFTA_RULE_EXPRESSIONS: a list of
// NFTA_LIST_ELEM attributes.
func parseExprs(b []byte, sets setResolver) ([]canonExpr, error) {
	elems, err := netlink.UnmarshalAttributes(b)
	if err != nil {
		return nil, fmt.Errorf("expression list: %w", err)
	}
	out := make([]canonExpr, 0, len(elems))
	for _, el := range elems {
		e, err := parseExpr(el.Data, sets)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// parseExpr canonicalises one NFTA_LIST_ELEM: NFTA_EXPR_NAME and
// NFTA_EXPR_DATA.
func parseExpr(b []byte, sets setResolver) (canonExpr, error) {
	attrs, err := netlink.UnmarshalAttributes(b)
	if err != nil {
		return canonExpr{}, fmt.Errorf("expression: %w", err)
	}
	var e canonExpr
	var data []byte
	for _, a := range attrs {
		switch a.Type & nlaTypeMask {
		case unix.NFTA_EXPR_NAME:
			e.name = strings.TrimRight(string(a.Data), "\x00")
		case unix.NFTA_EXPR_DATA:
			data = a.Data
		}
	}
	if e.name == "" {
		return e, fmt.Errorf("expression without a name")
	}
	inner, err := netlink.UnmarshalAttributes(data)
	if err != nil {
		return e, fmt.Errorf("%s expression: %w", e.name, err)
	}
	table := exprSpecs[e.name]
	for _, a := range inner {
		typ := a.Type & nlaTypeMask
		spec := attrSpec{name: fmt.Sprintf("attr%d", typ), kind: aRaw}
		if int(typ) < len(table) && table[typ].name != "" {
			spec = table[typ]
		}
		ca := exprAttr{typ: typ, spec: spec}
		switch spec.kind {
		case aSkip:
			continue
		case aNum, aRaw:
			ca.value = canonNATFlags(e.name, typ, a.Data)
			if spec.zeroDefault && allZeroBytes(ca.value) {
				continue
			}
		case aString:
			ca.text = strings.TrimRight(string(a.Data), "\x00")
		case aSet:
			ca.text = sets(strings.TrimRight(string(a.Data), "\x00"))
		case aData:
			if err := parseData(a.Data, &ca); err != nil {
				return e, fmt.Errorf("%s expression, %s: %w", e.name, spec.name, err)
			}
		}
		e.attrs = append(e.attrs, ca)
	}
	slices.SortStableFunc(e.attrs, func(a, b exprAttr) int { return int(a.typ) - int(b.typ) })
	return e, nil
}

// parseData reads an nft_data: NFTA_DATA_VALUE bytes, or NFTA_DATA_VERDICT
// with a code and, for jump/goto, a chain name.
func parseData(b []byte, ca *exprAttr) error {
	attrs, err := netlink.UnmarshalAttributes(b)
	if err != nil {
		return err
	}
	for _, a := range attrs {
		switch a.Type & nlaTypeMask {
		case unix.NFTA_DATA_VALUE:
			ca.value = a.Data
		case unix.NFTA_DATA_VERDICT:
			vs, err := netlink.UnmarshalAttributes(a.Data)
			if err != nil {
				return fmt.Errorf("verdict: %w", err)
			}
			for _, v := range vs {
				switch v.Type & nlaTypeMask {
				case unix.NFTA_VERDICT_CODE:
					if len(v.Data) != 4 {
						return fmt.Errorf("verdict code of %d bytes", len(v.Data))
					}
					c := int32(binary.BigEndian.Uint32(v.Data))
					ca.code = &c
				case unix.NFTA_VERDICT_CHAIN:
					ca.text = strings.TrimRight(string(v.Data), "\x00")
				}
				// NFTA_VERDICT_CHAIN_ID only exists in a batch.
			}
		default:
			ca.nested = append(ca.nested, exprAttr{typ: a.Type & nlaTypeMask, value: a.Data})
		}
	}
	return nil
}

func allZeroBytes(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// key is the canonical form compared between desired and kernel rules.
func (e canonExpr) key() string {
	var b strings.Builder
	b.WriteString(e.name)
	for _, a := range e.attrs {
		fmt.Fprintf(&b, " %d=", a.typ)
		b.WriteString(a.valueKey())
	}
	return b.String()
}

func (a exprAttr) valueKey() string {
	switch a.spec.kind {
	case aString, aSet:
		return fmt.Sprintf("%q", a.text)
	case aData:
		s := ""
		if a.value != nil {
			s = "v:" + hex.EncodeToString(a.value)
		}
		if a.code != nil {
			s += fmt.Sprintf("c:%d:%q", *a.code, a.text)
		}
		for _, n := range a.nested {
			s += fmt.Sprintf("n%d:%x", n.typ, n.value)
		}
		return "[" + s + "]"
	}
	return hex.EncodeToString(a.value)
}

// String renders the expression in a style close to `nft --debug=netlink`:
// readable enough to see what differs, and lossless.
func (e canonExpr) String() string {
	parts := []string{e.name}
	for _, a := range e.attrs {
		parts = append(parts, a.spec.name+" "+a.valueText(e.name))
	}
	return "[ " + strings.Join(parts, " ") + " ]"
}

func (a exprAttr) valueText(exprName string) string {
	switch a.spec.kind {
	case aString:
		return a.text
	case aSet:
		return a.text
	case aNum:
		if len(a.value) != 4 {
			return hexText(a.value)
		}
		n := binary.BigEndian.Uint32(a.value)
		if names := enumNames[exprName+"."+a.spec.name]; names != nil {
			if s, ok := names[n]; ok {
				return s
			}
		}
		return fmt.Sprint(n)
	case aData:
		if a.code != nil {
			v := verdictNames[*a.code]
			if v == "" {
				v = fmt.Sprintf("verdict(%d)", *a.code)
			}
			if a.text != "" {
				v += " " + a.text
			}
			return v
		}
		return hexText(a.value)
	}
	return hexText(a.value)
}

func hexText(b []byte) string { return "0x" + hex.EncodeToString(b) }

// enumNames names the numeric values worth naming in diffs.
var enumNames = map[string]map[uint32]string{
	"cmp.op":       {0: "eq", 1: "neq", 2: "lt", 3: "lte", 4: "gt", 5: "gte"},
	"range.op":     {0: "eq", 1: "neq"},
	"payload.base": {0: "link", 1: "network", 2: "transport", 3: "inner"},
	"meta.key": {0: "len", 1: "protocol", 2: "priority", 3: "mark", 4: "iif", 5: "oif", 6: "iifname", 7: "oifname",
		10: "skuid", 11: "skgid", 15: "nfproto", 16: "l4proto"},
	"ct.key":         {0: "state", 1: "direction", 2: "status", 3: "mark", 17: "zone"},
	"tproxy.family":  {0: "unspec", 2: "ip", 10: "ip6"},
	"byteorder.op":   {0: "ntoh", 1: "hton"},
	"lookup.flags":   {1: "invert"},
	"immediate.dreg": {0: "verdict"},
}

var verdictNames = map[int32]string{
	0: "drop", 1: "accept", -1: "continue", -2: "break", -3: "jump", -4: "goto", -5: "return",
}

// exprDiff describes how a kernel rule's expressions differ from the
// desired ones: aligned like rules are, a changed expression shows both
// versions; expressions only moved are listed once.
func exprDiff(want, have []canonExpr) []string {
	wk := make([]string, len(want))
	for i, e := range want {
		wk[i] = e.key()
	}
	hk := make([]string, len(have))
	for i, e := range have {
		hk[i] = e.key()
	}
	hunks := alignRuns(wk, hk)
	// Expressions left over on both sides only changed places.
	inHave := map[string]int{}
	for _, h := range hunks {
		for _, j := range h.have {
			inHave[hk[j]]++
		}
	}
	common := map[string]int{}
	for _, h := range hunks {
		for _, i := range h.want {
			if inHave[wk[i]] > common[wk[i]] {
				common[wk[i]]++
			}
		}
	}
	skipW, skipH := maps.Clone(common), maps.Clone(common)
	var out, moved []string
	for _, h := range hunks {
		var ws, hs []int
		for _, i := range h.want {
			if skipW[wk[i]] > 0 {
				skipW[wk[i]]--
				moved = append(moved, want[i].String())
				continue
			}
			ws = append(ws, i)
		}
		for _, j := range h.have {
			if skipH[hk[j]] > 0 {
				skipH[hk[j]]--
				continue
			}
			hs = append(hs, j)
		}
		n := min(len(ws), len(hs))
		for k := 0; k < n; k++ {
			out = append(out, fmt.Sprintf("expression %d: have %s, want %s", hs[k]+1, have[hs[k]], want[ws[k]]))
		}
		for _, i := range ws[n:] {
			out = append(out, fmt.Sprintf("missing expression (want position %d): %s", i+1, want[i]))
		}
		for _, j := range hs[n:] {
			out = append(out, fmt.Sprintf("extra expression %d: %s", j+1, have[j]))
		}
	}
	if len(moved) > 0 {
		out = append(out, "in another order: "+strings.Join(moved, " "))
	}
	return out
}

func exprsText(es []canonExpr) string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.String()
	}
	return strings.Join(parts, " ")
}

func exprsKey(es []canonExpr) string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.key()
	}
	return strings.Join(parts, "; ")
}

// nlaTypeMask strips NLA_F_NESTED and NLA_F_NET_BYTEORDER from a type.
const nlaTypeMask = ^uint16(unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)
