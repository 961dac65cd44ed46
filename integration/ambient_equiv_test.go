package integration

import (
	"strings"
	"testing"

	"github.com/nfintercept/nfintercept/integration/equiv"
	"github.com/nfintercept/nfintercept/integration/harness"
	"github.com/nfintercept/nfintercept/translate"
)

func ambientEquivCases() []equiv.AmbientCase {
	vifs := []translate.Iface{"fake1s0f0"}
	return []equiv.AmbientCase{
		{Name: "default-dualstack", Config: translate.AmbientPodConfig{Node: ambientNode(true, true)}},
		{Name: "ipv4-dns-off-vif", Config: translate.AmbientPodConfig{Node: ambientNode(false, false),
			Pod: translate.PodOverrides{VirtualInterfaces: vifs}}},
		{Name: "ingress-vif-dns-by-annotation", Config: translate.AmbientPodConfig{Node: ambientNode(true, false),
			Pod: translate.PodOverrides{IngressMode: true, DNS: translate.DNSEnabled, VirtualInterfaces: vifs}}},
	}
}

// TestEquivalenceAmbient: the ambient in-pod profile's nft rules and its
// iptables view (loaded with iptables-nft and iptables-legacy, plus Istio's
// ip rule and route) decide every flow the same way.
func TestEquivalenceAmbient(t *testing.T) {
	harness.RequireRoot(t)
	for _, c := range ambientEquivCases() {
		t.Run(c.Name, func(t *testing.T) {
			t.Parallel()
			res := equiv.CompareAmbient(t, c, equivOptions())
			report(t, res)
			// Not vacuous: the reference twin captured and passed traffic.
			seen := map[string]bool{}
			for i := range res.Flows {
				seen[res.Decisions[i][equiv.BackendNft].Tag] = true
			}
			for _, tag := range []string{equiv.TagOutbound, equiv.TagHBONE, "peer", "app:8080"} {
				if !seen[tag] {
					t.Errorf("no flow reached %q: %s", tag, res.Summary())
				}
			}
		})
	}
}

// TestEquivalenceAmbientDetectsDifference drops the inbound redirect from
// the iptables view: the comparison must notice.
func TestEquivalenceAmbientDetectsDifference(t *testing.T) {
	harness.RequireRoot(t)
	opts := equivOptions()
	opts.Backends = []equiv.Backend{equiv.BackendNft, equiv.BackendIptablesNft}
	opts.Mutate = func(_ equiv.Backend, _ translate.Family, text string) string {
		var keep []string
		for _, l := range strings.Split(text, "\n") {
			if !strings.Contains(l, "--to-ports 15006") {
				keep = append(keep, l)
			}
		}
		return strings.Join(keep, "\n")
	}
	res := equiv.CompareAmbient(t, ambientEquivCases()[0], opts)
	if len(res.Differences) == 0 {
		t.Fatalf("dropping the inbound redirect went unnoticed: %s", res.Summary())
	}
}
