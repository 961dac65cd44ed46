// Command nfintercept installs Istio sidecar traffic interception as native
// nftables rules. It accepts istio-iptables' flags and environment.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/nfintercept/nfintercept"
	"github.com/nfintercept/nfintercept/cmd/nfintercept/istioflags"
	"github.com/nfintercept/nfintercept/translate"
)

const usageHead = `nfintercept: Istio sidecar traffic interception in native nftables.

Usage:
  nfintercept [apply] [OPTIONS]      install the rules atomically, sending only what differs
                                     (nothing when in sync; large sets are rewritten whole)
  nfintercept istio-iptables [OPTIONS]
                                     the same as apply: the word Istio's injector puts first in
                                     istio-init's args (pilot-agent's subcommand), so the image
                                     can be swapped keeping the args; with --dry-run it renders
  nfintercept render [OPTIONS]       print the rules without touching anything
        --format nft|iptables|json   nft -f script (default), istio-iptables' iptables-restore
                                     input, or the rule model as JSON
        --family ipv4|ipv6           with --format iptables: which family (default ipv4)
  nfintercept cleanup [OPTIONS]      remove everything nfintercept installed (idempotent)
  nfintercept verify [OPTIONS]       compare the namespace with what OPTIONS install and print
                                     the differences; exit 1 on drift. --reconcile re-applies
                                     atomically when drift is found (exit 0 once in sync)
  nfintercept annotations [FILE]     read pod annotations (key=value lines or a Pod manifest in
                                     JSON/YAML; stdin by default) and print the istio-iptables
                                     options Istio's injector would derive

OPTIONS are istio-iptables' flags, with the same names, defaults and environment variables:
each flag can also be set through the variable named after it in upper case with '_' for '-'
(ISTIO_INBOUND_PORTS for --istio-inbound-ports); the command line wins.
-n/--dry-run is "render", --cleanup-only is "cleanup". --network-namespace PATH|NAME
(/var/run/netns/NAME or /proc/PID/ns/net) selects the namespace to program; without it
apply, verify and cleanup use the current one and render reads none. Nothing runs nft, iptables or a shell: rules go over netlink in one
transaction.

Exit status: 0 success, 1 the kernel refused or failed (or verify found drift),
2 invalid options or namespace (nothing touched), 126 --run-validation saw no redirect.
`

// errUsage marks errors in the user's input (exit status 2).
type errUsage struct{ error }

