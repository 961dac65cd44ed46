// Package cnicorpus reads the Istio CNI plugin corpus
// (cmd/nfintercept-cni/testdata/istio-cni, derived from Istio, see its
// NOTICE): pods as Istio's plugin sees them on ADD, with what it programs.
package cnicorpus

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/nfintercept/nfintercept/translate"
)

// Size is the number of pods in the corpus.
const Size = 9

// Pod is one case: the pod's annotations and its istio-proxy container's
// facts, and Istio's iptables-restore input for it (IPv4).
type Pod struct {
	Name   string
	Pod    translate.CNIPod
	Golden string
}

// Load reads every case folder of dir.
func Load(dir string) ([]Pod, error) {
	dirs, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []Pod
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		p, err := load(filepath.Join(dir, d.Name()))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", d.Name(), err)
		}
		out = append(out, p)
	}
	if len(out) != Size {
		return nil, fmt.Errorf("%s has %d cases, want %d", dir, len(out), Size)
	}
	return out, nil
}

func load(dir string) (Pod, error) {
	p := Pod{Name: filepath.Base(dir), Pod: translate.CNIPod{Annotations: map[string]string{}}}
	ann, err := lines(filepath.Join(dir, "annotations"))
	if err != nil {
		return p, err
	}
	for _, l := range ann {
		k, v, _ := strings.Cut(l, "=")
		p.Pod.Annotations[k] = v
	}
	facts, err := lines(filepath.Join(dir, "istio-proxy"))
	if err != nil {
		return p, err
	}
	for _, l := range facts {
		k, v, _ := strings.Cut(l, "=")
		switch {
		case k == "runAsUser" || k == "runAsGroup":
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				return p, fmt.Errorf("istio-proxy: %q: %w", l, err)
			}
			if k == "runAsUser" {
				p.Pod.ProxyUID = uint32(n)
			} else {
				p.Pod.ProxyGID = uint32(n)
			}
		case strings.HasPrefix(k, "env "):
			if p.Pod.ProxyEnv == nil {
				p.Pod.ProxyEnv = map[string]string{}
			}
			p.Pod.ProxyEnv[strings.TrimPrefix(k, "env ")] = v
		default:
			return p, fmt.Errorf("istio-proxy: unknown fact %q", l)
		}
	}
	golden, err := os.ReadFile(filepath.Join(dir, "iptables.golden"))
	if err != nil {
		return p, err
	}
	p.Golden = string(golden)
	return p, nil
}

// lines returns the non-empty lines of a file; a missing file has none.
func lines(path string) ([]string, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range strings.Split(string(raw), "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out, nil
}
