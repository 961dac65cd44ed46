package equiv

import (
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/nfintercept/nfintercept"
	"github.com/nfintercept/nfintercept/cmd/nfintercept/istioflags"
	"github.com/nfintercept/nfintercept/internal/libtest"
	"github.com/nfintercept/nfintercept/translate"
)

// Case is one configuration, spelled as istio-iptables gets it.
type Case struct {
	Name string
	Args []string // argv, as in the corpus' args files
	// InitArgs, when set, is the argv of the istio-init container for the
	// same configuration (istio-iptables first, logging flags and other
	// words that change nothing): what the CLI and pilot-agent backends
	// run. The plan and the flows come from Args.
	InitArgs []string
	Env      map[string]string // the whole environment (nothing is inherited)
	Resolv   []byte            // /etc/resolv.conf as the library sees it
	// Mode, when set, replaces the interception mode after parsing, so one
	// configuration can be run in REDIRECT and in TPROXY.
	Mode translate.Mode
	// OpaqueInbound runs the inbound listener without IP_TRANSPARENT, a
	// proxy that cannot take TPROXYed connections: TPROXY must then drop
	// (the nft tproxy statement alone would let the packet through).
	OpaqueInbound bool
}

func (c Case) String() string {
	var b strings.Builder
	b.WriteString("args:")
	for _, a := range c.Args {
		b.WriteString(" " + strconv.Quote(a))
	}
	if c.InitArgs != nil {
		b.WriteString("\nistio-init args:")
		for _, a := range c.InitArgs {
			b.WriteString(" " + strconv.Quote(a))
		}
	}
	if c.Mode != "" {
		b.WriteString("\nmode override: " + string(c.Mode))
	}
	if c.OpaqueInbound {
		b.WriteString("\ninbound listener not transparent")
	}
	keys := make([]string, 0, len(c.Env))
	for k := range c.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "\nenv: %s=%q", k, c.Env[k])
	}
	if len(c.Resolv) > 0 {
		fmt.Fprintf(&b, "\nresolv.conf: %q", c.Resolv)
	}
	return b.String()
}

// InitArgv is what an istio-init entrypoint gets: InitArgs, or
// istio-iptables followed by Args.
func (c Case) InitArgv() []string {
	if c.InitArgs != nil {
		return c.InitArgs
	}
	return append([]string{"istio-iptables"}, c.Args...)
}

// WithMode returns the case run in mode m.
func (c Case) WithMode(m translate.Mode) Case {
	c.Mode = m
	c.Name += "/" + strings.ToLower(string(m))
	return c
}

// Options parses the case like istio-iptables would, then replaces owner
// and group names by numbers (see NumericOwners).
func (c Case) Options() (translate.Options, error) {
	getenv := func(k string) (string, bool) { v, ok := c.Env[k]; return v, ok }
	opts := translate.DefaultOptions()
	fs := pflag.NewFlagSet("istio-iptables", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	istioflags.Add(fs, &opts, getenv)
	if err := fs.Parse(c.Args); err != nil {
		return opts, fmt.Errorf("parse %q: %w", c.Args, err)
	}
	opts.LoadEnvOnly(getenv)
	if c.Mode != "" {
		opts.InboundInterceptionMode = string(c.Mode)
	}
	NumericOwners(&opts)
	return opts, nil
}

// Request is what both kinds of twins are built from: the library gets
// the case's resolv.conf through a fake System, and decides IPv6 from
// --dual-stack, so the iptables view (rendered offline) and the applied
// rules agree.
func (c Case) Request() (libtest.Request, error) {
	opts, err := c.Options()
	if err != nil {
		return libtest.Request{}, err
	}
	return libtest.Request{Options: opts, System: caseSystem{c.Resolv}, IPv6: nfintercept.IPv6FromConfig}, nil
}

// caseSystem answers like the machine that generated the corpus: no user
// names (so an empty -u means 1337), groups from GroupID, the case's
// resolv.conf.
type caseSystem struct{ resolv []byte }

func (caseSystem) LookupUser(name string) (uint32, error) {
	return 0, errors.New("unknown user " + name)
}
func (caseSystem) LookupGroup(name string) (uint32, error) {
	return GroupID(name), nil
}
func (s caseSystem) ReadResolvConf() ([]byte, error) { return s.resolv, nil }

// groupIDs gives the corpus' group names a number. None of them exists on
// test machines, and iptables-restore resolves names itself (through NSS),
// so a name cannot reach the iptables twins.
var groupIDs = map[string]uint32{"java": 20001, "ftp": 20002}

// GroupID is the gid a group name stands for in this suite.
func GroupID(name string) uint32 {
	if id, ok := groupIDs[name]; ok {
		return id
	}
	h := fnv.New32a()
	h.Write([]byte(name))
	return 21000 + h.Sum32()%9000
}

// NumericOwners replaces group names in -g and the owner-group variables by
// their GroupID, before anything is built from the options, so every twin
// matches the same numeric gid. Numbers, ranges, spacing and empty items
// stay as written.
func NumericOwners(o *translate.Options) {
	o.ProxyGID = numericList(o.ProxyGID)
	if o.OwnerGroupsInclude != "*" {
		o.OwnerGroupsInclude = numericList(o.OwnerGroupsInclude)
	}
	o.OwnerGroupsExclude = numericList(o.OwnerGroupsExclude)
}

func numericList(raw string) string {
	items := strings.Split(raw, ",")
	for i, item := range items {
		s := strings.TrimSpace(item)
		if s == "" || strings.Trim(s, "0123456789-") == "" {
			continue
		}
		items[i] = strings.Replace(item, s, strconv.FormatUint(uint64(GroupID(s)), 10), 1)
	}
	return strings.Join(items, ",")
}

// LoadCorpus reads the conformance corpus (compat/testdata/istio): one
// folder per case with args, optional env and resolv.conf.
func LoadCorpus(dir string) ([]Case, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read corpus: %w", err)
	}
	var cases []Case
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		d := filepath.Join(dir, e.Name())
		raw, err := os.ReadFile(filepath.Join(d, "args"))
		if err != nil {
			return nil, fmt.Errorf("corpus case %s: %w", e.Name(), err)
		}
		c := Case{Name: e.Name(), Env: map[string]string{}}
		// One argv element per line; an empty line is an empty value.
		c.Args = strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n")
		if raw, err := os.ReadFile(filepath.Join(d, "env")); err == nil {
			for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
				if k, v, ok := strings.Cut(line, "="); ok {
					c.Env[k] = v
				}
			}
		}
		c.Resolv, _ = os.ReadFile(filepath.Join(d, "resolv.conf"))
		cases = append(cases, c)
	}
	return cases, nil
}

