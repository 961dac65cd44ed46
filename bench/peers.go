package bench

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Peer names: nfintercept and Istio's own istio-iptables (pilot-agent),
// with its iptables backend and its native nftables one.
const (
	PNfi    = "nfintercept"
	PIpt    = "istio-iptables"
	PIstNft = "istio-iptables --native-nftables"
)

// Rows of the 100,000-CIDR list change (nfintercept only: the peers turn
// such a list into 100,000 rules per family).
const (
	DAdd     = "one CIDR added"
	DRemove  = "one CIDR removed"
	DSame    = "same list again"
	SMinimal = "minimal static Go binary (exits at once)"
	SCLI     = "nfintercept --help"
)

// PeerResults compares whole processes programming a pod, each entered
// into the pod's namespace with `nsenter --net`.
type PeerResults struct {
	// Fresh: one apply into a pod that never had rules; Pods: PodsAtOnce
	// pods programmed at once (wall time until the last finishes);
	// Reapply: the same options again over the rules the same tool
	// installed.
	Fresh, Pods, Reapply []MethodResult
	PodsAtOnce           int
	// ListDelta: nfintercept with a ListCIDRs-long -x @file list, changed
	// by one CIDR (or not at all) over the rules of the previous list.
	ListDelta []MethodResult
	ListCIDRs int
	// Startup: `nfintercept --help` against a static Go binary doing
	// nothing, both started from a thread in a bench namespace.
	Startup []MethodResult
}

// Peer is one tool programming the namespace it runs in.
type Peer struct {
	Name string
	Argv []string // without the nsenter prefix
}

// PeerList is the three tools with the same istio-init options.
func PeerList(cli, pilotAgent string, args []string) []Peer {
	ipt := append([]string{pilotAgent, "istio-iptables"}, args...)
	return []Peer{
		{PNfi, append([]string{cli, "apply"}, args...)},
		{PIpt, ipt},
		{PIstNft, append(slices.Clone(ipt), "--native-nftables")},
	}
}

// nsenterRun runs argv as a whole process entered into ns by nsenter and
// returns the wall time from fork to exit.
func nsenterRun(ns *NS, argv []string) (time.Duration, error) {
	cmd, out := nsenterCmd(ns, argv)
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if err != nil {
		return d, fmt.Errorf("%s in %s: %w: %s", filepath.Base(argv[0]), ns.Name, err, tail(out.String()))
	}
	return d, nil
}

