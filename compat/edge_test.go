package compat_test

import (
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/nfintercept/nfintercept/cmd/nfintercept/istioflags"
	"github.com/nfintercept/nfintercept/compat"
	"github.com/nfintercept/nfintercept/translate"
)

func render(t *testing.T, env map[string]string, args ...string) (v4, v6 string) {
	t.Helper()
	getenv := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	opts := translate.DefaultOptions()
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	istioflags.Add(fs, &opts, getenv)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	opts.LoadEnvOnly(getenv)
	cfg, err := opts.Config(corpusSystem{[]byte("nameserver 10.96.0.10\n")})
	if err != nil {
		t.Fatal(err)
	}
	rs := translate.Build(cfg)
	return compat.Restore(rs, translate.IPv4), compat.Restore(rs, translate.IPv6)
}

// Configurations outside the corpus whose istio-iptables output follows
// from SPEC §1.5/§2.1; the expected lines are written out by hand.
func TestEdgeCases(t *testing.T) {
	t.Run("inbound list of separators still installs the jump", func(t *testing.T) {
		v4, _ := render(t, nil, "-b", ",")
		mustContain(t, v4, "-A PREROUTING -p tcp -j ISTIO_INBOUND\n")
		if n := strings.Count(v4, "-A ISTIO_INBOUND "); n != 1 { // only the HBONE return
			t.Errorf("ISTIO_INBOUND has %d rules, want 1:\n%s", n, v4)
		}
	})
	t.Run("raw spellings are kept", func(t *testing.T) {
		v4, _ := render(t, nil, "-b", " 80,,90,", "-c", " eth0", "-x", "10.1.2.3/8")
		mustContain(t, v4, "-A ISTIO_INBOUND -p tcp --dport  80 -j ISTIO_IN_REDIRECT\n-A ISTIO_INBOUND -p tcp --dport 90 -j ISTIO_IN_REDIRECT\n")
		mustContain(t, v4, "-A PREROUTING -i  eth0 -j RETURN\n")
		mustContain(t, v4, "-A ISTIO_OUTPUT -d 10.1.2.3/8 -j RETURN\n")
	})
	t.Run("duplicates and overlaps expand one rule per item, in order", func(t *testing.T) {
		v4, v6 := render(t, nil, "--dual-stack", "-i", "*", "-x", "10.0.0.0/8,2001:db8::/32,10.1.0.0/16,10.0.0.0/8")
		mustContain(t, v4, "-A ISTIO_OUTPUT -d 10.0.0.0/8 -j RETURN\n-A ISTIO_OUTPUT -d 10.1.0.0/16 -j RETURN\n-A ISTIO_OUTPUT -d 10.0.0.0/8 -j RETURN\n-A ISTIO_OUTPUT -j ISTIO_REDIRECT\n")
		mustContain(t, v6, "-A ISTIO_OUTPUT -d ::1/128 -j RETURN\n-A ISTIO_OUTPUT -d 2001:db8::/32 -j RETURN\n-A ISTIO_OUTPUT -j ISTIO_REDIRECT\n")
	})
	t.Run("excluded outbound ports interleave tcp and udp, before everything", func(t *testing.T) {
		v4, _ := render(t, nil, "-o", "53,8000:9000")
		mustContain(t, v4, "-A OUTPUT -j ISTIO_OUTPUT\n-A ISTIO_OUTPUT -p tcp --dport 53 -j RETURN\n-A ISTIO_OUTPUT -p udp --dport 53 -j RETURN\n-A ISTIO_OUTPUT -p tcp --dport 8000:9000 -j RETURN\n-A ISTIO_OUTPUT -p udp --dport 8000:9000 -j RETURN\n-A ISTIO_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN\n")
	})
	t.Run("capture-all DNS", func(t *testing.T) {
		v4, _ := render(t, nil, "--redirect-dns", "--capture-all-dns")
		mustContain(t, v4, "-A ISTIO_OUTPUT -j ISTIO_OUTPUT_DNS\n-A ISTIO_OUTPUT_DNS -p tcp --dport 53 -j REDIRECT --to-ports 15053\n-A ISTIO_OUTPUT_DNS -p udp --dport 53 -j REDIRECT --to-port 15053\n")
		mustContain(t, v4, "-A PREROUTING -j ISTIO_INBOUND\n-A ISTIO_OUTPUT_DNS -p udp --dport 53 -j CT --zone 2\n-A ISTIO_INBOUND -p udp --sport 53 -j CT --zone 1\nCOMMIT\n")
	})
	t.Run("set-but-empty owner groups return everything", func(t *testing.T) {
		v4, _ := render(t, map[string]string{"ISTIO_OUTBOUND_OWNER_GROUPS": ""})
		mustContain(t, v4, "-A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN\n-A ISTIO_OUTPUT -j RETURN\n")
	})
	t.Run("tproxy with excluded inbound ports", func(t *testing.T) {
		v4, _ := render(t, nil, "-m", "TPROXY", "-b", "*", "-d", "15020,15021")
		mustContain(t, v4, "-A PREROUTING -p tcp -j ISTIO_INBOUND\n-A ISTIO_INBOUND -p tcp --dport 15020 -j RETURN\n-A ISTIO_INBOUND -p tcp --dport 15021 -j RETURN\n-A ISTIO_INBOUND -p tcp -m conntrack --ctstate RELATED,ESTABLISHED -j ISTIO_DIVERT\n")
	})
	t.Run("ipv6 off prints nothing for ipv6", func(t *testing.T) {
		_, v6 := render(t, nil, "-i", "2001:db8::/32")
		if v6 != "" {
			t.Errorf("ipv6 view without --dual-stack: %q", v6)
		}
	})
}

func mustContain(t *testing.T, s, sub string) {
	t.Helper()
	if !strings.Contains(s, sub) {
		t.Errorf("missing:\n%s\nin:\n%s", sub, s)
	}
}