// Pools the generator draws from. Addresses overlap each other, the pod's
// own networks and the default destinations on purpose.
var (
	genCIDRs4 = []string{
		"10.0.0.0/8", "10.1.2.3/8", "10.0.0.0/9", "10.96.0.0/12", "10.96.0.10/32", "9.9.0.0/16",
		"1.1.0.0/16", "192.168.0.0/16", "203.0.113.0/25", "172.30.0.0/16", "198.18.1.0/24",
		"127.1.2.3/32", "0.0.0.0/0", "100.64.0.0/10", "100.64.7.8/30",
	}
	genCIDRs6 = []string{
		"2001:db8::/32", "2001:db8::/48", "2001:db8:0:1::5/64", "fd00:99::/64", "fd00:18:1::/64",
		"fd00::/8", "::/0", "2001:db8::10/128", "::ffff:10.1.0.0/112",
	}
	genInboundPorts  = []string{"80", "8080", "4000", "5000", "9090", "15008", "15020", "31000", "32000", "7000:7010", "443", "65530:"}
	genExcludeIn     = []string{"15020", "15021", "15090", "8080", "9090", "6000:6005", "4000"}
	genOutboundIn    = []string{"31400", "32000", "8443", "5000:5002", "80", "53"}
	genOutboundEx    = []string{"15020", "5432", "53", "8000:8002", "80", "443", ":100"}
	genExcludeIfaces = []string{"not-istio-nic", "eth1", "vnic+", "lo", "eth0", "veth-fifteen-15"}
	genVirtIfaces    = []string{"eth1", "eth2", "eth0", "kv+", "veth-fifteen-15"}
	genUIDs          = []string{"", "1337", "3,4", "1337,2000-2002", "0", "1337,1338"}
	genGIDs          = []string{"", "1337", "1,2", "1337,3000-3001", "888", "0-2"}
	genOwnerGroups   = []string{"java,202", "3000", "", "1000", "1000,20001"}
	genOwnerExclude  = []string{"888,ftp", "1000", "20001", "3000-3001"}
	genResolv4       = []string{"198.51.100.53", "127.0.0.53", "10.96.0.10"}
	genResolv6       = []string{"fd00:53::53", "2001:db8::53", "::1"}
)

// Generate returns n reproducible configurations for a seed: random
// subsets of the options, lists with overlaps and duplicates, uid/gid lists
// and ranges, DNS on/off/capture-all, dual-stack on/off, excluded and
// virtual interfaces. The interception mode is left to Case.WithMode.
func Generate(seed uint64, n int) []Case {
	cases := make([]Case, 0, n)
	for i := 0; i < n; i++ {
		cases = append(cases, generate(seed, i))
	}
	return cases
}

