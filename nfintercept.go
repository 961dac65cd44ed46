// Package nfintercept installs Istio-compatible sidecar traffic interception
// as native nftables rules, written over netlink in one atomic transaction,
// with the policy routing TPROXY needs.
//
// It is the entry point for embedders such as CNI plugins:
//
//	opts := translate.DefaultOptions()
//	opts.InboundPortsInclude = "*"
//	cfg, err := opts.Config(translate.HostSystem())
//	ns, err := nfintercept.OpenNamespace("/var/run/netns/pod")
//	defer ns.Close()
//	res, err := nfintercept.Apply(ctx, ns, nfintercept.Request{Config: cfg})
//
// The flow is one-directional: options → translate.Config → translate.Build
// (the rule model) → nft (netlink messages, nft text) or compat (iptables
// view); package kernel is the only way into the kernel.
package nfintercept

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nfintercept/nfintercept/kernel"
	"github.com/nfintercept/nfintercept/translate"
)

// Namespace is an open network namespace; every operation on it goes
// through its one descriptor. Close it when done.
type Namespace = kernel.Namespace

// CurrentNamespace names the caller's own network namespace for
// OpenNamespace.
const CurrentNamespace = kernel.CurrentNamespace

// OpenNamespace opens the network namespace at pathOrName: a path
// (/var/run/netns/NAME, /proc/PID/ns/net) or a bare name of /var/run/netns.
// It must be a network namespace file; "" is an error (the current
// namespace is CurrentNamespace). Errors are *InputError unless the system
// ran out of resources.
func OpenNamespace(pathOrName string) (*Namespace, error) {
	ns, err := kernel.OpenNamespace(pathOrName)
	var nerr *kernel.NamespaceError
	if errors.As(err, &nerr) && nerr.Input() {
		return nil, &InputError{Err: err}
	}
	return ns, err
}

// InputError is an error in what the caller asked for (the namespace, the
// configuration): nothing was changed. Other errors come from the kernel or
// the system.
type InputError struct{ Err error }

func (e *InputError) Error() string { return e.Err.Error() }
func (e *InputError) Unwrap() error { return e.Err }

func inputErrorf(format string, a ...any) error {
	return &InputError{Err: fmt.Errorf(format, a...)}
}

// Request says what to install.
type Request struct {
	// Config is the validated configuration (translate.Options.Config).
	Config translate.Config
	// IPv6 decides whether IPv6 is programmed; see IPv6Mode.
	IPv6 IPv6Mode
}

// IPv6Mode selects how IPv6 enablement is decided.
type IPv6Mode int

const (
	// IPv6Detect decides from the namespace's addresses as istio-iptables
	// does: with Config.DualStack, IPv6 when the namespace has a global
	// IPv6 address; without, IPv6 only when its first address is IPv6. The
	// ::6 nfintercept adds to lo is not counted, so the outcome never
	// depends on what was applied before.
	IPv6Detect IPv6Mode = iota
	// IPv6FromConfig programs IPv6 exactly when Config.DualStack is set,
	// as if the pod had addresses of both families (offline rendering).
	IPv6FromConfig
)

// Result describes what was (or would be) installed.
type Result struct {
	Config  translate.Config // with EnableIPv6 decided
	Ruleset *translate.Ruleset
	// Change says how Apply brought the tables there (zero for Plan).
	Change Change
}

// Plan builds the rule model for req without changing anything. ns may be
// nil only with IPv6FromConfig.
func Plan(ctx context.Context, ns *Namespace, req Request) (*Result, error) {
	if req.IPv6 == IPv6Detect && ns == nil {
		return nil, inputErrorf("IPv6 detection needs a network namespace")
	}
	var k nsKernel
	if ns != nil {
		k = &realKernel{ns: ns, addrsOnly: true}
	}
	return plan(k, req)
}

func plan(k nsKernel, req Request) (*Result, error) {
	cfg := req.Config
	switch req.IPv6 {
	case IPv6FromConfig:
		cfg.EnableIPv6 = cfg.DualStack
	case IPv6Detect:
		v6, err := detectIPv6(k, cfg.DualStack)
		if err != nil {
			return nil, err
		}
		cfg.EnableIPv6 = v6
	default:
		return nil, inputErrorf("unknown IPv6 mode %d", req.IPv6)
	}
	return &Result{Config: cfg, Ruleset: translate.Build(cfg)}, nil
}

// Apply brings nfintercept's rules and routing in the namespace to what
// req describes: under the namespace's lock (waiting while ctx allows),
// routing is added first, the nftables tables are changed in one batch,
// routing no longer needed is removed last. The batch holds only the
// difference from what the tables hold (nothing when they are in sync),
// computed from one read and refused by the kernel if the ruleset changed
// since, then computed again; when no difference can be computed, the
// tables are replaced whole. On error the previous
// rules stay in place, and capture rules never lack their routing.
func Apply(ctx context.Context, ns *Namespace, req Request) (*Result, error) {
	if err := req.Config.CheckResolved(); err != nil {
		return nil, &InputError{Err: err}
	}
	k := &realKernel{ns: ns}
	var res *Result
	err := locked(ctx, k, func() error {
		var err error
		if res, err = plan(k, req); err != nil {
			return err
		}
		res.Change, err = change(ctx, k, res.Ruleset, nil)
		return err
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// ApplyRuleset installs a ruleset built elsewhere (another profile) the
// way Apply does: its tables replace ours, its Routes and LoopbackAddrs
// become the namespace's policy routing of ours.
func ApplyRuleset(ctx context.Context, ns *Namespace, rs *translate.Ruleset) error {
	k := &realKernel{ns: ns}
	return locked(ctx, k, func() error {
		_, err := change(ctx, k, rs, nil)
		return err
	})
}

// Cleanup removes everything nfintercept installed in the namespace: the
// tables first, then the routing. It is idempotent; on error what remains
// is never capture rules without their routing.
func Cleanup(ctx context.Context, ns *Namespace) error {
	k := &realKernel{ns: ns}
	return locked(ctx, k, func() error { return cleanup(ctx, k) })
}

// LockWait bounds the wait for another nfintercept changing the same
// namespace when ctx has no deadline (istio-iptables waits 30 s for the
// xtables lock).
const LockWait = 30 * time.Second

func locked(ctx context.Context, k nsKernel, fn func() error) error {
	lockCtx := ctx
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		lockCtx, cancel = context.WithTimeout(ctx, LockWait)
		defer cancel()
	}
	unlock, err := k.Lock(lockCtx)
	if err != nil {
		return err
	}
	defer unlock()
	defer k.Close()
	return fn()
}
