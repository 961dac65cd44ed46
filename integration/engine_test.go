package integration

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/nfintercept/nfintercept/integration/harness"
	"github.com/nfintercept/nfintercept/internal/libtest"
	"github.com/nfintercept/nfintercept/translate"
)

// fakeSystem answers with a fixed resolv.conf and no named users/groups, so
// library tests do not depend on this machine's files.
type fakeSystem struct{ resolv string }

func (fakeSystem) LookupUser(name string) (uint32, error) {
	return 0, fmt.Errorf("no user %q in the test system", name)
}

func (fakeSystem) LookupGroup(name string) (uint32, error) {
	return 0, fmt.Errorf("no group %q in the test system", name)
}

func (s fakeSystem) ReadResolvConf() ([]byte, error) { return []byte(s.resolv), nil }

// baseOptions is baseFlags as library options.
func baseOptions(dualStack bool) translate.Options {
	o := translate.DefaultOptions()
	o.EnvoyPort = "15001"
	o.InboundCapturePort = "15006"
	o.ProxyUID = "1337"
	o.InboundInterceptionMode = "REDIRECT"
	o.OutboundIPRangesInclude = "*"
	o.OutboundIPRangesExclude = "10.245.0.0/16,2001:db8:3::/64"
	o.InboundPortsInclude = "*"
	o.InboundPortsExclude = "15090,15021,15020"
	o.OutboundPortsExclude = "9999"
	o.RedirectDNS = true
	o.DualStack = dualStack
	return o
}

// TestEngineFlows installs the base configuration through the library and
// checks where real connections land. Without --dual-stack IPv6 must be left
// alone entirely, the case Istio's own nftables backend gets wrong.
func TestEngineFlows(t *testing.T) {
	for _, dual := range []bool{false, true} {
		name := "ipv4-only"
		if dual {
			name = "dual-stack"
		}
		t.Run(name, func(t *testing.T) {
			p := harness.NewPair(t, harness.PairOptions{})
			startListeners(t, p)
			res, err := libtest.Apply(libtest.Request{
				Options:   baseOptions(dual),
				NetNSPath: p.PodPath,
				System:    fakeSystem{resolvConf},
			})
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			want := translate.IPv4
			if dual {
				want = translate.BothFamilies
			}
			if res.Ruleset == nil || res.Ruleset.Families != want {
				t.Fatalf("Apply result families: %+v, want %v", res.Ruleset, want)
			}
			checkPassthroughV6(t, p, dual)
			checkFlows(t, p, dual, false)
		})
	}
}

// TestEngineRejects checks that invalid options are refused before the
// kernel is touched, with an error naming the option.
func TestEngineRejects(t *testing.T) {
	p := harness.NewPair(t, harness.PairOptions{})
	if _, err := libtest.Apply(libtest.Request{
		Options: baseOptions(false), NetNSPath: p.PodPath, System: fakeSystem{resolvConf},
	}); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	before := nftList(t, p.Pod, "ruleset")
	for _, c := range []struct {
		long string
		set  func(*translate.Options)
	}{
		{"istio-inbound-ports", func(o *translate.Options) { o.InboundPortsInclude = "abc" }},
		{"istio-service-exclude-cidr", func(o *translate.Options) { o.OutboundIPRangesExclude = "*" }},
		{"istio-service-cidr", func(o *translate.Options) { o.OutboundIPRangesInclude = "10.0.0.0" }},
		{"envoy-port", func(o *translate.Options) { o.EnvoyPort = "99999" }},
		{"istio-local-outbound-ports-exclude", func(o *translate.Options) { o.OutboundPortsExclude = "80,x" }},
	} {
		o := baseOptions(false)
		c.set(&o)
		_, err := libtest.Apply(libtest.Request{Options: o, NetNSPath: p.PodPath, System: fakeSystem{resolvConf}})
		if err == nil {
			t.Errorf("%s: Apply accepted an invalid value", c.long)
			continue
		}
		var oe *translate.OptionError
		if !errors.As(err, &oe) || !strings.Contains(oe.Option, c.long) {
			t.Errorf("%s: error %v does not name the option", c.long, err)
		}
	}
	if after := nftList(t, p.Pod, "ruleset"); after != before {
		t.Errorf("rejected options changed the ruleset:\n--- before\n%s\n--- after\n%s", before, after)
	}
}

// TestEngineCleanup checks that Cleanup removes every table of ours, keeps
// other tables, and is idempotent; and that the namespace carries no
// traffic interception afterwards.
func TestEngineCleanup(t *testing.T) {
	p := harness.NewPair(t, harness.PairOptions{})
	startListeners(t, p)
	harness.InNS(t, p.Pod, "nft", "add table inet keepme")
	keep := nftList(t, p.Pod, "table", "inet", "keepme")
	if _, err := libtest.Apply(libtest.Request{
		Options: baseOptions(true), NetNSPath: p.PodPath, System: fakeSystem{resolvConf},
	}); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if len(ownTables(t, p.Pod)) == 0 {
		t.Fatalf("no nfintercept table after Apply")
	}
	for i := 0; i < 2; i++ {
		if err := libtest.Cleanup(p.PodPath); err != nil {
			t.Fatalf("Cleanup #%d: %v", i+1, err)
		}
	}
	if tables := ownTables(t, p.Pod); len(tables) != 0 {
		t.Errorf("tables left after Cleanup: %v", tables)
	}
	if lo := harness.InNS(t, p.Pod, "ip", "-6", "addr", "show", "dev", "lo"); strings.Contains(lo, " ::6/128 ") {
		t.Errorf("::6/128 left on lo after Cleanup:\n%s", lo)
	}
	if after := nftList(t, p.Pod, "table", "inet", "keepme"); after != keep {
		t.Errorf("Cleanup changed table inet keepme:\n%s", after)
	}
	for _, dst := range []string{"198.51.100.7:80", "[2001:db8:2::7]:80"} {
		r := harness.Run(t, p.PodPath, harness.Flow{Proto: "tcp", Dst: mustAddrPort(dst), UID: appUID, GID: appUID})
		if r.Err != nil || r.Tag != tagPeer {
			t.Errorf("after Cleanup, app -> %s: %+v, want the peer", dst, r)
		}
	}
}
