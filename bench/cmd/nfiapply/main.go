// Command nfiapply is the apply path of cmd/nfintercept with its
// istio-iptables arguments read from stdin, one per line, the way a CNI
// plugin receives its configuration. The benchmarks use it for exclude
// lists longer than one argv string may be (128 KiB on Linux), so a whole
// process can still be measured with 10,000 and 100,000 CIDRs.
package main

import (
	"bufio"
	"fmt"
	"os"

	"github.com/spf13/pflag"

	"github.com/nfintercept/nfintercept/cmd/nfintercept/istioflags"
	"github.com/nfintercept/nfintercept/internal/libtest"
	"github.com/nfintercept/nfintercept/translate"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "nfiapply: "+err.Error())
		os.Exit(1)
	}
}

func run() error {
	var args []string
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		args = append(args, sc.Text())
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read arguments: %w", err)
	}
	fs := pflag.NewFlagSet("nfiapply", pflag.ContinueOnError)
	opts := translate.DefaultOptions()
	istioflags.Add(fs, &opts, os.LookupEnv)
	if err := fs.Parse(args); err != nil {
		return err
	}
	opts.LoadEnvOnly(os.LookupEnv)
	// A benchmark tool: never the namespace it happens to run in.
	if opts.NetworkNamespace == "" {
		return fmt.Errorf("--network-namespace is required")
	}
	res, err := libtest.Apply(libtest.Request{Options: opts, NetNSPath: opts.NetworkNamespace})
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "nfiapply: applied %d tables (%s)\n", len(res.Ruleset.Tables), res.Ruleset.Families)
	return nil
}
