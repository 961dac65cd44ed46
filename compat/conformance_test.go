package compat_test

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/nfintercept/nfintercept/cmd/nfintercept/istioflags"
	"github.com/nfintercept/nfintercept/compat"
	"github.com/nfintercept/nfintercept/translate"
)

// corpusCase is one folder of testdata/istio (derived from Istio, see NOTICE).
type corpusCase struct {
	name   string
	args   []string
	env    map[string]string
	resolv []byte
	want   map[translate.Family]string
}

func loadCorpus(t *testing.T) []corpusCase {
	t.Helper()
	dirs, err := os.ReadDir("testdata/istio")
	if err != nil {
		t.Fatal(err)
	}
	var cases []corpusCase
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		dir := filepath.Join("testdata/istio", d.Name())
		c := corpusCase{name: d.Name(), env: map[string]string{}, want: map[translate.Family]string{}}
		raw, err := os.ReadFile(filepath.Join(dir, "args"))
		if err != nil {
			t.Fatal(err)
		}
		// One argv element per line; an empty line is an empty value.
		c.args = strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n")
		if raw, err := os.ReadFile(filepath.Join(dir, "env")); err == nil {
			for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
				k, v, _ := strings.Cut(line, "=")
				c.env[k] = v
			}
		}
		c.resolv, _ = os.ReadFile(filepath.Join(dir, "resolv.conf"))
		for fam, file := range map[translate.Family]string{translate.IPv4: "iptables.v4", translate.IPv6: "iptables.v6"} {
			if raw, err := os.ReadFile(filepath.Join(dir, file)); err == nil {
				c.want[fam] = string(raw)
			}
		}
		cases = append(cases, c)
	}
	if len(cases) != 27 {
		t.Fatalf("corpus has %d cases, want 27", len(cases))
	}
	return cases
}

// corpusSystem answers like the machine that generated the corpus: no
// istio-proxy user, none of the corpus' group names, the case's resolv.conf.
type corpusSystem struct{ resolv []byte }

func (s corpusSystem) LookupUser(name string) (uint32, error) {
	return 0, errors.New("unknown user " + name)
}

func (s corpusSystem) LookupGroup(name string) (uint32, error) {
	return 0, errors.New("unknown group " + name)
}

func (s corpusSystem) ReadResolvConf() ([]byte, error) { return s.resolv, nil }

func TestCorpusByteIdentical(t *testing.T) {
	for _, c := range loadCorpus(t) {
		t.Run(c.name, func(t *testing.T) {
			getenv := func(k string) (string, bool) { v, ok := c.env[k]; return v, ok }
			opts := translate.DefaultOptions()
			fs := pflag.NewFlagSet("istio-iptables", pflag.ContinueOnError)
			istioflags.Add(fs, &opts, getenv)
			if err := fs.Parse(c.args); err != nil {
				t.Fatalf("parse %q: %v", c.args, err)
			}
			opts.LoadEnvOnly(getenv)
			cfg, err := opts.Config(corpusSystem{c.resolv})
			if err != nil {
				t.Fatalf("config: %v", err)
			}
			rs := translate.Build(cfg)
			for _, fam := range []translate.Family{translate.IPv4, translate.IPv6} {
				got := compat.Restore(rs, fam)
				if got != c.want[fam] {
					t.Errorf("%s differs:\n%s", fam, lineDiff(c.want[fam], got))
				}
			}
		})
	}
}

// lineDiff shows the first differing line with some context.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return "line " + strconv.Itoa(i+1) + ":\n want: " + wl + "\n  got: " + gl + "\n--- want ---\n" + want + "--- got ---\n" + got
		}
	}
	return "(identical lines, different bytes)"
}
