package nfintercept

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/nfintercept/nfintercept/nft"
	"github.com/nfintercept/nfintercept/translate"
)

// applyRuleset changes the namespace in three steps, under a per-namespace
// lock: add the policy routing the ruleset needs, replace the nftables
// tables in one batch, remove routing no longer needed. A routing failure
// leaves the namespace untouched; a batch failure removes the routing this
// call added; a process killed in between leaves extra routing, never
// capture rules without their routes.
func applyRuleset(rs *translate.Ruleset, nsPath string) error {
	return changeNamespace(rs, nsPath, nft.Apply)
}

// changeNamespace is applyRuleset with the nftables step given: nft.Apply,
// or nft.Reconcile (which also drops stray tables with our prefix).
func changeNamespace(rs *translate.Ruleset, nsPath string, batch func(*translate.Ruleset, string) error) error {
	unlock, err := lockNamespace(nsPath)
	if err != nil {
		return err
	}
	defer unlock()
	routing, err := nft.BeginRouting(rs, nsPath)
	if err != nil {
		return err
	}
	defer routing.Close()
	if err := batch(rs, nsPath); err != nil {
		if uerr := routing.Undo(); uerr != nil {
			return fmt.Errorf("%w (and rolling back the policy routing failed: %v)", err, uerr)
		}
		return err
	}
	if err := routing.Prune(); err != nil {
		return fmt.Errorf("rules applied, but removing policy routing no longer needed failed: %w", err)
	}
	return nil
}

func cleanupRouting(nsPath string) error {
	return nft.CleanupRouting(nsPath)
}

// checkNetNS refuses a path that is not a network namespace file before
// anything tries to use it.
func checkNetNS(path string) error {
	if path == "" {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("--network-namespace %q: %w", path, err)
	}
	defer f.Close()
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil {
		return fmt.Errorf("--network-namespace %q: %w", path, err)
	}
	if st.Type != unix.NSFS_MAGIC {
		return fmt.Errorf("--network-namespace %q is not a namespace file (expected /var/run/netns/NAME or /proc/PID/ns/net)", path)
	}
	ns, err := unix.IoctlRetInt(int(f.Fd()), unix.NS_GET_NSTYPE)
	if err == nil && ns != unix.CLONE_NEWNET {
		return fmt.Errorf("--network-namespace %q is a namespace, but not a network namespace", path)
	}
	return nil
}