func generate(seed uint64, i int) Case {
	r := rand.New(rand.NewPCG(seed, uint64(i)))
	chance := func(p float64) bool { return r.Float64() < p }
	pick := func(pool []string) string { return pool[r.IntN(len(pool))] }
	// some joins 0..max items drawn with replacement (duplicates happen).
	some := func(pool []string, max int) string {
		k := r.IntN(max + 1)
		items := make([]string, k)
		for j := range items {
			items[j] = pick(pool)
		}
		return strings.Join(items, ",")
	}
	c := Case{Name: fmt.Sprintf("gen-%d-%02d", seed, i), Env: map[string]string{}}
	set := func(flag, val string) { c.Args = append(c.Args, flag, val) }

	if chance(0.15) {
		set("-p", "15101")
	}
	if chance(0.15) {
		set("-z", "15106")
	}
	if chance(0.15) {
		set("-e", "15118")
	}
	if u := pick(genUIDs); u != "" || chance(0.5) {
		set("-u", u)
	}
	if g := pick(genGIDs); g != "" {
		set("-g", g)
	}
	switch r.IntN(4) {
	case 0:
		set("-b", "")
	case 1:
		set("-b", "*")
	default:
		set("-b", some(genInboundPorts, 4))
	}
	if chance(0.7) {
		set("-d", some(genExcludeIn, 3))
	}
	switch r.IntN(4) {
	case 0:
		set("-i", "")
	case 1:
		set("-i", "*")
	default:
		set("-i", mixCIDRs(r, 4))
	}
	if chance(0.6) {
		set("-x", mixCIDRs(r, 3))
	}
	if chance(0.5) {
		set("-q", some(genOutboundIn, 3))
	}
	if chance(0.5) {
		set("-o", some(genOutboundEx, 3))
	}
	if chance(0.4) {
		set("-c", some(genExcludeIfaces, 2))
	}
	if chance(0.4) {
		set("-k", some(genVirtIfaces, 2))
	}
	if chance(0.3) {
		set("-t", pick([]string{"4242", "4000000000", "0x10000"}))
	}
	if chance(0.3) {
		set("-r", pick([]string{"177", "1000000"}))
	}
	for _, b := range []struct {
		flag string
		p    float64
	}{{"--redirect-dns", 0.5}, {"--capture-all-dns", 0.3}, {"--drop-invalid", 0.2}, {"--dual-stack", 0.6}} {
		if chance(b.p) {
			c.Args = append(c.Args, b.flag)
		}
	}
	if chance(0.3) {
		c.Env[translate.EnvOwnerGroupsInclude] = pick(genOwnerGroups)
	} else if chance(0.3) {
		c.Env[translate.EnvOwnerGroupsExclude] = pick(genOwnerExclude)
	}
	if chance(0.15) {
		c.Env[translate.EnvHostIPv4LoopbackCidr] = pick([]string{"127.0.0.1/8", "127.0.0.0/24"})
	}
	var resolv strings.Builder
	resolv.WriteString("search svc.cluster.local\n")
	for j := r.IntN(3); j > 0; j-- {
		resolv.WriteString("nameserver " + pick(genResolv4) + "\n")
	}
	for j := r.IntN(3); j > 0; j-- {
		resolv.WriteString("nameserver " + pick(genResolv6) + "\n")
	}
	if chance(0.2) {
		resolv.WriteString("nameserver not-an-address\noptions ndots:5\n")
	}
	c.Resolv = []byte(resolv.String())
	c.OpaqueInbound = chance(0.2)
	return c
}

// LargeCase has lists long enough that nftables sets are loaded in
// several chunks (more than 1000 elements) and iptables gets thousands of
// rules: include 1500 /32s and a few overlapping ranges, exclude 1100 /30s
// inside them, inPorts non-adjacent inbound ports and 300 outbound port
// ranges.
func LargeCase(inPorts int) Case {
	var inc, exc, in, outPorts []string
	for i := 0; i < 1500; i++ {
		inc = append(inc, fmt.Sprintf("10.%d.%d.%d/32", 10+i/60000, i/250%240, 1+i%250))
	}
	inc = append(inc, "10.200.0.0/16", "10.200.128.0/17", "2001:db8::/48")
	for i := 0; i < 1100; i++ {
		exc = append(exc, fmt.Sprintf("10.200.%d.%d/30", i/60, 4*(i%60)))
	}
	for i := 0; i < inPorts; i++ {
		in = append(in, strconv.Itoa(20000+2*i))
	}
	for i := 0; i < 300; i++ {
		outPorts = append(outPorts, fmt.Sprintf("%d:%d", 40000+10*i, 40000+10*i+4))
	}
	return Case{
		Name: "large-lists",
		Args: []string{"-b", strings.Join(in, ","), "-i", strings.Join(inc, ","),
			"-x", strings.Join(exc, ","), "-o", strings.Join(outPorts, ","), "--dual-stack"},
		Env:    map[string]string{},
		Resolv: []byte("nameserver 198.51.100.53\n"),
	}
}

// mixCIDRs draws 1..max CIDRs of both families.
func mixCIDRs(r *rand.Rand, max int) string {
	k := 1 + r.IntN(max)
	items := make([]string, k)
	for j := range items {
		pool := genCIDRs4
		if r.IntN(3) == 0 {
			pool = genCIDRs6
		}
		items[j] = pool[r.IntN(len(pool))]
	}
	return strings.Join(items, ",")
}