func main() {
	err := run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.LookupEnv)
	if err == nil {
		return
	}
	if errors.Is(err, pflag.ErrHelp) {
		return
	}
	reportError(os.Stderr, err)
	var u errUsage
	switch {
	case errors.As(err, &u):
		os.Exit(2)
	case errors.Is(err, nfintercept.ErrValidation):
		os.Exit(126) // istio-iptables' status for a failed --run-validation
	}
	os.Exit(1)
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) (string, bool)) (err error) {
	cmd := "apply"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	if cmd == "istio-iptables" {
		cmd = "apply"
	}
	fs := pflag.NewFlagSet("nfintercept", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.SortFlags = false
	logOpts := addLogFlags(fs)
	fs.Usage = func() {
		fmt.Fprint(stderr, usageHead+usageAmbient+"\nOptions:\n"+fs.FlagUsages()+logOpts.help())
	}
	opts := translate.DefaultOptions()
	common := map[string]bool{} // logging flags: every profile
	fs.VisitAll(func(f *pflag.Flag) { common[f.Name] = true })
	istioflags.Add(fs, &opts, getenv)
	lists := readListsFromFiles(fs, stdin)
	defer func() { err = lists.name(err) }()
	sidecarFlags := map[string]bool{}
	fs.VisitAll(func(f *pflag.Flag) { sidecarFlags[f.Name] = !common[f.Name] })
	var amb ambientFlags
	amb.add(fs)
	format := fs.String("format", "nft", "render: output format (nft, iptables, json)")
	family := fs.String("family", "ipv4", "render --format iptables: address family (ipv4, ipv6)")

	if cmd == "annotations" {
		return annotations(fs, args, stdin, stdout)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return err
		}
		return errUsage{err}
	}
	if fs.NArg() > 0 {
		return errUsage{fmt.Errorf("unexpected argument %q (see --help)", fs.Arg(0))}
	}
	lg, err := logOpts.open(stdout, stderr)
	if err != nil {
		return errUsage{err}
	}
	defer lg.close()
	defer func() { err = lg.markFailure(err) }()
	logger := lg.scope(defaultScope)
	logger.Debug("command line", "command", cmd, "args", args)
	profile, err := translate.ParseProfile(amb.profile)
	if err != nil {
		var oe *translate.OptionError
		if errors.As(err, &oe) {
			oe.Option = "--profile" // the library names the setting
		}
		return errUsage{err}
	}
	if err := amb.checkProfileFlags(fs, sidecarFlags, profile); err != nil {
		return errUsage{err}
	}
	opts.LoadEnvOnly(getenv)
	if opts.DryRun && cmd == "apply" {
		cmd = "render"
	}
	if opts.CleanupOnly && cmd == "apply" {
		cmd = "cleanup"
	}
	switch cmd {
	case "apply", "render", "verify", "cleanup":
	default:
		return errUsage{fmt.Errorf("unknown command %q (commands: apply, render, cleanup, verify, annotations; see --help)", cmd)}
	}
	if profile != translate.ProfileSidecar {
		return amb.run(cmd, profile, opts.NetworkNamespace, opts.Reconcile, *format, *family, stdin, stdout, getenv, logger)
	}
	// Options are validated for every command, so a typo does not silently
	// clean up somewhere unexpected.
	cfg, err := opts.Config(translate.HostSystem())
	if err != nil {
		return classify(err)
	}
	req := nfintercept.Request{Config: cfg}
	if cmd == "render" {
		return render(opts, req, *format, *family, stdout)
	}
	ns, err := openNamespace(opts.NetworkNamespace)
	if err != nil {
		return err
	}
	defer ns.Close()
	ctx := context.Background()
	netns := ns.String()
	log := nsLog(logger, ns)

	switch cmd {
	case "apply":
		var res *nfintercept.Result
		start := time.Now()
		if opts.SkipRuleApply {
			res, err = nfintercept.Plan(ctx, ns, req)
		} else {
			res, err = nfintercept.Apply(ctx, ns, req)
		}
		if err != nil {
			return classify(err)
		}
		switch {
		case opts.SkipRuleApply:
			log("--skip-rule-apply: options are valid, nothing installed")
		case res.Change.InSync:
			logger.Info("already in sync", rulesetFields(netns, res.Ruleset, time.Since(start))...)
		default:
			logger.Info("applied the interception rules", append(rulesetFields(netns, res.Ruleset, time.Since(start)), "change", res.Change.Summary)...)
		}
		if !opts.RunValidation {
			return nil
		}
		c := res.Config
		if err := nfintercept.Probe(ns, c.ProxyPort.From, c.InboundCapturePort.From, opts.IptablesProbePort, opts.ProbeTimeout); err != nil {
			return err
		}
		log("validation passed: a probe connection to port %d was redirected to the proxy", opts.IptablesProbePort)
		return nil
	case "verify":
		return verify(ctx, ns, req, opts.Reconcile, stdout, log)
	}
	return cleanup(ctx, ns, log)
}

// nsLog logs printf-style messages about ns at info level.
func nsLog(logger *slog.Logger, ns *nfintercept.Namespace) func(string, ...any) {
	netns := ns.String()
	return func(format string, a ...any) { logger.Info(fmt.Sprintf(format, a...), "netns", netns) }
}

// cleanup removes everything nfintercept installed in ns, whatever the
// profile.
func cleanup(ctx context.Context, ns *nfintercept.Namespace, log func(string, ...any)) error {
	if err := nfintercept.Cleanup(ctx, ns); err != nil {
		return classify(err)
	}
	log("removed nfintercept rules from %s", ns)
	return nil
}

// openNamespace opens --network-namespace, or the current namespace.
func openNamespace(pathOrName string) (*nfintercept.Namespace, error) {
	if pathOrName == "" {
		pathOrName = nfintercept.CurrentNamespace
	}
	ns, err := nfintercept.OpenNamespace(pathOrName)
	if err != nil {
		return nil, classify(fmt.Errorf("--network-namespace: %w", err))
	}
	return ns, nil
}

// classify turns errors in the input (options, namespace) into usage
// errors (exit 2).
func classify(err error) error {
	var inv *translate.OptionError
	var in *nfintercept.InputError
	if errors.As(err, &inv) || errors.As(err, &in) {
		return errUsage{err}
	}
	return err
}
