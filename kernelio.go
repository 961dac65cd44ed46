package nfintercept

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/mdlayher/netlink"

	"github.com/nfintercept/nfintercept/kernel"
	"github.com/nfintercept/nfintercept/nft"
	"github.com/nfintercept/nfintercept/translate"
)

// nsKernel is what the orchestration needs from one namespace. realKernel
// goes to the kernel through one Namespace; the tests' fake keeps the
// state in memory, so ordering and rollback are tested without root.
type nsKernel interface {
	fmt.Stringer
	Lock(ctx context.Context) (unlock func(), err error)
	Addrs() ([]kernel.IfAddr, error)
	Generation() (uint32, error)
	OurTables() ([]string, error)
	Commit(ctx context.Context, msgs []netlink.Message) error
	// TablesUpdate reads our tables and computes the batch that brings
	// them to rs (nft.Diff); CommitAt sends a batch valid only at gen.
	TablesUpdate(rs *translate.Ruleset, extra []string) (*nft.Update, error)
	CommitAt(ctx context.Context, gen uint32, msgs []netlink.Message) error
	TablesDrift(rs *translate.Ruleset) (*nft.Drift, error)
	// ProbeAddrsUpdate reads the probe sets and computes the batch that
	// adds (or removes) addrs (nft.ProbeAddrsChange).
	ProbeAddrsUpdate(addrs []netip.Addr, add bool) (*nft.Update, error)
	// ProbeAddrs lists the addresses the probe sets hold.
	ProbeAddrs() ([]netip.Addr, error)
	BeginRouting(rs *translate.Ruleset) (routingChange, error)
	RoutingDiff(rs *translate.Ruleset) ([]kernel.RoutingDrift, error)
	CleanupRouting() error
	Close()
}

// routingChange is kernel.RoutingChange: Undo what Begin added, or Prune
// what is no longer wanted.
type routingChange interface {
	Undo() error
	Prune() error
}

// realKernel opens its sockets on first use, all in one visit of ns, and
// keeps them until Close.
type realKernel struct {
	ns *kernel.Namespace
	s  *kernel.Sockets
	// addrsOnly: only addresses are read (Probe, which may run without
	// the privileges the other sockets need), through a socket of its own.
	addrsOnly bool
}

func (k *realKernel) String() string { return k.ns.String() }

func (k *realKernel) Lock(ctx context.Context) (func(), error) { return k.ns.Lock(ctx) }

func (k *realKernel) sockets() (*kernel.Sockets, error) {
	if k.s == nil {
		s, err := kernel.OpenSockets(k.ns)
		if err != nil {
			return nil, err
		}
		k.s = s
	}
	return k.s, nil
}

func (k *realKernel) Addrs() ([]kernel.IfAddr, error) {
	if k.addrsOnly {
		return kernel.Addrs(k.ns)
	}
	s, err := k.sockets()
	if err != nil {
		return nil, err
	}
	return s.Addrs()
}

func (k *realKernel) conn() (*kernel.NFTablesConn, error) {
	s, err := k.sockets()
	if err != nil {
		return nil, err
	}
	if s.NF == nil { // dropped after a lost verdict
		if s.NF, err = kernel.DialNFTables(k.ns); err != nil {
			return nil, err
		}
	}
	return s.NF, nil
}

func (k *realKernel) Generation() (uint32, error) {
	c, err := k.conn()
	if err != nil {
		return 0, err
	}
	return c.Generation()
}

func (k *realKernel) OurTables() ([]string, error) {
	c, err := k.conn()
	if err != nil {
		return nil, err
	}
	return nft.OurTables(c)
}

func (k *realKernel) Commit(ctx context.Context, msgs []netlink.Message) error {
	return k.CommitAt(ctx, 0, msgs)
}

func (k *realKernel) CommitAt(ctx context.Context, gen uint32, msgs []netlink.Message) error {
	c, err := k.conn()
	if err != nil {
		return err
	}
	err = c.CommitAt(ctx, gen, msgs)
	var amb *kernel.AmbiguousError
	if errors.As(err, &amb) {
		// Unread replies may still be queued on the socket: what is asked
		// next (the generation, a read back) goes over a fresh one.
		go c.Close()
		k.s.NF = nil
	}
	return err
}

func (k *realKernel) TablesUpdate(rs *translate.Ruleset, extra []string) (*nft.Update, error) {
	c, err := k.conn()
	if err != nil {
		return nil, err
	}
	s, err := nft.ReadForUpdate(c)
	if err != nil {
		return nil, err
	}
	return nft.Diff(rs, s, extra)
}

func (k *realKernel) ProbeAddrsUpdate(addrs []netip.Addr, add bool) (*nft.Update, error) {
	c, err := k.conn()
	if err != nil {
		return nil, err
	}
	s, err := nft.ReadForUpdate(c)
	if err != nil {
		return nil, err
	}
	msgs, err := nft.ProbeAddrsChange(s, addrs, add)
	if err != nil {
		return nil, err
	}
	return &nft.Update{Generation: s.Generation, Msgs: msgs}, nil
}

func (k *realKernel) ProbeAddrs() ([]netip.Addr, error) {
	s, err := k.snapshot()
	if err != nil {
		return nil, err
	}
	return nft.ProbeAddrs(s), nil
}

func (k *realKernel) snapshot() (*nft.Snapshot, error) {
	c, err := k.conn()
	if err != nil {
		return nil, err
	}
	return nft.Read(c)
}

func (k *realKernel) TablesDrift(rs *translate.Ruleset) (*nft.Drift, error) {
	s, err := k.snapshot()
	if err != nil {
		return nil, err
	}
	return nft.Compare(rs, s)
}

func (k *realKernel) route() (*kernel.Routing, error) {
	s, err := k.sockets()
	if err != nil {
		return nil, err
	}
	return s.Routing, nil
}

func (k *realKernel) BeginRouting(rs *translate.Ruleset) (routingChange, error) {
	r, err := k.route()
	if err != nil {
		return nil, err
	}
	return r.Begin(rs)
}

func (k *realKernel) RoutingDiff(rs *translate.Ruleset) ([]kernel.RoutingDrift, error) {
	r, err := k.route()
	if err != nil {
		return nil, err
	}
	return r.Diff(rs)
}

func (k *realKernel) CleanupRouting() error {
	r, err := k.route()
	if err != nil {
		return err
	}
	return r.Cleanup()
}

// Close releases the sockets. The nf_tables socket is closed in the
// background: after a batch that deleted tables, closing waits out the
// kernel's deferred cleanup (an RCU grace period), which the caller need
// not wait for.
func (k *realKernel) Close() {
	if k.s != nil {
		if k.s.NF != nil {
			go k.s.NF.Close()
		}
		k.s.Close()
		k.s = nil
	}
}
