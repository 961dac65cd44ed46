package bench

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// Results is everything one driver run measured.
type Results struct {
	Env Env

	// Apply of the default istio-init configuration (dual-stack), into a
	// namespace without rules (Fresh) and over the same rules (Replace).
	Fresh, Replace []MethodResult
	// Scaling holds the apply of n exclude CIDRs, per n.
	Scaling []ScalingRow
	// Connect holds connection rates through the installed rules.
	Connect []ConnectResult
	// Memory holds peak RSS of whole processes.
	Memory []MemResult
	// Peers compares nfintercept with Istio's istio-iptables (both
	// backends), adds the list-change rows and the CLI's start-up.
	Peers *PeerResults `json:",omitempty"`
}

// Env describes the machine the run happened on.
type Env struct {
	Date       time.Time
	Kernel     string
	CPUs       int
	GoVersion  string
	Tools      map[string]string // tool → version line
	LoadBefore string            // /proc/loadavg at the start
	LoadAfter  string
	CLIBuild   string // how the measured binary was built
}

// MethodResult is one method's samples for one workload.
type MethodResult struct {
	Name  string
	Skip  string `json:",omitempty"`
	Stats Stats
}

// ScalingRow is every method for one list length.
type ScalingRow struct {
	CIDRs   int
	Rules4  int // lines of the IPv4 iptables view
	Methods []MethodResult
}

// ConnectResult is one engine's connection rate to one destination with
// n random exclude CIDRs.
type ConnectResult struct {
	Engine   string
	CIDRs    int
	Captured bool
	Rates    []float64 // connections per second, one per round
	Median   float64
	// Ratio is the median over rounds of this rate divided by the same
	// engine's rate with no random CIDRs measured in the same round:
	// pairing within a round cancels most of the load from elsewhere.
	Ratio float64
}

// MemResult is the peak resident set of a whole process.
type MemResult struct {
	What     string
	CIDRs    int
	MaxRSSKB int64
	Wall     time.Duration
	Note     string `json:",omitempty"`
}

// Find returns the result named name, or one saying it was not measured.
func Find(rs []MethodResult, name string) MethodResult {
	for _, r := range rs {
		if r.Name == name {
			return r
		}
	}
	return MethodResult{Name: name, Skip: "not measured"}
}

// CollectEnv records the environment.
func CollectEnv(cliBuild string) Env {
	e := Env{
		Date:      time.Now().UTC(),
		CPUs:      runtime.NumCPU(),
		GoVersion: runtime.Version(),
		Tools:     map[string]string{},
		CLIBuild:  cliBuild,
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		e.Kernel = strings.TrimSpace(string(b))
	}
	e.LoadBefore = LoadAvg()
	for _, t := range [][]string{{"nft", "--version"}, {"iptables-nft-restore", "--version"}, {"iptables-legacy-restore", "--version"}} {
		out, err := exec.Command(t[0], t[1:]...).CombinedOutput()
		if err == nil {
			e.Tools[t[0]] = strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
		}
	}
	return e
}

// LoadAvg is the first three fields of /proc/loadavg.
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// ms formats a duration in milliseconds with sensible precision.
func ms(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	switch {
	case v == 0:
		return "–"
	case v < 10:
		return fmt.Sprintf("%.2f ms", v)
	case v < 100:
		return fmt.Sprintf("%.1f ms", v)
	}
	return fmt.Sprintf("%.0f ms", v)
}

// ratio formats a/b as "3.1×".
func ratio(a, b time.Duration) string {
	if a == 0 || b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", float64(a)/float64(b))
}
