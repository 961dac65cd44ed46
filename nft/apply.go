// Package nft compiles the rule model into nf_tables netlink messages and
// into an `nft -f` script, and compares a snapshot read from the kernel
// with the model. It opens no sockets: package kernel sends the batches and
// runs the dumps it is handed.
package nft

import (
	"context"
	"fmt"
	"slices"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/nfintercept/nfintercept/translate"
)

// Committer sends one nf_tables batch atomically (kernel.NFTablesConn).
type Committer interface {
	Commit(ctx context.Context, msgs []netlink.Message) error
}

// Replace replaces all nfintercept tables (translate.TableKinds, named
// translate.TablePrefix+kind, any other the ruleset defines, and extra)
// with rs in ONE batch: each previous version is removed (DESTROYTABLE, or
// NEWTABLE+DELTABLE on kernels before 6.3), even of tables rs no longer
// needs, then the new tables, chains, sets and rules are added. The kernel
// applies a batch atomically, so a refusal leaves the old state.
func Replace(ctx context.Context, c Committer, rs *translate.Ruleset, extra []string) error {
	tables, err := lowerRuleset(rs)
	if err != nil {
		return err
	}
	rules := 0
	for _, lt := range tables {
		for _, lc := range lt.chains {
			rules += len(lc.rules)
		}
	}
	err = commitTables(ctx, c, func(destroy bool) ([]netlink.Message, error) {
		return replaceMsgs(tables, extra, destroy)
	})
	if err != nil {
		return fmt.Errorf("netlink batch (%d tables, %d rules): %w", len(tables), rules, err)
	}
	return nil
}

// Delete deletes every nfintercept table (the known kinds and the ones
// named) in one batch; tables that do not exist are no error.
func Delete(ctx context.Context, c Committer, existing []string) error {
	err := commitTables(ctx, c, func(destroy bool) ([]netlink.Message, error) {
		return replaceMsgs(nil, existing, destroy)
	})
	if err != nil {
		return fmt.Errorf("netlink batch: %w", err)
	}
	return nil
}

// commitTables commits the batch build makes, falling back to the
// pre-6.3 way of deleting tables once the kernel refuses DESTROYTABLE.
func commitTables(ctx context.Context, c Committer, build func(destroy bool) ([]netlink.Message, error)) error {
	for {
		destroy := !noDestroy.Load()
		msgs, err := build(destroy)
		if err != nil {
			return err
		}
		err = named(c.Commit(ctx, msgs), msgs)
		if destroy && destroyUnsupported(err) {
			noDestroy.Store(true) // kernel before 6.3: replace the old way
			continue
		}
		return err
	}
}

// replaceMsgs encodes the batch that replaces our tables (and the extra
// ones named) with tables. With destroy, each old table is removed with
// DESTROYTABLE (a no-op when it is absent); otherwise with
// NEWTABLE+DELTABLE (the add makes the delete safe), which always leaves a
// deletion for the kernel to clean up.
func replaceMsgs(tables []*loweredTable, extra []string, destroy bool) ([]netlink.Message, error) {
	e := &encoder{}
	names := replacedTables(tables)
	for _, n := range extra {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	for _, name := range names {
		if destroy {
			e.msgs = append(e.msgs, destroyTableMsg(name))
			continue
		}
		e.msgs = append(e.msgs, tableMsg(unix.NFT_MSG_NEWTABLE, name), tableMsg(unix.NFT_MSG_DELTABLE, name))
	}
	for _, lt := range tables {
		if err := e.addTable(lt); err != nil {
			return nil, err
		}
	}
	return e.msgs, nil
}

// replacedTables names every table a replacement deletes first: each known
// kind plus any other kind the ruleset defines.
func replacedTables(tables []*loweredTable) []string {
	var names []string
	for _, k := range translate.TableKinds {
		names = append(names, translate.TablePrefix+string(k))
	}
	for _, lt := range tables {
		if !slices.Contains(names, lt.name) {
			names = append(names, lt.name)
		}
	}
	return names
}
