package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/pflag"

	"github.com/nfintercept/nfintercept"
	"github.com/nfintercept/nfintercept/compat"
	"github.com/nfintercept/nfintercept/nft"
	"github.com/nfintercept/nfintercept/translate"
)

const usageAmbient = `
Profiles (--profile, default sidecar):
  sidecar        istio-iptables' capture for an Envoy sidecar (the options below)
  ambient-pod    Istio ambient mode inside an enrolled pod: outbound TCP to ztunnel's 15001,
                 inbound to 15006 (HBONE 15008 untouched), DNS to 15053, ztunnel's sockets
                 (mark 0x539) uncaptured, policy routing of its transparent replies
                 (fwmark 0x111/0xfff pref 32764 lookup 100)
  ambient-node   kubelet probes in the node's namespace: locally generated TCP to an enrolled
                 pod IP is SNATed to the probe address. apply keeps the pod IPs the probe sets
                 hold; a node agent changes them through the library (AddProbeAddrs)
  The ambient profiles read the node agent's environment (AMBIENT_DNS_CAPTURE, AMBIENT_IPV6,
  HOST_PROBE_SNAT_IP, HOST_PROBE_SNAT_IPV6; flags win) and take only these options plus
  --network-namespace, --reconcile, -n/--dry-run, --cleanup-only, --format and --family.
`

// ambientFlags are the options of the ambient profiles.
type ambientFlags struct {
	profile        string
	opts           translate.AmbientOptions
	podAnnotations string
	names          map[string]bool // the flags add registered, except --profile
}

// ambientSettings maps the ambient flags to the node agent's settings
// (AmbientOptions keys them by environment variable).
var ambientSettings = []struct{ flag, typ, env, usage string }{
	{"ambient-dns-capture", "bool", translate.EnvAmbientDNSCapture, "ambient-pod: capture DNS to ztunnel unless the pod's annotation says otherwise (AMBIENT_DNS_CAPTURE)"},
	{"ambient-ipv6", "bool", translate.EnvAmbientIPv6, "ambient profiles: program IPv6 too (AMBIENT_IPV6)"},
	{"probe-snat-ipv4", "string", translate.EnvHostProbeSNATIP, "ambient profiles: IPv4 source of kubelet probes (HOST_PROBE_SNAT_IP, default 169.254.7.127)"},
	{"probe-snat-ipv6", "string", translate.EnvHostProbeSNATIPv6, "ambient profiles: IPv6 source of kubelet probes (HOST_PROBE_SNAT_IPV6, default fd16:9254:7127:1337:ffff:ffff:ffff:ffff)"},
}

// ambientValue routes a flag into AmbientOptions (marking it given).
type ambientValue struct {
	o   *translate.AmbientOptions
	env string
	typ string
}

func (v ambientValue) String() string { return "" }
func (v ambientValue) Type() string   { return v.typ }
func (v ambientValue) Set(s string) error {
	v.o.Set(v.env, s)
	return nil
}

func (a *ambientFlags) add(fs *pflag.FlagSet) {
	a.names = map[string]bool{}
	fs.StringVar(&a.profile, "profile", "sidecar", "what to install: sidecar, ambient-pod or ambient-node (see Profiles)")
	for _, f := range ambientSettings {
		fl := fs.VarPF(ambientValue{&a.opts, f.env, f.typ}, f.flag, "", f.usage)
		a.names[f.flag] = true
		if f.typ == "bool" {
			fl.NoOptDefVal = "true"
		}
	}
	fs.StringVar(&a.podAnnotations, "pod-annotations", "", "ambient-pod: the pod's annotations (key=value lines or a Pod manifest; - for stdin)")
	a.names["pod-annotations"] = true
}

// sharedFlags are istio-iptables flags the ambient profiles use too.
var sharedFlags = map[string]bool{"network-namespace": true, "reconcile": true, "dry-run": true, "cleanup-only": true}

// checkProfileFlags refuses options of another profile.
func (a *ambientFlags) checkProfileFlags(fs *pflag.FlagSet, sidecarFlags map[string]bool, profile translate.Profile) error {
	var err error
	fs.Visit(func(f *pflag.Flag) {
		if err != nil {
			return
		}
		switch {
		case profile == translate.ProfileSidecar && a.names[f.Name]:
			err = fmt.Errorf("--%s is an option of the ambient profiles, not of --profile sidecar", f.Name)
		case profile != translate.ProfileSidecar && sidecarFlags[f.Name] && !sharedFlags[f.Name]:
			err = fmt.Errorf("--%s is an istio-iptables (sidecar) option, not used by --profile %s", f.Name, profile)
		case profile == translate.ProfileAmbientNode && (f.Name == "pod-annotations" || f.Name == "ambient-dns-capture"):
			err = fmt.Errorf("--%s applies to --profile ambient-pod, not ambient-node", f.Name)
		}
	})
	return err
}

