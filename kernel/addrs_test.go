package kernel

import (
	"encoding/json"
	"net/netip"
	"os/exec"
	"slices"
	"testing"
)

// TestAddrs: one dump lists what `ip -j addr` shows, in interface order,
// IPv4 before IPv6 on each interface.
func TestAddrs(t *testing.T) {
	ns, path := routingNS(t)
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"link", "add", "b0", "type", "veth", "peer", "name", "a0"},
		{"link", "set", "a0", "up"},
		{"link", "set", "b0", "up"},
		{"addr", "add", "2001:db8::2/64", "dev", "a0", "nodad"},
		{"addr", "add", "192.0.2.2/24", "dev", "a0"},
		{"addr", "add", "198.51.100.9/32", "dev", "a0"},
		{"addr", "add", "10.1.0.1/16", "dev", "b0"},
		{"addr", "add", "10.9.0.1", "peer", "10.9.0.2", "dev", "b0"},
	} {
		if out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	got, err := Addrs(openNS(t, path))
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ip", "-n", ns, "-j", "addr").Output()
	if err != nil {
		t.Fatal(err)
	}
	type link struct {
		Index    int `json:"ifindex"`
		AddrInfo []struct {
			Family string `json:"family"`
			Local  string `json:"local"`
			Len    int    `json:"prefixlen"`
		} `json:"addr_info"`
	}
	var links []link
	if err := json.Unmarshal(out, &links); err != nil {
		t.Fatal(err)
	}
	var want []IfAddr
	slices.SortStableFunc(links, func(a, b link) int { return a.Index - b.Index })
	for _, l := range links {
		for _, fam := range []string{"inet", "inet6"} {
			for _, a := range l.AddrInfo {
				if a.Family == fam {
					want = append(want, IfAddr{Index: l.Index, Addr: netip.MustParseAddr(a.Local), Bits: a.Len})
				}
			}
		}
	}
	if len(want) < 8 {
		t.Fatalf("ip lists only %d addresses: %s", len(want), out)
	}
	if !slices.Equal(got, want) {
		t.Errorf("Addrs:\n%v\nip -j addr:\n%v", got, want)
	}
}
