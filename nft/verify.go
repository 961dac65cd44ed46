package nft

import (
	"fmt"
	"sort"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"

	"github.com/nfintercept/nfintercept/translate"
)

// Dumper runs nf_tables dumps (kernel.NFTablesConn does, in one
// namespace).
type Dumper interface {
	Dump(msgType uint16, attrs ...netlink.Attribute) ([]netlink.Message, error)
	Generation() (uint32, error)
}

// Snapshot is our tables (translate.TablePrefix) as the kernel held them at
// one ruleset generation.
type Snapshot struct {
	Generation uint32
	state      *kernelState
}

// Tables names the tables of ours the snapshot holds.
func (s *Snapshot) Tables() []string {
	var names []string
	for _, t := range s.state.tables {
		names = append(names, t.name)
	}
	return names
}

// Compare lists how the snapshot differs from what Replace installs for
// rs: our tables with their flags, chains, named sets and elements, every
// rule expression by expression. Foreign tables are ignored; routing is
// compared by the caller (Drift.AddRouting).
func Compare(rs *translate.Ruleset, s *Snapshot) (*Drift, error) {
	want, err := desiredState(rs)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	d := &Drift{}
	compareTables(d, want, s.state)
	return d, nil
}

// Drift is the difference between the desired ruleset and the kernel.
type Drift struct {
	Where string // the namespace, as messages name it
	Items []DriftItem
}

// DriftKind says on which side an object is.
type DriftKind string

const (
	Missing DriftKind = "missing" // wanted, not in the kernel
	Extra   DriftKind = "extra"   // in the kernel, not wanted
	Changed DriftKind = "changed" // in both, different
)

// DriftItem is one difference.
type DriftItem struct {
	Kind DriftKind
	// Object is "table", "chain", "rule", "set", "set element", "object"
	// (a stateful object: counter, quota, ...), "policy rule", "route" or
	// "address".
	Object string
	// Where locates it: "inet nfintercept-nat chain istio-output rule 3
	// (handle 12)", "dev lo" for an address, empty for policy rules and
	// routes. Rule positions are 1-based, in the kernel's chain for extra
	// and changed rules, in the desired chain for missing ones.
	Where string
	Want  string // nft (or ip) syntax of the desired object; empty for extra
	Have  string // what the kernel holds; empty for missing
	// Detail says what differs in a changed object.
	Detail []string
}

// InSync reports whether no difference was found.
func (d *Drift) InSync() bool { return len(d.Items) == 0 }

