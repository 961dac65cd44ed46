package nft

import (
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/nfintercept/nfintercept/translate"
)

// maxSetChunk caps the elements of an anonymous set, which the library
// encodes in one message: v0.3.0 packs them into one netlink attribute
// whose 16-bit length silently overflows (elements get lost) past ~64 KiB.
const maxSetChunk = 1000

// encoder queues lowered tables into a txn: tables, chains, sets and
// anonymous sets through the library's Conn (txn.lib), named sets'
// elements and rules encoded directly.
type encoder struct {
	txn  *txn
	conn *nftables.Conn // txn.lib
	// queued: conn holds messages not yet taken into txn, which must go
	// before the next message encoded directly.
	queued bool
	// libRules makes the library encode rules even with a txn (tests
	// compare both encodings).
	libRules bool
	table    *nftables.Table
	named    map[*setRef]*nftables.Set
	nextID   uint32
	err      error
}

// id returns a set ID unique within the batch. IDs are assigned here, not
// by the library's package-global counter, so lookups can name them.
func (e *encoder) id() uint32 {
	e.nextID++
	return e.nextID
}

func (e *encoder) setErr(err error) {
	if e.err == nil {
		e.err = err
	}
}

// bind implements setBinder: named sets were declared with the table;
// every use of an anonymous set creates a fresh one, queued before the rule.
func (e *encoder) bind(s *setRef) *nftables.Set {
	if s.name != "" {
		return e.named[s]
	}
	ks := &nftables.Set{
		Table:     e.table,
		Name:      "__set%d",
		ID:        e.id(),
		Anonymous: true,
		Constant:  true,
		Interval:  s.interval(),
		KeyType:   s.keyType(),
	}
	if err := e.conn.AddSet(ks, s.elements()); err != nil {
		e.setErr(fmt.Errorf("anonymous set: %w", err))
	}
	e.queued = true
	return ks
}

// take moves what the library queued into the transaction.
func (e *encoder) take() error {
	if !e.queued {
		return nil
	}
	e.queued = false
	return e.txn.take()
}

// addTable queues the table, its chains, named sets (elements chunked) and
// rules.
func (e *encoder) addTable(lt *loweredTable) error {
	e.table = e.conn.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: lt.name})
	e.named = map[*setRef]*nftables.Set{}
	e.queued = true

	chains := make([]*nftables.Chain, len(lt.chains))
	for i, lc := range lt.chains {
		c, err := kernelChain(e.table, lc)
		if err != nil {
			return fmt.Errorf("table %s: %w", lt.name, err)
		}
		chains[i] = e.conn.AddChain(c)
	}
	for _, s := range lt.sets {
		ks := &nftables.Set{Table: e.table, Name: s.name, ID: e.id(), Interval: true, KeyType: s.keyType()}
		if err := e.conn.AddSet(ks, nil); err != nil {
			return fmt.Errorf("table %s set %s: %w", lt.name, s.name, err)
		}
		if err := e.addElements(lt.name, ks, s); err != nil {
			return fmt.Errorf("table %s set %s: %w", lt.name, s.name, err)
		}
		e.named[s] = ks
	}
	for i, lc := range lt.chains {
		for _, r := range lc.rules {
			var exprs []expr.Any
			for _, s := range r.stmts {
				exprs = append(exprs, s.exprs(e)...)
			}
			if e.libRules {
				e.conn.AddRule(&nftables.Rule{Table: e.table, Chain: chains[i], Exprs: exprs})
				e.queued = true
				continue
			}
			if err := e.take(); err != nil {
				return fmt.Errorf("table %s: %w", lt.name, err)
			}
			m, err := ruleMsg(lt.name, lc.name, exprs)
			if err != nil {
				return fmt.Errorf("table %s chain %s: %w", lt.name, lc.name, err)
			}
			e.txn.msgs = append(e.txn.msgs, m)
		}
	}
	if e.err != nil {
		return fmt.Errorf("table %s: %w", lt.name, e.err)
	}
	return nil
}

// addElements queues the elements of a named set, encoded directly into
// the transaction after the set itself.
func (e *encoder) addElements(table string, ks *nftables.Set, s *setRef) error {
	e.queued = true // the set itself
	if err := e.take(); err != nil {
		return err
	}
	e.txn.msgs = append(e.txn.msgs, setElemMsgs(table, s.name, ks.ID, s)...)
	return nil
}

// kernelChain maps a model chain to a library chain; base chains get
// policy accept.
func kernelChain(t *nftables.Table, lc *loweredChain) (*nftables.Chain, error) {
	c := &nftables.Chain{Table: t, Name: lc.name}
	if lc.base == nil {
		return c, nil
	}
	if err := checkBase(lc.base); err != nil {
		return nil, fmt.Errorf("chain %s: %w", lc.name, err)
	}
	hook := hooks[lc.base.Hook]
	accept := nftables.ChainPolicyAccept
	c.Type = nftables.ChainType(lc.base.Type)
	c.Hooknum = nftables.ChainHookRef(hook)
	c.Priority = nftables.ChainPriorityRef(nftables.ChainPriority(lc.base.Priority))
	c.Policy = &accept
	return c, nil
}

func checkBase(b *translate.BaseChain) error {
	if _, ok := hooks[b.Hook]; !ok {
		return fmt.Errorf("unknown hook %q", b.Hook)
	}
	switch b.Type {
	case translate.ChainTypeNAT, translate.ChainTypeFilter, translate.ChainTypeRoute:
		return nil
	}
	return fmt.Errorf("unknown chain type %q", b.Type)
}

// hooks are the netfilter hooks of inet base chains, by nft name.
var hooks = map[translate.Hook]nftables.ChainHook{
	translate.HookPrerouting: *nftables.ChainHookPrerouting,
	"input":                  *nftables.ChainHookInput,
	"forward":                *nftables.ChainHookForward,
	translate.HookOutput:     *nftables.ChainHookOutput,
	"postrouting":            *nftables.ChainHookPostrouting,
}

// hookName is the reverse of hooks.
func hookName(h nftables.ChainHook) translate.Hook {
	for name, v := range hooks {
		if v == h {
			return name
		}
	}
	return translate.Hook(fmt.Sprintf("hook-%d", h))
}
