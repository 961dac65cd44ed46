package nfintercept

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/nfintercept/nfintercept/nft"
	"github.com/nfintercept/nfintercept/translate"
)

// applyRuleset installs the policy routing first and the nftables batch
// second: a routing failure leaves the namespace untouched, and a batch
// failure removes the routing this call added, so nothing stays half-applied.
func applyRuleset(rs *translate.Ruleset, nsPath string) error {
	undo, err := nft.ApplyRouting(rs, nsPath)
	if err != nil {
		return err
	}
	if err := nft.Apply(rs, nsPath); err != nil {
		if uerr := undo(); uerr != nil {
			return fmt.Errorf("%w (and rolling back the policy routing failed: %v)", err, uerr)
		}
		return err
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
