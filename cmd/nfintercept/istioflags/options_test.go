package istioflags

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/nfintercept/nfintercept/translate"
)

// corpusCase is one folder of the Istio conformance corpus (argv, env,
// resolv.conf), used here only as inputs istio-iptables accepts.
type corpusCase struct {
	name   string
	args   []string
	env    envMap
	resolv []byte
}

func corpusDirs() ([]corpusCase, error) {
	root := filepath.Join("..", "..", "..", "compat", "testdata", "istio")
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	var out []corpusCase
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(root, e.Name())
		args, err := os.ReadFile(filepath.Join(dir, "args"))
		if err != nil {
			return nil, err
		}
		c := corpusCase{name: e.Name(), env: envMap{}}
		c.args = strings.Split(strings.TrimSuffix(string(args), "\n"), "\n")
		if env, err := os.ReadFile(filepath.Join(dir, "env")); err == nil {
			for _, l := range strings.Split(strings.TrimSpace(string(env)), "\n") {
				k, v, _ := strings.Cut(l, "=")
				c.env[k] = v
			}
		}
		c.resolv, _ = os.ReadFile(filepath.Join(dir, "resolv.conf"))
		out = append(out, c)
	}
	return out, nil
}

// optionNames lists every way an error may name an option.
func optionNames() []string {
	names := []string{translate.EnvOwnerGroupsInclude, translate.EnvOwnerGroupsExclude, translate.EnvHostIPv4LoopbackCidr, translate.EnvEnvoyUser}
	var o translate.Options
	for _, s := range flagSpecs(&o) {
		names = append(names, "--"+s.long)
	}
	return names
}

func FuzzOptionsConfig(f *testing.F) {
	if dirs, err := corpusDirs(); err == nil {
		for _, d := range dirs {
			f.Add(strings.Join(d.args, " "), "nameserver 10.0.0.10\n")
		}
	}
	for _, s := range []string{
		"-b * -d 15090,15021 -i * -x 10.0.0.0/8 -m TPROXY -t 0x539 -r 100",
		"-u ghost,1-2 -g 5-1 -k eth0+ -c a/b",
		"-q 1:2,:3,4: -o 0 -e 15008:15009 --redirect-dns",
		"-p 0 -z 65536 -r 254 -m TPROXY -b 80",
		"--istio-service-cidr=::ffff:1.2.3.4/128,fe80::%x/64",
	} {
		f.Add(s, "nameserver ::1\nnameserver bogus\n")
	}
	names := optionNames()
	f.Fuzz(func(t *testing.T, argLine, resolv string) {
		o := translate.DefaultOptions()
		fs := pflag.NewFlagSet("fuzz", pflag.ContinueOnError)
		fs.SetOutput(new(strings.Builder))
		Add(fs, &o, envMap{}.get)
		if err := fs.Parse(strings.Split(argLine, " ")); err != nil {
			return // pflag's own messages name the flag
		}
		sys := newFake()
		sys.resolv = []byte(resolv)
		c, err := o.Config(sys)
		if err != nil {
			msg := err.Error()
			for _, n := range names {
				if strings.Contains(msg, n) {
					return
				}
			}
			t.Fatalf("error names no option: %q", msg)
		}
		_ = c.CheckResolved()
		_ = c.DNSEnabled()
	})
}
