// Command demo shows nfintercept doing its main job on a built-in default:
// it creates a pod and a peer network namespace, applies the seed's
// istio-init options with the nfintercept binary, prints the ruleset, proves
// capture with real connections and cleans everything up again.
//
// Run as root: go run ./integration/demo -bin bin/nfintercept
// It uses iproute2 to build the namespaces (the engine itself never runs
// ip, nft or iptables) and touches nothing outside the namespaces it makes.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/nfintercept/nfintercept"
)

const (
	podNS   = "nfi-demo-pod"
	peerNS  = "nfi-demo-peer"
	podIP   = "192.0.2.2"
	peerIP  = "192.0.2.1"
	service = "198.51.100.7" // an "external" service, assigned in the peer namespace
	exclIP  = "10.245.0.1"   // inside the seed's excluded 10.245.0.0/16, also in the peer
)

// seedArgs are the istio-init arguments from the project's seed.
var seedArgs = []string{"-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT",
	"-i", "*", "-x", "10.245.0.0/16", "-b", "*", "-d", "15090,15021,15020"}

func main() {
	if len(os.Args) > 2 && os.Args[1] == "-client" {
		os.Exit(client(os.Args[2]))
	}
	bin := flag.String("bin", "bin/nfintercept", "nfintercept binary to demonstrate")
	cniPlugin := flag.String("cni", "", "demonstrate this nfintercept-cni binary in a libcni chain instead")
	flag.Parse()
	demo := func() error { return run(*bin) }
	if *cniPlugin != "" {
		demo = func() error { return runCNI(*cniPlugin) }
	}
	if err := demo(); err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		os.Exit(1)
	}
}

func run(bin string) error {
	if os.Geteuid() != 0 {
		return errors.New("the demo creates network namespaces: run it as root")
	}
	bin, err := absPath(bin)
	if err != nil {
		return err
	}
	defer teardown()
	defer func() {
		if clientPath != "" {
			os.RemoveAll(strings.TrimSuffix(clientPath, "/demo-client"))
		}
	}()
	teardown() // leftovers of an interrupted run
	step("1. create a pod and a peer namespace joined by a veth pair")
	if err := setup(); err != nil {
		return err
	}
	podPath := "/var/run/netns/" + podNS

	step("2. apply the seed's istio-init options with nfintercept (inside a throwaway namespace, targeting the pod)")
	args := append(append([]string{"-n", bin}, seedArgs...), "--network-namespace", podPath)
	fmt.Printf("$ unshare -n %s %s --network-namespace %s\n", bin, strings.Join(quoteAll(seedArgs), " "), podPath)
	if err := show("unshare", args...); err != nil {
		return err
	}

	step("3. the ruleset in the pod namespace")
	if _, err := exec.LookPath("nft"); err == nil {
		fmt.Println("$ ip netns exec " + podNS + " nft list ruleset")
		if err := show("ip", "netns", "exec", podNS, "nft", "list", "ruleset"); err != nil {
			return err
		}
	} else {
		fmt.Println("(nft is not installed; showing `nfintercept render` instead)")
		if err := show(bin, append([]string{"render"}, seedArgs...)...); err != nil {
			return err
		}
	}

	step("4. real connections through the rules")
	ok := true
	listeners := []struct{ ns, addr, name string }{
		{podNS, "0.0.0.0:15001", "proxy outbound listener :15001"},
		{podNS, "0.0.0.0:15006", "proxy inbound listener :15006"},
		{podNS, "0.0.0.0:15021", "app (health port, excluded) :15021"},
		{peerNS, "0.0.0.0:80", "peer service :80"},
	}
	for _, l := range listeners {
		if err := serve(l.ns, l.addr, l.name); err != nil {
			return err
		}
	}
	for _, f := range []struct {
		ns   string
		uid  int
		dst  string
		want string
		why  string
	}{
		{podNS, 1000, service + ":80", "proxy outbound listener :15001", "app traffic is captured"},
		{podNS, 1337, service + ":80", "peer service :80", "the proxy's own uid is exempt"},
		{podNS, 1000, exclIP + ":80", "peer service :80", "10.245.0.0/16 is excluded (-x)"},
		{peerNS, 0, podIP + ":8080", "proxy inbound listener :15006", "inbound traffic is captured"},
		{peerNS, 0, podIP + ":15021", "app (health port, excluded) :15021", "15021 is excluded inbound (-d)"},
	} {
		got, err := connect(f.ns, f.uid, f.dst)
		mark := "ok  "
		if err != nil || !strings.HasPrefix(got, f.want) {
			mark, ok = "FAIL", false
		}
		if err != nil {
			got = "error: " + err.Error()
		}
		fmt.Printf("%s %-5s uid %-4d -> %-17s reached %s  (%s)\n", mark, strings.TrimPrefix(f.ns, "nfi-demo-"), f.uid, f.dst, got, f.why)
	}

	step("5. cleanup removes exactly what was installed")
	if err := show("unshare", "-n", bin, "cleanup", "--network-namespace", podPath); err != nil {
		return err
	}
	if _, err := exec.LookPath("nft"); err == nil {
		out, _ := exec.Command("ip", "netns", "exec", podNS, "nft", "list", "ruleset").CombinedOutput()
		fmt.Printf("nft list ruleset after cleanup: %q\n", strings.TrimSpace(string(out)))
	}
	if !ok {
		return errors.New("a connection did not take the expected path")
	}
	fmt.Println("\ndemo passed: traffic was captured as istio-iptables would capture it")
	return nil
}

