package main

import (
	"fmt"
	"io"

	"github.com/nfintercept/nfintercept"
)

// verify compares the namespace with what the options install and prints
// the differences on stdout. Drift is an error (exit 1) unless --reconcile
// repaired it.
func verify(req nfintercept.Request, stdout io.Writer, log func(string, ...any)) error {
	d, err := nfintercept.Verify(req, req.Options.Reconcile)
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
		log("%s is in sync with the options", nfintercept.NamespaceName(req.NetNSPath))
		return nil
	case d.Reconciled:
		log("re-applied the ruleset in %s: now in sync", nfintercept.NamespaceName(req.NetNSPath))
		return nil
	}
	return fmt.Errorf("%s differs from the options: %d differences (--reconcile re-applies)", nfintercept.NamespaceName(req.NetNSPath), len(d.Items))
}
