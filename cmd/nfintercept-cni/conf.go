package main

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/nfintercept/nfintercept/translate"
)

// capPodAnnotations is the capability through which containerd and CRI-O
// hand a plugin the pod's annotations (in runtimeConfig).
const capPodAnnotations = "io.kubernetes.cri.pod-annotations"

// netConf is our conflist entry as the runtime passes it on stdin. Fields
// of Istio's istio-cni entry that are not listed here are accepted and
// ignored, so an existing entry can switch its type.
type netConf struct {
	CNIVersion string `json:"cniVersion"`
	Name       string `json:"name"`
	Type       string `json:"type"`

	ExcludeNamespaces []string  `json:"exclude_namespaces"`
	Proxy             proxyConf `json:"proxy"`
	LogLevel          string    `json:"log_level"`
	LogFile           string    `json:"log_file"`
	AmbientEnabled    bool      `json:"ambient_enabled"`

	RuntimeConfig struct {
		PodAnnotations *map[string]string `json:"io.kubernetes.cri.pod-annotations"`
	} `json:"runtimeConfig"`

	// PrevResult is printed back as given.
	PrevResult json.RawMessage `json:"prevResult"`
}

// proxyConf stands for what Istio's plugin reads from the pod's
// istio-proxy container: runAsUser, runAsGroup (absent or 0 = 1337) and the
// environment that shapes capture.
type proxyConf struct {
	UID uint32            `json:"uid"`
	GID uint32            `json:"gid"`
	Env map[string]string `json:"env"`
}

// podArgs are the Kubernetes keys of CNI_ARGS.
type podArgs struct {
	types.CommonArgs
	K8S_POD_NAME               types.UnmarshallableString //nolint:revive // CNI_ARGS key
	K8S_POD_NAMESPACE          types.UnmarshallableString //nolint:revive
	K8S_POD_INFRA_CONTAINER_ID types.UnmarshallableString //nolint:revive
	K8S_POD_UID                types.UnmarshallableString //nolint:revive
}

// parseConf decodes and checks the configuration (errors: code 6 for
// undecodable JSON, 7 for unusable values).
func parseConf(stdin []byte) (*netConf, *types.Error) {
	var c netConf
	if err := json.Unmarshal(stdin, &c); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, "decoding the network configuration: "+err.Error(), "")
	}
	if c.AmbientEnabled {
		return nil, types.NewError(types.ErrInvalidNetworkConfig,
			"ambient_enabled: true is not supported: nfintercept-cni programs sidecar capture only", "")
	}
	if _, err := logLevel(c.LogLevel); err != nil {
		return nil, types.NewError(types.ErrInvalidNetworkConfig, err.Error(), "")
	}
	if len(c.PrevResult) > 0 && string(c.PrevResult) != "null" && !strings.HasPrefix(strings.TrimSpace(string(c.PrevResult)), "{") {
		return nil, types.NewError(types.ErrDecodingFailure, "prevResult is not a JSON object", "")
	}
	return &c, nil
}

func parseArgs(args string) (podArgs, *types.Error) {
	var a podArgs
	if err := types.LoadArgs(args, &a); err != nil {
		return a, types.NewError(types.ErrInvalidEnvironmentVariables, "CNI_ARGS: "+err.Error(), "")
	}
	return a, nil
}

// decision says what to do with the pod: skip (with the reason) or the
// options to program. Selection follows Istio's plugin as far as the
// annotations tell it (SPEC §6.2).
func (c *netConf) decision(a podArgs, processEnv func(string) (string, bool)) (translate.CNIDecision, *types.Error) {
	name, ns := string(a.K8S_POD_NAME), string(a.K8S_POD_NAMESPACE)
	if name == "" {
		return translate.CNIDecision{Skip: "no K8S_POD_NAME in CNI_ARGS (not a Kubernetes pod)"}, nil
	}
	for _, ex := range c.ExcludeNamespaces {
		if ex == ns {
			return translate.CNIDecision{Skip: fmt.Sprintf("namespace %s is excluded", ns)}, nil
		}
	}
	if c.RuntimeConfig.PodAnnotations == nil {
		return translate.CNIDecision{}, types.NewError(types.ErrInvalidNetworkConfig,
			"runtimeConfig has no "+capPodAnnotations+": declare the capability "+
				`"capabilities": {"`+capPodAnnotations+`": true} in the conflist entry (containerd, CRI-O)`, "")
	}
	d, err := translate.CNIPodDecision(translate.CNIPod{
		Annotations: *c.RuntimeConfig.PodAnnotations,
		ProxyUID:    c.Proxy.UID,
		ProxyGID:    c.Proxy.GID,
		ProxyEnv:    c.Proxy.Env,
	}, processEnv)
	if err != nil {
		return translate.CNIDecision{}, types.NewError(types.ErrInvalidNetworkConfig, err.Error(), "")
	}
	return d, nil
}
