package nft

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/nfintercept/nfintercept/translate"
)

func TestMergePrefixes(t *testing.T) {
	tests := []struct {
		name string
		v4   bool
		in   []string
		want []string // "first-last"
	}{
		{"empty", true, nil, nil},
		{"single", true, []string{"10.0.0.0/8"}, []string{"10.0.0.0-10.255.255.255"}},
		{"host bits masked", true, []string{"10.1.2.3/16"}, []string{"10.1.0.0-10.1.255.255"}},
		{"host address", true, []string{"192.168.1.1/32"}, []string{"192.168.1.1-192.168.1.1"}},
		{"duplicates", true, []string{"10.0.0.0/24", "10.0.0.0/24", "10.0.0.7/24"}, []string{"10.0.0.0-10.0.0.255"}},
		{"nested", true, []string{"10.1.0.0/16", "10.0.0.0/8", "10.2.3.4/32"}, []string{"10.0.0.0-10.255.255.255"}},
		{"overlap partial", true, []string{"10.0.0.0/23", "10.0.1.0/24", "10.0.2.0/24"}, []string{"10.0.0.0-10.0.2.255"}},
		{"adjacent coalesced", true, []string{"10.0.1.0/24", "10.0.0.0/24"}, []string{"10.0.0.0-10.0.1.255"}},
		{"gap kept", true, []string{"10.0.2.0/24", "10.0.0.0/24"}, []string{"10.0.0.0-10.0.0.255", "10.0.2.0-10.0.2.255"}},
		{"unsorted", true, []string{"192.168.0.0/16", "1.1.1.1/32", "172.16.0.0/12"},
			[]string{"1.1.1.1-1.1.1.1", "172.16.0.0-172.31.255.255", "192.168.0.0-192.168.255.255"}},
		{"slash zero", true, []string{"10.0.0.0/8", "0.0.0.0/0", "255.255.255.255/32"}, []string{"0.0.0.0-255.255.255.255"}},
		{"top of range", true, []string{"255.255.255.255/32", "240.0.0.0/4", "224.0.0.0/4"}, []string{"224.0.0.0-255.255.255.255"}},
		{"bottom and top", true, []string{"0.0.0.0/8", "255.0.0.0/8"}, []string{"0.0.0.0-0.255.255.255", "255.0.0.0-255.255.255.255"}},
		{"v6 overlap and host bits", false, []string{"fd00::1/8", "fd00:1::/32", "2001:db8::/32", "2001:db9::/32"},
			[]string{"2001:db8::-2001:db9:ffff:ffff:ffff:ffff:ffff:ffff", "fd00::-fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"}},
		{"v6 /64 boundary carry", false, []string{"::/64", "0:0:0:1::/64"}, []string{"::-::1:ffff:ffff:ffff:ffff"}},
		{"v6 top", false, []string{"ffff::/16", "::/0"}, []string{"::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"}},
		{"v6 single", false, []string{"::1/128", "::1/128"}, []string{"::1-::1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ps []netip.Prefix
			for _, s := range tt.in {
				ps = append(ps, netip.MustParsePrefix(s))
			}
			ivs, err := MergePrefixes(ps, tt.v4)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, iv := range ivs {
				got = append(got, iv.First.String()+"-"+iv.Last.String())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("MergePrefixes(%v)\n got %v\nwant %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestMergePrefixesWrongFamily(t *testing.T) {
	if _, err := MergePrefixes([]netip.Prefix{netip.MustParsePrefix("::1/128")}, true); err == nil {
		t.Error("IPv6 prefix in an IPv4 list accepted")
	}
	if _, err := MergePrefixes([]netip.Prefix{{}}, true); err == nil {
		t.Error("invalid prefix accepted")
	}
}

func TestIntervalPrefixesAndText(t *testing.T) {
	tests := []struct {
		first, last string
		prefixes    string
		text        string
	}{
		{"10.0.0.0", "10.255.255.255", "10.0.0.0/8", "10.0.0.0/8"},
		{"10.0.0.1", "10.0.0.1", "10.0.0.1/32", "10.0.0.1"},
		{"10.0.1.0", "10.0.2.255", "10.0.1.0/24 10.0.2.0/24", "10.0.1.0-10.0.2.255"},
		{"10.0.0.1", "10.0.0.6", "10.0.0.1/32 10.0.0.2/31 10.0.0.4/31 10.0.0.6/32", "10.0.0.1-10.0.0.6"},
		{"0.0.0.0", "255.255.255.255", "0.0.0.0/0", "0.0.0.0/0"},
		{"128.0.0.0", "255.255.255.255", "128.0.0.0/1", "128.0.0.0/1"},
		{"::", "::1:ffff:ffff:ffff:ffff", "::/63", "::/63"},
		{"fd00::", "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "fd00::/8", "fd00::/8"},
		{"::6", "::6", "::6/128", "::6"},
		{"::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "::/0", "::/0"},
		{"::ffff", "::1:0", "::ffff/128 ::1:0/128", "::ffff-::1:0"},
	}
	for _, tt := range tests {
		iv := Interval{netip.MustParseAddr(tt.first), netip.MustParseAddr(tt.last)}
		var ps []string
		for _, p := range iv.Prefixes() {
			ps = append(ps, p.String())
		}
		if got := strings.Join(ps, " "); got != tt.prefixes {
			t.Errorf("%s-%s: prefixes %q, want %q", tt.first, tt.last, got, tt.prefixes)
		}
		if got := iv.String(); got != tt.text {
			t.Errorf("%s-%s: text %q, want %q", tt.first, tt.last, got, tt.text)
		}
	}
}

func TestMergePorts(t *testing.T) {
	tests := []struct {
		in   []translate.Port
		want string
	}{
		{[]translate.Port{port(80)}, "80"},
		{[]translate.Port{port(443), port(80), port(443)}, "80 443"},
		{[]translate.Port{port(80), port(81), port(82)}, "80-82"},
		{[]translate.Port{portRng(8000, 9000), port(8080), portRng(8500, 9500)}, "8000-9500"},
		{[]translate.Port{portRng(9001, 9002), portRng(8000, 9000)}, "8000-9002"},
		{[]translate.Port{portRng(60000, 65535), port(65535), port(1)}, "1 60000-65535"},
		{[]translate.Port{{Raw: "53", From: 53}}, "53"}, // To == 0: single port
		{[]translate.Port{port(0), port(1)}, "0-1"},
	}
	for _, tt := range tests {
		var got []string
		for _, r := range mergePorts(tt.in) {
			got = append(got, r.String())
		}
		if g := strings.Join(got, " "); g != tt.want {
			t.Errorf("mergePorts(%v) = %q, want %q", tt.in, g, tt.want)
		}
	}
}

// TestSetElements checks the kernel encoding of interval sets: start key,
// end key = last+1 flagged IntervalEnd, no end past the top.
func TestSetElements(t *testing.T) {
	s, err := newSetRef(prefixSet("x", true, "10.0.0.0/8", "240.0.0.0/4"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range s.elements() {
		a, _ := netip.AddrFromSlice(e.Key)
		got = append(got, fmt.Sprintf("%s/%v", a, e.IntervalEnd))
	}
	want := []string{"10.0.0.0/false", "11.0.0.0/true", "240.0.0.0/false"}
	if !slices.Equal(got, want) {
		t.Errorf("elements %v, want %v", got, want)
	}
}
