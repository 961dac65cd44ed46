package nft

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/nfintercept/nfintercept/kernel"
	"github.com/nfintercept/nfintercept/translate"
)

// elemCount counts the list items of a NEWSETELEM message.
func elemCount(t *testing.T, m netlink.Message) int {
	t.Helper()
	ad, err := netlink.NewAttributeDecoder(m.Data[4:])
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for ad.Next() {
		if ad.Type() == unix.NFTA_SET_ELEM_LIST_ELEMENTS {
			ad.Nested(func(nad *netlink.AttributeDecoder) error {
				for nad.Next() {
					n++
				}
				return nil
			})
		}
	}
	if err := ad.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestSetElemMsgsMatchLibrary: the direct element encoding produces, message
// by message, the bytes google/nftables' SetAddElements marshals for the
// same elements.
func TestSetElemMsgsMatchLibrary(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	var v4, v6 []netip.Prefix
	for range 5000 {
		v4 = append(v4, netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256)), 0}), 24))
		var b [16]byte
		b[0], b[1], b[5] = 0xfd, byte(r.IntN(256)), byte(r.IntN(256))
		v6 = append(v6, netip.PrefixFrom(netip.AddrFrom16(b), 48))
	}
	v4 = append(v4, netip.MustParsePrefix("240.0.0.0/4")) // reaches the top: no end element
	sets := map[string]*setRef{}
	for name, ps := range map[string][]netip.Prefix{"v4": v4, "v6": v6} {
		ivs, err := MergePrefixes(ps, name == "v4")
		if err != nil {
			t.Fatal(err)
		}
		typ := translate.SetIPv4Prefixes
		if name == "v6" {
			typ = translate.SetIPv6Prefixes
		}
		sets[name] = &setRef{name: name, typ: typ, intervals: ivs}
	}
	sets["ports"] = &setRef{name: "ports", typ: translate.SetPorts, ports: []portRange{{53, 53}, {80, 90}, {15000, 0xffff}}}

	for name, s := range sets {
		msgs := setElemMsgs("nfintercept-nat", s.name, 42, s)
		if len(msgs) == 0 {
			t.Fatalf("%s: no messages", name)
		}
		if name != "ports" && len(msgs) < 2 {
			t.Errorf("%s: %d elements fit one message: the test does not exercise splitting", name, len(s.elements()))
		}
		elems := s.elements()
		tx, err := newTxn()
		if err != nil {
			t.Fatal(err)
		}
		ks := &nftables.Set{Table: &nftables.Table{Family: nftables.TableFamilyINet, Name: "nfintercept-nat"},
			Name: s.name, ID: 42, Interval: true, KeyType: s.keyType()}
		total := 0
		for i, m := range msgs {
			n := elemCount(t, m)
			if err := tx.lib.SetAddElements(ks, elems[total:total+n]); err != nil {
				t.Fatal(err)
			}
			total += n
			if err := tx.take(); err != nil {
				t.Fatal(err)
			}
			lib := tx.msgs[len(tx.msgs)-1]
			if lib.Header.Type != m.Header.Type || !bytes.Equal(lib.Data, m.Data) {
				t.Fatalf("%s message %d (%d elements) differs from the library's encoding", name, i, n)
			}
			if len(m.Data) > 4+maxElemList+64 {
				t.Errorf("%s message %d is %d bytes: element list overflows", name, i, len(m.Data))
			}
		}
		if total != len(elems) {
			t.Errorf("%s: messages hold %d elements, want %d", name, total, len(elems))
		}
	}
}

// msgTypes lists the nf_tables message types of a transaction.
func msgTypes(msgs []netlink.Message) []uint16 {
	var out []uint16
	for _, m := range msgs {
		out = append(out, uint16(m.Header.Type)&^nftSubsys)
	}
	return out
}

