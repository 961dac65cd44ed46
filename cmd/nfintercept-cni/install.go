package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/pflag"
)

// pluginType is our conflist entry's type (and the binary's name).
const pluginType = "nfintercept-cni"

// defaultEntry is the entry install appends; the proxy facts mirror the
// injector's defaults (uid/gid 1337, no DNS capture).
func defaultEntry() map[string]any {
	return map[string]any{
		"type":               pluginType,
		"capabilities":       map[string]any{capPodAnnotations: true},
		"exclude_namespaces": []any{"kube-system"},
		"proxy":              map[string]any{"uid": 1337, "gid": 1337, "env": map[string]any{}},
		"log_level":          "info",
		"log_file":           "",
	}
}

// installMain runs `install` or `uninstall`: exit 0 done, 1 failure, 2 bad
// usage.
func installMain(cmd string, args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("nfintercept-cni "+cmd, pflag.ContinueOnError)
	fs.SetOutput(stderr)
	confDir := fs.String("cni-conf-dir", "/etc/cni/net.d", "directory of the node's CNI network configurations")
	binDir := fs.String("cni-bin-dir", "/opt/cni/bin", "directory of the CNI plugin binaries")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "nfintercept-cni %s: %v\n", cmd, err)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "nfintercept-cni %s: unexpected argument %q\n", cmd, fs.Arg(0))
		return 2
	}
	var msg string
	var err error
	if cmd == "install" {
		msg, err = install(*confDir, *binDir)
	} else {
		msg, err = uninstall(*confDir, *binDir)
	}
	if err != nil {
		fmt.Fprintf(stderr, "nfintercept-cni %s: %v\n", cmd, err)
		return 1
	}
	fmt.Fprintln(stdout, msg)
	return 0
}

// primaryConf returns the configuration kubelet uses: the first file by
// name with a .conf, .conflist or .json extension.
func primaryConf(confDir string) (string, error) {
	entries, err := os.ReadDir(confDir)
	if err != nil {
		return "", err
	}
	var names []string
	for _, e := range entries {
		switch filepath.Ext(e.Name()) {
		case ".conf", ".conflist", ".json":
			if !e.IsDir() {
				names = append(names, e.Name())
			}
		}
	}
	if len(names) == 0 {
		return "", fmt.Errorf("no CNI network configuration in %s (install runs after the primary network plugin)", confDir)
	}
	slices.Sort(names)
	return filepath.Join(confDir, names[0]), nil
}

// install copies the running binary into binDir and appends our entry to
// the primary configuration (a lone .conf becomes a .conflist). Files are
// replaced atomically; running it again changes nothing.
func install(confDir, binDir string) (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	bin, err := os.ReadFile(self)
	if err != nil {
		return "", err
	}
	dst := filepath.Join(binDir, pluginType)
	if old, err := os.ReadFile(dst); err != nil || !bytes.Equal(old, bin) {
		if err := writeAtomic(dst, bin, 0o755); err != nil {
			return "", err
		}
	}

	path, err := primaryConf(confDir)
	if err != nil {
		return "", err
	}
	list, err := readConfList(path)
	if err != nil {
		return "", err
	}
	plugins, _ := list["plugins"].([]any)
	for _, p := range plugins {
		if m, ok := p.(map[string]any); ok && m["type"] == pluginType {
			return fmt.Sprintf("%s already chains %s; %s in place", path, pluginType, dst), nil
		}
	}
	if m := entryOfType(plugins, istioType); m != nil {
		// Take over Istio's entry in place (its fields are ours or
		// ignored), so capture is never installed twice.
		m["type"] = pluginType
		m[markReplaced] = istioType
		caps, _ := m["capabilities"].(map[string]any)
		if caps == nil {
			caps = map[string]any{}
			m["capabilities"] = caps
		}
		if caps[capPodAnnotations] != true {
			caps[capPodAnnotations] = true
			m[markAddedCap] = true
		}
	} else {
		list["plugins"] = append(plugins, defaultEntry())
	}
	out := path
	if filepath.Ext(path) != ".conflist" {
		out = strings.TrimSuffix(path, filepath.Ext(path)) + ".conflist"
	}
	if err := writeJSON(out, list); err != nil {
		return "", err
	}
	if out != path {
		if err := os.Remove(path); err != nil {
			return "", err
		}
	}
	return fmt.Sprintf("chained %s into %s; %s in place", pluginType, out, dst), nil
}

// uninstall removes our entries from the primary configuration and the
// binary; every other entry stays as it was. A .conflist install made from
// a lone .conf stays a .conflist (its only other entry is the original).
func uninstall(confDir, binDir string) (string, error) {
	var done []string
	path, err := primaryConf(confDir)
	switch {
	case err == nil:
		list, err := readConfList(path)
		if err != nil {
			return "", err
		}
		plugins, _ := list["plugins"].([]any)
		kept := make([]any, 0, len(plugins))
		changed := false
		for _, p := range plugins {
			m, ok := p.(map[string]any)
			if !ok || m["type"] != pluginType {
				kept = append(kept, p)
				continue
			}
			changed = true
			if m[markReplaced] == istioType {
				restoreIstio(m)
				kept = append(kept, m)
			}
		}
		if changed {
			list["plugins"] = kept
			if err := writeJSON(path, list); err != nil {
				return "", err
			}
			done = append(done, "removed "+pluginType+" from "+path)
		}
	case errors.Is(err, os.ErrNotExist):
	default:
		if !strings.HasPrefix(err.Error(), "no CNI network configuration") {
			return "", err
		}
	}
	dst := filepath.Join(binDir, pluginType)
	if err := os.Remove(dst); err == nil {
		done = append(done, "removed "+dst)
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	if len(done) == 0 {
		return "nothing to uninstall", nil
	}
	return strings.Join(done, "; "), nil
}

// istioType is the type of Istio's own entry, which install takes over and
// uninstall gives back, recording what it changed in the marker fields.
const (
	istioType    = "istio-cni"
	markReplaced = "nfintercept_replaced_type"
	markAddedCap = "nfintercept_added_capability"
)

func entryOfType(plugins []any, typ string) map[string]any {
	for _, p := range plugins {
		if m, ok := p.(map[string]any); ok && m["type"] == typ {
			return m
		}
	}
	return nil
}

// restoreIstio undoes install's takeover of Istio's entry.
func restoreIstio(m map[string]any) {
	m["type"] = istioType
	delete(m, markReplaced)
	if m[markAddedCap] == true {
		if caps, ok := m["capabilities"].(map[string]any); ok {
			delete(caps, capPodAnnotations)
			if len(caps) == 0 {
				delete(m, "capabilities")
			}
		}
	}
	delete(m, markAddedCap)
}

// readConfList reads a .conflist, or a lone plugin .conf as a list holding
// it (name and cniVersion moved up).
func readConfList(path string) (map[string]any, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber() // keep numbers as written
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if _, ok := m["plugins"]; ok {
		if _, ok := m["plugins"].([]any); !ok {
			return nil, fmt.Errorf("%s: plugins is not a list", path)
		}
		return m, nil
	}
	if _, ok := m["type"]; !ok {
		return nil, fmt.Errorf("%s: neither a plugin configuration (type) nor a list (plugins)", path)
	}
	list := map[string]any{"cniVersion": m["cniVersion"], "name": m["name"], "plugins": []any{m}}
	delete(m, "name")
	delete(m, "cniVersion")
	return list, nil
}

func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(path, append(data, '\n'), 0o644)
}

// writeAtomic replaces path with data through a temporary file in the same
// directory and a rename, so readers see the old or the new file, never a
// partial one.
func writeAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
