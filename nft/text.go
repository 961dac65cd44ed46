package nft

import (
	"fmt"
	"strings"

	"github.com/nfintercept/nfintercept/translate"
)

// Text renders rs as an `nft -f` script that does exactly what Apply does:
// first each of our tables is declared (so the delete cannot fail) and
// deleted, then the new tables are defined; nft runs a file as one
// transaction. Rules read the way `nft list ruleset` prints them.
func Text(rs *translate.Ruleset) (string, error) {
	tables, err := lowerRuleset(rs)
	if err != nil {
		return "", fmt.Errorf("render nfintercept ruleset: %w", err)
	}
	var b strings.Builder
	for _, name := range replacedTables(tables) {
		fmt.Fprintf(&b, "table inet %s\ndelete table inet %s\n", name, name)
	}
	for _, lt := range tables {
		b.WriteString("\n")
		lt.writeText(&b)
	}
	return b.String(), nil
}

func (lt *loweredTable) writeText(b *strings.Builder) {
	fmt.Fprintf(b, "table inet %s {\n", lt.name)
	for _, s := range lt.sets {
		fmt.Fprintf(b, "\t%s\n", s.declText())
	}
	for i, lc := range lt.chains {
		if i > 0 || len(lt.sets) > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(b, "\tchain %s {\n", lc.name)
		if bc := lc.base; bc != nil {
			fmt.Fprintf(b, "\t\ttype %s hook %s priority %d; policy accept;\n", bc.Type, bc.Hook, bc.Priority)
		}
		for _, r := range lc.rules {
			fmt.Fprintf(b, "\t\t%s\n", r)
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
}
