package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/pflag"

	"github.com/nfintercept/nfintercept"
	"github.com/nfintercept/nfintercept/translate"
)

// render prints the rules the options describe. Without
// --network-namespace, IPv6 is assumed present exactly when --dual-stack is
// given; with it, the namespace's addresses decide, as for apply.
func render(opts translate.Options, req nfintercept.Request, format, family string, stdout io.Writer) error {
	fam, err := renderFamily(family, format)
	if err != nil {
		return err
	}
	var ns *nfintercept.Namespace
	if opts.NetworkNamespace == "" {
		req.IPv6 = nfintercept.IPv6FromConfig
	} else {
		var err error
		if ns, err = openNamespace(opts.NetworkNamespace); err != nil {
			return err
		}
		defer ns.Close()
	}
	res, err := nfintercept.Plan(context.Background(), ns, req)
	if err != nil {
		return classify(err)
	}
	if format == "nft" {
		if err := res.Config.CheckResolved(); err != nil {
			return errUsage{err}
		}
	}
	return renderRuleset(res.Ruleset, format, fam, stdout)
}

// annotations prints the istio-iptables options Istio's injector derives
// from a pod's annotations.
func annotations(fs *pflag.FlagSet, args []string, stdin io.Reader, stdout io.Writer) error {
	if err := fs.Parse(args); err != nil {
		return errUsage{err}
	}
	in := stdin
	if fs.NArg() > 1 {
		return errUsage{fmt.Errorf("annotations takes at most one FILE, got %q", fs.Args())}
	}
	if fs.NArg() == 1 && fs.Arg(0) != "-" {
		f, err := os.Open(fs.Arg(0))
		if err != nil {
			return errUsage{err}
		}
		defer f.Close()
		in = f
	}
	ann, err := translate.ParseAnnotations(in)
	if err != nil {
		return errUsage{err}
	}
	argv, err := translate.ArgsFromAnnotations(ann)
	if err != nil {
		return errUsage{err}
	}
	quoted := make([]string, len(argv))
	for i, a := range argv {
		quoted[i] = shellQuote(a)
	}
	_, err = fmt.Fprintln(stdout, strings.Join(quoted, " "))
	return err
}

// shellQuote quotes an argument for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:,=") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