func setup() error {
	cmds := [][]string{
		{"netns", "add", podNS},
		{"netns", "add", peerNS},
		{"link", "add", "nfi-demo0", "netns", podNS, "type", "veth", "peer", "name", "nfi-demo1", "netns", peerNS},
		{"-n", podNS, "addr", "add", podIP + "/24", "dev", "nfi-demo0"},
		{"-n", peerNS, "addr", "add", peerIP + "/24", "dev", "nfi-demo1"},
		{"-n", peerNS, "addr", "add", service + "/32", "dev", "lo"},
		{"-n", peerNS, "addr", "add", exclIP + "/32", "dev", "lo"},
		{"-n", podNS, "link", "set", "lo", "up"},
		{"-n", peerNS, "link", "set", "lo", "up"},
		{"-n", podNS, "link", "set", "nfi-demo0", "up"},
		{"-n", peerNS, "link", "set", "nfi-demo1", "up"},
		{"-n", podNS, "route", "add", "default", "via", peerIP},
	}
	for _, c := range cmds {
		if out, err := exec.Command("ip", c...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(c, " "), err, out)
		}
	}
	return nil
}

func teardown() {
	exec.Command("ip", "netns", "del", podNS).Run()
	exec.Command("ip", "netns", "del", peerNS).Run()
}

// inNS runs fn on a thread inside the named namespace; sockets created
// there stay in that namespace.
func inNS(name string, fn func() error) error {
	return nfintercept.InNamespace("/var/run/netns/"+name, fn)
}

// serve answers every connection with the listener's name and the
// connection's original destination (SO_ORIGINAL_DST), as a proxy sees it.
func serve(ns, addr, name string) error {
	var ln net.Listener
	err := inNS(ns, func() (err error) {
		ln, err = net.Listen("tcp4", addr)
		return err
	})
	if err != nil {
		return fmt.Errorf("listen on %s in %s: %w", addr, ns, err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			orig := originalDst(c.(*net.TCPConn))
			fmt.Fprintf(c, "%s (original destination %s)\n", name, orig)
			c.Close()
		}
	}()
	return nil
}

func originalDst(c *net.TCPConn) string {
	if dst, err := nfintercept.OriginalDst(c); err == nil {
		return dst.String()
	}
	return c.LocalAddr().String() // not redirected: the destination itself
}

// connect makes a connection from the namespace as the given uid/gid by
// starting this program again on a thread inside the namespace.
func connect(ns string, uid int, dst string) (string, error) {
	self, err := clientBinary()
	if err != nil {
		return "", err
	}
	var out []byte
	err = inNS(ns, func() error {
		cmd := exec.Command(self, "-client", dst)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
		var err error
		out, err = cmd.CombinedOutput()
		return err
	})
	if err != nil {
		return "", fmt.Errorf("%v: %s", err, strings.TrimSpace(string(out)))
	}
	return strings.TrimSpace(string(out)), nil
}

var clientPath string

// clientBinary is a copy of this program that unprivileged users can run
// (go run builds into a directory only root can enter).
func clientBinary() (string, error) {
	if clientPath != "" {
		return clientPath, nil
	}
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	data, err := os.ReadFile(self)
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "nfi-demo-")
	if err != nil {
		return "", err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", err
	}
	clientPath = dir + "/demo-client"
	return clientPath, os.WriteFile(clientPath, data, 0o755)
}

func client(dst string) int {
	c, err := net.DialTimeout("tcp", dst, 2*time.Second)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		fmt.Println(err)
		return 1
	}
	fmt.Print(line)
	return 0
}

func step(s string) { fmt.Printf("\n== %s\n", s) }

func show(name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stdout
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return nil
}

func absPath(p string) (string, error) {
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("binary %s: %w (run `make build` first)", p, err)
	}
	if strings.HasPrefix(p, "/") {
		return p, nil
	}
	wd, err := os.Getwd()
	return wd + "/" + p, err
}

func quoteAll(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if a == "*" || a == "" {
			a = "'" + a + "'"
		}
		out[i] = a
	}
	return out
}
