package nfintercept

import (
	"fmt"

	"github.com/nfintercept/nfintercept/nft"
)

// Drift is what Verify found in the namespace.
type Drift struct {
	// Drift lists the differences found, before any repair.
	*nft.Drift
	// Reconciled is set when the differences were repaired by re-applying.
	Reconciled bool
}

// Verify reads the namespace's ruleset and policy routing over netlink and
// compares them with what Apply would install for req: missing, extra or
// changed tables, chains, rules, set elements, routes. Tables of others are
// ignored. With reconcile, drift is repaired by re-applying the whole
// ruleset atomically (also removing extra tables with our prefix), and the
// namespace is verified again.
func Verify(req Request, reconcile bool) (*Drift, error) {
	res, err := Plan(req)
	if err != nil {
		return nil, err
	}
	if err := res.Config.CheckResolved(); err != nil {
		return nil, err
	}
	d, err := nft.Verify(res.Ruleset, req.NetNSPath)
	if err != nil {
		return nil, err
	}
	out := &Drift{Drift: d}
	if d.InSync() || !reconcile {
		return out, nil
	}
	if err := changeNamespace(res.Ruleset, req.NetNSPath, nft.Reconcile); err != nil {
		return out, fmt.Errorf("reconcile: %w", err)
	}
	after, err := nft.Verify(res.Ruleset, req.NetNSPath)
	if err != nil {
		return out, fmt.Errorf("reconcile: %w", err)
	}
	if !after.InSync() {
		// Someone changed the namespace again right after the re-apply.
		return out, fmt.Errorf("reconcile: still differs after re-applying:\n%s", after)
	}
	out.Reconciled = true
	return out, nil
}
