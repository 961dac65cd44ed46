package equiv

import (
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"

	"github.com/nfintercept/nfintercept/compat"
	"github.com/nfintercept/nfintercept/internal/libtest"
	"github.com/nfintercept/nfintercept/internal/tools"
	"github.com/nfintercept/nfintercept/translate"
)

// Backend is how a twin's pod gets its rules.
type Backend string

const (
	// BackendNft is nfintercept itself: nfintercept.Apply (nftables over
	// netlink, plus its own policy routing).
	BackendNft Backend = "nft"
	// BackendIptablesNft loads the iptables view (compat.Restore, both
	// families) with iptables-nft-restore / ip6tables-nft-restore.
	BackendIptablesNft Backend = "iptables-nft"
	// BackendIptablesLegacy loads it with the legacy (x_tables) tools.
	BackendIptablesLegacy Backend = "iptables-legacy"
	// BackendCLI runs the nfintercept binary (RunOptions.CLI) with the
	// case's istio-init argv (Case.InitArgv) inside the pod, as the
	// istio-init container does.
	BackendCLI Backend = "nfintercept-cli"
	// BackendPilotAgent is the oracle: Istio's own pilot-agent (built by
	// `make tools`) run with the same argv inside the pod, installing
	// Istio's rules and routes with the iptables (or nft) tools on PATH.
	BackendPilotAgent Backend = "pilot-agent"
)

// Backends lists the three twins of a default comparison; the first is the
// one the others are compared with in reports.
var Backends = []Backend{BackendNft, BackendIptablesNft, BackendIptablesLegacy}

// allBackends fixes the order backends are reported in.
var allBackends = []Backend{BackendNft, BackendCLI, BackendPilotAgent, BackendIptablesNft, BackendIptablesLegacy}

func (b Backend) short() string {
	switch b {
	case BackendNft:
		return "nft"
	case BackendIptablesNft:
		return "ipn"
	case BackendIptablesLegacy:
		return "ipl"
	case BackendCLI:
		return "cli"
	case BackendPilotAgent:
		return "pa"
	}
	return "x"
}

// restoreTools names the restore binaries of an iptables backend.
func (b Backend) restoreTools() (v4, v6 string) {
	switch b {
	case BackendIptablesNft:
		return "iptables-nft-restore", "ip6tables-nft-restore"
	case BackendIptablesLegacy:
		return "iptables-legacy-restore", "ip6tables-legacy-restore"
	}
	return "", ""
}

// Plan is what one configuration installs: the request nfintercept gets and
// the iptables-restore input of each family rendered from the same model.
type Plan struct {
	Request  libtest.Request
	Config   translate.Config
	Ruleset  *translate.Ruleset
	Iptables map[translate.Family]string
}

// NewPlan validates the request and renders the iptables view.
func NewPlan(req libtest.Request) (*Plan, error) {
	res, err := libtest.Plan(req)
	if err != nil {
		return nil, err
	}
	return &Plan{
		Request: req,
		Config:  res.Config,
		Ruleset: res.Ruleset,
		Iptables: map[translate.Family]string{
			translate.IPv4: compat.Restore(res.Ruleset, translate.IPv4),
			translate.IPv6: compat.Restore(res.Ruleset, translate.IPv6),
		},
	}, nil
}

// Install puts the case's rules into the twin's pod. iptables text can be
// altered first (opts.Mutate: the sanity test drops a line to prove
// differences are seen).
func (tw *Twin) Install(p *Plan, c Case, opts RunOptions) error {
	switch tw.Backend {
	case BackendCLI:
		if opts.CLI == "" {
			return fmt.Errorf("the %s backend needs RunOptions.CLI", tw.Backend)
		}
		return tw.execInit(opts.CLI, c)
	case BackendPilotAgent:
		bin, err := tools.PilotAgent()
		if err != nil {
			return err
		}
		return tw.execInit(bin, c)
	case BackendNft:
		req := p.Request
		req.NetNSPath = tw.Path(FromPod)
		if _, err := libtest.Apply(req); err != nil {
			return fmt.Errorf("nfintercept.Apply: %w", err)
		}
		return nil
	}
	if err := tw.restore(p.Iptables, opts); err != nil {
		return err
	}
	return tw.istioRouting(p.Config)
}

