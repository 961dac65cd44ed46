package nft

import (
	"fmt"
	"slices"

	"github.com/google/nftables"

	"github.com/nfintercept/nfintercept/translate"
)

// Reconcile installs rs like Apply, in one batch, and also deletes every
// other table carrying our prefix: Verify reports those as extra, and Apply
// only replaces the table kinds it knows.
func Reconcile(rs *translate.Ruleset, nsPath string) error {
	tables, err := lowerRuleset(rs)
	if err != nil {
		return fmt.Errorf("reconcile nfintercept ruleset in %s: %w", nsName(nsPath), err)
	}
	err = withConn(nsPath, batchSize(tables), func(c *nftables.Conn) error {
		existing, err := ourTables(c)
		if err != nil {
			return err
		}
		names := replacedTables(tables)
		for _, n := range existing {
			if !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
		for _, name := range names {
			t := &nftables.Table{Family: nftables.TableFamilyINet, Name: name}
			c.AddTable(t) // no-op when it exists; makes the delete safe
			c.DelTable(t)
		}
		enc := &encoder{conn: c}
		for _, lt := range tables {
			if err := enc.addTable(lt); err != nil {
				return err
			}
		}
		if err := c.Flush(); err != nil {
			return fmt.Errorf("netlink batch (%d tables): %w", len(tables), err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("reconcile nfintercept ruleset in %s: %w", nsName(nsPath), err)
	}
	return nil
}