// runAmbient runs a command for an ambient profile.
func (a *ambientFlags) run(cmd string, profile translate.Profile, nsPath string, reconcile bool, format, family string,
	stdin io.Reader, stdout io.Writer, getenv func(string) (string, bool), logger *slog.Logger) error {
	a.opts.LoadEnv(getenv)
	node, err := a.opts.Node()
	if err != nil {
		return classify(flagNamed(err))
	}
	var pod translate.PodOverrides
	if profile == translate.ProfileAmbientPod && a.podAnnotations != "" {
		if pod, err = readPodOverrides(a.podAnnotations, stdin); err != nil {
			return errUsage{err}
		}
	}
	podCfg := translate.AmbientPodConfig{Node: node, Pod: pod}
	nodeCfg := translate.AmbientNodeConfig{Node: node} // nil ProbeAddrs: the namespace's

	if cmd == "render" {
		fam, err := renderFamily(family, format)
		if err != nil {
			return err
		}
		var rs *translate.Ruleset
		switch {
		case profile == translate.ProfileAmbientPod:
			rs = translate.BuildAmbientPod(podCfg)
		case nsPath == "": // no probe addresses
			rs = translate.BuildAmbientNode(nodeCfg)
		default: // the probe addresses the namespace holds
			ns, err := openNamespace(nsPath)
			if err != nil {
				return err
			}
			defer ns.Close()
			if rs, err = nfintercept.PlanAmbientNode(context.Background(), ns, nodeCfg); err != nil {
				return classify(err)
			}
		}
		return renderRuleset(rs, format, fam, stdout)
	}

	ns, err := openNamespace(nsPath)
	if err != nil {
		return err
	}
	defer ns.Close()
	ctx := context.Background()
	log := nsLog(logger, ns)

	switch cmd {
	case "apply":
		var rs *translate.Ruleset
		start := time.Now()
		if profile == translate.ProfileAmbientPod {
			rs, err = nfintercept.ApplyAmbientPod(ctx, ns, podCfg)
		} else {
			rs, err = nfintercept.ApplyAmbientNode(ctx, ns, nodeCfg)
		}
		if err != nil {
			return classify(err)
		}
		logger.Info("applied the "+string(profile)+" rules", rulesetFields(ns.String(), rs, time.Since(start))...)
		return nil
	case "verify":
		var d *nfintercept.Report
		switch {
		case profile == translate.ProfileAmbientPod && reconcile:
			d, err = nfintercept.ReconcileRuleset(ctx, ns, translate.BuildAmbientPod(podCfg))
		case profile == translate.ProfileAmbientPod:
			d, err = nfintercept.VerifyRuleset(ctx, ns, translate.BuildAmbientPod(podCfg))
		case reconcile: // the probe sets are read under the lock
			d, err = nfintercept.ReconcileAmbientNode(ctx, ns, nodeCfg)
		default:
			d, err = nfintercept.VerifyAmbientNode(ctx, ns, nodeCfg)
		}
		return reportDrift(d, err, ns, stdout, log)
	case "cleanup":
		return cleanup(ctx, ns, log)
	}
	return errUsage{fmt.Errorf("unknown command %q (commands: apply, render, cleanup, verify; see --help)", cmd)}
}

// flagNamed words an error about an ambient setting with its flag: the
// flag alone when given, "VARIABLE (--flag)" when read from there.
func flagNamed(err error) error {
	var oe *translate.OptionError
	if errors.As(err, &oe) {
		for _, f := range ambientSettings {
			if oe.Option == f.env {
				oe.Option = "--" + f.flag
			}
		}
	}
	return err
}

// readPodOverrides reads --pod-annotations with the annotations parser.
func readPodOverrides(file string, stdin io.Reader) (translate.PodOverrides, error) {
	in := stdin
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return translate.PodOverrides{}, fmt.Errorf("--pod-annotations: %w", err)
		}
		defer f.Close()
		in = f
	}
	ann, err := translate.ParseAnnotations(in)
	if err != nil {
		return translate.PodOverrides{}, fmt.Errorf("--pod-annotations %s: %w", file, err)
	}
	return translate.PodOverridesFromAnnotations(ann)
}

func renderFamily(family, format string) (translate.Family, error) {
	var fam translate.Family
	switch family {
	case "ipv4":
		fam = translate.IPv4
	case "ipv6":
		fam = translate.IPv6
	default:
		return 0, errUsage{fmt.Errorf("invalid --family %q: want ipv4 or ipv6", family)}
	}
	if format != "nft" && format != "iptables" && format != "json" {
		return 0, errUsage{fmt.Errorf("invalid --format %q: want nft, iptables or json", format)}
	}
	return fam, nil
}

// renderRuleset prints rs in one of the formats.
func renderRuleset(rs *translate.Ruleset, format string, fam translate.Family, stdout io.Writer) error {
	var err error
	switch format {
	case "iptables":
		_, err = io.WriteString(stdout, compat.Restore(rs, fam))
	case "json":
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(rs)
	default:
		text, terr := nft.Text(rs)
		if terr != nil {
			return terr
		}
		_, err = io.WriteString(stdout, text)
	}
	return err
}
