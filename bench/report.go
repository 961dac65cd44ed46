package bench

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Target is one goal of the performance issue and how the run did.
type Target struct {
	Goal     string
	Measured string
	Met      bool
}

// Targets evaluates the goals against the results.
func Targets(res *Results) []Target {
	var ts []Target
	if res.Peers != nil {
		ts = append(ts, peerTargets(res.Peers)...)
	}
	lib := Find(res.Fresh, MLibrary).Stats.Median
	ts = append(ts, Target{"library apply of the default configuration < 1 ms (fresh namespace)",
		ms(lib), lib > 0 && lib < time.Millisecond})
	for _, sc := range []struct {
		name string
		rs   []MethodResult
	}{{"fresh namespace", res.Fresh}, {"replacing the same rules", res.Replace}} {
		proc := Find(sc.rs, MProcess).Stats.Median
		for _, c := range []struct {
			other  string
			factor float64
			goal   string
		}{
			{MNft, 2, "≥ 2× faster than `nft -f` of the same ruleset"},
			{MIptNft, 10, "≥ 10× faster than iptables-nft-restore of the iptables view (v4+v6)"},
			{MIptLegacy, 1, "no slower than iptables-legacy-restore of the iptables view (v4+v6)"},
		} {
			other := Find(sc.rs, c.other).Stats.Median
			met := proc > 0 && other > 0 && float64(other)/float64(proc) >= c.factor
			ts = append(ts, Target{fmt.Sprintf("process %s (%s)", c.goal, sc.name),
				fmt.Sprintf("%s vs %s = %s", ms(other), ms(proc), ratio(other, proc)), met})
		}
	}
	for _, c := range []struct {
		n     int
		limit time.Duration
	}{{10_000, 50 * time.Millisecond}, {100_000, 500 * time.Millisecond}} {
		for _, row := range res.Scaling {
			if row.CIDRs != c.n {
				continue
			}
			proc := Find(row.Methods, MFile).Stats.Median
			lib := Find(row.Methods, MLibrary).Stats.Median
			ts = append(ts, Target{fmt.Sprintf("apply with %d exclude CIDRs < %v (whole process)", c.n, c.limit),
				fmt.Sprintf("process %s, library %s", ms(proc), ms(lib)), proc > 0 && proc < c.limit})
		}
	}
	for _, m := range res.Memory {
		if m.What == MFile {
			ts = append(ts, Target{fmt.Sprintf("peak RSS of the %d-CIDR apply < 100 MB", m.CIDRs),
				fmt.Sprintf("%.1f MB", float64(m.MaxRSSKB)/1024), m.MaxRSSKB > 0 && m.MaxRSSKB < 100*1024})
		}
	}
	for _, captured := range []bool{false, true} {
		c := connectResult(res, EngineNft, 10_000, captured)
		base := connectResult(res, EngineNft, 0, captured)
		if c.Ratio > 0 {
			ts = append(ts, Target{fmt.Sprintf("connect rate to the %s destination with 10,000 exclude CIDRs within 10%% of none (nftables sets)", destName(captured)),
				fmt.Sprintf("%.0f/s vs %.0f/s, paired ratio %.2f", c.Median, base.Median, c.Ratio), c.Ratio >= 0.9})
		}
	}
	return ts
}