// TestReplaceTxnDeletesNothingNew: with DESTROYTABLE the batch holds no
// delete (a fresh namespace then leaves the kernel nothing to clean up);
// the fallback replaces each table with add+delete.
func TestReplaceTxnDeletesNothingNew(t *testing.T) {
	tables, err := lowerRuleset(fullRuleset())
	if err != nil {
		t.Fatal(err)
	}
	count := func(types []uint16, typ uint16) int {
		n := 0
		for _, x := range types {
			if x == typ {
				n++
			}
		}
		return n
	}
	names := replacedTables(tables)
	tx, err := replaceTxn(tables, []string{"nfintercept-old"}, true)
	if err != nil {
		t.Fatal(err)
	}
	types := msgTypes(tx)
	if n := count(types, msgDestroyTable); n != len(names)+1 {
		t.Errorf("%d DESTROYTABLE messages, want %d (every kind plus the extra table)", n, len(names)+1)
	}
	if n := count(types, unix.NFT_MSG_DELTABLE); n != 0 {
		t.Errorf("destroy batch has %d DELTABLE messages", n)
	}
	for i := range len(names) + 1 {
		if types[i] != msgDestroyTable {
			t.Fatalf("message %d is %#x: the old tables must go first", i, types[i])
		}
	}
	legacy, err := replaceTxn(tables, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if n := count(msgTypes(legacy), unix.NFT_MSG_DELTABLE); n != len(names) {
		t.Errorf("fallback batch has %d DELTABLE messages, want %d", n, len(names))
	}
	if n := count(msgTypes(legacy), msgDestroyTable); n != 0 {
		t.Errorf("fallback batch has %d DESTROYTABLE messages", n)
	}
}

// TestFallbackReplaceMatchesDestroy: both ways of replacing the tables
// leave the same ruleset, in a fresh namespace and over a previous one.
func TestFallbackReplaceMatchesDestroy(t *testing.T) {
	nsA, pathA := newNetnsRoot(t)
	nsB, pathB := newNetnsRoot(t)
	for name, cfg := range realisticConfigs() {
		tables, err := lowerRuleset(translate.Build(cfg))
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			path    string
			destroy bool
		}{{pathA, true}, {pathB, false}} {
			tx, err := replaceTxn(tables, nil, c.destroy)
			if err != nil {
				t.Fatal(err)
			}
			if err := commitMsgs(c.path, tx); err != nil {
				t.Fatalf("%s (destroy %v): %v", name, c.destroy, err)
			}
		}
		if a, b := listRuleset(t, nsA), listRuleset(t, nsB); a != b {
			t.Errorf("%s: DESTROYTABLE and fallback rulesets differ\n%s\n---\n%s", name, a, b)
		}
	}
}

// TestRefusalNamesMessage: a rule the kernel refuses is named in the error.
func TestRefusalNamesMessage(t *testing.T) {
	_, path := newNetnsRoot(t)
	bad := fullRuleset()
	mangle := bad.Tables[1]
	c := mangle.Chains[2]
	c.Rules = append(c.Rules, rule(both, aRedirect(1), mProto(translate.TCP)))
	tables, err := lowerRuleset(bad)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, lc := range tables[1].chains {
		if lc.name == c.Name {
			n = len(lc.rules)
		}
	}
	err = Apply(bad, path)
	if err == nil {
		t.Fatal("redirect in a filter chain accepted")
	}
	want := fmt.Sprintf("add rule %d of chain %s in table %s", n, c.Name, mangle.Name())
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
	var r *kernel.RefusedError
	if !errors.As(err, &r) || r.Errno != unix.EOPNOTSUPP {
		t.Errorf("error %v does not carry EOPNOTSUPP", err)
	}
}

func TestDestroyUnsupported(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{&kernel.RefusedError{Type: nftSubsys | msgDestroyTable, Errno: unix.EINVAL}, true},
		{fmt.Errorf("wrapped: %w", &kernel.RefusedError{Type: nftSubsys | msgDestroyTable, Errno: unix.EOPNOTSUPP}), true},
		{&kernel.RefusedError{Type: nftSubsys | msgDestroyTable, Errno: unix.EPERM}, false},
		{&kernel.RefusedError{Type: nftSubsys | unix.NFT_MSG_NEWRULE, Errno: unix.EINVAL}, false},
		{fmt.Errorf("other"), false},
	} {
		if got := destroyUnsupported(c.err); got != c.want {
			t.Errorf("destroyUnsupported(%v) = %v", c.err, got)
		}
	}
}
