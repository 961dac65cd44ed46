// Command benchdriver runs the nfintercept benchmarks (make bench): apply
// latency of nfintercept (library and whole process) against nft -f and
// iptables-restore of the same rules, its growth with the exclude list,
// new-connection rates through the rules and peak memory. Everything runs
// in network namespaces it creates. It writes the report, a PNG plot, a
// README snippet and the raw results to -out.
package main

import (
	"debug/buildinfo"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/nfintercept/nfintercept/bench"
	"github.com/nfintercept/nfintercept/internal/tools"
)

func main() {
	out := flag.String("out", "bench/results", "directory for RESULTS.md, bench.png, README-snippet.md and results.json")
	quick := flag.Bool("quick", false, "few repetitions and no 100,000-CIDR runs (a smoke test of the driver)")
	replot := flag.String("replot", "", "only rewrite the report and plot from this results.json")
	peersOnly := flag.Bool("peers-only", false, "only the comparison with istio-iptables, the list change and start-up; print the report, write nothing")
	flag.Parse()
	var err error
	if *replot != "" {
		err = rewrite(*replot, *out)
	} else {
		err = run(*out, *quick, *peersOnly)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchdriver:", err)
		os.Exit(1)
	}
}

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, a...))
}

func run(outDir string, quick, peersOnly bool) error {
	if err := bench.CheckTools(); err != nil {
		return err
	}
	started := time.Now()
	tmp, err := os.MkdirTemp("", bench.NSPrefix)
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	// The CLI is built without cgo: a static binary starts about 2 ms
	// sooner than the default dynamically linked one (measured below too).
	bins := bench.Tools{
		CLI:    filepath.Join(tmp, "nfintercept"),
		CLICgo: filepath.Join(tmp, "nfintercept-cgo"),
	}
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	pilotAgent, err := tools.PilotAgent()
	if err != nil {
		return err
	}
	minimal, err := buildMinimal(tmp)
	if err != nil {
		return err
	}
	for _, b := range []struct {
		out, pkg string
		cgo      bool
	}{{bins.CLI, "./cmd/nfintercept", false}, {bins.CLICgo, "./cmd/nfintercept", true}} {
		cmd := exec.Command("go", "build", "-trimpath", "-o", b.out, b.pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b.cgo {
			cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v: %s", b.pkg, err, out)
		}
	}
	res := &bench.Results{Env: bench.CollectEnv("`CGO_ENABLED=0 go build -trimpath ./cmd/nfintercept` (static); the cgo build is measured on the default configuration")}
	if bi, err := buildinfo.ReadFile(pilotAgent); err == nil {
		res.Env.Tools["pilot-agent"] = bi.Main.Path + " " + bi.Main.Version + " (" + bi.GoVersion + ")"
	}
	r := &bench.Runner{Dir: tmp, Tools: bins, Seed: 1, Log: logf}

	reps, replaceReps := 40, 20
	counts := []int{1, 100, 1_000, 10_000, 100_000}
	scalingReps := func(n int) int {
		switch {
		case n >= 100_000:
			return 3
		case n >= 10_000:
			return 5
		}
		return 9
	}
	connectCounts, connectRounds, connectDur := []int{0, 1_000, 10_000}, 9, 250*time.Millisecond
	memCIDRs := 100_000
	peerReps, podReps, pods := 15, 3, 40
	deltaCIDRs, deltaReps, startupReps := 100_000, 9, 100
	if quick {
		peerReps, podReps, pods = 3, 1, 10
		deltaCIDRs, deltaReps, startupReps = 10_000, 2, 5
		reps, replaceReps = 5, 3
		counts = []int{1, 1_000, 10_000}
		scalingReps = func(int) int { return 2 }
		connectCounts, connectRounds, connectDur = []int{0, 10_000}, 2, 100*time.Millisecond
		memCIDRs = 10_000
	}

	def, err := bench.NewWorkload("default", bench.DefaultArgs, filepath.Join(tmp, "default"))
	if err != nil {
		return err
	}
	if err := def.CheckRender(bins.CLI); err != nil {
		return err
	}
	peers := bench.PeerList(bins.CLI, pilotAgent, bench.DefaultArgs)
	logf("peers (%s, %s, %s) with nsenter --net: fresh pod, %d reps", bench.PNfi, bench.PIpt, bench.PIstNft, peerReps)
	if res.Peers, err = r.PeersPhase(peers, peerReps, podReps, pods); err != nil {
		return err
	}
	logf("one CIDR added/removed on a %d-CIDR exclude list: %d reps", deltaCIDRs, deltaReps)
	res.Peers.ListCIDRs = deltaCIDRs
	if res.Peers.ListDelta, err = r.ListDeltaPhase(deltaCIDRs, deltaReps); err != nil {
		return err
	}
	logf("start-up against a minimal static Go binary: %d reps", startupReps)
	if res.Peers.Startup, err = r.StartupPhase(minimal, startupReps); err != nil {
		return err
	}
	if peersOnly {
		fmt.Print(bench.PeerReport(res))
		return nil
	}
	logf("default configuration, fresh namespace: %d reps", reps)
	if res.Fresh, err = r.ApplyPhase(def, bench.Methods(def, bins), reps, true); err != nil {
		return err
	}
	logf("default configuration, replacing the same rules: %d reps", replaceReps)
	if res.Replace, err = r.ApplyPhase(def, bench.Methods(def, bins), replaceReps, false); err != nil {
		return err
	}
	noCgo := bins
	noCgo.CLICgo = ""
	r.Tools = noCgo
	if res.Scaling, err = r.ScalingPhase(counts, scalingReps); err != nil {
		return err
	}
	logf("connection rates: %v CIDRs, %d rounds of %v per destination", connectCounts, connectRounds, connectDur)
	if res.Connect, err = r.ConnectPhase(connectCounts, connectRounds, connectDur); err != nil {
		return err
	}
	logf("peak memory with %d CIDRs", memCIDRs)
	if res.Memory, err = r.MemoryPhase(memCIDRs); err != nil {
		return err
	}
	res.Env.LoadAfter = bench.LoadAvg()
	return write(outDir, res, time.Since(started))
}

// buildMinimal builds the static Go program that exits at once, the
// floor the CLI's start-up is compared with.
func buildMinimal(tmp string) (string, error) {
	dir := filepath.Join(tmp, "minimal")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	for name, text := range map[string]string{"go.mod": "module minimal\n", "main.go": bench.MinimalGo} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			return "", err
		}
	}
	bin := filepath.Join(tmp, "minimal-go")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=-mod=mod")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build (minimal Go binary): %v: %s", err, out)
	}
	return bin, nil
}

