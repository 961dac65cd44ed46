package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nfintercept/nfintercept/integration/harness"
)

// These tests run the plugin binary the way a runtime does (environment
// and stdin), without libcni, to see its exact stdout and exit status.

type invocation struct {
	command, netns, args string
	stdin                string
	wrap                 []string // a command the plugin runs under (strace ...)
}

type outcome struct {
	stdout, stderr string
	exit           int
}

func invoke(t *testing.T, inv invocation) outcome {
	t.Helper()
	bin := pluginBinary(t)
	argv := append(append([]string{}, inv.wrap...), bin)
	cmd := exec.Command(argv[0], argv[1:]...)
	if inv.args == "" {
		inv.args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web"
	}
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"CNI_COMMAND=" + inv.command, "CNI_CONTAINERID=ctr", "CNI_NETNS=" + inv.netns,
		"CNI_IFNAME=eth0", "CNI_PATH=" + filepath.Dir(bin), "CNI_ARGS=" + inv.args,
	}
	cmd.Stdin = strings.NewReader(inv.stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	o := outcome{stdout: stdout.String(), stderr: stderr.String()}
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatal(err)
		}
		o.exit = ee.ExitCode()
	}
	return o
}

// cniError decodes the CNI error JSON a failed call prints on stdout.
func (o outcome) cniError(t *testing.T) (code uint, msg string) {
	t.Helper()
	var e struct {
		CNIVersion string `json:"cniVersion"`
		Code       uint   `json:"code"`
		Msg        string `json:"msg"`
	}
	if o.exit == 0 {
		t.Fatalf("call succeeded: %s", o.stdout)
	}
	if err := json.Unmarshal([]byte(o.stdout), &e); err != nil || e.CNIVersion == "" {
		t.Fatalf("stdout is not a CNI error (%v): %q", err, o.stdout)
	}
	return e.Code, e.Msg
}

func podNamespace(t *testing.T) (name, path string) {
	t.Helper()
	harness.RequireRoot(t)
	name = harness.OwnedName(harness.Prefix)
	harness.MustRun(t, "ip", "netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	harness.MustRun(t, "ip", "-n", name, "link", "set", "lo", "up")
	return name, filepath.Join(harness.NetNSDir, name)
}

// confWith is a 1.0.0 configuration for an injected pod with the given
// prevResult (raw JSON, "" for none).
func confWith(prevResult string) string {
	c := `{"cniVersion":"1.0.0","name":"net","type":"nfintercept-cni",` +
		`"runtimeConfig":{"io.kubernetes.cri.pod-annotations":{"sidecar.istio.io/status":"{\"containers\":[\"istio-proxy\"]}"}}`
	if prevResult != "" {
		c += `,"prevResult":` + prevResult
	}
	return c + "}"
}

const prevResult = `{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","mac":"0a:58:0a:f4:00:05","sandbox":"/var/run/netns/x"}],` +
	`"ips":[{"address":"10.244.0.5/24","gateway":"10.244.0.1","interface":0}],"routes":[{"dst":"0.0.0.0/0"}],"dns":{"nameservers":["10.96.0.10"]},"x-vendor":{"kept":true}}`

func TestAddPrintsPrevResultUnchanged(t *testing.T) {
	name, path := podNamespace(t)
	o := invoke(t, invocation{command: "ADD", netns: path, stdin: confWith(prevResult)})
	if o.exit != 0 {
		t.Fatalf("ADD: %d %s %s", o.exit, o.stdout, o.stderr)
	}
	if strings.TrimSpace(o.stdout) != prevResult {
		t.Fatalf("stdout differs from prevResult:\n got %s\nwant %s", o.stdout, prevResult)
	}
	if !strings.Contains(harness.InNS(t, name, "nft", "list", "tables"), "nfintercept-nat") {
		t.Fatal("ADD installed nothing")
	}
}

func TestErrorCodes(t *testing.T) {
	_, path := podNamespace(t)
	for _, tc := range []struct {
		name string
		inv  invocation
		code uint
		msg  string
	}{
		{"undecodable configuration", invocation{command: "ADD", netns: path, stdin: `{"cniVersion":"1.0.0","name":"n","type":"t",`}, 6, ""},
		{"bad CNI_ARGS", invocation{command: "ADD", netns: path, stdin: confWith(prevResult), args: "K8S_POD_NAME=web;UNKNOWN=1"}, 4, "CNI_ARGS"},
		{"no runtimeConfig annotations", invocation{command: "ADD", netns: path, stdin: `{"cniVersion":"1.0.0","name":"n","type":"nfintercept-cni","prevResult":` + prevResult + `}`}, 7, capPodAnnotations},
		{"bad log level", invocation{command: "ADD", netns: path, stdin: `{"cniVersion":"1.0.0","name":"n","type":"nfintercept-cni","log_level":"loud"}`}, 7, "log_level"},
		{"CHECK without prevResult", invocation{command: "CHECK", netns: path, stdin: confWith("")}, 7, "prevResult"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, msg := invoke(t, tc.inv).cniError(t)
			if code != tc.code || !strings.Contains(msg, tc.msg) {
				t.Fatalf("code %d %q, want %d mentioning %q", code, msg, tc.code, tc.msg)
			}
		})
	}
}

