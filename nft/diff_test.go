package nft

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/nfintercept/nfintercept/kernel"
	"github.com/nfintercept/nfintercept/translate"
)

// sortedListing is `nft list ruleset` with counters zeroed, tables and,
// inside each, sets and chains in name order: an incremental update
// appends new tables, chains and sets where a fresh apply declares them in
// model order, and nft lists them as created.
func sortedListing(listing string) string {
	var tables, out []string
	var blocks []string
	var cur []string
	depth := 0
	for _, line := range strings.Split(counterRE.ReplaceAllString(listing, "counter"), "\n") {
		l := strings.TrimSpace(line)
		switch {
		case depth == 0 && strings.HasPrefix(l, "table "):
			out = append(out, l)
			depth = 1
		case depth == 1 && l == "}":
			sort.Strings(blocks)
			out = append(out, blocks...)
			out = append(out, "}")
			tables = append(tables, strings.Join(out, "\n"))
			out, blocks = nil, nil
			depth = 0
		case depth == 1 && strings.HasSuffix(l, "{"):
			cur = []string{l}
			depth = 2
		case depth >= 2:
			cur = append(cur, l)
			if strings.HasSuffix(l, "{") {
				depth++
			}
			if l == "}" || strings.HasPrefix(l, "}") {
				depth--
			}
			if depth == 1 {
				blocks = append(blocks, strings.Join(cur, "\n"))
			}
		case l != "":
			out = append(out, l)
		}
	}
	sort.Strings(tables)
	return strings.Join(append(tables, out...), "\n")
}

