package nft

import (
	"fmt"

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
	var existing []string
	err = withConn(nsPath, 0, func(c *nftables.Conn) error {
		existing, err = ourTables(c)
		return err
	})
	if err == nil {
		err = applyTables(nsPath, tables, existing)
	}
	if err != nil {
		return fmt.Errorf("reconcile nfintercept ruleset in %s: %w", nsName(nsPath), err)
	}
	return nil
}
