package equiv

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nfintercept/nfintercept/integration/harness"
	"github.com/nfintercept/nfintercept/translate"
)

// DNSAgentPort is istio-agent's DNS listener, fixed in istio-iptables.
const DNSAgentPort = 15053

// Listener tags in the pod; application listeners are "app:<port>". The
// peer's and the side's catch-alls answer as "peer" and "side".
const (
	TagOutbound = "outbound"
	TagInbound  = "inbound"
	TagDNS      = "dns"
)

// RunOptions tune a comparison.
type RunOptions struct {
	Timeout  time.Duration // per flow (connect, then reply)
	Parallel int           // flows in flight at once
	// Retries re-runs a differing flow this many times; a difference
	// that does not reproduce every time is reported as flaky instead.
	Retries int
	// Mutate, when set, may alter the iptables text a backend restores.
	Mutate func(Backend, translate.Family, string) string
	// Backends are the twins Compare builds (default: Backends); the
	// first is the reference in reports.
	Backends []Backend
	// CLI is the nfintercept binary BackendCLI runs.
	CLI string
}

func (o RunOptions) withDefaults() RunOptions {
	if o.Timeout == 0 {
		o.Timeout = time.Second
	}
	if o.Parallel == 0 {
		o.Parallel = 16
	}
	if len(o.Backends) == 0 {
		o.Backends = Backends
	}
	return o
}

// Difference is a flow the twins decided differently.
type Difference struct {
	Flow      Flow
	Decisions map[Backend]Decision
}

func (d Difference) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "flow: %s\n  why: %s", d.Flow, d.Flow.Name)
	for _, be := range present(d.Decisions) {
		fmt.Fprintf(&b, "\n  %-16s %s", be+":", d.Decisions[be])
	}
	return b.String()
}

// Result is the outcome of one comparison.
type Result struct {
	Case        Case
	Backends    []Backend // the first is the reference
	Plan        *Plan
	Flows       []Flow
	Decisions   []map[Backend]Decision // per flow
	Differences []Difference
	Flaky       []Difference
	// State is the nft twin's ruleset and routing, captured when there
	// were differences (for the report).
	State string
}

// Summary counts the reference twin's decisions by listener or error.
func (r *Result) Summary() string {
	counts := map[string]int{}
	for _, d := range r.Decisions {
		k := d[r.Backends[0]].Tag
		if k == "" {
			k = d[r.Backends[0]].String()
		} else if strings.HasPrefix(k, "app:") {
			k = "app"
		}
		counts[k]++
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, counts[k])
	}
	return fmt.Sprintf("%d flows: %s", len(r.Flows), strings.Join(parts, " "))
}

// Compare installs the case in the twins of opts.Backends (by default the
// three of Backends), runs every flow through all of them and returns the
// decisions and where they differ. Problems of the setup (including a
// backend refusing the configuration) fail the test.
func Compare(t *testing.T, c Case, opts RunOptions) *Result {
	t.Helper()
	opts = opts.withDefaults()
	plan, flows, twins := Prepare(t, c, opts.Backends, opts)
	res := &Result{Case: c, Backends: opts.Backends, Plan: plan, Flows: flows}
	res.decide(t, twins, opts)
	return res
}

// decide runs every flow of res in the twins and records the decisions
// and where they differ (reproducibly, or flaky).
func (res *Result) decide(t *testing.T, twins []*Twin, opts RunOptions) {
	t.Helper()
	res.Decisions = runAll(t, twins, res.Flows, opts)
	for i, f := range res.Flows {
		if agree(res.Decisions[i]) {
			continue
		}
		d := Difference{Flow: f, Decisions: res.Decisions[i]}
		if reproduces(t, twins, f, opts) {
			res.Differences = append(res.Differences, d)
		} else {
			res.Flaky = append(res.Flaky, d)
		}
	}
	if len(res.Differences) > 0 {
		res.State = podState(twins[0])
	}
}

// Prepare plans the case, derives its flows and builds one twin per
// backend with the rules installed and every listener running.
func Prepare(t *testing.T, c Case, backends []Backend, opts RunOptions) (*Plan, []Flow, []*Twin) {
	t.Helper()
	req, err := c.Request()
	if err != nil {
		t.Fatalf("%s: %v", c.Name, err)
	}
	plan, err := NewPlan(req)
	if err != nil {
		t.Fatalf("%s: plan: %v\n%s", c.Name, err, c)
	}
	topo := TopologyFor(plan.Config)
	flows := Flows(plan.Config, c.Resolv, topo)
	tcpPorts, udpPorts := PodPorts(flows)
	twins := make([]*Twin, len(backends))
	for i, b := range backends {
		tw := NewTwin(t, b, topo)
		if err := tw.Install(plan, c, opts); err != nil {
			t.Fatalf("%s: installing the %s twin: %v\n%s", c.Name, b, err, c)
		}
		startPodListeners(t, tw, plan.Config, c.OpaqueInbound, tcpPorts, udpPorts)
		twins[i] = tw
	}
	return plan, flows, twins
}

