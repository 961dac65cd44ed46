package nft

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"slices"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/nfintercept/nfintercept/translate"
)

// The incremental update: from a snapshot of our tables and the model, the
// one batch that turns the first into what Replace would install, holding
// only the difference. Unchanged objects are not touched, so a re-apply of
// the same options sends nothing, and a commit that only adds deletes
// nothing (no RCU-deferred cleanup for the socket's close to wait for).
//
// Granularity: a named set's elements are added and removed one by one; a
// chain whose rules differ in any way is flushed and its rules added
// again; tables, chains and named sets are added or deleted whole. What
// the update cannot express in place (a table with flags or stateful
// objects, a set of another type, a base chain with another hook, type,
// priority or policy) is ErrNotIncremental: the caller replaces the
// tables instead.

// ErrNotIncremental is the snapshot holding something only a full replace
// can bring to the model.
var ErrNotIncremental = errors.New("not expressible as an incremental update")

func notIncremental(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrNotIncremental, fmt.Sprintf(format, a...))
}

// Update is the batch that brings a snapshot to the model.
type Update struct {
	// Generation is the snapshot's: the batch is only valid at it
	// (kernel.NFTablesConn.CommitAt).
	Generation uint32
	// Msgs is the batch; empty when the snapshot is in sync.
	Msgs []netlink.Message
	// What it changes, for logs and tests.
	TablesAdded, TablesDeleted     int
	ChainsAdded, ChainsDeleted     int
	ChainsRewritten                int // flushed, their rules added again
	SetsAdded, SetsDeleted         int
	ElementsAdded, ElementsDeleted int // of sets kept
}

// InSync reports whether nothing needs to change.
func (u *Update) InSync() bool { return len(u.Msgs) == 0 }

// String summarises the change.
func (u *Update) String() string {
	if u.InSync() {
		return "already in sync"
	}
	var parts []string
	add := func(n int, noun, verb string) {
		if n > 0 {
			parts = append(parts, countNoun(n, noun)+" "+verb)
		}
	}
	add(u.TablesAdded, "table", "added")
	add(u.TablesDeleted, "table", "deleted")
	add(u.ChainsAdded, "chain", "added")
	add(u.ChainsDeleted, "chain", "deleted")
	add(u.ChainsRewritten, "chain", "rewritten")
	add(u.SetsAdded, "set", "added")
	add(u.SetsDeleted, "set", "deleted")
	add(u.ElementsAdded, "set element", "added")
	add(u.ElementsDeleted, "set element", "deleted")
	return fmt.Sprintf("%d messages: %s", len(u.Msgs), joinComma(parts))
}

func joinComma(s []string) string {
	var b bytes.Buffer
	for i, p := range s {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(p)
	}
	return b.String()
}

// Diff computes the update from s to what Replace(rs, extra) installs:
// tables Replace would delete (the known kinds, those rs defines, extra)
// and rs does not define are deleted; tables of ours Replace leaves alone
// are left alone here too. It is pure: nothing is read or sent.
func Diff(rs *translate.Ruleset, s *Snapshot, extra []string) (*Update, error) {
	tables, err := lowerRuleset(rs)
	if err != nil {
		return nil, err
	}
	u := &Update{Generation: s.Generation}
	enc := &encoder{}
	replaced := append(replacedTables(tables), extra...)
	for _, kt := range s.state.tables {
		if slices.Contains(replaced, kt.name) && !slices.ContainsFunc(tables, func(lt *loweredTable) bool { return lt.name == kt.name }) {
			enc.msgs = append(enc.msgs, delMsg(unix.NFT_MSG_DELTABLE, unix.NFTA_TABLE_NAME, kt.name, 0, ""))
			u.TablesDeleted++
		}
	}
	for _, lt := range tables {
		kt := s.state.table(lt.name)
		if kt == nil {
			if err := enc.addTable(lt); err != nil {
				return nil, err
			}
			u.TablesAdded++
			continue
		}
		if err := enc.patchTable(u, lt, kt); err != nil {
			return nil, fmt.Errorf("table %s: %w", lt.name, err)
		}
	}
	u.Msgs = enc.msgs
	return u, nil
}

