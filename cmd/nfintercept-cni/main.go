// Command nfintercept-cni is a chained CNI plugin that takes the place of
// Istio's istio-cni in sidecar mode: on ADD it programs the pod's capture
// as native nftables rules in the pod's network namespace, from the pod's
// annotations (handed over by the runtime through the capability
// io.kubernetes.cri.pod-annotations) and the proxy facts of its
// configuration. `nfintercept-cni install|uninstall` puts it in place.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"golang.org/x/sys/unix"

	"github.com/nfintercept/nfintercept/translate"
)

// errPluginNotAvailable is the spec's STATUS code for "cannot serve ADD"
// (CNI 1.1; this library version has no constant for it).
const errPluginNotAvailable uint = 50

// Our error codes (100 and up; the CNI spec reserves the lower ones).
const (
	errKernel uint = 100 // the kernel refused or failed; previous state kept
	errDrift  uint = 101 // CHECK: the pod's rules differ from what ADD installs
)

const about = "nfintercept-cni: Istio sidecar capture as native nftables rules (chained CNI plugin,\n" +
	"run by the container runtime with CNI_COMMAND set).\n" +
	"nfintercept-cni install|uninstall [--cni-conf-dir DIR] [--cni-bin-dir DIR] puts it in place."

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "install" || os.Args[1] == "uninstall") {
		os.Exit(installMain(os.Args[1], os.Args[2:], os.Stdout, os.Stderr))
	}
	stdin := replayStdin()
	p := &plugin{stdout: os.Stdout, stderr: os.Stderr, getenv: os.LookupEnv}
	if err := skel.PluginMainFuncsWithError(skel.CNIFuncs{
		Add: p.add, Check: p.check, Del: p.del, GC: p.gc, Status: p.status,
	}, version.PluginSupports(supportedVersions...), about); err != nil {
		printError(os.Stdout, errorVersion(stdin), err)
		os.Exit(1)
	}
}

var supportedVersions = []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"}

// replayStdin reads the configuration so errors can carry its cniVersion,
// and hands the same bytes to skel as stdin.
func replayStdin() []byte {
	if os.Getenv("CNI_COMMAND") == "" {
		return nil // skel prints the about text; stdin may be a terminal
	}
	data, _ := io.ReadAll(os.Stdin)
	r, w, err := os.Pipe()
	if err != nil {
		return data
	}
	go func() {
		_, _ = w.Write(data)
		w.Close()
	}()
	os.Stdin = r
	return data
}

// errorVersion is the cniVersion an error is reported in: the
// configuration's, or the newest we speak when it has none.
func errorVersion(stdin []byte) string {
	var v struct {
		CNIVersion string `json:"cniVersion"`
	}
	if json.Unmarshal(stdin, &v) == nil && v.CNIVersion != "" {
		return v.CNIVersion
	}
	return supportedVersions[len(supportedVersions)-1]
}

// printError prints the spec's error object: cniVersion, code, msg,
// details.
func printError(w io.Writer, cniVersion string, e *types.Error) {
	out, _ := json.Marshal(struct {
		CNIVersion string `json:"cniVersion"`
		Code       uint   `json:"code"`
		Msg        string `json:"msg"`
		Details    string `json:"details,omitempty"`
	}{cniVersion, e.Code, e.Msg, e.Details})
	fmt.Fprintf(w, "%s\n", out)
}

type plugin struct {
	stdout, stderr io.Writer
	getenv         func(string) (string, bool)
}

// call is what one invocation logs.
type call struct {
	command, containerID, pod, netns string
	decision                         string
	tables, rules                    int
	start                            time.Time
}

func (p *plugin) begin(command string, a *skel.CmdArgs) *call {
	c := &call{command: command, containerID: a.ContainerID, netns: a.Netns, start: time.Now()}
	if pa, err := parseArgs(a.Args); err == nil && pa.K8S_POD_NAME != "" {
		c.pod = string(pa.K8S_POD_NAMESPACE) + "/" + string(pa.K8S_POD_NAME)
	}
	return c
}

// finish writes the call's one log line and turns err into a CNI error.
func (p *plugin) finish(conf *netConf, c *call, err error) error {
	var cerr *types.Error
	if err != nil && !errors.As(err, &cerr) {
		cerr = types.NewError(types.ErrInternal, err.Error(), "")
	}
	level, file := "", ""
	if conf != nil {
		level, file = conf.LogLevel, conf.LogFile
	}
	logCall(p.stderr, level, file, c, cerr)
	if cerr != nil {
		return cerr
	}
	return nil
}

func (p *plugin) add(a *skel.CmdArgs) error {
	c := p.begin("ADD", a)
	conf, err := p.addPod(a, c)
	return p.finish(conf, c, err)
}

