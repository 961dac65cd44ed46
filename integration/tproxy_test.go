package integration

import (
	"strings"
	"testing"

	"github.com/nfintercept/nfintercept"
	"github.com/nfintercept/nfintercept/integration/harness"
)

// TestTProxyFlows installs the base configuration in TPROXY mode: inbound
// connections reach the transparent listener with their destination intact
// (policy routing by mark), everything else behaves as in REDIRECT mode.
func TestTProxyFlows(t *testing.T) {
	for _, dual := range []bool{false, true} {
		name := "ipv4-only"
		if dual {
			name = "dual-stack"
		}
		t.Run(name, func(t *testing.T) {
			p := harness.NewPair(t, harness.PairOptions{})
			startListeners(t, p)
			o := baseOptions(dual)
			o.InboundInterceptionMode = "TPROXY"
			req := nfintercept.Request{Options: o, NetNSPath: p.PodPath, System: fakeSystem{resolvConf}}
			if _, err := nfintercept.Apply(req); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			// Unlike istio-iptables (EEXIST on its ip rule), re-applying
			// succeeds and changes nothing.
			first := nftList(t, p.Pod, "ruleset")
			rules := harness.InNS(t, p.Pod, "ip", "rule", "show")
			if _, err := nfintercept.Apply(req); err != nil {
				t.Fatalf("second Apply: %v", err)
			}
			if again := nftList(t, p.Pod, "ruleset"); again != first {
				t.Errorf("second Apply changed the ruleset:\n--- first\n%s\n--- second\n%s", first, again)
			}
			if again := harness.InNS(t, p.Pod, "ip", "rule", "show"); again != rules {
				t.Errorf("second Apply changed the policy rules:\n--- first\n%s\n--- second\n%s", rules, again)
			}
			checkPolicyRouting(t, p, "-4", true)
			checkPolicyRouting(t, p, "-6", dual)
			checkPassthroughV6(t, p, dual)
			checkFlows(t, p, dual, true)

			if err := nfintercept.Cleanup(p.PodPath); err != nil {
				t.Fatalf("Cleanup: %v", err)
			}
			checkPolicyRouting(t, p, "-4", false)
			checkPolicyRouting(t, p, "-6", false)
		})
	}
}

// TestModeSwitch re-applies a TPROXY namespace in REDIRECT mode: the policy
// routing goes away and inbound connections are redirected again.
func TestModeSwitch(t *testing.T) {
	p := harness.NewPair(t, harness.PairOptions{})
	startListeners(t, p)
	o := baseOptions(true)
	o.InboundInterceptionMode = "TPROXY"
	if _, err := nfintercept.Apply(nfintercept.Request{Options: o, NetNSPath: p.PodPath, System: fakeSystem{resolvConf}}); err != nil {
		t.Fatalf("Apply TPROXY: %v", err)
	}
	checkPolicyRouting(t, p, "-6", true)
	if _, err := nfintercept.Apply(nfintercept.Request{Options: baseOptions(true), NetNSPath: p.PodPath, System: fakeSystem{resolvConf}}); err != nil {
		t.Fatalf("Apply REDIRECT: %v", err)
	}
	checkPolicyRouting(t, p, "-4", false)
	checkPolicyRouting(t, p, "-6", false)
	if tables := ownTables(t, p.Pod); contains(tables, "inet nfintercept-mangle") {
		t.Errorf("mangle table left after switching to REDIRECT: %v", tables)
	}
	checkFlows(t, p, true, false)
}

// checkPolicyRouting checks for the TPROXY routing of one family (ip -4 or
// -6): "fwmark 0x539 lookup 133" and a local default route in table 133.
func checkPolicyRouting(t *testing.T, p *harness.Pair, fam string, want bool) {
	t.Helper()
	rules := harness.InNS(t, p.Pod, "ip", fam, "rule", "show")
	routes := harness.InNS(t, p.Pod, "ip", fam, "route", "show", "table", "all")
	hasRule := strings.Contains(rules, "fwmark 0x539 lookup 133")
	hasRoute := false
	for _, line := range strings.Split(routes, "\n") {
		if strings.HasPrefix(line, "local default dev lo table 133") {
			hasRoute = true
		}
	}
	if hasRule != want || hasRoute != want {
		t.Errorf("ip %s: fwmark rule present %v, local route present %v, want %v\nrules:\n%s\nroutes:\n%s",
			fam, hasRule, hasRoute, want, rules, routes)
	}
}
