package bench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Method names, as the report prints them.
const (
	MLibrary   = "nfintercept (library)"
	MProcess   = "nfintercept (process)"
	MFile      = "nfintercept (process, -x @file)"
	MCgo       = "nfintercept (process, cgo build)"
	MNft       = "nft -f"
	MIptNft    = "iptables-nft-restore"
	MIptLegacy = "iptables-legacy-restore"
)

// Runner configures a driver run.
type Runner struct {
	Dir   string // scratch directory (rendered files)
	Tools Tools
	Seed  uint64
	Log   func(format string, args ...any)
}

// maxSample stops repeating a method whose single sample took longer.
const maxSample = 10 * time.Second

// ApplyPhase measures every method on w, reps times, interleaved so that
// load from elsewhere spreads over all of them. Each method has a
// namespace of its own, looking like a pod (addresses of both families).
// fresh: each timed apply starts from a namespace without rules (the reset
// is not timed); otherwise it replaces the same rules applied before.
func (r *Runner) ApplyPhase(w *Workload, methods []Method, reps int, fresh bool) ([]MethodResult, error) {
	nss := make([]*NS, len(methods))
	defer func() {
		for _, ns := range nss {
			if ns != nil {
				ns.Close()
			}
		}
	}()
	for i, m := range methods {
		if m.Skip != "" {
			continue
		}
		ns, err := NewNS(fmt.Sprintf("a%d", i))
		if err != nil {
			return nil, err
		}
		nss[i] = ns
		if err := AddPodAddrs(ns); err != nil {
			return nil, err
		}
		if !fresh {
			if _, err := m.Apply(ns); err != nil {
				return nil, fmt.Errorf("%s: first apply: %w", m.Name, err)
			}
		}
	}
	samples := make([][]Sample, len(methods))
	stopped := make([]bool, len(methods))
	for rep := 0; rep < reps; rep++ {
		for i, m := range methods {
			if m.Skip != "" || stopped[i] {
				continue
			}
			if fresh {
				if err := m.Reset(nss[i]); err != nil {
					return nil, fmt.Errorf("%s: reset: %w", m.Name, err)
				}
			} else {
				settle(nil)
			}
			s, err := m.Apply(nss[i])
			if err != nil {
				return nil, fmt.Errorf("%s (%s): %w", m.Name, w.Label, err)
			}
			samples[i] = append(samples[i], s)
			if s.Wall > maxSample {
				stopped[i] = true
			}
		}
	}
	out := make([]MethodResult, len(methods))
	for i, m := range methods {
		out[i] = MethodResult{Name: m.Name, Skip: m.Skip, Stats: Summarize(samples[i])}
	}
	return out, nil
}

// ScalingPhase applies n random exclude CIDRs for each n, fresh each time.
func (r *Runner) ScalingPhase(counts []int, reps func(n int) int) ([]ScalingRow, error) {
	var rows []ScalingRow
	for _, n := range counts {
		w, err := NewWorkload(fmt.Sprintf("%d CIDRs", n), ArgsWithExcludes(RandomCIDRs(n, r.Seed)), filepath.Join(r.Dir, fmt.Sprintf("cidrs-%d", n)))
		if err != nil {
			return nil, err
		}
		r.Log("apply with %d exclude CIDRs (%d iptables rules per family view), %d reps", n, w.Rules4, reps(n))
		ms, err := r.ApplyPhase(w, Methods(w, r.Tools), reps(n), true)
		if err != nil {
			return nil, err
		}
		rows = append(rows, ScalingRow{CIDRs: n, Rules4: w.Rules4, Methods: ms})
	}
	return rows, nil
}