// pod reads the configuration and CNI_ARGS and decides what to do with
// the pod.
func (p *plugin) pod(a *skel.CmdArgs) (*netConf, translate.CNIDecision, error) {
	conf, cerr := parseConf(a.StdinData)
	if cerr != nil {
		return nil, translate.CNIDecision{}, cerr
	}
	pa, cerr := parseArgs(a.Args)
	if cerr != nil {
		return conf, translate.CNIDecision{}, cerr
	}
	d, cerr := conf.decision(pa, p.getenv)
	if cerr != nil {
		return conf, translate.CNIDecision{}, cerr
	}
	return conf, d, nil
}

func (p *plugin) addPod(a *skel.CmdArgs, c *call) (*netConf, error) {
	conf, d, err := p.pod(a)
	if err != nil {
		return conf, err
	}
	if d.Skip != "" {
		c.decision = "pass through: " + d.Skip
	} else {
		s, err := program(context.Background(), a.Netns, d.Options)
		if err != nil {
			return conf, classify(err, "programming the pod's capture")
		}
		c.decision, c.tables, c.rules = "captured", s.Tables, s.Rules
	}
	for _, w := range d.Warnings {
		c.decision += "; " + w
	}
	return conf, printPrevResult(p.stdout, conf)
}

func (p *plugin) check(a *skel.CmdArgs) error {
	c := p.begin("CHECK", a)
	conf, err := p.checkPod(a, c)
	return p.finish(conf, c, err)
}

func (p *plugin) checkPod(a *skel.CmdArgs, c *call) (*netConf, error) {
	conf, d, err := p.pod(a)
	if err != nil {
		return conf, err
	}
	if len(conf.PrevResult) == 0 {
		return conf, types.NewError(types.ErrInvalidNetworkConfig, "CHECK needs a prevResult", "")
	}
	if d.Skip != "" {
		c.decision = "pass through: " + d.Skip
		return conf, nil
	}
	drift, err := verify(context.Background(), a.Netns, d.Options)
	if err != nil {
		return conf, classify(err, "reading the pod's capture")
	}
	if drift != "" {
		c.decision = "drift"
		return conf, types.NewError(errDrift, "the pod's capture rules differ from what ADD installs", drift)
	}
	c.decision = "in sync"
	return conf, nil
}

func (p *plugin) del(a *skel.CmdArgs) error {
	c := p.begin("DEL", a)
	conf, cerr := parseConf(a.StdinData)
	if cerr != nil {
		return p.finish(nil, c, cerr)
	}
	if a.Netns == "" {
		c.decision = "nothing to do: no network namespace"
		return p.finish(conf, c, nil)
	}
	if netnsGone(a.Netns) {
		c.decision = "nothing to do: network namespace is gone"
		return p.finish(conf, c, nil)
	}
	if err := remove(context.Background(), a.Netns); err != nil {
		return p.finish(conf, c, classify(err, "removing the pod's capture"))
	}
	c.decision = "removed"
	return p.finish(conf, c, nil)
}

// netnsGone reports a namespace path that no longer names a network
// namespace: removed, or left behind as a plain file once unmounted (as
// runtimes leave /var/run/netns/cni-... behind).
func netnsGone(path string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return errors.Is(err, unix.ENOENT)
	}
	return st.Type != unix.NSFS_MAGIC
}

// gc succeeds: the plugin keeps no state outside the pods' namespaces,
// which go away with the pods.
func (p *plugin) gc(a *skel.CmdArgs) error {
	c := p.begin("GC", a)
	conf, cerr := parseConf(a.StdinData)
	if cerr != nil {
		return p.finish(nil, c, cerr)
	}
	c.decision = "nothing to collect"
	return p.finish(conf, c, nil)
}

// status reports whether ADD can be served: nf_tables over netlink works.
func (p *plugin) status(a *skel.CmdArgs) error {
	c := p.begin("STATUS", a)
	conf, cerr := parseConf(a.StdinData)
	if cerr != nil {
		return p.finish(nil, c, cerr)
	}
	if err := probeNetlink(context.Background()); err != nil {
		return p.finish(conf, c, types.NewError(errPluginNotAvailable, "nf_tables over netlink does not work here: "+err.Error(), ""))
	}
	c.decision = "ready"
	return p.finish(conf, c, nil)
}

// classify turns a library error into a CNI error: input errors are
// configuration errors (7), the rest kernel failures (ours).
func classify(err error, doing string) *types.Error {
	if isInputError(err) {
		return types.NewError(types.ErrInvalidNetworkConfig, err.Error(), "")
	}
	return types.NewError(errKernel, doing+": "+err.Error(), "")
}

// printPrevResult prints the prevResult exactly as given; without one (a
// misplaced, unchained entry) an empty result of the configuration's
// version.
func printPrevResult(w io.Writer, conf *netConf) error {
	if len(conf.PrevResult) > 0 && string(conf.PrevResult) != "null" {
		_, err := fmt.Fprintf(w, "%s\n", conf.PrevResult)
		return err
	}
	empty := &types100.Result{CNIVersion: types100.ImplementedSpecVersion}
	r, err := empty.GetAsVersion(conf.CNIVersion)
	if err != nil {
		return types.NewError(types.ErrIncompatibleCNIVersion, err.Error(), "")
	}
	return r.PrintTo(w)
}