func TestDelWithoutNamespace(t *testing.T) {
	plain := filepath.Join(t.TempDir(), "cni-unmounted")
	if err := os.WriteFile(plain, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, netns := range []string{"", "/var/run/netns/nfi-it-never-existed", plain} {
		if o := invoke(t, invocation{command: "DEL", netns: netns, stdin: confWith("")}); o.exit != 0 {
			t.Errorf("DEL with netns %q: %d %s", netns, o.exit, o.stdout)
		}
	}
}

func requireStrace(t *testing.T) {
	if _, err := exec.LookPath("strace"); err != nil {
		t.Skip("strace not installed (make deps)")
	}
}

// TestStatusUnavailable: without netlink sockets, STATUS reports that ADD
// cannot be served (50).
func TestStatusUnavailable(t *testing.T) {
	requireStrace(t)
	stdin := `{"cniVersion":"1.1.0","name":"n","type":"nfintercept-cni"}`
	if o := invoke(t, invocation{command: "STATUS", stdin: stdin}); o.exit != 0 {
		t.Fatalf("STATUS: %d %s", o.exit, o.stdout)
	}
	o := invoke(t, invocation{command: "STATUS", stdin: stdin,
		wrap: []string{"strace", "-f", "-qq", "-o", "/dev/null", "-e", "trace=socket", "-e", "inject=socket:error=EAFNOSUPPORT"}})
	if code, msg := o.cniError(t); code != errPluginNotAvailable || !strings.Contains(msg, "nf_tables") {
		t.Fatalf("STATUS without netlink: %d %q", code, msg)
	}
}

// TestAddNeverHalfApplied fails each netlink send of ADD in turn: ADD either
// succeeds with everything in place (CHECK passes) or fails with our kernel
// code and leaves no table and no policy routing behind.
func TestAddNeverHalfApplied(t *testing.T) {
	requireStrace(t)
	failed := 0
	for n := 1; n <= 8; n++ {
		t.Run(fmt.Sprint("send ", n), func(t *testing.T) {
			name, path := podNamespace(t)
			stdin := strings.Replace(confWith(prevResult), `"type":"nfintercept-cni",`,
				`"type":"nfintercept-cni","runtimeConfig":{"io.kubernetes.cri.pod-annotations":{"sidecar.istio.io/status":"{}","sidecar.istio.io/interceptionMode":"TPROXY"}},`, 1)
			// The later runtimeConfig key wins in Go's decoder; keep one.
			stdin = strings.Replace(stdin, `,"runtimeConfig":{"io.kubernetes.cri.pod-annotations":{"sidecar.istio.io/status":"{\"containers\":[\"istio-proxy\"]}"}}`, "", 1)
			o := invoke(t, invocation{command: "ADD", netns: path, stdin: stdin,
				wrap: []string{"strace", "-f", "-qq", "-o", "/dev/null", "-e", "trace=sendto,sendmsg", "-e", fmt.Sprintf("inject=sendto,sendmsg:error=EIO:when=%d", n)}})
			tables := harness.InNS(t, name, "nft", "list", "tables")
			rules := harness.InNS(t, name, "ip", "rule", "show")
			if o.exit == 0 {
				if !strings.Contains(tables, "nfintercept-mangle") || !strings.Contains(rules, "lookup 133") {
					t.Fatalf("ADD succeeded but capture is incomplete:\n%s\n%s", tables, rules)
				}
				if c := invoke(t, invocation{command: "CHECK", netns: path, stdin: stdin}); c.exit != 0 {
					t.Fatalf("CHECK after a successful ADD: %s", c.stdout)
				}
				return
			}
			failed++
			if code, _ := o.cniError(t); code != errKernel {
				t.Fatalf("failed ADD: code %d, want %d (%s)", code, errKernel, o.stdout)
			}
			if strings.Contains(tables, "nfintercept") || strings.Contains(rules, "lookup 133") {
				t.Fatalf("failed ADD left state behind:\n%s\n%s", tables, rules)
			}
		})
	}
	if failed == 0 {
		t.Fatal("no injected failure reached ADD: the test proves nothing")
	}
}
