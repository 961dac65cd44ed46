package bench

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netns"

	"github.com/nfintercept/nfintercept"
	"github.com/nfintercept/nfintercept/compat"
	"github.com/nfintercept/nfintercept/internal/libtest"
	"github.com/nfintercept/nfintercept/nft"
	"github.com/nfintercept/nfintercept/translate"
)

// Sample is one timed apply.
type Sample struct {
	Wall time.Duration
	// Part is the IPv4 share of a two-file iptables apply (0 otherwise).
	Part time.Duration
	// MaxRSSKB is the child's peak resident set (0 for in-process runs).
	MaxRSSKB int64
}

// Method is one way of installing the same ruleset. Reset (not timed)
// brings its namespace back to "nothing installed"; Apply is timed.
type Method struct {
	Name string
	// Skip, when set, says why the method cannot run this workload.
	Skip  string
	Reset func(ns *NS) error
	Apply func(ns *NS) (Sample, error)
}

// Workload is one configuration and everything the methods load for it.
type Workload struct {
	Label string
	Args  []string // istio-iptables arguments (without --network-namespace)
	// FileArgs is Args with the -x list read from a file (-x @PATH), the
	// way lists longer than one argv string reach the CLI.
	FileArgs []string
	Opts     translate.Options
	Dir      string // holds the rendered files
	// Files rendered from the same rule model as `nfintercept render`.
	NftFile, IPv4File, IPv6File string
	Rules4, Rules6              int // lines of the iptables view
}

// Tools are the binaries the process methods run.
type Tools struct {
	// CLI is the nfintercept binary (cmd/nfintercept).
	CLI string
	// CLICgo, when set, is the same binary built with cgo (dynamically
	// linked), measured on the default configuration only.
	CLICgo string
}

// maxArg is Linux's limit on one argv string (MAX_ARG_STRLEN, 32 pages).
const maxArg = 32*4096 - 1