// update reads the namespace's tables, computes the update to rs and
// commits it against the snapshot's generation.
func update(t *testing.T, path string, rs *translate.Ruleset) *Update {
	t.Helper()
	var u *Update
	err := withNFT(path, func(c *kernel.NFTablesConn) error {
		s, err := Read(c)
		if err != nil {
			return err
		}
		if u, err = Diff(rs, s, nil); err != nil {
			return err
		}
		if err := c.CommitAt(context.Background(), u.Generation, u.Msgs); err != nil {
			return fmt.Errorf("commit %s: %w", u, named(err, u.Msgs))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func generation(t *testing.T, path string) uint32 {
	t.Helper()
	var g uint32
	if err := withNFT(path, func(c *kernel.NFTablesConn) (err error) { g, err = c.Generation(); return err }); err != nil {
		t.Fatal(err)
	}
	return g
}

// checkLikeFresh fails unless the namespace at a holds exactly what a full
// apply of rs into the fresh namespace b gives, and Verify agrees.
func checkLikeFresh(t *testing.T, what, a, pathA, b, pathB string, rs *translate.Ruleset) {
	t.Helper()
	if err := Apply(rs, pathB); err != nil {
		t.Fatal(err)
	}
	if got, want := sortedListing(listRuleset(t, a)), sortedListing(listRuleset(t, b)); got != want {
		t.Errorf("%s: ruleset after the update differs from a fresh apply:\n--- update\n%s\n--- fresh\n%s", what, got, want)
	}
	withNFT(pathA, func(c *kernel.NFTablesConn) error {
		s, err := Read(c)
		if err != nil {
			t.Fatal(err)
		}
		d, err := Compare(rs, s)
		if err != nil || !d.InSync() {
			t.Errorf("%s: verify after the update: %v %v", what, err, d)
		}
		return nil
	})
}

// TestDiffBetweenConfigs: from every realistic configuration (and from
// nothing) to every other, the update leaves exactly what a fresh apply
// leaves, and from a configuration to itself it is empty and nothing is
// committed. This covers chain rewrites, set and element changes, tables
// added and deleted, and the REDIRECT↔TPROXY mode switch.
func TestDiffBetweenConfigs(t *testing.T) {
	requireRoot(t)
	cfgs := realisticConfigs()
	names := []string{""}
	for n := range cfgs {
		names = append(names, n)
	}
	slices.Sort(names)
	build := func(n string) *translate.Ruleset {
		if n == "" {
			return &translate.Ruleset{}
		}
		c := cfgs[n]
		c.EnableIPv6 = c.DualStack
		return translate.Build(c)
	}
	for _, from := range names {
		for _, to := range names[1:] {
			what := fmt.Sprintf("%q → %q", from, to)
			a, pathA := newNetns(t)
			if from != "" {
				if err := Apply(build(from), pathA); err != nil {
					t.Fatal(err)
				}
			}
			u := update(t, pathA, build(to))
			if from == to {
				if !u.InSync() {
					t.Errorf("%s: update of a ruleset to itself: %s", what, u)
				}
				gen := generation(t, pathA)
				if again := update(t, pathA, build(to)); !again.InSync() || generation(t, pathA) != gen {
					t.Errorf("%s: in-sync update committed something", what)
				}
				continue
			}
			if u.InSync() {
				t.Errorf("%s: empty update between different rulesets", what)
			}
			b, pathB := newNetns(t)
			checkLikeFresh(t, what, a, pathA, b, pathB, build(to))
			if again := update(t, pathA, build(to)); !again.InSync() {
				t.Errorf("%s: second update not empty: %s", what, again)
			}
		}
	}
}

// TestDiffStaleGeneration: a foreign commit between the read and the
// batch makes the kernel refuse the batch (ERESTART on the batch begin),
// nothing of it applied; computed again, it applies.
func TestDiffStaleGeneration(t *testing.T) {
	requireRoot(t)
	cfgs := realisticConfigs()
	from, to := translate.Build(cfgs["redirect-default"]), translate.Build(cfgs["tproxy-dualstack-dns"])
	a, pathA := newNetns(t)
	if err := Apply(from, pathA); err != nil {
		t.Fatal(err)
	}
	before := listRuleset(t, a)
	err := withNFT(pathA, func(c *kernel.NFTablesConn) error {
		s, err := Read(c)
		if err != nil {
			return err
		}
		u, err := Diff(to, s, nil)
		if err != nil {
			return err
		}
		nftIn(t, a, "", "add", "table", "inet", "foreign") // another process commits
		err = c.CommitAt(context.Background(), u.Generation, u.Msgs)
		if !kernel.Stale(err) {
			t.Errorf("batch at a stale generation: %v, want a stale refusal", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	nftIn(t, a, "", "delete", "table", "inet", "foreign")
	if after := listRuleset(t, a); after != before {
		t.Errorf("refused batch changed the ruleset:\n%s\nwas\n%s", after, before)
	}
	update(t, pathA, to)
	b, pathB := newNetns(t)
	checkLikeFresh(t, "after retry", a, pathA, b, pathB, to)
}

// TestDiffLargeSet: one CIDR added to, then removed from, a 100,000-CIDR
// exclude list changes only the set elements concerned.
func TestDiffLargeSet(t *testing.T) {
	requireRoot(t)
	if testing.Short() {
		t.Skip("large set skipped in -short mode")
	}
	r := rand.New(rand.NewPCG(5, 6))
	prefixes := randomV4(r, 100_000)
	ruleset := excludeRuleset
	a, pathA := newNetns(t)
	if err := Apply(ruleset(prefixes), pathA); err != nil {
		t.Fatal(err)
	}
	// 203.0.113.77/32 is in no random /8–/32 of the list only by chance;
	// pick an address outside every listed prefix.
	extra := pfx("198.51.100.77/32")
	for _, p := range prefixes {
		if p.Prefix.Overlaps(extra.Prefix) {
			t.Skip("the random list covers the extra CIDR")
		}
	}
	grown := append(slices.Clone(prefixes), extra)
	u := update(t, pathA, ruleset(grown))
	if u.ElementsAdded < 1 || u.ElementsAdded > 2 || u.ElementsDeleted > 2 || u.ChainsRewritten+u.SetsAdded+u.TablesAdded+u.TablesDeleted != 0 || len(u.Msgs) > 2 {
		t.Errorf("one CIDR added: %s", u)
	}
	b, pathB := newNetns(t)
	checkLikeFresh(t, "one CIDR added", a, pathA, b, pathB, ruleset(grown))

	u = update(t, pathA, ruleset(prefixes))
	if u.ElementsDeleted < 1 || u.ElementsDeleted > 2 || u.ElementsAdded > 2 || u.ChainsRewritten != 0 || len(u.Msgs) > 2 {
		t.Errorf("one CIDR removed: %s", u)
	}
	c, pathC := newNetns(t)
	checkLikeFresh(t, "one CIDR removed", a, pathA, c, pathC, ruleset(prefixes))
}
