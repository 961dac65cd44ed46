// Package tools locates the reference binaries that tests and benchmarks run
// next to nfintercept (built by .ci/tools, `make tools`): Istio's pilot-agent
// and the CNI reference plugins.
package tools

import (
	"fmt"
	"os"
	"path/filepath"
)

// Dir is where .ci/tools puts its binaries: $NFI_TOOLS_DIR, or
// nfintercept-tools under the user's cache directory.
func Dir() string {
	if d := os.Getenv("NFI_TOOLS_DIR"); d != "" {
		return d
	}
	if c, err := os.UserCacheDir(); err == nil {
		return filepath.Join(c, "nfintercept-tools")
	}
	return filepath.Join(os.TempDir(), "nfintercept-tools")
}

// PilotAgent returns the path of Istio's pilot-agent, or an error saying
// how to build it.
func PilotAgent() (string, error) {
	return find(filepath.Join(Dir(), "bin", "pilot-agent"))
}

// CNIPluginDir returns the directory holding the reference CNI plugins
// (bridge, host-local, loopback), or an error saying how to build them.
func CNIPluginDir() (string, error) {
	d := filepath.Join(Dir(), "cni")
	if _, err := find(filepath.Join(d, "bridge")); err != nil {
		return "", err
	}
	return d, nil
}

func find(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil || st.Mode()&0o111 == 0 {
		return "", fmt.Errorf("%s is missing: run `make tools` (.ci/tools builds it from the Go module proxy)", path)
	}
	return path, nil
}