// peerTargets are the goals against Istio's own tool (issue #13).
func peerTargets(pr *PeerResults) []Target {
	var ts []Target
	med := func(rs []MethodResult, name string) time.Duration { return Find(rs, name).Stats.Median }
	faster := func(goal string, rs []MethodResult, other string, factor float64) Target {
		us, them := med(rs, PNfi), med(rs, other)
		return Target{fmt.Sprintf("%s: ≥ %g× faster than %s", goal, factor, other),
			fmt.Sprintf("%s vs %s = %s", ms(them), ms(us), ratio(them, us)),
			us > 0 && them > 0 && float64(them)/float64(us) >= factor}
	}
	for _, row := range []struct {
		goal string
		rs   []MethodResult
	}{{"apply into a fresh pod (whole process)", pr.Fresh},
		{fmt.Sprintf("%d pods programmed at once", pr.PodsAtOnce), pr.Pods},
		{"re-apply of the same options (whole process)", pr.Reapply}} {
		ts = append(ts, faster(row.goal, row.rs, PIpt, 8), faster(row.goal, row.rs, PIstNft, 4))
	}
	fresh, again := med(pr.Fresh, PNfi), med(pr.Reapply, PNfi)
	ts = append(ts, Target{"re-apply of the same options no slower than 1.2× a fresh apply (whole process)",
		fmt.Sprintf("%s vs %s = %s", ms(again), ms(fresh), ratio(again, fresh)),
		fresh > 0 && again > 0 && float64(again) <= 1.2*float64(fresh)})
	for _, name := range []string{DAdd, DRemove} {
		d := med(pr.ListDelta, name)
		ts = append(ts, Target{fmt.Sprintf("%s, on a %d-CIDR exclude list (-x @file): < 10 ms (whole process)", name, pr.ListCIDRs),
			ms(d), d > 0 && d < 10*time.Millisecond})
	}
	minimal, cli := med(pr.Startup, SMinimal), med(pr.Startup, SCLI)
	if minimal > 0 && cli > 0 {
		ts = append(ts, Target{"CLI overhead over a minimal static Go binary (`nfintercept --help` − a program exiting at once) ≤ 2 ms",
			fmt.Sprintf("%s − %s = %s", ms(cli), ms(minimal), ms(cli-minimal)), cli-minimal <= 2*time.Millisecond})
	}
	return ts
}

func connectResult(res *Results, engine string, n int, captured bool) ConnectResult {
	for _, c := range res.Connect {
		if c.Engine == engine && c.CIDRs == n && c.Captured == captured {
			return c
		}
	}
	return ConnectResult{}
}

func connectMedian(res *Results, engine string, n int, captured bool) float64 {
	return connectResult(res, engine, n, captured).Median
}

func destName(captured bool) string {
	if captured {
		return "captured"
	}
	return "excluded"
}