func nsenterCmd(ns *NS, argv []string) (*exec.Cmd, *strings.Builder) {
	cmd := exec.Command("nsenter", append([]string{"--net=" + ns.Path, "--"}, argv...)...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	return cmd, &out
}

// tail is the end of a tool's output, for errors (pilot-agent prints the
// whole iptables-restore input first).
func tail(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 600 {
		s = "…" + s[len(s)-600:]
	}
	return s
}

// newPod is a namespace looking like a pod (both families addressed),
// the name tagged so leftovers are recognisable.
func newPod(tag string) (*NS, error) {
	ns, err := NewNS(tag)
	if err != nil {
		return nil, err
	}
	if err := AddPodAddrs(ns); err != nil {
		ns.Close()
		return nil, err
	}
	return ns, nil
}

// PeersPhase measures every peer, interleaved: reps fresh applies, podReps
// rounds of pods namespaces programmed at once, and reps re-applies.
func (r *Runner) PeersPhase(peers []Peer, reps, podReps, pods int) (*PeerResults, error) {
	res := &PeerResults{PodsAtOnce: pods}
	fresh := make([][]Sample, len(peers))
	for rep := 0; rep < reps; rep++ {
		for i, p := range peers {
			ns, err := newPod(fmt.Sprintf("f%d", i))
			if err != nil {
				return nil, err
			}
			settle(nil)
			d, err := nsenterRun(ns, p.Argv)
			ns.Close()
			if err != nil {
				return nil, fmt.Errorf("%s, fresh pod: %w", p.Name, err)
			}
			fresh[i] = append(fresh[i], Sample{Wall: d})
		}
	}
	res.Fresh = summarizeAll(peers, fresh)

	r.Log("peers: %d pods programmed at once, %d rounds", pods, podReps)
	many := make([][]Sample, len(peers))
	for rep := 0; rep < podReps; rep++ {
		for i, p := range peers {
			d, err := atOnce(p, i, pods)
			if err != nil {
				return nil, err
			}
			many[i] = append(many[i], Sample{Wall: d})
		}
	}
	res.Pods = summarizeAll(peers, many)

	r.Log("peers: re-apply of the same options, %d reps", reps)
	nss := make([]*NS, len(peers))
	defer func() {
		for _, ns := range nss {
			if ns != nil {
				ns.Close()
			}
		}
	}()
	for i, p := range peers {
		ns, err := newPod(fmt.Sprintf("r%d", i))
		if err != nil {
			return nil, err
		}
		nss[i] = ns
		if _, err := nsenterRun(ns, p.Argv); err != nil {
			return nil, fmt.Errorf("%s, first apply: %w", p.Name, err)
		}
	}
	again := make([][]Sample, len(peers))
	for rep := 0; rep < reps; rep++ {
		for i, p := range peers {
			settle(nil)
			d, err := nsenterRun(nss[i], p.Argv)
			if err != nil {
				return nil, fmt.Errorf("%s, re-apply: %w", p.Name, err)
			}
			again[i] = append(again[i], Sample{Wall: d})
		}
	}
	res.Reapply = summarizeAll(peers, again)
	return res, nil
}

// atOnce programs n fresh pods with p at the same time, as a node starting
// them does, and returns the time until the last process exits.
func atOnce(p Peer, idx, n int) (time.Duration, error) {
	nss := make([]*NS, 0, n)
	defer func() {
		for _, ns := range nss {
			ns.Close()
		}
	}()
	for j := 0; j < n; j++ {
		ns, err := newPod(fmt.Sprintf("m%d", idx))
		if err != nil {
			return 0, err
		}
		nss = append(nss, ns)
	}
	settle(nil)
	cmds := make([]*exec.Cmd, n)
	outs := make([]*strings.Builder, n)
	start := time.Now()
	for j, ns := range nss {
		cmds[j], outs[j] = nsenterCmd(ns, p.Argv)
		if err := cmds[j].Start(); err != nil {
			return 0, err
		}
	}
	var errs []error
	for j, c := range cmds {
		if err := c.Wait(); err != nil {
			errs = append(errs, fmt.Errorf("%s, pod %d of %d at once: %w: %s", p.Name, j+1, n, err, tail(outs[j].String())))
		}
	}
	return time.Since(start), errors.Join(errs...)
}

func summarizeAll(peers []Peer, samples [][]Sample) []MethodResult {
	out := make([]MethodResult, len(peers))
	for i, p := range peers {
		out[i] = MethodResult{Name: p.Name, Stats: Summarize(samples[i])}
	}
	return out
}

// ListDeltaPhase applies nfintercept with n random exclude CIDRs read from
// a file, then times, reps times each and interleaved: the list with one
// CIDR more, the list again (one removed), and the same list again.
func (r *Runner) ListDeltaPhase(n, reps int) ([]MethodResult, error) {
	cidrs := RandomCIDRs(n, r.Seed)
	// In the bench's link network, which no random CIDR covers.
	bigger := append(slices.Clone(cidrs), "192.0.2.77/32")
	dir := filepath.Join(r.Dir, "delta")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	base, err := WriteListFile(ArgsWithExcludes(cidrs), "-x", filepath.Join(dir, "base.txt"))
	if err != nil {
		return nil, err
	}
	plus, err := WriteListFile(ArgsWithExcludes(bigger), "-x", filepath.Join(dir, "plus.txt"))
	if err != nil {
		return nil, err
	}
	ns, err := newPod("d")
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	apply := func(args []string) (time.Duration, error) {
		return nsenterRun(ns, append([]string{r.Tools.CLI, "apply"}, args...))
	}
	if _, err := apply(base); err != nil {
		return nil, fmt.Errorf("%d CIDRs, first apply: %w", n, err)
	}
	var add, remove, same []Sample
	for rep := 0; rep < reps; rep++ {
		for _, s := range []struct {
			args []string
			into *[]Sample
		}{{plus, &add}, {base, &remove}, {base, &same}} {
			settle(nil)
			d, err := apply(s.args)
			if err != nil {
				return nil, fmt.Errorf("%d CIDRs, change: %w", n, err)
			}
			*s.into = append(*s.into, Sample{Wall: d})
		}
	}
	return []MethodResult{
		{Name: DAdd, Stats: Summarize(add)},
		{Name: DRemove, Stats: Summarize(remove)},
		{Name: DSame, Stats: Summarize(same)},
	}, nil
}

// StartupPhase times `nfintercept --help` and a static Go binary that
// exits at once (minimal), both started from a thread in a bench
// namespace, interleaved.
func (r *Runner) StartupPhase(minimal string, reps int) ([]MethodResult, error) {
	ns, err := NewNS("s")
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	var mins, clis []Sample
	for rep := -3; rep < reps; rep++ { // three warm-up rounds (page cache)
		m, err := runIn(ns, nil, minimal)
		if err != nil {
			return nil, err
		}
		c, err := runIn(ns, nil, r.Tools.CLI, "--help")
		if err != nil {
			return nil, err
		}
		if rep >= 0 {
			mins, clis = append(mins, m), append(clis, c)
		}
	}
	return []MethodResult{{Name: SMinimal, Stats: Summarize(mins)}, {Name: SCLI, Stats: Summarize(clis)}}, nil
}

// MinimalGo is the program StartupPhase compares the CLI with.
const MinimalGo = "package main\n\nfunc main() {}\n"