// moduleRoot is the directory of the module's go.mod.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("run from inside the nfintercept module")
	}
	return filepath.Dir(gomod), nil
}

// rewrite renders the outputs again from saved results.
func rewrite(resultsJSON, dir string) error {
	raw, err := os.ReadFile(resultsJSON)
	if err != nil {
		return err
	}
	var res bench.Results
	if err := json.Unmarshal(raw, &res); err != nil {
		return fmt.Errorf("%s: %w", resultsJSON, err)
	}
	return write(dir, &res, 0)
}

func write(dir string, res *bench.Results, took time.Duration) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	report := bench.Markdown(res)
	img, err := bench.Plot(res)
	if err != nil {
		return err
	}
	raw, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	files := map[string][]byte{
		"RESULTS.md":        []byte(report),
		"bench.png":         img,
		"results.json":      append(raw, '\n'),
		"README-snippet.md": []byte(snippet(res)),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return err
		}
	}
	fmt.Print(report)
	logf("done in %v; wrote %s/{RESULTS.md,bench.png,results.json,README-snippet.md}", took.Round(time.Second), dir)
	return nil
}

// snippet is the short section README.md shows.
func snippet(res *bench.Results) string {
	var b strings.Builder
	b.WriteString("## Performance\n\n")
	b.WriteString("`make bench` measures, in namespaces it creates, nfintercept against Istio's own `pilot-agent istio-iptables`\n")
	b.WriteString("(iptables and `--native-nftables`; whole processes under `nsenter --net`: a fresh pod, 40 pods at once, a\n")
	b.WriteString("re-apply), one CIDR changed on a 100,000-CIDR list, the CLI's start-up, the apply latency against `nft -f` and\n")
	b.WriteString("iptables-restore of the same rules, its growth with the exclude list, new connections per second through\n")
	b.WriteString("the rules and peak memory ([full results](bench/results/RESULTS.md), [analysis](bench/results/NOTES.md)).\n\n")
	b.WriteString("| goal | measured | met |\n|---|---|---|\n")
	for _, t := range bench.Targets(res) {
		met := "no"
		if t.Met {
			met = "yes"
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", t.Goal, t.Measured, met)
	}
	b.WriteString("\n![apply time and connection rate against the number of exclude CIDRs](bench/results/bench.png)\n")
	return b.String()
}
