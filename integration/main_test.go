// Package integration proves nfintercept against a real kernel: rules are
// installed in throwaway namespaces and real connections, made by processes
// with chosen uid/gid, show where traffic lands.
package integration

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/nfintercept/nfintercept/integration/harness"
	"github.com/nfintercept/nfintercept/translate"
)

func TestMain(m *testing.M) { harness.Main(m, removeCLI, removePilotAgentCopy) }

// nftList runs `nft --stateless list ARGS` inside the named namespace (nft
// is a test oracle here; the product never runs it). Stateless: counters
// move with stray traffic such as IPv6 multicast reports, and would make
// comparisons flaky.
func nftList(t testing.TB, ns string, args ...string) string {
	t.Helper()
	return harness.InNS(t, ns, "nft", append([]string{"--stateless", "list"}, args...)...)
}

// ownTables returns the names of the nfintercept tables present in ns.
func ownTables(t testing.TB, ns string) []string {
	t.Helper()
	var names []string
	for _, line := range strings.Split(nftList(t, ns, "tables"), "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == "table" && strings.HasPrefix(f[2], translate.TablePrefix) {
			names = append(names, f[1]+" "+f[2])
		}
	}
	return names
}

// nftJSON is the part of `nft -j list ruleset` the tests look at.
type nftJSON struct {
	Nftables []map[string]json.RawMessage `json:"nftables"`
}

type nftSet struct {
	Family string            `json:"family"`
	Name   string            `json:"name"`
	Table  string            `json:"table"`
	Type   json.RawMessage   `json:"type"`
	Flags  []string          `json:"flags"`
	Elem   []json.RawMessage `json:"elem"`
}

// namedSets lists the named sets of the ruleset in ns.
func namedSets(t testing.TB, ns string) []nftSet {
	t.Helper()
	out := harness.InNS(t, ns, "nft", "-j", "list", "ruleset")
	var doc nftJSON
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("parse nft -j output: %v\n%s", err, out)
	}
	var sets []nftSet
	for _, obj := range doc.Nftables {
		raw, ok := obj["set"]
		if !ok {
			continue
		}
		var s nftSet
		if err := json.Unmarshal(raw, &s); err != nil {
			t.Fatalf("parse set %s: %v", raw, err)
		}
		sets = append(sets, s)
	}
	return sets
}

// setHoldsPrefix reports whether an element of s is exactly addr/len.
func setHoldsPrefix(s nftSet, addr string, length int) bool {
	for _, e := range s.Elem {
		var p struct {
			Prefix struct {
				Addr string `json:"addr"`
				Len  int    `json:"len"`
			} `json:"prefix"`
		}
		if json.Unmarshal(e, &p) == nil && p.Prefix.Addr == addr && p.Prefix.Len == length {
			return true
		}
	}
	return false
}

func hasFlag(s nftSet, flag string) bool {
	for _, f := range s.Flags {
		if f == flag {
			return true
		}
	}
	return false
}

var (
	cliOnce sync.Once
	cliDir  string
	cliPath string
	cliErr  error
)

// cliBinary builds cmd/nfintercept once per test run.
func cliBinary(t testing.TB) string {
	t.Helper()
	cliOnce.Do(func() {
		dir, err := harness.TempDir("cli")
		if err != nil {
			cliErr = err
			return
		}
		cliDir = dir
		bin := filepath.Join(dir, "nfintercept")
		cmd := exec.Command("go", "build", "-o", bin, "github.com/nfintercept/nfintercept/cmd/nfintercept")
		if out, err := cmd.CombinedOutput(); err != nil {
			cliErr = &buildError{err: err, out: string(out)}
			return
		}
		cliPath = bin
	})
	if cliErr != nil {
		t.Fatalf("building the CLI: %v", cliErr)
	}
	return cliPath
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return e.err.Error() + "\n" + e.out }

func removeCLI() {
	if cliDir != "" {
		_ = os.RemoveAll(cliDir)
	}
}
