package nft

import (
	"errors"
	"fmt"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/nfintercept/nfintercept/kernel"
)

// named gives a refusal the name of the message it refuses.
func named(err error, msgs []netlink.Message) error {
	var r *kernel.RefusedError
	if errors.As(err, &r) && r.What == "" && r.Index >= 0 && r.Index < len(msgs) {
		r.What = describe(msgs, r.Index)
	}
	return err
}

// destroyUnsupported reports whether err is the kernel rejecting
// DESTROYTABLE (before Linux 6.3). Those messages come first in the batch,
// so theirs is the first refusal.
func destroyUnsupported(err error) bool {
	var r *kernel.RefusedError
	return errors.As(err, &r) && r.Type == nftSubsys|msgDestroyTable &&
		(r.Errno == unix.EINVAL || r.Errno == unix.EOPNOTSUPP)
}

// describe names message i for an error: what it does and to which
// table, chain or set ("add rule 3 of chain istio-output in table ...").
func describe(msgs []netlink.Message, i int) string {
	m := msgs[i]
	attrs := map[uint16]string{}
	if len(m.Data) > 4 {
		if ad, err := netlink.NewAttributeDecoder(m.Data[4:]); err == nil {
			for ad.Next() {
				if b := ad.Bytes(); len(b) > 0 && b[len(b)-1] == 0 {
					attrs[ad.Type()] = string(b[:len(b)-1])
				}
			}
		}
	}
	table := " in table " + attrs[1] // *_TABLE is attribute 1 in every message
	switch uint16(m.Header.Type) &^ nftSubsys {
	case unix.NFT_MSG_NEWTABLE:
		return "add table " + attrs[unix.NFTA_TABLE_NAME]
	case unix.NFT_MSG_DELTABLE:
		return "delete table " + attrs[unix.NFTA_TABLE_NAME]
	case msgDestroyTable:
		return "destroy table " + attrs[unix.NFTA_TABLE_NAME]
	case unix.NFT_MSG_NEWCHAIN:
		return "add chain " + attrs[unix.NFTA_CHAIN_NAME] + table
	case unix.NFT_MSG_NEWSET:
		return "add set " + attrs[unix.NFTA_SET_NAME] + table
	case unix.NFT_MSG_NEWSETELEM:
		return "add elements to set " + attrs[unix.NFTA_SET_ELEM_LIST_SET] + table
	case unix.NFT_MSG_NEWRULE:
		chain := attrs[unix.NFTA_RULE_CHAIN]
		n := 0
		for _, p := range msgs[:i+1] {
			if uint16(p.Header.Type)&^nftSubsys == unix.NFT_MSG_NEWRULE && ruleChain(p) == chain {
				n++
			}
		}
		return fmt.Sprintf("add rule %d of chain %s%s", n, chain, table)
	}
	return fmt.Sprintf("message type %#x", uint16(m.Header.Type))
}

func ruleChain(m netlink.Message) string {
	if len(m.Data) <= 4 {
		return ""
	}
	ad, err := netlink.NewAttributeDecoder(m.Data[4:])
	if err != nil {
		return ""
	}
	for ad.Next() {
		if ad.Type() == unix.NFTA_RULE_CHAIN {
			return ad.String()
		}
	}
	return ""
}
