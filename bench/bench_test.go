package bench

import (
	"fmt"
	"os"
	"testing"

	"github.com/nfintercept/nfintercept"
	"github.com/nfintercept/nfintercept/compat"
	"github.com/nfintercept/nfintercept/internal/libtest"
	"github.com/nfintercept/nfintercept/nft"
	"github.com/nfintercept/nfintercept/translate"
)

// Go benchmarks of the in-process pieces. They assert nothing about
// timing; run with: go test -run '^$' -bench . ./bench
// (root: the Apply benchmarks create network namespaces).

func requireRoot(b *testing.B) {
	b.Helper()
	if os.Geteuid() != 0 {
		b.Skip("needs root to create network namespaces")
	}
}

// podNS is a namespace with a global IPv4 and IPv6 address, so dual-stack
// detection enables IPv6 as in a real pod.
func podNS(b *testing.B) *NS {
	b.Helper()
	requireRoot(b)
	ns, err := NewNS("gob")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := ns.Close(); err != nil {
			b.Error(err)
		}
	})
	if err := AddPodAddrs(ns); err != nil {
		b.Fatal(err)
	}
	return ns
}

func mustOptions(b *testing.B, args []string) translate.Options {
	b.Helper()
	o, err := Options(args)
	if err != nil {
		b.Fatal(err)
	}
	return o
}

var cidrCounts = []int{1, 100, 1_000, 10_000, 100_000}

// BenchmarkApply is the library entry point (nfintercept.Apply) applying
// the default ruleset again over itself (in sync after the first: nothing
// sent), then with n exclude CIDRs (replaced past nft.MaxUpdateSetItems).
func BenchmarkApply(b *testing.B) {
	ns := podNS(b)
	run := func(b *testing.B, args []string) {
		req := libtest.Request{Options: mustOptions(b, args), NetNSPath: ns.Path}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := libtest.Apply(req); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("default", func(b *testing.B) { run(b, DefaultArgs) })
	for _, n := range cidrCounts {
		b.Run(fmt.Sprintf("cidrs=%d", n), func(b *testing.B) { run(b, ArgsWithExcludes(RandomCIDRs(n, 1))) })
	}
}

// BenchmarkPlan is options → rule model, with IPv6 detected from the
// namespace (detect) or taken from --dual-stack (offline).
func BenchmarkPlan(b *testing.B) {
	ns := podNS(b)
	for _, mode := range []struct {
		name string
		m    nfintercept.IPv6Mode
	}{{"detect", nfintercept.IPv6Detect}, {"offline", nfintercept.IPv6FromConfig}} {
		b.Run(mode.name, func(b *testing.B) {
			req := libtest.Request{Options: mustOptions(b, DefaultArgs), NetNSPath: ns.Path, IPv6: mode.m}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := libtest.Plan(req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkConfig is option validation alone (user lookups, lists).
func BenchmarkConfig(b *testing.B) {
	for _, n := range []int{0, 100_000} {
		args := DefaultArgs
		if n > 0 {
			args = ArgsWithExcludes(RandomCIDRs(n, 1))
		}
		b.Run(fmt.Sprintf("cidrs=%d", n), func(b *testing.B) {
			o := mustOptions(b, args)
			sys := translate.HostSystem()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := o.Config(sys); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func config(b *testing.B, args []string) translate.Config {
	b.Helper()
	c, err := mustOptions(b, args).Config(translate.HostSystem())
	if err != nil {
		b.Fatal(err)
	}
	c.EnableIPv6 = true
	return c
}

// BenchmarkBuild is the pure translation.
func BenchmarkBuild(b *testing.B) {
	for _, n := range []int{0, 100_000} {
		args := DefaultArgs
		if n > 0 {
			args = ArgsWithExcludes(RandomCIDRs(n, 1))
		}
		b.Run(fmt.Sprintf("cidrs=%d", n), func(b *testing.B) {
			c := config(b, args)
			b.ReportAllocs()
			for b.Loop() {
				translate.Build(c)
			}
		})
	}
}

// BenchmarkNftApply is the netlink transaction alone.
func BenchmarkNftApply(b *testing.B) {
	ns := podNS(b)
	for _, n := range []int{0, 10_000, 100_000} {
		args := DefaultArgs
		if n > 0 {
			args = ArgsWithExcludes(RandomCIDRs(n, 1))
		}
		b.Run(fmt.Sprintf("cidrs=%d", n), func(b *testing.B) {
			rs := translate.Build(config(b, args))
			b.ReportAllocs()
			for b.Loop() {
				if err := libtest.ReplaceTables(ns.Path, rs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkApplyRouting is the policy-routing reconcile (REDIRECT: only
// checks, and ::6 on lo).
func BenchmarkApplyRouting(b *testing.B) {
	ns := podNS(b)
	rs := translate.Build(config(b, DefaultArgs))
	b.ReportAllocs()
	for b.Loop() {
		if err := libtest.ApplyRouting(ns.Path, rs); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRender is the two text renderings the baselines load.
func BenchmarkRender(b *testing.B) {
	rs := translate.Build(config(b, ArgsWithExcludes(RandomCIDRs(10_000, 1))))
	b.Run("nft", func(b *testing.B) {
		for b.Loop() {
			if _, err := nft.Text(rs); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("iptables", func(b *testing.B) {
		for b.Loop() {
			compat.Restore(rs, translate.IPv4)
		}
	})
}

// BenchmarkNftApplyFresh applies into a namespace without our tables (the
// cleanup is not timed).
func BenchmarkNftApplyFresh(b *testing.B) {
	ns := podNS(b)
	for _, n := range []int{0, 10_000, 100_000} {
		args := DefaultArgs
		if n > 0 {
			args = ArgsWithExcludes(RandomCIDRs(n, 1))
		}
		b.Run(fmt.Sprintf("cidrs=%d", n), func(b *testing.B) {
			rs := translate.Build(config(b, args))
			for b.Loop() {
				b.StopTimer()
				if err := libtest.Cleanup(ns.Path); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if err := libtest.ReplaceTables(ns.Path, rs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAddrs is the address scan IPv6 detection needs: one dump
// (kernel.Addrs) against the link list plus per-link, per-family address
// lists of the vishvananda handle.
func BenchmarkAddrs(b *testing.B) {
	ns := podNS(b)
	b.Run("kernel.Addrs", func(b *testing.B) {
		for b.Loop() {
			if _, err := libtest.Addrs(ns.Path); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Plan-with-detection", func(b *testing.B) {
		detect := libtest.Request{Options: mustOptions(b, DefaultArgs), NetNSPath: ns.Path}
		for b.Loop() {
			if _, err := libtest.Plan(detect); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkApplyFresh is nfintercept.Apply of the default configuration
// into a namespace without rules, as for a new pod (reset not timed).
func BenchmarkApplyFresh(b *testing.B) {
	ns := podNS(b)
	req := libtest.Request{Options: mustOptions(b, DefaultArgs), NetNSPath: ns.Path}
	for b.Loop() {
		b.StopTimer()
		if err := libtest.Cleanup(ns.Path); err != nil {
			b.Fatal(err)
		}
		settle(nil)
		b.StartTimer()
		if _, err := libtest.Apply(req); err != nil {
			b.Fatal(err)
		}
	}
}