// startPodListeners puts the proxy's listeners (as the proxy user, like
// Envoy; transparent, as TPROXY needs) and an application listener on every
// other port a flow may end at.
func startPodListeners(t *testing.T, tw *Twin, cfg translate.Config, opaqueInbound bool, tcpPorts, udpPorts []uint16) {
	t.Helper()
	owner := ProxyOwner(cfg)
	proxy := harness.ListenOptions{Owner: &owner, Transparent: true}
	inbound := proxy
	inbound.Transparent = !opaqueInbound
	proxyTags := map[uint16]string{
		cfg.ProxyPort.From:          TagOutbound,
		cfg.InboundCapturePort.From: TagInbound,
		DNSAgentPort:                TagDNS,
	}
	path := tw.Path(FromPod)
	for _, host := range []string{"0.0.0.0", "[::]"} {
		addr := func(port uint16) string { return fmt.Sprintf("%s:%d", host, port) }
		for _, port := range sortedPorts(map[uint16]bool{cfg.ProxyPort.From: true, cfg.InboundCapturePort.From: true, DNSAgentPort: true}) {
			opts := proxy
			if port == cfg.InboundCapturePort.From {
				opts = inbound
			}
			harness.ListenTCP(t, path, addr(port), proxyTags[port], opts)
		}
		harness.ListenUDP(t, path, addr(DNSAgentPort), TagDNS, harness.ListenOptions{Owner: &owner})
		for _, port := range tcpPorts {
			if proxyTags[port] == "" {
				harness.ListenTCP(t, path, addr(port), fmt.Sprintf("app:%d", port), harness.ListenOptions{})
			}
		}
		for _, port := range udpPorts {
			if port != DNSAgentPort {
				harness.ListenUDP(t, path, addr(port), fmt.Sprintf("app:%d", port), harness.ListenOptions{})
			}
		}
	}
}

// runAll runs every flow in every twin, Parallel flows at a time, the
// twins of one flow concurrently.
func runAll(t *testing.T, twins []*Twin, flows []Flow, opts RunOptions) []map[Backend]Decision {
	t.Helper()
	out := make([]map[Backend]Decision, len(flows))
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	sem := make(chan struct{}, opts.Parallel)
	for i, f := range flows {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			dec, err := runOne(twins, f, opts.Timeout)
			mu.Lock()
			defer mu.Unlock()
			out[i] = dec
			if err != nil {
				errs = append(errs, err)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		t.Errorf("harness: %v", err)
	}
	if len(errs) > 0 {
		t.FailNow()
	}
	return out
}

func runOne(twins []*Twin, f Flow, timeout time.Duration) (map[Backend]Decision, error) {
	dec := make(map[Backend]Decision, len(twins))
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		ferr error
	)
	for _, tw := range twins {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, err := tw.Run(f, timeout)
			mu.Lock()
			defer mu.Unlock()
			dec[tw.Backend] = d
			if err != nil {
				ferr = fmt.Errorf("%s twin, %s: %w", tw.Backend, f, err)
			}
		}()
	}
	wg.Wait()
	return dec, ferr
}

func agree(dec map[Backend]Decision) bool {
	bs := present(dec)
	for _, b := range bs[1:] {
		if dec[b] != dec[bs[0]] {
			return false
		}
	}
	return true
}

// present lists the backends that decided, in report order.
func present(dec map[Backend]Decision) []Backend {
	var bs []Backend
	for _, b := range allBackends {
		if _, ok := dec[b]; ok {
			bs = append(bs, b)
		}
	}
	return bs
}

// reproduces re-runs a differing flow; it is a difference only if the
// twins disagree every time.
func reproduces(t *testing.T, twins []*Twin, f Flow, opts RunOptions) bool {
	for i := 0; i < opts.Retries; i++ {
		dec, err := runOne(twins, f, opts.Timeout)
		if err != nil {
			t.Errorf("harness: %v", err)
			return true
		}
		if agree(dec) {
			return false
		}
	}
	return true
}

// podState lists what nfintercept installed in a pod: rules (nft as the
// oracle) and policy routing.
func podState(tw *Twin) string {
	var b strings.Builder
	for _, cmd := range [][]string{
		{"nft", "list", "ruleset"},
		{"ip", "rule"}, {"ip", "-6", "rule"},
		{"ip", "route", "show", "table", "all"}, {"ip", "-6", "route", "show", "table", "all"},
		{"ip", "addr", "show", "dev", "lo"},
	} {
		out, err := runIn(tw.Name(FromPod), "", cmd[0], cmd[1:]...)
		fmt.Fprintf(&b, "# %s\n%s", strings.Join(cmd, " "), out)
		if err != nil {
			fmt.Fprintf(&b, "(%v)\n", err)
		}
	}
	return b.String()
}
