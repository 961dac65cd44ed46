package main

// Every call into the nfintercept library is in this file.

import (
	"context"
	"errors"

	"github.com/nfintercept/nfintercept"
	"github.com/nfintercept/nfintercept/kernel"
	"github.com/nfintercept/nfintercept/translate"
)

// installed summarises what ADD programmed.
type installed struct {
	Tables, Rules int
}

// request is the library's typed request for the plugin's options. IPv6 is
// decided from the pod's addresses, as istio-iptables does when Istio's
// plugin runs it inside the pod's namespace.
func request(opts translate.Options) (nfintercept.Request, error) {
	cfg, err := opts.Config(translate.HostSystem())
	if err != nil {
		return nfintercept.Request{}, err
	}
	return nfintercept.Request{Config: cfg, IPv6: nfintercept.IPv6Detect}, nil
}

// inNamespace opens the pod's namespace for fn.
func inNamespace(netns string, fn func(*nfintercept.Namespace) error) error {
	ns, err := nfintercept.OpenNamespace(netns)
	if err != nil {
		return err
	}
	defer ns.Close()
	return fn(ns)
}

// program replaces the pod's capture in one transaction.
func program(ctx context.Context, netns string, opts translate.Options) (installed, error) {
	req, err := request(opts)
	if err != nil {
		return installed{}, err
	}
	var s installed
	err = inNamespace(netns, func(ns *nfintercept.Namespace) error {
		res, err := nfintercept.Apply(ctx, ns, req)
		if err != nil {
			return err
		}
		for _, t := range res.Ruleset.Tables {
			s.Tables++
			for _, c := range t.Chains {
				s.Rules += len(c.Rules)
			}
		}
		return nil
	})
	return s, err
}

// verify compares the pod's namespace with what program installs; the
// returned text lists the differences ("" when in sync).
func verify(ctx context.Context, netns string, opts translate.Options) (string, error) {
	req, err := request(opts)
	if err != nil {
		return "", err
	}
	var drift string
	err = inNamespace(netns, func(ns *nfintercept.Namespace) error {
		rep, err := nfintercept.Verify(ctx, ns, req)
		if err != nil {
			return err
		}
		if !rep.InSync() {
			drift = rep.String()
		}
		return nil
	})
	return drift, err
}

// remove deletes everything nfintercept installed in the namespace.
func remove(ctx context.Context, netns string) error {
	return inNamespace(netns, func(ns *nfintercept.Namespace) error { return nfintercept.Cleanup(ctx, ns) })
}

// probeNetlink asks nf_tables for its ruleset generation in the plugin's
// own namespace (read-only) to show that nf_tables netlink works here.
func probeNetlink(_ context.Context) error {
	ns, err := nfintercept.OpenNamespace("/proc/self/ns/net")
	if err != nil {
		return err
	}
	defer ns.Close()
	c, err := kernel.DialNFTables(ns)
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Generation()
	return err
}

// isInputError tells bad input (refused before anything is touched) from
// kernel failures.
func isInputError(err error) bool {
	var in *nfintercept.InputError
	var opt *translate.OptionError
	var ann *translate.AnnotationError
	return errors.As(err, &in) || errors.As(err, &opt) || errors.As(err, &ann)
}