// NewWorkload renders the files for args under dir.
func NewWorkload(label string, args []string, dir string) (*Workload, error) {
	opts, err := Options(args)
	if err != nil {
		return nil, err
	}
	// As `nfintercept render` without --network-namespace: IPv6 from
	// --dual-stack.
	res, err := libtest.Plan(libtest.Request{Options: opts, IPv6: nfintercept.IPv6FromConfig})
	if err != nil {
		return nil, fmt.Errorf("plan %s: %w", label, err)
	}
	text, err := nft.Text(res.Ruleset)
	if err != nil {
		return nil, fmt.Errorf("render %s: %w", label, err)
	}
	w := &Workload{Label: label, Args: args, Opts: opts, Dir: dir}
	v4 := compat.Restore(res.Ruleset, translate.IPv4)
	v6 := compat.Restore(res.Ruleset, translate.IPv6)
	w.Rules4, w.Rules6 = strings.Count(v4, "\n-A "), strings.Count(v6, "\n-A ")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if w.FileArgs, err = WriteListFile(args, "-x", filepath.Join(dir, "exclude.txt")); err != nil {
		return nil, err
	}
	for _, f := range []struct {
		path *string
		name string
		text string
	}{{&w.NftFile, "ruleset.nft", text}, {&w.IPv4File, "iptables-v4.txt", v4}, {&w.IPv6File, "iptables-v6.txt", v6}} {
		*f.path = filepath.Join(dir, f.name)
		if err := os.WriteFile(*f.path, []byte(f.text), 0o644); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// WriteListFile writes the value of option opt in args to path, one item
// a line, and returns args with that value replaced by @path.
func WriteListFile(args []string, opt, path string) ([]string, error) {
	out := slices.Clone(args)
	for i := 0; i+1 < len(out); i++ {
		if out[i] == opt {
			if err := os.WriteFile(path, []byte(strings.ReplaceAll(out[i+1], ",", "\n")+"\n"), 0o644); err != nil {
				return nil, err
			}
			out[i+1] = "@" + path
			return out, nil
		}
	}
	return nil, fmt.Errorf("no %s in %q", opt, args)
}

// CheckRender compares the library rendering used here with the output of
// the binary's render command for the same arguments.
func (w *Workload) CheckRender(cli string) error {
	for _, c := range []struct {
		file  string
		extra []string
	}{
		{w.NftFile, nil},
		{w.IPv4File, []string{"--format", "iptables", "--family", "ipv4"}},
		{w.IPv6File, []string{"--format", "iptables", "--family", "ipv6"}},
	} {
		out, err := exec.Command(cli, append(append([]string{"render"}, c.extra...), w.Args...)...).Output()
		if err != nil {
			return fmt.Errorf("%s render: %w", cli, err)
		}
		want, err := os.ReadFile(c.file)
		if err != nil {
			return err
		}
		if !bytes.Equal(out, want) {
			return fmt.Errorf("%s differs from `nfintercept render %s`", filepath.Base(c.file), strings.Join(c.extra, " "))
		}
	}
	return nil
}

// Methods lists every method for w, in report order.
func Methods(w *Workload, tools Tools) []Method {
	cliArgs := append(append([]string{"apply"}, w.Args...), "--network-namespace")
	tooLong := ""
	for _, a := range w.Args {
		if len(a) > maxArg {
			tooLong = fmt.Sprintf("an argument of %d bytes exceeds the kernel's %d-byte argv limit", len(a), maxArg)
		}
	}
	nfReset := func(ns *NS) error { return settle(libtest.Cleanup(ns.Path)) }
	cli := func(bin string) func(ns *NS) (Sample, error) {
		return func(ns *NS) (Sample, error) { return runIn(ns, nil, bin, append(cliArgs, ns.Path)...) }
	}
	ms := []Method{
		{
			Name:  MLibrary,
			Reset: nfReset,
			Apply: func(ns *NS) (Sample, error) {
				req := libtest.Request{Options: w.Opts, NetNSPath: ns.Path}
				start := time.Now()
				_, err := libtest.Apply(req)
				return Sample{Wall: time.Since(start)}, err
			},
		},
		{Name: MProcess, Skip: tooLong, Reset: nfReset, Apply: cli(tools.CLI)},
	}
	if tools.CLICgo != "" {
		ms = append(ms, Method{Name: MCgo, Skip: tooLong, Reset: nfReset, Apply: cli(tools.CLICgo)})
	}
	return append(ms, []Method{
		{
			Name:  MFile,
			Reset: nfReset,
			Apply: func(ns *NS) (Sample, error) {
				return runIn(ns, nil, tools.CLI, append(append([]string{"apply"}, w.FileArgs...), "--network-namespace", ns.Path)...)
			},
		},
		{
			Name:  MNft,
			Reset: nfReset,
			Apply: func(ns *NS) (Sample, error) { return runIn(ns, nil, "nft", "-f", w.NftFile) },
		},
		{
			Name:  MIptNft,
			Reset: flushNftables,
			Apply: func(ns *NS) (Sample, error) {
				return restorePair(ns, "iptables-nft-restore", "ip6tables-nft-restore", w)
			},
		},
		{
			Name:  MIptLegacy,
			Reset: flushLegacy,
			Apply: func(ns *NS) (Sample, error) {
				return restorePair(ns, "iptables-legacy-restore", "ip6tables-legacy-restore", w)
			},
		},
	}...)
}

// restorePair loads the IPv4 view, then the IPv6 view (when IPv6 has
// rules), each with its own process, as istio-iptables does.
func restorePair(ns *NS, v4tool, v6tool string, w *Workload) (Sample, error) {
	s4, err := runIn(ns, nil, v4tool, w.IPv4File)
	if err != nil || w.Rules6 == 0 {
		return s4, err
	}
	s6, err := runIn(ns, nil, v6tool, w.IPv6File)
	return Sample{Wall: s4.Wall + s6.Wall, Part: s4.Wall, MaxRSSKB: max(s4.MaxRSSKB, s6.MaxRSSKB)}, err
}

// runIn starts a process from a thread inside ns (so the process lives
// there) and times it from fork to reaping.
func runIn(ns *NS, stdin []byte, name string, args ...string) (Sample, error) {
	s, _, err := runInOutput(ns, stdin, name, args...)
	return s, err
}

// runInOutput is runIn that also returns what the process printed.
func runInOutput(ns *NS, stdin []byte, name string, args ...string) (Sample, string, error) {
	var s Sample
	var out bytes.Buffer
	err := ns.Do(func() error {
		cmd := exec.Command(name, args...)
		cmd.Stdout, cmd.Stderr = &out, &out
		if stdin != nil {
			cmd.Stdin = bytes.NewReader(stdin)
		}
		start := time.Now()
		err := cmd.Run()
		s.Wall = time.Since(start)
		if cmd.ProcessState != nil {
			if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
				s.MaxRSSKB = ru.Maxrss
			}
		}
		if err != nil {
			return fmt.Errorf("%s: %w: %s", name, err, strings.TrimSpace(out.String()))
		}
		return nil
	})
	return s, out.String(), err
}

// settle waits out the RCU grace period the kernel runs after every
// nf_tables commit, so the reset's pending cleanup does not slow the timed
// apply that follows.
func settle(err error) error {
	time.Sleep(30 * time.Millisecond)
	return err
}

// flushNftables removes every nftables table of the namespace (what
// iptables-nft created).
func flushNftables(ns *NS) error {
	h, err := netns.GetFromPath(ns.Path)
	if err != nil {
		return err
	}
	defer h.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(h)))
	if err != nil {
		return err
	}
	c.FlushRuleset()
	return settle(c.Flush())
}

// emptyTables resets the three tables istio-iptables writes.
const emptyTables = "*mangle\nCOMMIT\n*nat\nCOMMIT\n*raw\nCOMMIT\n"

func flushLegacy(ns *NS) error {
	var errs []error
	for _, tool := range []string{"iptables-legacy-restore", "ip6tables-legacy-restore"} {
		err := ns.Do(func() error {
			cmd := exec.Command(tool)
			cmd.Stdin = strings.NewReader(emptyTables)
			if out, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("%s: %w: %s", tool, err, out)
			}
			return nil
		})
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
