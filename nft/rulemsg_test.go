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

// TestRuleMsgMatchesLibrary: every message of the batch is the same
// whether google/nftables or ruleMsg encodes the rules, for every
// realistic configuration and the kitchen-sink ruleset.
func TestRuleMsgMatchesLibrary(t *testing.T) {
	rulesets := map[string]*translate.Ruleset{"full": fullRuleset()}
	for name, cfg := range realisticConfigs() {
		cfg.EnableIPv6 = true
		rulesets[name] = translate.Build(cfg)
	}
	for name, rs := range rulesets {
		tables, err := lowerRuleset(rs)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		direct, err := buildTxn(tables, nil, true, false)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		lib, err := buildTxn(tables, nil, true, true)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
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
				t.Fatalf("%s: message %d (%s) differs from the library's", name, i, describe(direct, i))
			}
		}
		if rules == 0 {
			t.Fatalf("%s: no rules compared", name)
		}
	}
}

// TestRuleMsgExprs covers expression forms the rulesets above do not
// produce (a payload write falls back to the library).
func TestRuleMsgExprs(t *testing.T) {
	exprs := []expr.Any{
		&expr.Lookup{SourceRegister: 1, DestRegister: 2, IsDestRegSet: true, SetName: "s", SetID: 3},
		&expr.Verdict{Kind: expr.VerdictJump, Chain: "a-chain-name-of-odd-length"},
		&expr.Payload{OperationType: expr.PayloadWrite, SourceRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2, CsumType: expr.CsumTypeInet, CsumOffset: 16},
		&expr.Counter{Bytes: 7, Packets: 3},
		&expr.Immediate{Register: 1, Data: []byte{1, 2, 3}},
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
