package nft

import (
	"fmt"
	"testing"

	"github.com/nfintercept/nfintercept/translate"
)

// fakeSystem resolves istio-proxy to 1337 and serves a fixed resolv.conf.
type fakeSystem struct{}

func (fakeSystem) LookupUser(name string) (uint32, error) {
	if name == "istio-proxy" {
		return 1337, nil
	}
	return 0, fmt.Errorf("unknown user %q", name)
}

func (fakeSystem) LookupGroup(name string) (uint32, error) { return fakeSystem{}.LookupUser(name) }

func (fakeSystem) ReadResolvConf() ([]byte, error) {
	return []byte("nameserver 10.96.0.10\nnameserver fd00:10::a\nsearch cluster.local\n"), nil
}

// realisticConfigs are sidecar configurations as the injector and the CNI
// plugin produce them, going through option validation like the CLI does.
func realisticConfigs() map[string]translate.Config {
	opts := map[string]func(*translate.Options){
		"redirect-default": func(o *translate.Options) {
			o.ProxyUID, o.ProxyGID = "1337", "1337"
			o.OutboundIPRangesInclude = "*"
			o.InboundPortsInclude = "*"
			o.InboundPortsExclude = "15090,15021,15020"
		},
		"tproxy-dualstack-dns": func(o *translate.Options) {
			o.ProxyUID, o.ProxyGID = "1337", "1337"
			o.InboundInterceptionMode = "TPROXY"
			o.InboundPortsInclude = "*"
			o.InboundPortsExclude = "15020,15021"
			o.OutboundIPRangesInclude = "10.0.0.0/8,fd00::/8,10.0.0.0/8"
			o.OutboundIPRangesExclude = "10.96.0.0/12,10.96.0.1/32,fd00:1::/64,192.168.7.7/16"
			o.OutboundPortsInclude = "3306"
			o.OutboundPortsExclude = "9000,9001"
			o.RerouteVirtualInterfaces = "eth1,eth0"
			o.ExcludeInterfaces = "eth9"
			o.RedirectDNS = true
			o.DropInvalid = true
			o.DualStack = true
		},
		"capture-all-dns-ports": func(o *translate.Options) {
			o.ProxyUID, o.ProxyGID = "1337", "1337"
			o.InboundPortsInclude = "80,8080,9000:9100"
			o.OutboundIPRangesInclude = "*"
			o.OutboundIPRangesExclude = "169.254.169.254/32"
			o.RedirectDNS = true
			o.CaptureAllDNS = true
			o.OwnerGroupsInclude = "1000,2000"
			o.DualStack = true
		},
		"tproxy-no-inbound": func(o *translate.Options) {
			o.ProxyUID = "istio-proxy"
			o.InboundInterceptionMode = "TPROXY"
			o.InboundPortsInclude = ""
			o.OutboundIPRangesInclude = "127.0.0.1/8,10.0.0.0/8"
			o.OwnerGroupsInclude = "*"
			o.OwnerGroupsExclude = "1000"
		},
	}
	out := map[string]translate.Config{}
	for name, set := range opts {
		o := translate.DefaultOptions()
		set(&o)
		cfg, err := o.Config(fakeSystem{})
		if err != nil {
			panic(fmt.Sprintf("config %s: %v", name, err))
		}
		out[name] = cfg
	}
	return out
}

// TestBuildLowers: every realistic configuration lowers and renders
// (no kernel needed).
func TestBuildLowers(t *testing.T) {
	for name, cfg := range realisticConfigs() {
		if _, err := Text(translate.Build(cfg)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}