// restore loads the iptables text of each family into the pod with the
// backend's restore tools (after opts.Mutate).
func (tw *Twin) restore(texts map[translate.Family]string, opts RunOptions) error {
	tool4, tool6 := tw.Backend.restoreTools()
	if tool4 == "" {
		return fmt.Errorf("backend %s has no iptables-restore", tw.Backend)
	}
	for _, fam := range []translate.Family{translate.IPv4, translate.IPv6} {
		text := texts[fam]
		if opts.Mutate != nil {
			text = opts.Mutate(tw.Backend, fam, text)
		}
		if text == "" {
			continue
		}
		tool := tool4
		if fam == translate.IPv6 {
			tool = tool6
		}
		// istio-iptables restores with --noflush.
		if out, err := runIn(tw.Name(FromPod), text, tool, "--noflush"); err != nil {
			return fmt.Errorf("%s: %v\n%s\ninput:\n%s", tool, err, out, text)
		}
	}
	return nil
}

// istioRouting does what istio-iptables' ConfigureRoutes does after the
// rules (SPEC §2.4), derived from the configuration rather than from the
// model so a wrong model shows up as a difference: ::6 on lo when IPv6 is
// enabled; with TPROXY and inbound ports, "ip rule fwmark M lookup RT" and a
// local default route in RT, per enabled family.
func (tw *Twin) istioRouting(cfg translate.Config) error {
	var v4, v6 []string
	if cfg.EnableIPv6 {
		v6 = append(v6, "addr add ::6/128 dev lo nodad")
	}
	if cfg.Mode == translate.ModeTProxy && !cfg.InboundPorts.Empty() {
		rule := fmt.Sprintf("rule add fwmark %d lookup %d", cfg.TProxyMark.Value, cfg.TProxyRouteTable)
		v4 = append(v4, rule, fmt.Sprintf("route add local 0.0.0.0/0 dev lo table %d", cfg.TProxyRouteTable))
		if cfg.EnableIPv6 {
			v6 = append(v6, rule, fmt.Sprintf("route add local ::/0 dev lo table %d", cfg.TProxyRouteTable))
		}
	}
	for _, b := range []struct {
		family string
		cmds   []string
	}{{"", v4}, {"-6", v6}} {
		if len(b.cmds) == 0 {
			continue
		}
		args := []string{"-n", tw.Name(FromPod)}
		if b.family != "" {
			args = append(args, b.family)
		}
		args = append(args, "-batch", "-")
		if out, err := runTool("ip", strings.Join(b.cmds, "\n")+"\n", args...); err != nil {
			return fmt.Errorf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}

// execInit runs an istio-init entrypoint (nfintercept or pilot-agent) with
// the case's init argv the way a container runtime runs istio-init: inside
// the pod's namespace (nsenter, no --network-namespace), with the case's
// environment and its resolv.conf as /etc/resolv.conf (a private mount
// namespace). PATH is kept: pilot-agent runs iptables-restore, ip6tables-
// restore or nft from it.
func (tw *Twin) execInit(bin string, c Case) error {
	resolv, err := os.CreateTemp("", Prefix+"resolv-")
	if err != nil {
		return err
	}
	defer os.Remove(resolv.Name())
	if _, err := resolv.Write(c.Resolv); err != nil {
		resolv.Close()
		return err
	}
	resolv.Close()
	const script = `r=$0 n=$1; shift; mount --bind "$r" /etc/resolv.conf && exec nsenter --net="$n" "$@"`
	args := append([]string{"-m", "--propagation", "private", "sh", "-c", script, resolv.Name(), tw.Path(FromPod), bin}, c.InitArgv()...)
	cmd := exec.Command("unshare", args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	keys := make([]string, 0, len(c.Env))
	for k := range c.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		cmd.Env = append(cmd.Env, k+"="+c.Env[k])
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %q: %v\n%s", bin, c.InitArgv(), err, out)
	}
	return nil
}