// String is a readable diff: "-" wanted but missing, "+" present but not
// wanted, "~" changed, with the expressions that differ.
func (d *Drift) String() string {
	if d.InSync() {
		return d.Where + " is in sync\n"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s differs from the desired ruleset (%s):\n", d.Where, countNoun(len(d.Items), "difference"))
	b.WriteString("  (- wanted but missing, + present but not wanted, ~ changed)\n")
	for _, it := range d.Items {
		b.WriteString(it.String())
		b.WriteString("\n")
	}
	return b.String()
}

func (it DriftItem) String() string {
	var b strings.Builder
	head := it.Object
	if it.Where != "" {
		head += " " + it.Where
	}
	switch it.Kind {
	case Missing:
		b.WriteString("- " + head)
		if it.Want != "" {
			b.WriteString(": " + it.Want)
		}
	case Extra:
		b.WriteString("+ " + head)
		if it.Have != "" {
			b.WriteString(": " + it.Have)
		}
	default:
		b.WriteString("~ " + head)
		if it.Want != "" {
			b.WriteString(": want " + it.Want)
		}
		if it.Have != "" && len(it.Detail) == 0 {
			b.WriteString("\n    have " + it.Have)
		}
	}
	for _, l := range it.Detail {
		b.WriteString("\n    " + l)
	}
	return b.String()
}

func countNoun(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func (d *Drift) add(it DriftItem) { d.Items = append(d.Items, it) }

// AddRouting adds a routing difference (kernel.RoutingDrift, passed as its
// parts to keep this package free of sockets).
func (d *Drift) AddRouting(missing bool, object, where, text string) {
	if missing {
		d.add(DriftItem{Kind: Missing, Object: object, Where: where, Want: text})
		return
	}
	d.add(DriftItem{Kind: Extra, Object: object, Where: where, Have: text})
}

// --- the desired side ---

type desiredTable struct {
	name   string
	chains []desiredChain
	sets   []*setRef
}

type desiredChain struct {
	name  string
	base  *translate.BaseChain
	rules []desiredRule
}

type desiredRule struct {
	text  string
	exprs []canonExpr
	key   string
}

// desiredState lowers rs and canonicalises every rule from the very bytes
// the encoder would send.
func desiredState(rs *translate.Ruleset) ([]desiredTable, error) {
	tables, err := lowerRuleset(rs)
	if err != nil {
		return nil, err
	}
	out := make([]desiredTable, 0, len(tables))
	for _, lt := range tables {
		dt := desiredTable{name: lt.name, sets: lt.sets}
		for _, lc := range lt.chains {
			dc := desiredChain{name: lc.name, base: lc.base}
			for i, r := range lc.rules {
				dr, err := desiredRuleOf(r)
				if err != nil {
					return nil, fmt.Errorf("table %s chain %s rule %d: %w", lt.name, lc.name, i+1, err)
				}
				dc.rules = append(dc.rules, dr)
			}
			dt.chains = append(dt.chains, dc)
		}
		out = append(out, dt)
	}
	return out, nil
}

// verifyBinder stands in for the encoder: anonymous sets get a placeholder
// name that the canonical form replaces by their elements.
type verifyBinder struct{ anon map[string]*setRef }

func (b *verifyBinder) bind(s *setRef) *nftables.Set {
	if s.name != "" {
		return &nftables.Set{Name: s.name}
	}
	name := fmt.Sprintf(" anonymous %d", len(b.anon)) // a name no real set has
	b.anon[name] = s
	return &nftables.Set{Name: name, Anonymous: true}
}

func desiredRuleOf(r kernelRule) (desiredRule, error) {
	b := &verifyBinder{anon: map[string]*setRef{}}
	var exprs []expr.Any
	for _, s := range r.stmts {
		exprs = append(exprs, s.exprs(b)...)
	}
	resolve := func(name string) string {
		if s, ok := b.anon[name]; ok {
			return contentOfRef(s).key()
		}
		return "@" + name
	}
	dr := desiredRule{text: r.String(), exprs: make([]canonExpr, 0, len(exprs))}
	for _, e := range exprs {
		var raw attrBuf // as the batch encodes it
		if err := raw.expr(e); err != nil {
			return dr, err
		}
		ce, err := parseExpr(raw, resolve)
		if err != nil {
			return dr, err
		}
		dr.exprs = append(dr.exprs, ce)
	}
	dr.key = exprsKey(dr.exprs)
	return dr, nil
}

// --- comparison ---

func compareTables(d *Drift, want []desiredTable, have *kernelState) {
	seen := map[string]bool{}
	for i := range want {
		wt := &want[i]
		seen[wt.name] = true
		kt := have.table(wt.name)
		where := "inet " + wt.name
		if kt == nil {
			rules := 0
			for _, c := range wt.chains {
				rules += len(c.rules)
			}
			d.add(DriftItem{Kind: Missing, Object: "table", Where: where,
				Want: fmt.Sprintf("%s, %s, %s", countNoun(len(wt.chains), "chain"), countNoun(rules, "rule"), countNoun(len(wt.sets), "named set"))})
			continue
		}
		if kt.flags != 0 {
			d.add(DriftItem{Kind: Changed, Object: "table", Where: where, Want: "no flags", Have: tableFlagsText(kt.flags)})
		}
		compareSets(d, where, wt, kt)
		compareChains(d, where, wt, kt)
		for _, o := range kt.objects {
			d.add(DriftItem{Kind: Extra, Object: "object", Where: where, Have: o})
		}
	}
	for _, kt := range have.tables {
		if !seen[kt.name] {
			rules := 0
			for _, c := range kt.chains {
				rules += len(c.rules)
			}
			d.add(DriftItem{Kind: Extra, Object: "table", Where: "inet " + kt.name,
				Have: fmt.Sprintf("%s, %s, %s", countNoun(len(kt.chains), "chain"), countNoun(rules, "rule"), countNoun(len(kt.sets), "named set"))})
		}
	}
}

func tableFlagsText(f uint32) string {
	var names []string
	if f&0x1 != 0 {
		names = append(names, "dormant")
	}
	if f&0x2 != 0 {
		names = append(names, "owner")
	}
	if f&0x4 != 0 {
		names = append(names, "persist")
	}
	if rest := f &^ 0x7; rest != 0 {
		names = append(names, fmt.Sprintf("%#x", rest))
	}
	return "flags " + strings.Join(names, ",")
}

func compareSets(d *Drift, tableWhere string, wt *desiredTable, kt *kernelTable) {
	seen := map[string]bool{}
	for _, ws := range wt.sets {
		seen[ws.name] = true
		where := tableWhere + " set " + ws.name
		want := contentOfRef(ws)
		ks := kt.set(ws.name)
		if ks == nil {
			d.add(DriftItem{Kind: Missing, Object: "set", Where: where, Want: ws.declText()})
			continue
		}
		wantType := ws.keyType().Name
		if ks.keyType != wantType || ks.interval != ws.interval() || ks.isMap {
			flags := "; flags interval"
			if !ws.interval() {
				flags = ""
			}
			d.add(DriftItem{Kind: Changed, Object: "set", Where: where,
				Want: fmt.Sprintf("type %s%s", wantType, flags), Have: ks.declText()})
			continue
		}
		missing := want.minus(ks.content)
		extra := ks.content.minus(want)
		if len(missing) > 0 {
			d.add(DriftItem{Kind: Missing, Object: "set element", Where: where, Want: elementsList(missing)})
		}
		if len(extra) > 0 {
			d.add(DriftItem{Kind: Extra, Object: "set element", Where: where, Have: elementsList(extra)})
		}
	}
	for _, ks := range kt.sets {
		if !seen[ks.name] {
			d.add(DriftItem{Kind: Extra, Object: "set", Where: tableWhere + " set " + ks.name, Have: ks.declText()})
		}
	}
}

// elementsList shows up to 20 elements.
func elementsList(elems []string) string {
	const show = 20
	if len(elems) <= show {
		return strings.Join(elems, ", ")
	}
	return strings.Join(elems[:show], ", ") + fmt.Sprintf(", ... (%d more)", len(elems)-show)
}

func compareChains(d *Drift, tableWhere string, wt *desiredTable, kt *kernelTable) {
	// Any desired rule's text by canonical key, to name extra rules that
	// are copies of wanted ones in nft syntax.
	texts := map[string]string{}
	for _, c := range wt.chains {
		for _, r := range c.rules {
			texts[r.key] = r.text
		}
	}
	seen := map[string]bool{}
	for i := range wt.chains {
		wc := &wt.chains[i]
		seen[wc.name] = true
		where := tableWhere + " chain " + wc.name
		var wantPolicy *nftables.ChainPolicy
		if wc.base != nil {
			accept := nftables.ChainPolicyAccept
			wantPolicy = &accept
		}
		kc := kt.chain(wc.name)
		if kc == nil {
			d.add(DriftItem{Kind: Missing, Object: "chain", Where: where,
				Want: strings.TrimSpace(chainHeader(wc.base, wantPolicy) + " " + countNoun(len(wc.rules), "rule"))})
			continue
		}
		if w, h := chainHeader(wc.base, wantPolicy), chainHeader(kc.base, kc.policy); w != h {
			d.add(DriftItem{Kind: Changed, Object: "chain", Where: where, Want: w, Have: h})
		}
		diffRules(d, where, wc.rules, kc.rules, texts)
	}
	for _, kc := range kt.chains {
		if !seen[kc.name] {
			d.add(DriftItem{Kind: Extra, Object: "chain", Where: tableWhere + " chain " + kc.name,
				Have: strings.TrimSpace(chainHeader(kc.base, kc.policy) + " " + countNoun(len(kc.rules), "rule"))})
		}
	}
}

// chainHeader is the base chain line as nft writes it, "" for a regular
// chain.
func chainHeader(b *translate.BaseChain, policy *nftables.ChainPolicy) string {
	if b == nil {
		return ""
	}
	p := "none"
	if policy != nil {
		switch *policy {
		case nftables.ChainPolicyAccept:
			p = "accept"
		case nftables.ChainPolicyDrop:
			p = "drop"
		default:
			p = fmt.Sprint(*policy)
		}
	}
	return fmt.Sprintf("type %s hook %s priority %d; policy %s;", b.Type, b.Hook, b.Priority, p)
}

// diffRules aligns the desired and the kernel rules of a chain (longest
// common subsequence of canonical keys) and reports the rest: a desired and
// a kernel rule left over at the same place are one changed rule.
func diffRules(d *Drift, chainWhere string, want []desiredRule, have []kernelRuleState, texts map[string]string) {
	wk := make([]string, len(want))
	for i, r := range want {
		wk[i] = r.key
	}
	hk := make([]string, len(have))
	for i, r := range have {
		hk[i] = r.key
	}
	for _, h := range alignRuns(wk, hk) {
		pairs := pairSimilar(h, want, have)
		paired := map[int]bool{}
		for _, p := range pairs {
			paired[p[0]] = true
		}
		pairedHave := map[int]int{}
		for _, p := range pairs {
			pairedHave[p[1]] = p[0]
		}
		for _, i := range h.want {
			if !paired[i] {
				d.add(DriftItem{Kind: Missing, Object: "rule", Where: fmt.Sprintf("%s rule %d", chainWhere, i+1), Want: want[i].text})
			}
		}
		for _, j := range h.have {
			k := have[j]
			if i, ok := pairedHave[j]; ok {
				d.add(DriftItem{Kind: Changed, Object: "rule", Where: ruleWhere(chainWhere, j, k.handle),
					Want: want[i].text, Have: haveText(k, texts), Detail: exprDiff(want[i].exprs, k.exprs)})
				continue
			}
			d.add(DriftItem{Kind: Extra, Object: "rule", Where: ruleWhere(chainWhere, j, k.handle), Have: haveText(k, texts)})
		}
	}
}

// pairSimilar pairs the desired and kernel rules of a alignHunk that are
// versions of each other (at least half of their expressions alike), most
// similar first; the others are missing or extra.
func pairSimilar(h alignHunk, want []desiredRule, have []kernelRuleState) [][2]int {
	type cand struct {
		w, k  int
		score float64
	}
	var cands []cand
	for _, i := range h.want {
		for _, j := range h.have {
			if s := exprSimilarity(want[i].exprs, have[j].exprs); s >= 0.5 {
				cands = append(cands, cand{i, j, s})
			}
		}
	}
	sort.SliceStable(cands, func(a, b int) bool { return cands[a].score > cands[b].score })
	usedW, usedK := map[int]bool{}, map[int]bool{}
	var out [][2]int
	for _, c := range cands {
		if !usedW[c.w] && !usedK[c.k] {
			usedW[c.w], usedK[c.k] = true, true
			out = append(out, [2]int{c.w, c.k})
		}
	}
	return out
}

// exprSimilarity is the share of expressions two rules have in common.
func exprSimilarity(a, b []canonExpr) float64 {
	if len(a) == 0 && len(b) == 0 {
		return 1
	}
	count := map[string]int{}
	for _, e := range a {
		count[e.key()]++
	}
	common := 0
	for _, e := range b {
		if count[e.key()] > 0 {
			count[e.key()]--
			common++
		}
	}
	return float64(common) / float64(max(len(a), len(b)))
}

func ruleWhere(chainWhere string, i int, handle uint64) string {
	return fmt.Sprintf("%s rule %d (handle %d)", chainWhere, i+1, handle)
}

// haveText renders a kernel rule in nft syntax when it equals some desired
// rule, else as its expressions.
func haveText(r kernelRuleState, texts map[string]string) string {
	if t, ok := texts[r.key]; ok {
		return t
	}
	return exprsText(r.exprs)
}

// alignHunk is a stretch of unmatched indexes between two matched ones.
type alignHunk struct{ want, have []int }

// maxAlignCells bounds the LCS table; beyond it the unmatched middle is
// reported as one alignHunk.
const maxAlignCells = 4 << 20

// alignRuns returns the unmatched stretches of a and b, in order.
func alignRuns(a, b []string) []alignHunk {
	pre := 0
	for pre < len(a) && pre < len(b) && a[pre] == b[pre] {
		pre++
	}
	suf := 0
	for suf < len(a)-pre && suf < len(b)-pre && a[len(a)-1-suf] == b[len(b)-1-suf] {
		suf++
	}
	am, bm := a[pre:len(a)-suf], b[pre:len(b)-suf]
	if len(am) == 0 && len(bm) == 0 {
		return nil
	}
	idx := func(off, n int) []int {
		out := make([]int, n)
		for i := range out {
			out[i] = off + i
		}
		return out
	}
	if len(am) == 0 || len(bm) == 0 || (len(am)+1)*(len(bm)+1) > maxAlignCells {
		return []alignHunk{{want: idx(pre, len(am)), have: idx(pre, len(bm))}}
	}
	// lcs[i][j]: LCS length of am[i:] and bm[j:].
	n, m := len(am), len(bm)
	lcs := make([]int32, (n+1)*(m+1))
	at := func(i, j int) *int32 { return &lcs[i*(m+1)+j] }
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if am[i] == bm[j] {
				*at(i, j) = *at(i+1, j+1) + 1
			} else {
				*at(i, j) = max(*at(i+1, j), *at(i, j+1))
			}
		}
	}
	var out []alignHunk
	var cur alignHunk
	flush := func() {
		if len(cur.want) > 0 || len(cur.have) > 0 {
			out = append(out, cur)
			cur = alignHunk{}
		}
	}
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && am[i] == bm[j]:
			flush()
			i++
			j++
		case j == m || (i < n && *at(i+1, j) >= *at(i, j+1)):
			cur.want = append(cur.want, pre+i)
			i++
		default:
			cur.have = append(cur.have, pre+j)
			j++
		}
	}
	flush()
	return out
}
