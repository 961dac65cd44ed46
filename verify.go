package nfintercept

import (
	"context"
	"fmt"

	"github.com/nfintercept/nfintercept/nft"
	"github.com/nfintercept/nfintercept/translate"
)

// Report is what Verify or Reconcile found in the namespace.
type Report struct {
	// Drift lists the differences found, before any repair.
	*nft.Drift
	// Reconciled is set when the differences were repaired by re-applying.
	Reconciled bool
}

// Verify reads the namespace's ruleset and policy routing over netlink and
// compares them with what Apply would install for req: missing, extra or
// changed tables, chains, rules, set elements, routes. Tables and routing
// of others are ignored. Nothing is changed.
func Verify(ctx context.Context, ns *Namespace, req Request) (*Report, error) {
	if err := req.Config.CheckResolved(); err != nil {
		return nil, &InputError{Err: err}
	}
	k := &realKernel{ns: ns}
	defer k.Close()
	res, err := plan(k, req)
	if err != nil {
		return nil, err
	}
	d, err := drift(k, res.Ruleset)
	if err != nil {
		return nil, err
	}
	return &Report{Drift: d}, nil
}

// Reconcile is Verify, then, if anything differs, a re-apply of the whole
// ruleset under the lock (also deleting extra tables with our prefix) and
// a second look, which must find the namespace in sync.
func Reconcile(ctx context.Context, ns *Namespace, req Request) (*Report, error) {
	if err := req.Config.CheckResolved(); err != nil {
		return nil, &InputError{Err: err}
	}
	k := &realKernel{ns: ns}
	var rep *Report
	err := locked(ctx, k, func() error {
		res, err := plan(k, req)
		if err != nil {
			return err
		}
		rep, err = reconcile(ctx, k, res.Ruleset)
		return err
	})
	return rep, err
}

// reconcile compares the namespace with rs and, if anything differs,
// re-applies rs (the caller holds the lock).
func reconcile(ctx context.Context, k nsKernel, rs *translate.Ruleset) (*Report, error) {
	d, err := drift(k, rs)
	if err != nil {
		return nil, err
	}
	rep := &Report{Drift: d}
	if d.InSync() {
		return rep, nil
	}
	extra, err := k.OurTables()
	if err != nil {
		return rep, fmt.Errorf("reconcile: %w", err)
	}
	if _, err := change(ctx, k, rs, extra); err != nil {
		return rep, fmt.Errorf("reconcile: %w", err)
	}
	after, err := drift(k, rs)
	if err != nil {
		return rep, fmt.Errorf("reconcile: %w", err)
	}
	if !after.InSync() {
		// Someone changed the namespace again right after the re-apply.
		return rep, fmt.Errorf("reconcile: still differs after re-applying:\n%s", after)
	}
	rep.Reconciled = true
	return rep, nil
}

// drift compares one snapshot of the tables and the routing with rs.
func drift(k nsKernel, rs *translate.Ruleset) (*nft.Drift, error) {
	d, err := k.TablesDrift(rs)
	if err != nil {
		return nil, fmt.Errorf("verify %s: %w", k, err)
	}
	rd, err := k.RoutingDiff(rs)
	if err != nil {
		return nil, fmt.Errorf("verify %s: %w", k, err)
	}
	for _, r := range rd {
		d.AddRouting(r.Missing, r.Object, r.Where, r.Text)
	}
	d.Where = k.String()
	return d, nil
}
