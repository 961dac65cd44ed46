package translate

import (
	"net/netip"
	"reflect"
	"testing"
)

func TestNameservers(t *testing.T) {
	addrs := func(ss ...string) []netip.Addr {
		var l []netip.Addr
		for _, s := range ss {
			l = append(l, netip.MustParseAddr(s))
		}
		return l
	}
	for _, tc := range []struct {
		name   string
		in     string
		v4, v6 []netip.Addr
	}{
		{"empty", "", nil, nil},
		{"one of each", "nameserver 10.96.0.10\nnameserver fd00::a\n", addrs("10.96.0.10"), addrs("fd00::a")},
		{"order and duplicates kept", "nameserver 1.1.1.1\nnameserver 8.8.8.8\nnameserver 1.1.1.1\n", addrs("1.1.1.1", "8.8.8.8", "1.1.1.1"), nil},
		{"comments", "# nameserver 1.1.1.1\n; nameserver 2.2.2.2\n  #nameserver 3.3.3.3\nnameserver 4.4.4.4 # trailing\n", addrs("4.4.4.4"), nil},
		{"other keywords", "search a.b c.d\noptions ndots:5\ndomain x\nnameserver 9.9.9.9\n", addrs("9.9.9.9"), nil},
		{"whitespace and CRLF", "\tnameserver   5.5.5.5 \r\nnameserver\t6.6.6.6\r\n", addrs("5.5.5.5", "6.6.6.6"), nil},
		{"no address", "nameserver\nnameserver \n", nil, nil},
		{"unparsable dropped", "nameserver dns.example\nnameserver 300.1.1.1\nnameserver 7.7.7.7\n", addrs("7.7.7.7"), nil},
		{"zoned dropped", "nameserver fe80::1%eth0\nnameserver fe80::2\n", nil, addrs("fe80::2")},
		{"mapped is IPv6", "nameserver ::ffff:10.0.0.1\n", nil, addrs("::ffff:10.0.0.1")},
		{"keyword is case sensitive", "Nameserver 1.2.3.4\nnameservers 1.2.3.5\n", nil, nil},
		{"no final newline", "nameserver 1.2.3.4", addrs("1.2.3.4"), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v4, v6 := Nameservers([]byte(tc.in))
			if !reflect.DeepEqual(v4, tc.v4) || !reflect.DeepEqual(v6, tc.v6) {
				t.Errorf("got %v %v, want %v %v", v4, v6, tc.v4, tc.v6)
			}
		})
	}
	// Canonical form: istio-iptables re-prints resolvers via netip.
	_, v6 := Nameservers([]byte("nameserver ::127.0.0.53\n"))
	if len(v6) != 1 || v6[0].String() != "::7f00:35" {
		t.Errorf("::127.0.0.53 printed as %v, want ::7f00:35", v6)
	}
}
