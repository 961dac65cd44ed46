package nfintercept

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/nfintercept/nfintercept/kernel"
	"github.com/nfintercept/nfintercept/nft"
	"github.com/nfintercept/nfintercept/translate"
)

// Entry points for Istio ambient mode node agents (AMBIENT.md). The agent
// opens the pod's namespace (or its own, CurrentNamespace) and passes it:
//
//	node := translate.AmbientNode{DNSCapture: true, EnableIPv6: true,
//		ProbeSNATv4: translate.DefaultProbeSNATv4, ProbeSNATv6: translate.DefaultProbeSNATv6}
//	// once, in the node's namespace:
//	nfintercept.ApplyAmbientNode(ctx, nodeNS, translate.AmbientNodeConfig{Node: node, ProbeAddrs: enrolledIPs})
//	// per pod joining the mesh:
//	pod, err := translate.PodOverridesFromAnnotations(podAnnotations)
//	nfintercept.ApplyAmbientPod(ctx, podNS, translate.AmbientPodConfig{Node: node, Pod: pod})
//	nfintercept.AddProbeAddrs(ctx, nodeNS, podIPs...)
//	// per pod leaving the mesh (still running):
//	nfintercept.RemoveProbeAddrs(ctx, nodeNS, podIPs...)
//	nfintercept.Cleanup(ctx, podNS)
//
// Each call takes the namespace lock and changes the namespace's tables in
// one nftables batch; routing is added before and pruned after it, as for
// the sidecar profile (ApplyRuleset).

// ApplyAmbientPod installs the in-pod capture for ztunnel (rules and the
// policy routing of its transparent replies) in the pod's namespace.
func ApplyAmbientPod(ctx context.Context, ns *Namespace, cfg translate.AmbientPodConfig) (*translate.Ruleset, error) {
	rs := translate.BuildAmbientPod(cfg)
	if err := ApplyRuleset(ctx, ns, rs); err != nil {
		return nil, err
	}
	return rs, nil
}

// ApplyAmbientNode installs the kubelet probe SNAT in the node's
// namespace. cfg.ProbeAddrs fill the probe sets; nil keeps the addresses
// the sets hold now (pass an empty slice to empty them).
func ApplyAmbientNode(ctx context.Context, ns *Namespace, cfg translate.AmbientNodeConfig) (*translate.Ruleset, error) {
	k := &realKernel{ns: ns}
	var rs *translate.Ruleset
	err := locked(ctx, k, func() error {
		var err error
		if cfg, err = currentProbeAddrs(k, cfg); err != nil {
			return err
		}
		rs = translate.BuildAmbientNode(cfg)
		_, err = change(ctx, k, rs, nil)
		return err
	})
	if err != nil {
		return nil, err
	}
	return rs, nil
}

// PlanAmbientNode is the node ruleset ApplyAmbientNode would install,
// with nil ProbeAddrs read from the namespace (no change is made).
func PlanAmbientNode(ctx context.Context, ns *Namespace, cfg translate.AmbientNodeConfig) (*translate.Ruleset, error) {
	k := &realKernel{ns: ns}
	defer k.Close()
	cfg, err := currentProbeAddrs(k, cfg)
	if err != nil {
		return nil, err
	}
	return translate.BuildAmbientNode(cfg), nil
}

// VerifyAmbientNode compares the namespace with the node ruleset, nil
// ProbeAddrs meaning the addresses the probe sets hold, as VerifyRuleset.
func VerifyAmbientNode(ctx context.Context, ns *Namespace, cfg translate.AmbientNodeConfig) (*Report, error) {
	k := &realKernel{ns: ns}
	defer k.Close()
	cfg, err := currentProbeAddrs(k, cfg)
	if err != nil {
		return nil, err
	}
	d, err := drift(k, translate.BuildAmbientNode(cfg))
	if err != nil {
		return nil, err
	}
	return &Report{Drift: d}, nil
}

// ReconcileAmbientNode is VerifyAmbientNode, then a re-apply under the
// lock when anything differs. Nil ProbeAddrs are read under the lock: an
// address a node agent added just before is kept, not repaired away.
func ReconcileAmbientNode(ctx context.Context, ns *Namespace, cfg translate.AmbientNodeConfig) (*Report, error) {
	return reconcileAmbientNode(ctx, &realKernel{ns: ns}, cfg)
}

