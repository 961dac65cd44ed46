package nft

import (
	"errors"

	"github.com/nfintercept/nfintercept/translate"
)

// ApplyRouting installs rs.Routes (TPROXY policy routing) and
// rs.LoopbackAddrs in the namespace and returns a function that removes
// what this call added.
//
// TODO(issue 3): not implemented yet; TPROXY configurations are refused
// rather than half-applied.
func ApplyRouting(rs *translate.Ruleset, nsPath string) (undo func() error, err error) {
	if len(rs.Routes) > 0 {
		return nil, errors.New("TPROXY policy routing is not implemented yet")
	}
	return func() error { return nil }, nil
}

// CleanupRouting removes the policy routing nfintercept installed.
func CleanupRouting(nsPath string) error { return nil }
