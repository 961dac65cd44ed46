package main

import (
	"context"
	"fmt"
	"io"

	"github.com/nfintercept/nfintercept"
)

// verify compares the namespace with what the options install and prints
// the differences on stdout. Drift is an error (exit 1) unless reconcile
// repaired it.
func verify(ctx context.Context, ns *nfintercept.Namespace, req nfintercept.Request, reconcile bool, stdout io.Writer, log func(string, ...any)) error {
	check := nfintercept.Verify
	if reconcile {
		check = nfintercept.Reconcile
	}
	d, err := check(ctx, ns, req)
	return reportDrift(d, err, ns, stdout, log)
}

// reportDrift prints drift and turns it into the exit status.
func reportDrift(d *nfintercept.Report, err error, ns *nfintercept.Namespace, stdout io.Writer, log func(string, ...any)) error {
	if d != nil && !d.InSync() {
		if _, werr := io.WriteString(stdout, d.String()); werr != nil && err == nil {
			err = werr
		}
	}
	if err != nil {
		return classify(err)
	}
	switch {
	case d.InSync():
		log("%s is in sync with the options", ns)
		return nil
	case d.Reconciled:
		log("re-applied the ruleset in %s: now in sync", ns)
		return nil
	}
	return fmt.Errorf("%s differs from the options: %d differences (--reconcile re-applies)", ns, len(d.Items))
}
