package bench

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"

	"github.com/spf13/pflag"

	"github.com/nfintercept/nfintercept/cmd/nfintercept/istioflags"
	"github.com/nfintercept/nfintercept/translate"
)

// DefaultArgs is istio-init's default invocation (dual-stack), the
// configuration every apply measurement starts from.
var DefaultArgs = []string{
	"-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT", "-i", "*",
	"-x", "10.245.0.0/16", "-b", "*", "-d", "15090,15021,15020", "--dual-stack",
}

// ArgsWithExcludes is DefaultArgs with -x replaced by the given CIDRs.
func ArgsWithExcludes(cidrs []string) []string {
	args := append([]string(nil), DefaultArgs...)
	for i := range args {
		if args[i] == "-x" {
			args[i+1] = strings.Join(cidrs, ",")
		}
	}
	return args
}

// Options parses istio-iptables arguments exactly as the CLI does, so the
// library measurements use the same options as the process ones.
func Options(args []string) (translate.Options, error) {
	fs := pflag.NewFlagSet("bench", pflag.ContinueOnError)
	opts := translate.DefaultOptions()
	noEnv := func(string) (string, bool) { return "", false }
	istioflags.Add(fs, &opts, noEnv)
	if err := fs.Parse(args); err != nil {
		return opts, fmt.Errorf("parse %q: %w", args, err)
	}
	opts.LoadEnvOnly(noEnv)
	return opts, nil
}

// Reserved ranges no random exclude CIDR may cover: loopback and the
// connection benchmark's topology and destinations (see connect.go).
var reserved = []netip.Prefix{
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("224.0.0.0/3"),
	linkNet,
	capturedNet,
	excludedNet,
}

// RandomCIDRs returns n IPv4 CIDRs drawn from seed: mostly /16–/32 with
// host bits left set (as users write them), one in a thousand /10–/15 that
// swallows others, and about 2% exact duplicates. None touches the
// reserved ranges. The same seed gives the same list.
func RandomCIDRs(n int, seed uint64) []string {
	r := rand.New(rand.NewPCG(seed, 0x6e6669))
	out := make([]string, 0, n)
	for len(out) < n {
		if len(out) > 0 && r.IntN(50) == 0 {
			out = append(out, out[r.IntN(len(out))])
			continue
		}
		bits := 16 + r.IntN(17)
		if r.IntN(1000) == 0 {
			bits = 10 + r.IntN(6)
		}
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], r.Uint32())
		p := netip.PrefixFrom(netip.AddrFrom4(b), bits)
		if touchesReserved(p) {
			continue
		}
		out = append(out, p.String())
	}
	return out
}

func touchesReserved(p netip.Prefix) bool {
	for _, q := range reserved {
		if p.Overlaps(q) {
			return true
		}
	}
	return false
}
