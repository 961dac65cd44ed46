package nft

import (
	"context"
	"fmt"
	"slices"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"

	"github.com/nfintercept/nfintercept/kernel"
	"github.com/nfintercept/nfintercept/translate"
)

// The package opens no sockets; these helpers run its batches and dumps
// through package kernel the way the root package does, for the tests that
// check the messages against the real kernel. Path "" is the current
// namespace.

func withNS(path string, fn func(ns *kernel.Namespace) error) error {
	if path == "" {
		return fn(nil)
	}
	ns, err := kernel.OpenNamespace(path)
	if err != nil {
		return err
	}
	defer ns.Close()
	return fn(ns)
}

func withNFT(path string, fn func(c *kernel.NFTablesConn) error) error {
	return withNS(path, func(ns *kernel.Namespace) error {
		c, err := kernel.DialNFTables(ns)
		if err != nil {
			return err
		}
		defer c.Close()
		return fn(c)
	})
}

// Apply replaces our tables in the namespace at path with rs.
func Apply(rs *translate.Ruleset, path string) error {
	return withNFT(path, func(c *kernel.NFTablesConn) error {
		if err := Replace(context.Background(), c, rs, nil); err != nil {
			return fmt.Errorf("apply in %s: %w", path, err)
		}
		return nil
	})
}

// Reconcile is Apply also deleting every other table with our prefix.
func Reconcile(rs *translate.Ruleset, path string) error {
	return withNFT(path, func(c *kernel.NFTablesConn) error {
		existing, err := OurTables(c)
		if err != nil {
			return err
		}
		return Replace(context.Background(), c, rs, existing)
	})
}

// Cleanup deletes our tables and returns the names of those that existed.
func Cleanup(path string) ([]string, error) {
	var existed []string
	err := withNFT(path, func(c *kernel.NFTablesConn) error {
		var err error
		if existed, err = OurTables(c); err != nil {
			return err
		}
		return Delete(context.Background(), c, existed)
	})
	return existed, err
}

// Verify compares one snapshot of the tables, and the routing, with rs.
func Verify(rs *translate.Ruleset, path string) (*Drift, error) {
	var d *Drift
	err := withNS(path, func(ns *kernel.Namespace) error {
		c, err := kernel.DialNFTables(ns)
		if err != nil {
			return err
		}
		defer c.Close()
		s, err := Read(c)
		if err != nil {
			return err
		}
		if d, err = Compare(rs, s); err != nil {
			return err
		}
		r, err := kernel.OpenRouting(ns)
		if err != nil {
			return err
		}
		defer r.Close()
		rd, err := r.Diff(rs)
		for _, x := range rd {
			d.AddRouting(x.Missing, x.Object, x.Where, x.Text)
		}
		return err
	})
	return d, err
}

// ApplyRouting installs rs's policy routing (kernel.ApplyRouting).
func ApplyRouting(rs *translate.Ruleset, path string) (undo func() error, err error) {
	err = withNS(path, func(ns *kernel.Namespace) error {
		undo, err = kernel.ApplyRouting(rs, ns)
		return err
	})
	return undo, err
}

// commitMsgs sends one batch to the namespace at path.
func commitMsgs(path string, msgs []netlink.Message) error {
	return withNFT(path, func(c *kernel.NFTablesConn) error {
		return named(c.Commit(context.Background(), msgs), msgs)
	})
}

// replaceTxn is replaceMsgs from the model's lowered tables.
func replaceTxn(tables []*loweredTable, extra []string, destroy bool) ([]netlink.Message, error) {
	return replaceMsgs(tables, extra, destroy)
}

// withConn runs fn with a google/nftables Conn in the namespace at path
// (the library reads back what Tables reports).
func withConn(path string, _ int, fn func(*nftables.Conn) error) error {
	return withNS(path, func(ns *kernel.Namespace) error {
		var opts []nftables.ConnOption
		if ns != nil {
			opts = append(opts, nftables.WithNetNSFd(ns.Fd()))
		}
		c, err := nftables.New(opts...)
		if err != nil {
			return err
		}
		return fn(c)
	})
}

// ourTables lists the names of the inet tables with our prefix.
func ourTables(c *nftables.Conn) ([]string, error) {
	ts, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	var names []string
	for _, t := range ts {
		if len(t.Name) > len(translate.TablePrefix) && t.Name[:len(translate.TablePrefix)] == translate.TablePrefix {
			names = append(names, t.Name)
		}
	}
	slices.Sort(names)
	return names, nil
}

func nsName(path string) string {
	if path == "" {
		return "the current network namespace"
	}
	return "network namespace " + path
}