// MemoryPhase measures peak RSS of whole processes with GNU time, whose
// own small footprint is the floor (a Go parent's would be: a child
// inherits its parent's high-water mark through fork/vfork and exec).
func (r *Runner) MemoryPhase(n int) ([]MemResult, error) {
	timeBin, err := exec.LookPath("/usr/bin/time")
	if err != nil {
		return []MemResult{{What: "peak RSS", Note: "needs GNU time (/usr/bin/time)"}}, nil
	}
	big, err := NewWorkload(fmt.Sprintf("%d CIDRs", n), ArgsWithExcludes(RandomCIDRs(n, r.Seed)), filepath.Join(r.Dir, "mem"))
	if err != nil {
		return nil, err
	}
	def, err := NewWorkload("default", DefaultArgs, filepath.Join(r.Dir, "mem-default"))
	if err != nil {
		return nil, err
	}
	type job struct {
		what  string
		w     *Workload
		cidrs int
		cmd   []string // nil: our binaries, set up per namespace below
	}
	var out []MemResult
	for _, j := range []job{
		{what: MProcess, w: def, cidrs: 1},
		{what: MFile, w: big, cidrs: n},
		{what: MNft, w: big, cidrs: n, cmd: []string{"nft", "-f", big.NftFile}},
		{what: MIptNft + " (IPv4 view)", w: big, cidrs: n, cmd: []string{"iptables-nft-restore", big.IPv4File}},
		{what: MIptLegacy + " (IPv4 view)", w: big, cidrs: n, cmd: []string{"iptables-legacy-restore", big.IPv4File}},
	} {
		ns, err := NewNS("mem")
		if err != nil {
			return nil, err
		}
		if err := AddPodAddrs(ns); err != nil {
			ns.Close()
			return nil, err
		}
		cmd := j.cmd
		switch j.what {
		case MProcess:
			cmd = append(append([]string{r.Tools.CLI, "apply"}, j.w.Args...), "--network-namespace", ns.Path)
		case MFile:
			cmd = append(append([]string{r.Tools.CLI, "apply"}, j.w.FileArgs...), "--network-namespace", ns.Path)
		}
		s, text, err := runInOutput(ns, nil, timeBin, append([]string{"-f", "maxrss=%M"}, cmd...)...)
		ns.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", j.what, err)
		}
		res := MemResult{What: j.what, CIDRs: j.cidrs, Wall: s.Wall}
		i := strings.LastIndex(text, "maxrss=")
		if i < 0 {
			return nil, fmt.Errorf("%s: no maxrss in %q", j.what, text)
		}
		kb, err := strconv.ParseInt(strings.TrimSpace(text[i+len("maxrss="):]), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: maxrss: %w", j.what, err)
		}
		res.MaxRSSKB = kb
		out = append(out, res)
	}
	return out, nil
}

// ConnectPhase measures connection rates for every engine and list length,
// rounds times for each destination (after one round of warm-up), each
// measurement lasting d. Within a round the list lengths of one engine and
// destination are measured back to back, so their ratio is fair even when
// the machine's load changes.
func (r *Runner) ConnectPhase(counts []int, rounds int, d time.Duration) ([]ConnectResult, error) {
	type key struct {
		engine   string
		n        int
		captured bool
	}
	topos := map[key]*Topo{}
	defer func() {
		for _, t := range topos {
			t.Close()
		}
	}()
	engines := Engines()
	for _, e := range engines {
		for _, n := range counts {
			t, err := NewTopo(e, n, r.Seed, filepath.Join(r.Dir, "connect-"+strings.Fields(e.Name)[0]))
			if err != nil {
				return nil, err
			}
			topos[key{e.Name, n, false}] = t
		}
	}
	rates := map[key][]float64{}
	ratios := map[key][]float64{}
	for round := -1; round < rounds; round++ {
		for _, e := range engines {
			for _, captured := range []bool{false, true} {
				dst := ExcludedDst
				if captured {
					dst = CapturedDst
				}
				// Alternate the order so that whatever favours the first
				// (or last) measurement of a group cancels out.
				order := slices.Clone(counts)
				if round%2 != 0 {
					slices.Reverse(order)
				}
				got := map[int]float64{}
				for _, n := range order {
					rate, err := topos[key{e.Name, n, false}].Rate(dst, d)
					if err != nil {
						return nil, err
					}
					got[n] = rate
				}
				if round < 0 {
					continue // warm-up
				}
				for _, n := range counts {
					k := key{e.Name, n, captured}
					rates[k] = append(rates[k], got[n])
					ratios[k] = append(ratios[k], got[n]/got[counts[0]])
				}
			}
		}
	}
	var out []ConnectResult
	for _, e := range engines {
		for _, n := range counts {
			for _, captured := range []bool{false, true} {
				k := key{e.Name, n, captured}
				out = append(out, ConnectResult{Engine: e.Name, CIDRs: n, Captured: captured,
					Rates: rates[k], Median: medianFloat(rates[k]), Ratio: medianFloat(ratios[k])})
			}
		}
	}
	return out, nil
}

func medianFloat(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// CheckTools reports the first missing binary the benchmarks need.
func CheckTools() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root (it creates network namespaces)")
	}
	for _, t := range []string{"ip", "nft", "iptables-nft-restore", "ip6tables-nft-restore", "iptables-legacy-restore", "ip6tables-legacy-restore"} {
		if _, err := exec.LookPath(t); err != nil {
			return fmt.Errorf("needs %s: %w", t, err)
		}
	}
	return nil
}