// Markdown renders the results as the report committed in bench/results.
func Markdown(res *Results) string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	e := res.Env
	p("# nfintercept benchmark results")
	p("")
	p("Written by `make bench` (bench/cmd/benchdriver) on %s. Kernel %s, %d CPUs, %s, "+
		"load average %s at the start and %s at the end (the machine is shared: medians of interleaved runs).",
		e.Date.Format("2006-01-02 15:04 UTC"), e.Kernel, e.CPUs, e.GoVersion, e.LoadBefore, e.LoadAfter)
	var tools []string
	for _, k := range sortedKeys(e.Tools) {
		tools = append(tools, fmt.Sprintf("%s (`%s`)", k, e.Tools[k]))
	}
	p("Tools: %s. The nfintercept binary: %s.", strings.Join(tools, ", "), e.CLIBuild)
	p("")
	p("Every run happens in network namespaces the driver creates (a pod-like namespace with an IPv4 and an IPv6")
	p("address, so dual-stack detection enables IPv6); processes are started from a thread inside that namespace")
	p("and timed from fork to exit. `nft -f` loads `nfintercept render`; the iptables tools load")
	p("`nfintercept render --format iptables --family ipv4` then `--family ipv6`, each in its own process.")
	p("Ratios are *other / nfintercept*: 3× means nfintercept takes a third of the time. See NOTES.md for the analysis.")
	p("")
	p("## Targets")
	p("")
	p("| goal | measured | met |")
	p("|---|---|---|")
	for _, t := range Targets(res) {
		met := "no"
		if t.Met {
			met = "yes"
		}
		p("| %s | %s | %s |", t.Goal, t.Measured, met)
	}
	p("")
	if res.Peers != nil {
		peerSection(p, res.Peers)
	}
	p("## 1. Apply of the default istio-init configuration (IPv4+IPv6)")
	p("")
	p("`-p 15001 -z 15006 -u 1337 -m REDIRECT -i '*' -x 10.245.0.0/16 -b '*' -d 15090,15021,15020 --dual-stack`")
	for _, sc := range []struct {
		title string
		rs    []MethodResult
	}{{"Into a namespace without rules (a new pod; the reset between runs is not timed)", res.Fresh},
		{"Replacing the same rules", res.Replace}} {
		p("")
		p("### %s", sc.title)
		p("")
		p("| method | median | p10 | p90 | runs | ratio to nfintercept (process) |")
		p("|---|---|---|---|---|---|")
		proc := Find(sc.rs, MProcess).Stats.Median
		for _, m := range sc.rs {
			if m.Skip != "" {
				p("| %s | – | – | – | 0 | %s |", m.Name, m.Skip)
				continue
			}
			name := m.Name
			if m.Stats.PartMedian > 0 {
				name += fmt.Sprintf(" (IPv4 alone: %s)", ms(m.Stats.PartMedian))
			}
			p("| %s | %s | %s | %s | %d | %s |", name, ms(m.Stats.Median), ms(m.Stats.P10), ms(m.Stats.P90), m.Stats.N, ratio(m.Stats.Median, proc))
		}
	}
	p("")
	p("## 2. Apply time against the number of exclude CIDRs")
	p("")
	p("Random IPv4 CIDRs (seeded; /16–/32 with host bits, a few /10–/15 covering others, ~2%% duplicates) as `-x`,")
	p("otherwise the default configuration; fresh namespace each run. The whole nfintercept process reads the")
	p("list from a file (`-x @PATH`) because Linux limits one argv string to 128 KiB (about 7,500 CIDRs); where")
	p("the list fits, the CLI with the list inline is measured too.")
	p("")
	p("| CIDRs | iptables rules (v4) | library | process (inline -x) | process (-x @file) | nft -f | iptables-nft-restore | iptables-legacy-restore | nft -f / process | iptables-nft / process | iptables-legacy / process |")
	p("|---|---|---|---|---|---|---|---|---|---|---|")
	for _, row := range res.Scaling {
		get := func(name string) time.Duration { return Find(row.Methods, name).Stats.Median }
		proc := get(MFile)
		p("| %d | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |", row.CIDRs, row.Rules4,
			ms(get(MLibrary)), ms(get(MProcess)), ms(proc), ms(get(MNft)), ms(get(MIptNft)), ms(get(MIptLegacy)),
			ratio(get(MNft), proc), ratio(get(MIptNft), proc), ratio(get(MIptLegacy), proc))
	}
	p("")
	p("## 3. New connections per second through the rules")
	p("")
	p("From the pod (uid 0, so captured) one connection after the other (handshake, then reset) to a destination")
	p("the exclude list covers (its /24 is the *last* CIDR of the list, as a worst case for rule-per-CIDR) and to a")
	p("captured one (redirected to a listener on the pod's :15001). N random exclude CIDRs plus that /24; the")
	p("destinations live in a peer namespace behind a veth pair. Medians over rounds; the last column is the median")
	p("of per-round ratios (each round measures the list lengths of an engine back to back).")
	p("")
	var counts []int
	seen := map[int]bool{}
	for _, c := range res.Connect {
		if !seen[c.CIDRs] {
			seen[c.CIDRs] = true
			counts = append(counts, c.CIDRs)
		}
	}
	head := "| engine | destination |"
	sep := "|---|---|"
	for _, n := range counts {
		head += fmt.Sprintf(" N=%d |", n)
		sep += "---|"
	}
	if len(counts) > 0 {
		head += fmt.Sprintf(" N=%d vs N=%d |", counts[len(counts)-1], counts[0])
		sep += "---|"
	}
	p("%s", head)
	p("%s", sep)
	for _, eng := range Engines() {
		for _, captured := range []bool{false, true} {
			line := fmt.Sprintf("| %s | %s |", eng.Name, destName(captured))
			for _, n := range counts {
				line += fmt.Sprintf(" %.0f/s |", connectMedian(res, eng.Name, n, captured))
			}
			if len(counts) > 0 {
				line += fmt.Sprintf(" %.2f× |", connectResult(res, eng.Name, counts[len(counts)-1], captured).Ratio)
			}
			p("%s", line)
		}
	}
	p("")
	p("## 4. Peak memory (ru_maxrss of the process, measured under GNU time)")
	p("")
	p("| process | CIDRs | peak RSS | wall |")
	p("|---|---|---|---|")
	for _, m := range res.Memory {
		if m.Note != "" {
			p("| %s | – | %s | – |", m.What, m.Note)
			continue
		}
		p("| %s | %d | %.1f MB | %s |", m.What, m.CIDRs, float64(m.MaxRSSKB)/1024, ms(m.Wall))
	}
	p("")
	p("![apply time and connection rate against the number of exclude CIDRs](bench.png)")
	return b.String()
}

