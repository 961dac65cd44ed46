package nfintercept

import (
	"context"
	"errors"
	"fmt"

	"github.com/nfintercept/nfintercept/kernel"
	"github.com/nfintercept/nfintercept/nft"
	"github.com/nfintercept/nfintercept/translate"
)

// The ordering rules, written once. The nftables batch is atomic; what
// must never be seen is capture rules (TPROXY) without the policy routing
// that delivers what they mark. So:
//   - routing is added before the batch that may need it, and removed
//     only after the batch that stops needing it;
//   - after a batch fails, whether it was committed is read from the
//     kernel (generation, then a read back), never assumed from the error:
//     routing is rolled back only for a batch known not to be committed.

// change brings the namespace to rs (tables named in extra are deleted
// too). The caller holds the namespace lock.
func change(ctx context.Context, k nsKernel, rs *translate.Ruleset, extra []string) (Change, error) {
	routing, err := k.BeginRouting(rs)
	if err != nil {
		return Change{}, err
	}
	ch, b := writeTables(ctx, k, rs, extra)
	if b.err != nil {
		err := fmt.Errorf("%s nfintercept tables in %s: %w", b.what, k, b.err)
		committed, cerr := committed(k, rs, err, b.gen, b.genErr)
		switch {
		case cerr != nil:
			// Unknown outcome: keep the routing, which is harmless extra
			// if the batch was not committed and needed if it was.
			return Change{}, fmt.Errorf("%w (could not tell whether it was committed, policy routing kept: %v)", err, cerr)
		case !committed:
			if uerr := routing.Undo(); uerr != nil {
				return Change{}, fmt.Errorf("%w (and rolling back the policy routing failed: %v)", err, uerr)
			}
			return Change{}, err
		}
		// The kernel committed it: go on as after a success.
	}
	if err := routing.Prune(); err != nil {
		return Change{}, fmt.Errorf("rules applied, but removing policy routing no longer needed failed: %w", err)
	}
	return ch, nil
}

// Change says how Apply brought the tables to the model.
type Change struct {
	// InSync: the tables were already as wanted; no batch was sent.
	InSync bool
	// Incremental: one batch with only the difference was sent.
	Incremental bool
	// Summary says what changed, or why the tables were replaced whole.
	Summary string
	// Stale counts the updates the kernel refused because the ruleset
	// changed between their read and their commit.
	Stale int
}

// staleRetries bounds how often an update is computed again after the
// kernel refused it because the ruleset changed since it was read.
const staleRetries = 4

// batchFailure is the batch that failed and what is needed to tell
// whether it was committed nonetheless.
type batchFailure struct {
	what   string // "update" or "replace"
	err    error
	gen    uint32 // the generation before the batch
	genErr error
}

// writeTables sends the difference between our tables and rs, computed
// from one snapshot and sent against its generation: nothing when in sync,
// computed again when the kernel refuses it as stale. When no difference
// can be computed (the snapshot cannot be read, holds what an update
// cannot express, or keeps changing) or the kernel refuses it for another
// reason, the tables are replaced whole.
func writeTables(ctx context.Context, k nsKernel, rs *translate.Ruleset, extra []string) (Change, batchFailure) {
	why := nft.CheckUpdateCost(rs)
	stale := 0
	for attempt := 0; why == nil && attempt <= staleRetries; attempt++ {
		u, err := k.TablesUpdate(rs, extra)
		if err != nil {
			why = err
			break
		}
		if u.InSync() {
			return Change{InSync: true, Summary: u.String(), Stale: attempt}, batchFailure{}
		}
		err = k.CommitAt(ctx, u.Generation, u.Msgs)
		if err == nil {
			return Change{Incremental: true, Summary: u.String(), Stale: attempt}, batchFailure{}
		}
		var amb *kernel.AmbiguousError
		if errors.As(err, &amb) {
			return Change{}, batchFailure{what: "update", err: err, gen: u.Generation}
		}
		if !kernel.Stale(err) {
			why = err // refused for another reason: replace instead
			break
		}
		stale++
		if attempt == staleRetries {
			why = fmt.Errorf("the ruleset changed between read and commit %d times: %w", staleRetries+1, err)
		}
		// else another process committed after our read: read again
	}
	ch := Change{Summary: fmt.Sprintf("replaced (%v)", why), Stale: stale}
	gen, genErr := k.Generation()
	if err := nft.Replace(ctx, k, rs, extra); err != nil {
		return Change{}, batchFailure{what: "replace", err: err, gen: gen, genErr: genErr}
	}
	return ch, batchFailure{}
}

// cleanup deletes our tables, then our routing. The caller holds the
// namespace lock.
func cleanup(ctx context.Context, k nsKernel) error {
	existing, err := k.OurTables()
	if err != nil {
		return fmt.Errorf("clean up %s: %w", k, err)
	}
	gen, genErr := k.Generation()
	if err := nft.Delete(ctx, k, existing); err != nil {
		err = fmt.Errorf("clean up nfintercept tables in %s: %w", k, err)
		gone, cerr := committed(k, &translate.Ruleset{}, err, gen, genErr)
		if cerr != nil {
			return fmt.Errorf("%w (could not tell whether it was committed, policy routing kept: %v)", err, cerr)
		}
		if !gone {
			return err // routing stays with the tables that need it
		}
	}
	if err := k.CleanupRouting(); err != nil {
		return fmt.Errorf("clean up %s: tables removed, but %w", k, err)
	}
	return nil
}

// committed decides, after the batch for rs failed with err, whether the
// kernel committed it: a refusal or a failed send means no; a lost verdict
// is settled by the ruleset generation (unchanged: no) and then by reading
// our tables back (as rs wants them: yes).
func committed(k nsKernel, rs *translate.Ruleset, err error, gen uint32, genErr error) (bool, error) {
	var amb *kernel.AmbiguousError
	if !errors.As(err, &amb) {
		return false, nil
	}
	if genErr == nil {
		now, err := k.Generation()
		if err == nil && now == gen {
			return false, nil
		}
	}
	d, err := k.TablesDrift(rs)
	if err != nil {
		return false, err
	}
	return d.InSync(), nil
}
