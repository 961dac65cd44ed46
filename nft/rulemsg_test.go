package nft

import (
	"bytes"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/nfintercept/nfintercept/translate"
)

// TestRuleMsgMatchesLibrary: every message of the batch (tables, chains,
// sets, elements, rules) is the one google/nftables encodes for the same
// objects, for every realistic configuration and the kitchen-sink ruleset.
func TestRuleMsgMatchesLibrary(t *testing.T) {
	rulesets := map[string]*translate.Ruleset{"full": fullRuleset()}
	for name, cfg := range realisticConfigs() {
		cfg.EnableIPv6 = true
		rulesets[name] = translate.Build(cfg)
	}
	for name, rs := range ambientRulesets() {
		rulesets[name] = rs
	}
	for name, rs := range rulesets {
		tables, err := lowerRuleset(rs)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, destroy := range []bool{true, false} {
			direct, err := replaceMsgs(tables, nil, destroy)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			compareWithLibrary(t, name, direct, libraryMsgs(t, tables, destroy, direct))
		}
	}
}

// compareWithLibrary fails unless both batches hold the same messages,
// rules among them.
func compareWithLibrary(t *testing.T, name string, direct, lib []netlink.Message) {
	t.Helper()
	if len(direct) != len(lib) {
		t.Fatalf("%s: %d messages, library %d", name, len(direct), len(lib))
	}
	rules := 0
	for i := range direct {
		d, l := direct[i], lib[i]
		if uint16(d.Header.Type)&^nftSubsys == unix.NFT_MSG_NEWRULE {
			rules++
		}
		flags := ^(netlink.Echo | netlink.Acknowledge) // cleared when sent
		if d.Header.Type != l.Header.Type || d.Header.Flags&flags != l.Header.Flags&flags || !bytes.Equal(d.Data, l.Data) {
			t.Fatalf("%s: message %d (%s) differs from the library's:\n%x\n%x", name, i, describe(direct, i), d.Data, l.Data)
		}
	}
	if rules == 0 {
		t.Fatalf("%s: no rules compared", name)
	}
}

// TestRuleMsgExprs covers expression forms the rulesets above do not
// produce, and refuses one no statement produces.
func TestRuleMsgExprs(t *testing.T) {
	if _, err := ruleMsg("t", "c", []expr.Any{&expr.Payload{OperationType: expr.PayloadWrite, SourceRegister: 1,
		Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2, CsumType: expr.CsumTypeInet, CsumOffset: 16}}); err == nil {
		t.Error("a payload write was encoded")
	}
	exprs := []expr.Any{
		&expr.Lookup{SourceRegister: 1, DestRegister: 2, IsDestRegSet: true, SetName: "s", SetID: 3},
		&expr.Verdict{Kind: expr.VerdictJump, Chain: "a-chain-name-of-odd-length"},
		&expr.Counter{Bytes: 7, Packets: 3},
		&expr.Immediate{Register: 1, Data: []byte{1, 2, 3}},
		&expr.Ct{Register: 1, Key: expr.CtKeySRC, Direction: 1},
		&expr.Ct{Register: 1, SourceRegister: true, Key: expr.CtKeyMARK},
		&expr.Range{Op: expr.CmpOpEq, Register: 1, FromData: []byte{0, 1}, ToData: []byte{0, 9}},
		&expr.Redir{RegisterProtoMin: 1, RegisterProtoMax: 1, Flags: 4},
		&expr.Redir{},
		&expr.TProxy{Family: 2, TableFamily: 1, RegPort: 1, RegAddr: 2},
		&expr.Byteorder{SourceRegister: 1, DestRegister: 1, Op: expr.ByteorderHton, Len: 2, Size: 2},
	}
	m, err := ruleMsg("t", "c", exprs)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := newTxn()
	if err != nil {
		t.Fatal(err)
	}
	tb := tx.lib.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: "t"})
	tx.lib.AddRule(&nftables.Rule{Table: tb, Chain: &nftables.Chain{Table: tb, Name: "c"}, Exprs: exprs})
	if err := tx.take(); err != nil {
		t.Fatal(err)
	}
	lib := tx.msgs[len(tx.msgs)-1]
	if !bytes.Equal(m.Data, lib.Data) {
		t.Errorf("rule differs from the library's encoding\n got %x\nwant %x", m.Data, lib.Data)
	}
}