func reconcileAmbientNode(ctx context.Context, k nsKernel, cfg translate.AmbientNodeConfig) (*Report, error) {
	var rep *Report
	err := locked(ctx, k, func() error {
		cfg, err := currentProbeAddrs(k, cfg)
		if err != nil {
			return err
		}
		rep, err = reconcile(ctx, k, translate.BuildAmbientNode(cfg))
		return err
	})
	return rep, err
}

func currentProbeAddrs(k nsKernel, cfg translate.AmbientNodeConfig) (translate.AmbientNodeConfig, error) {
	if cfg.ProbeAddrs != nil {
		return cfg, nil
	}
	addrs, err := k.ProbeAddrs()
	if err != nil {
		return cfg, fmt.Errorf("read the probe sets in %s: %w", k, err)
	}
	cfg.ProbeAddrs = append([]netip.Addr{}, addrs...)
	return cfg, nil
}

// AddProbeAddrs adds a pod's IPs to the node's probe sets in one small
// batch (the rules are not rebuilt). IPv6 addresses are skipped when the
// node profile runs without IPv6; addresses already there are left alone.
func AddProbeAddrs(ctx context.Context, ns *Namespace, addrs ...netip.Addr) error {
	return changeProbeAddrs(ctx, ns, addrs, true)
}

// RemoveProbeAddrs removes a pod's IPs from the node's probe sets;
// addresses not there are ignored.
func RemoveProbeAddrs(ctx context.Context, ns *Namespace, addrs ...netip.Addr) error {
	return changeProbeAddrs(ctx, ns, addrs, false)
}

// ProbeAddrs lists the addresses the node's probe sets hold.
func ProbeAddrs(ctx context.Context, ns *Namespace) ([]netip.Addr, error) {
	k := &realKernel{ns: ns}
	defer k.Close()
	addrs, err := k.ProbeAddrs()
	if err != nil {
		return nil, fmt.Errorf("read the probe sets in %s: %w", k, err)
	}
	return addrs, nil
}

// probeRetries bounds the re-reads when another process commits between
// reading the probe sets and sending the change.
const probeRetries = 5

func changeProbeAddrs(ctx context.Context, ns *Namespace, addrs []netip.Addr, add bool) error {
	verb := "remove"
	if add {
		verb = "add"
	}
	err := nft.CheckProbeAddrs(addrs)
	if err != nil {
		err = &InputError{Err: err} // before any kernel access: nothing touched
	} else {
		k := &realKernel{ns: ns}
		err = locked(ctx, k, func() error { return probeAddrsChange(ctx, k, addrs, add) })
	}
	if err != nil {
		return fmt.Errorf("%s probe addresses %v in %s: %w", verb, addrs, ns, err)
	}
	return nil
}

// probeAddrsChange sends the probe set change computed from one read at
// that read's generation, reading again when the kernel refuses it as
// stale. The caller holds the namespace lock.
func probeAddrsChange(ctx context.Context, k nsKernel, addrs []netip.Addr, add bool) error {
	for attempt := 0; ; attempt++ {
		u, err := k.ProbeAddrsUpdate(addrs, add)
		if errors.Is(err, nft.ErrNoProbeSet) {
			return &InputError{Err: err}
		}
		if err != nil || u.InSync() {
			return err
		}
		err = k.CommitAt(ctx, u.Generation, u.Msgs)
		if !kernel.Stale(err) || attempt == probeRetries {
			return err
		}
	}
}

// VerifyRuleset compares the namespace with a ruleset built elsewhere
// (another profile), as Verify does for the sidecar configuration.
func VerifyRuleset(ctx context.Context, ns *Namespace, rs *translate.Ruleset) (*Report, error) {
	k := &realKernel{ns: ns}
	defer k.Close()
	d, err := drift(k, rs)
	if err != nil {
		return nil, err
	}
	return &Report{Drift: d}, nil
}

// ReconcileRuleset is VerifyRuleset, then a re-apply of rs under the lock
// when anything differs, as Reconcile does.
func ReconcileRuleset(ctx context.Context, ns *Namespace, rs *translate.Ruleset) (*Report, error) {
	k := &realKernel{ns: ns}
	var rep *Report
	err := locked(ctx, k, func() error {
		var err error
		rep, err = reconcile(ctx, k, rs)
		return err
	})
	return rep, err
}
