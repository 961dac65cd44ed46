package kernel

import (
	"slices"
	"testing"

	"github.com/nfintercept/nfintercept/translate"
)

// TestRoutingChange: Begin adds before and Prune removes after, and Undo
// reverts only Begin's adds.
func TestRoutingChange(t *testing.T) {
	ns, path := routingNS(t)
	mustApply(t, tproxyRuleset(1337, 133, true), path)

	// Mode switch to another mark and table: both present in between.
	c, err := beginRouting(t, tproxyRuleset(0x100, 144, true), path)
	if err != nil {
		t.Fatal(err)
	}
	for _, fam := range []string{"-4", "-6"} {
		want(t, fam+" rules after begin", sorted(fwmarkRules(t, ns, fam)), []string{
			"fwmark 0x100 lookup 144 proto " + ours, "fwmark 0x539 lookup 133 proto " + ours})
		want(t, fam+" new table after begin", tableRoutes(t, ns, fam, 144), []string{"local default dev lo proto " + ours})
	}
	if err := c.Prune(); err != nil {
		t.Fatal(err)
	}
	for _, fam := range []string{"-4", "-6"} {
		want(t, fam+" rules after prune", fwmarkRules(t, ns, fam), []string{"fwmark 0x100 lookup 144 proto " + ours})
		want(t, fam+" old table after prune", tableRoutes(t, ns, fam, 133), none)
	}

	// A failed batch: Undo removes what Begin added and nothing else.
	c2, err := beginRouting(t, &translate.Ruleset{Families: translate.BothFamilies}, path)
	if err != nil {
		t.Fatal(err)
	}
	c3, err := beginRouting(t, tproxyRuleset(7, 170, false), path)
	if err != nil {
		t.Fatal(err)
	}
	want(t, "v4 rules before undo", sorted(fwmarkRules(t, ns, "-4")), []string{
		"fwmark 0x100 lookup 144 proto " + ours, "fwmark 0x7 lookup 170 proto " + ours})
	if err := c3.Undo(); err != nil {
		t.Fatal(err)
	}
	want(t, "v4 rules after undo", fwmarkRules(t, ns, "-4"), []string{"fwmark 0x100 lookup 144 proto " + ours})
	want(t, "table 170 after undo", tableRoutes(t, ns, "-4", 170), none)

	// REDIRECT without IPv6: prune leaves nothing of ours.
	if err := c2.Prune(); err != nil {
		t.Fatal(err)
	}
	for _, fam := range []string{"-4", "-6"} {
		want(t, fam+" rules in REDIRECT", fwmarkRules(t, ns, fam), none)
		want(t, fam+" table 144 in REDIRECT", tableRoutes(t, ns, fam, 144), none)
	}
}

// sorted orders rules for comparison: the kernel's placement of a rule
// without a priority is not what the test is about.
func sorted(rules []string) []string { return slices.Sorted(slices.Values(rules)) }