// PeerReport is the targets and section 0 alone (benchdriver -peers-only).
func PeerReport(res *Results) string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	if res.Peers != nil {
		for _, t := range peerTargets(res.Peers) {
			p("- %s: %s (met: %v)", t.Goal, t.Measured, t.Met)
		}
		p("")
		peerSection(p, res.Peers)
	}
	return b.String()
}

// peerSection is the comparison with Istio's istio-iptables, laid out as
// the table of issue #13.
func peerSection(p func(string, ...any), pr *PeerResults) {
	p("## 0. Against Istio's istio-iptables (pilot-agent built from Istio's source)")
	p("")
	p("Whole processes, each entered into the pod's namespace with `nsenter --net` and timed from fork to exit,")
	p("with istio-init's default options (`%s`): `nfintercept apply`, `pilot-agent istio-iptables`", strings.Join(DefaultArgs, " "))
	p("(iptables-restore) and `pilot-agent istio-iptables --native-nftables` (its nftables backend). A fresh pod is a new")
	p("namespace with an IPv4 and an IPv6 address; \"at once\" starts all processes together into as many fresh pods")
	p("and waits for the last; re-apply runs the same command again over the rules the same tool installed.")
	p("Medians; ratios are *istio-iptables / nfintercept*, then *its nft backend / nfintercept*.")
	p("")
	p("| | %s | %s | %s | ratios |", PNfi, PIpt, PIstNft)
	p("|---|---|---|---|---|")
	for _, row := range []struct {
		what string
		rs   []MethodResult
	}{{"apply into a fresh pod", pr.Fresh},
		{fmt.Sprintf("%d pods programmed at once", pr.PodsAtOnce), pr.Pods},
		{"re-apply of the same options over existing rules", pr.Reapply}} {
		us := Find(row.rs, PNfi).Stats
		ipt, nft := Find(row.rs, PIpt).Stats, Find(row.rs, PIstNft).Stats
		p("| %s (runs: %d) | %s | %s | %s | %s, %s |", row.what, us.N, ms(us.Median), ms(ipt.Median), ms(nft.Median),
			ratio(ipt.Median, us.Median), ratio(nft.Median, us.Median))
	}
	p("")
	p("### One CIDR changed on a %d-CIDR exclude list (nfintercept, `-x @file`, whole process)", pr.ListCIDRs)
	p("")
	p("The list applied first; then, interleaved, the list with one more CIDR, the original list again (one removed) and")
	p("the same list once more, each over the rules of the previous run. Today every apply replaces the whole ruleset.")
	p("")
	statsTable(p, "change", pr.ListDelta)
	p("### Start-up")
	p("")
	p("Both started from a thread inside a bench namespace (after three warm-up rounds), interleaved; the minimal binary")
	p("is `func main() {}` built with `CGO_ENABLED=0 go build -trimpath`.")
	p("")
	statsTable(p, "process", pr.Startup)
}

// statsTable prints one row of median, p10, p90 and runs per result.
func statsTable(p func(string, ...any), what string, rs []MethodResult) {
	p("| %s | median | p10 | p90 | runs |", what)
	p("|---|---|---|---|---|")
	for _, m := range rs {
		p("| %s | %s | %s | %s | %d |", m.Name, ms(m.Stats.Median), ms(m.Stats.P10), ms(m.Stats.P90), m.Stats.N)
	}
	p("")
}

func sortedKeys(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