// patchTable queues the changes that bring kt to lt: new sets, element
// changes, new chains, rewritten chains, then the deletions that the
// flushed rules no longer block (extra chains, extra sets).
func (e *encoder) patchTable(u *Update, lt *loweredTable, kt *kernelTable) error {
	if kt.flags != 0 {
		return notIncremental("table has %s", tableFlagsText(kt.flags))
	}
	if len(kt.objects) > 0 {
		return notIncremental("table holds stateful objects (%s)", kt.objects[0])
	}
	e.table = &nftables.Table{Family: nftables.TableFamilyINet, Name: lt.name}
	e.named = map[*setRef]*nftables.Set{}

	for _, s := range lt.sets {
		ks := kt.set(s.name)
		if ks == nil {
			nks := &nftables.Set{Table: e.table, Name: s.name, ID: e.id(), Interval: true, KeyType: s.keyType()}
			e.msgs = append(e.msgs, setMsg(nks, 0))
			e.msgs = append(e.msgs, setElemMsgs(lt.name, s.name, nks.ID, s)...)
			e.named[s] = nks
			u.SetsAdded++
			continue
		}
		if ks.keyType != s.keyType().Name || !ks.interval || ks.isMap {
			return notIncremental("set %s is a %s, want type %s; flags interval", s.name, ks.declText(), s.keyType().Name)
		}
		// An existing set is found by name; the lookups need no batch ID.
		e.named[s] = &nftables.Set{Table: e.table, Name: s.name, KeyType: s.keyType()}
		del, add := elementDiff(ks.elems, s)
		e.msgs = append(e.msgs, elemMsgs(unix.NFT_MSG_DELSETELEM, lt.name, s.name, 0, s.keyLen(), len(del), walkElems(del))...)
		e.msgs = append(e.msgs, elemMsgs(unix.NFT_MSG_NEWSETELEM, lt.name, s.name, 0, s.keyLen(), len(add), walkElems(add))...)
		u.ElementsDeleted += len(del)
		u.ElementsAdded += len(add)
	}

	// Chains: new ones first (rules may jump to them), then the rewrites.
	var rewrites []*loweredChain
	var flush []string
	for _, lc := range lt.chains {
		kc := kt.chain(lc.name)
		if kc == nil {
			m, err := chainMsg(lt.name, lc)
			if err != nil {
				return err
			}
			e.msgs = append(e.msgs, m)
			rewrites = append(rewrites, lc)
			u.ChainsAdded++
			continue
		}
		var policy *nftables.ChainPolicy
		if lc.base != nil {
			accept := nftables.ChainPolicyAccept
			policy = &accept
		}
		if w, h := chainHeader(lc.base, policy), chainHeader(kc.base, kc.policy); w != h {
			return notIncremental("chain %s is %q, want %q", lc.name, h, w)
		}
		same, err := sameRules(lc, kc)
		if err != nil {
			return fmt.Errorf("chain %s: %w", lc.name, err)
		}
		if !same {
			flush = append(flush, lc.name)
			rewrites = append(rewrites, lc)
			u.ChainsRewritten++
		}
	}
	var dropChains []string
	for _, kc := range kt.chains {
		if !slices.ContainsFunc(lt.chains, func(lc *loweredChain) bool { return lc.name == kc.name }) {
			dropChains = append(dropChains, kc.name)
			if len(kc.rules) > 0 {
				flush = append(flush, kc.name)
			}
		}
	}
	for _, name := range flush {
		e.msgs = append(e.msgs, delMsg(unix.NFT_MSG_DELRULE, unix.NFTA_RULE_TABLE, lt.name, unix.NFTA_RULE_CHAIN, name))
	}
	for _, lc := range rewrites {
		if err := e.addRules(lt.name, lc); err != nil {
			return err
		}
	}
	for _, name := range dropChains {
		e.msgs = append(e.msgs, delMsg(unix.NFT_MSG_DELCHAIN, unix.NFTA_CHAIN_TABLE, lt.name, unix.NFTA_CHAIN_NAME, name))
		u.ChainsDeleted++
	}
	for _, ks := range kt.sets {
		if !slices.ContainsFunc(lt.sets, func(s *setRef) bool { return s.name == ks.name }) {
			e.msgs = append(e.msgs, delMsg(unix.NFT_MSG_DELSET, unix.NFTA_SET_TABLE, lt.name, unix.NFTA_SET_NAME, ks.name))
			u.SetsDeleted++
		}
	}
	return nil
}

