// Package nfintercept installs Istio-compatible sidecar traffic interception
// as native nftables rules, written over netlink in one atomic transaction.
//
// It is the entry point for embedders such as CNI plugins:
//
//	opts := translate.DefaultOptions()
//	opts.InboundPortsInclude = "*"
//	res, err := nfintercept.Apply(nfintercept.Request{Options: opts, NetNSPath: "/var/run/netns/pod"})
//
// The flow is one-directional: options → translate.Config → translate.Build
// (the rule model) → nft (kernel and nft text) or compat (iptables view).
package nfintercept

import (
	"fmt"
	"strings"

	"github.com/nfintercept/nfintercept/nft"
	"github.com/nfintercept/nfintercept/translate"
)

// Request says what to install and where.
type Request struct {
	// Options are istio-iptables' options, unvalidated (start from
	// translate.DefaultOptions()).
	Options translate.Options
	// NetNSPath is a network namespace file (/var/run/netns/NAME,
	// /proc/PID/ns/net); empty means the caller's current namespace.
	NetNSPath string
	// System answers user, group and resolv.conf questions; nil means this
	// host's.
	System translate.System
	// IPv6 decides whether IPv6 is programmed; see IPv6Mode.
	IPv6 IPv6Mode
}

// IPv6Mode selects how IPv6 enablement is decided.
type IPv6Mode int

const (
	// IPv6Detect decides from the namespace's addresses as istio-iptables
	// does: with --dual-stack, IPv6 when the namespace has a global IPv6
	// address; without, IPv6 only when its first address is IPv6.
	IPv6Detect IPv6Mode = iota
	// IPv6FromOptions programs IPv6 exactly when --dual-stack is set, as if
	// the pod had addresses of both families (used for offline rendering).
	IPv6FromOptions
)

// Result describes what was (or would be) installed.
type Result struct {
	Config  translate.Config
	Ruleset *translate.Ruleset
}

// Plan validates the options and builds the rule model without changing
// anything. Every input error is reported here, naming the option.
func Plan(req Request) (*Result, error) {
	req.NetNSPath = NetNSPath(req.NetNSPath)
	if err := checkNetNS(req.NetNSPath); err != nil {
		return nil, err
	}
	sys := req.System
	if sys == nil {
		sys = translate.HostSystem()
	}
	cfg, err := req.Options.Config(sys)
	if err != nil {
		return nil, err
	}
	if req.IPv6 == IPv6Detect {
		v6, err := detectIPv6(req.NetNSPath, req.Options.DualStack)
		if err != nil {
			return nil, err
		}
		cfg.EnableIPv6 = v6
	}
	return &Result{Config: cfg, Ruleset: translate.Build(cfg)}, nil
}

// Apply validates the options and replaces nfintercept's rules in the
// namespace in one transaction. On error the previous rules stay in place.
func Apply(req Request) (*Result, error) {
	req.NetNSPath = NetNSPath(req.NetNSPath)
	res, err := Plan(req)
	if err != nil {
		return nil, err
	}
	if err := res.Config.CheckResolved(); err != nil {
		return nil, err
	}
	if err := applyRuleset(res.Ruleset, req.NetNSPath); err != nil {
		return nil, err
	}
	return res, nil
}

// Cleanup removes everything nfintercept installed in the namespace. It is
// idempotent: nothing installed is not an error.
func Cleanup(netnsPath string) error {
	netnsPath = NetNSPath(netnsPath)
	if err := checkNetNS(netnsPath); err != nil {
		return err
	}
	unlock, err := lockNamespace(netnsPath)
	if err != nil {
		return err
	}
	defer unlock()
	if err := cleanupRouting(netnsPath); err != nil {
		return err
	}
	if _, err := nft.Cleanup(netnsPath); err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	return nil
}

// NetNSPath turns a bare namespace name ("pod", as `ip netns` names it)
// into its file under /var/run/netns; paths are returned unchanged.
func NetNSPath(nameOrPath string) string {
	if nameOrPath == "" || strings.Contains(nameOrPath, "/") {
		return nameOrPath
	}
	return "/var/run/netns/" + nameOrPath
}
