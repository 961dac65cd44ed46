// Package libtest calls the library the way the command does, from
// istio-iptables options and a namespace path, for the integration suites
// and benchmarks: options validated by translate, the namespace opened once
// per call.
package libtest

import (
	"context"

	"github.com/nfintercept/nfintercept"
	"github.com/nfintercept/nfintercept/kernel"
	"github.com/nfintercept/nfintercept/nft"
	"github.com/nfintercept/nfintercept/translate"
)

// Request is a library request in the CLI's terms.
type Request struct {
	Options translate.Options
	// NetNSPath names the namespace (path or bare name); "" is the
	// current one.
	NetNSPath string
	// System answers user, group and resolv.conf questions; nil: this host.
	System translate.System
	IPv6   nfintercept.IPv6Mode
}

// Library converts the options into the library's request.
func (r Request) Library() (nfintercept.Request, error) {
	sys := r.System
	if sys == nil {
		sys = translate.HostSystem()
	}
	cfg, err := r.Options.Config(sys)
	if err != nil {
		return nfintercept.Request{}, err
	}
	return nfintercept.Request{Config: cfg, IPv6: r.IPv6}, nil
}

// open opens the namespace at path ("" = the current one).
func open(path string) (*nfintercept.Namespace, error) {
	if path == "" {
		path = nfintercept.CurrentNamespace
	}
	return nfintercept.OpenNamespace(path)
}

func with[T any](path string, fn func(*nfintercept.Namespace) (T, error)) (T, error) {
	var zero T
	ns, err := open(path)
	if err != nil {
		return zero, err
	}
	defer ns.Close()
	return fn(ns)
}

// Plan is nfintercept.Plan; with IPv6FromConfig no namespace is opened.
func Plan(r Request) (*nfintercept.Result, error) {
	req, err := r.Library()
	if err != nil {
		return nil, err
	}
	if r.IPv6 == nfintercept.IPv6FromConfig && r.NetNSPath == "" {
		return nfintercept.Plan(context.Background(), nil, req)
	}
	return with(r.NetNSPath, func(ns *nfintercept.Namespace) (*nfintercept.Result, error) {
		return nfintercept.Plan(context.Background(), ns, req)
	})
}

// Apply is nfintercept.Apply.
func Apply(r Request) (*nfintercept.Result, error) {
	req, err := r.Library()
	if err != nil {
		return nil, err
	}
	return with(r.NetNSPath, func(ns *nfintercept.Namespace) (*nfintercept.Result, error) {
		return nfintercept.Apply(context.Background(), ns, req)
	})
}

// Verify is nfintercept.Verify, or Reconcile.
func Verify(r Request, reconcile bool) (*nfintercept.Report, error) {
	req, err := r.Library()
	if err != nil {
		return nil, err
	}
	return with(r.NetNSPath, func(ns *nfintercept.Namespace) (*nfintercept.Report, error) {
		if reconcile {
			return nfintercept.Reconcile(context.Background(), ns, req)
		}
		return nfintercept.Verify(context.Background(), ns, req)
	})
}

// Cleanup is nfintercept.Cleanup.
func Cleanup(path string) error {
	_, err := with(path, func(ns *nfintercept.Namespace) (struct{}, error) {
		return struct{}{}, nfintercept.Cleanup(context.Background(), ns)
	})
	return err
}

// ApplyRuleset is nfintercept.ApplyRuleset.
func ApplyRuleset(path string, rs *translate.Ruleset) error {
	_, err := with(path, func(ns *nfintercept.Namespace) (struct{}, error) {
		return struct{}{}, nfintercept.ApplyRuleset(context.Background(), ns, rs)
	})
	return err
}

// ReplaceTables is the nftables batch alone: rs's tables replace ours,
// without lock or routing.
func ReplaceTables(path string, rs *translate.Ruleset) error {
	_, err := with(path, func(ns *nfintercept.Namespace) (struct{}, error) {
		c, err := kernel.DialNFTables(ns)
		if err != nil {
			return struct{}{}, err
		}
		defer c.Close()
		return struct{}{}, nft.Replace(context.Background(), c, rs, nil)
	})
	return err
}

// ApplyRouting is kernel.ApplyRouting in the namespace at path.
func ApplyRouting(path string, rs *translate.Ruleset) error {
	_, err := with(path, func(ns *nfintercept.Namespace) (struct{}, error) {
		_, err := kernel.ApplyRouting(rs, ns)
		return struct{}{}, err
	})
	return err
}

// Addrs is kernel.Addrs in the namespace at path.
func Addrs(path string) ([]kernel.IfAddr, error) {
	return with(path, kernel.Addrs)
}

// VerifyRulesets compares one snapshot of the namespace's tables, and its
// routing, with each ruleset, to tell which of several it holds.
func VerifyRulesets(path string, rss ...*translate.Ruleset) ([]*nft.Drift, error) {
	return with(path, func(ns *nfintercept.Namespace) ([]*nft.Drift, error) {
		c, err := kernel.DialNFTables(ns)
		if err != nil {
			return nil, err
		}
		defer c.Close()
		r, err := kernel.OpenRouting(ns)
		if err != nil {
			return nil, err
		}
		defer r.Close()
		s, err := nft.Read(c)
		if err != nil {
			return nil, err
		}
		var out []*nft.Drift
		for _, rs := range rss {
			d, err := nft.Compare(rs, s)
			if err != nil {
				return nil, err
			}
			rd, err := r.Diff(rs)
			if err != nil {
				return nil, err
			}
			for _, x := range rd {
				d.AddRouting(x.Missing, x.Object, x.Where, x.Text)
			}
			d.Where = ns.String()
			out = append(out, d)
		}
		return out, nil
	})
}

// OurTables lists the tables with our prefix in the namespace at path (one
// table dump: no sets or rules read).
func OurTables(path string) ([]string, error) {
	return with(path, func(ns *nfintercept.Namespace) ([]string, error) {
		c, err := kernel.DialNFTables(ns)
		if err != nil {
			return nil, err
		}
		defer c.Close()
		return nft.OurTables(c)
	})
}

// With runs fn with the namespace at path opened ("" = the current one).
func With(path string, fn func(context.Context, *nfintercept.Namespace) error) error {
	_, err := with(path, func(ns *nfintercept.Namespace) (struct{}, error) {
		return struct{}{}, fn(context.Background(), ns)
	})
	return err
}