// sameRules reports whether the kernel chain holds exactly the rules of
// lc, compared in the canonical form Verify uses.
func sameRules(lc *loweredChain, kc *kernelChainState) (bool, error) {
	if len(lc.rules) != len(kc.rules) {
		return false, nil
	}
	for i, r := range lc.rules {
		dr, err := desiredRuleOf(r)
		if err != nil {
			return false, fmt.Errorf("rule %d: %w", i+1, err)
		}
		if dr.key != kc.rules[i].key {
			return false, nil
		}
	}
	return true, nil
}

// elementDiff lists the kernel elements s does not want (del) and the
// elements of s the kernel lacks (add), each in key order. Elements are
// compared as the kernel holds them, start and end elements apart, so an
// interval whose end moved changes only its end element.
func elementDiff(have []dumpedElem, s *setRef) (del, add []dumpedElem) {
	var want []dumpedElem
	keys := make([]byte, 0, s.keyLen()*2*s.len())
	s.walk(func(key []byte, end bool) {
		at := len(keys)
		keys = append(keys, key...)
		want = append(want, dumpedElem{key: keys[at:len(keys):len(keys)], end: end})
	})
	cmpElem := func(a, b dumpedElem) int {
		if c := bytes.Compare(a.key, b.key); c != 0 {
			return c
		}
		return endsFirst(a.end, b.end)
	}
	have = slices.Clone(have)
	slices.SortFunc(have, cmpElem)
	slices.SortFunc(want, cmpElem) // walk yields key order; ends may tie starts
	i, j := 0, 0
	for i < len(have) || j < len(want) {
		switch c := cmpOrEnd(i, j, have, want, cmpElem); {
		case c < 0:
			del = append(del, have[i])
			i++
		case c > 0:
			add = append(add, want[j])
			j++
		default:
			i++
			j++
		}
	}
	return del, add
}

func cmpOrEnd(i, j int, a, b []dumpedElem, f func(a, b dumpedElem) int) int {
	switch {
	case i == len(a):
		return 1
	case j == len(b):
		return -1
	}
	return cmp.Compare(f(a[i], b[j]), 0)
}

func walkElems(es []dumpedElem) func(yield func(key []byte, end bool)) {
	return func(yield func(key []byte, end bool)) {
		for _, e := range es {
			yield(e.key, e.end)
		}
	}
}

// delMsg encodes a deletion naming its object by table (attribute
// tableAttr) and, unless nameAttr is 0, name: DELTABLE, DELCHAIN, DELSET,
// and DELRULE without a handle, which flushes the chain.
func delMsg(typ int, tableAttr uint16, table string, nameAttr uint16, name string) netlink.Message {
	data := nfgenHeader(unix.NFPROTO_INET)
	data = appendAttr(data, tableAttr, cstring(table))
	if nameAttr != 0 {
		data = appendAttr(data, nameAttr, cstring(name))
	}
	return netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(nftSubsys | typ), Flags: netlink.Request},
		Data:   data,
	}
}

// MaxUpdateSetItems bounds the items (CIDRs, ports) of the named sets of a
// ruleset that is brought up to date incrementally. Reading a set back
// costs more per element than inserting it (the kernel walks an interval
// set from its start for every 32 KiB dump batch; see bench/results
// NOTES.md): 1,000 CIDRs read in ~2.8 ms and replace in ~2 ms, 10,000 in
// ~33 and ~20 ms, 100,000 in ~0.6–1 s and ~0.35 s. Up to a few thousand
// the read is paid back by the deferred kernel cleanup a replace leaves
// for the socket's close (4–20 ms); beyond, the tables are replaced.
const MaxUpdateSetItems = 4096

// CheckUpdateCost returns an ErrNotIncremental error when rs's named sets
// are too large for an update to pay (MaxUpdateSetItems).
func CheckUpdateCost(rs *translate.Ruleset) error {
	if rs == nil {
		return nil
	}
	n := 0
	seen := map[*translate.Set]bool{}
	count := func(s *translate.Set) {
		if s != nil && !s.Anonymous && !seen[s] {
			seen[s] = true
			n += s.Len()
		}
	}
	for _, t := range rs.Tables {
		for _, s := range t.Sets {
			count(s)
		}
		for _, c := range t.Chains {
			for _, r := range c.Rules {
				for i := range r.Matches {
					count(r.Matches[i].Set)
				}
			}
		}
	}
	if n > MaxUpdateSetItems {
		return notIncremental("named sets of %d items: reading them back costs more than replacing them", n)
	}
	return nil
}
