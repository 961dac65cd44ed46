package integration

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nfintercept/nfintercept/integration/harness"
	"github.com/nfintercept/nfintercept/internal/libtest"
	"github.com/nfintercept/nfintercept/translate"
)

// TestTProxyFlows installs the base configuration in TPROXY mode: inbound
// connections reach the transparent listener with their destination intact
// (policy routing by mark), everything else behaves as in REDIRECT mode.
func TestTProxyFlows(t *testing.T) {
	for _, dual := range []bool{false, true} {
		name := "ipv4-only"
		if dual {
			name = "dual-stack"
		}
		t.Run(name, func(t *testing.T) {
			p := harness.NewPair(t, harness.PairOptions{})
			startListeners(t, p)
			o := baseOptions(dual)
			o.InboundInterceptionMode = "TPROXY"
			req := libtest.Request{Options: o, NetNSPath: p.PodPath, System: fakeSystem{resolvConf}}
			if _, err := libtest.Apply(req); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			// Unlike istio-iptables (EEXIST on its ip rule), re-applying
			// succeeds and changes nothing.
			first := nftList(t, p.Pod, "ruleset")
			rules := harness.InNS(t, p.Pod, "ip", "rule", "show")
			if _, err := libtest.Apply(req); err != nil {
				t.Fatalf("second Apply: %v", err)
			}
			if again := nftList(t, p.Pod, "ruleset"); again != first {
				t.Errorf("second Apply changed the ruleset:\n--- first\n%s\n--- second\n%s", first, again)
			}
			if again := harness.InNS(t, p.Pod, "ip", "rule", "show"); again != rules {
				t.Errorf("second Apply changed the policy rules:\n--- first\n%s\n--- second\n%s", rules, again)
			}
			checkPolicyRouting(t, p, "-4", true)
			checkPolicyRouting(t, p, "-6", dual)
			checkPassthroughV6(t, p, dual)
			checkFlows(t, p, dual, true)

			if err := libtest.Cleanup(p.PodPath); err != nil {
				t.Fatalf("Cleanup: %v", err)
			}
			checkPolicyRouting(t, p, "-4", false)
			checkPolicyRouting(t, p, "-6", false)
		})
	}
}

// TestModeSwitch re-applies a TPROXY namespace in REDIRECT mode: the policy
// routing goes away and inbound connections are redirected again.
func TestModeSwitch(t *testing.T) {
	p := harness.NewPair(t, harness.PairOptions{})
	startListeners(t, p)
	o := baseOptions(true)
	o.InboundInterceptionMode = "TPROXY"
	if _, err := libtest.Apply(libtest.Request{Options: o, NetNSPath: p.PodPath, System: fakeSystem{resolvConf}}); err != nil {
		t.Fatalf("Apply TPROXY: %v", err)
	}
	checkPolicyRouting(t, p, "-6", true)
	if _, err := libtest.Apply(libtest.Request{Options: baseOptions(true), NetNSPath: p.PodPath, System: fakeSystem{resolvConf}}); err != nil {
		t.Fatalf("Apply REDIRECT: %v", err)
	}
	checkPolicyRouting(t, p, "-4", false)
	checkPolicyRouting(t, p, "-6", false)
	if tables := ownTables(t, p.Pod); contains(tables, "inet nfintercept-mangle") {
		t.Errorf("mangle table left after switching to REDIRECT: %v", tables)
	}
	checkFlows(t, p, true, false)
}

// checkPolicyRouting checks for the TPROXY routing of one family (ip -4 or
// -6): "fwmark 0x539 lookup 133" and a local default route in table 133.
func checkPolicyRouting(t *testing.T, p *harness.Pair, fam string, want bool) {
	t.Helper()
	rules := harness.InNS(t, p.Pod, "ip", fam, "rule", "show")
	routes := harness.InNS(t, p.Pod, "ip", fam, "route", "show", "table", "all")
	hasRule := strings.Contains(rules, "fwmark 0x539 lookup 133")
	hasRoute := false
	for _, line := range strings.Split(routes, "\n") {
		if strings.HasPrefix(line, "local default dev lo table 133") {
			hasRoute = true
		}
	}
	if hasRule != want || hasRoute != want {
		t.Errorf("ip %s: fwmark rule present %v, local route present %v, want %v\nrules:\n%s\nroutes:\n%s",
			fam, hasRule, hasRoute, want, rules, routes)
	}
}

// The tests below follow one inbound connection through TPROXY by hand:
// client → transparent listener (destination intact) → stand-in proxy →
// app (client address intact) → app's replies routed back by the conntrack
// mark and the policy routing. They run in their own namespaces (nfi-tp-*).

const (
	tpMark  = 1337
	tpTable = 133
)

// tpPair creates a pod and a peer namespace joined by a veth pair, with the
// harness's standard addresses, named nfi-tp-PID-RANDOM-{pod,peer}.
func tpPair(t *testing.T) *harness.Pair {
	t.Helper()
	harness.RequireRoot(t)
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	base := fmt.Sprintf("nfi-tp-%d-%s", os.Getpid(), hex.EncodeToString(b))
	p := &harness.Pair{Pod: base + "-pod", Peer: base + "-peer"}
	p.PodPath = filepath.Join(harness.NetNSDir, p.Pod)
	p.PeerPath = filepath.Join(harness.NetNSDir, p.Peer)
	harness.AddNS(t, p.Pod)
	harness.AddNS(t, p.Peer)
	ip := func(ns string, args ...string) { harness.MustRun(t, "ip", append([]string{"-n", ns}, args...)...) }
	// Created in the pod and moved straight to the peer: nothing ever
	// appears in the root namespace.
	ip(p.Pod, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", p.Peer)
	for _, ns := range []string{p.Pod, p.Peer} {
		ip(ns, "link", "set", "lo", "up")
		ip(ns, "link", "set", "eth0", "up")
	}
	ip(p.Pod, "addr", "add", harness.PodV4.String()+"/24", "dev", "eth0")
	ip(p.Pod, "addr", "add", harness.PodV6.String()+"/64", "dev", "eth0", "nodad")
	ip(p.Peer, "addr", "add", harness.PeerV4.String()+"/24", "dev", "eth0")
	ip(p.Peer, "addr", "add", harness.PeerV6.String()+"/64", "dev", "eth0", "nodad")
	return p
}

// tpOptions captures every inbound port but excludedIn, with IPv6 when the
// pod has it (it always has here).
func tpOptions(mode string) translate.Options {
	o := translate.DefaultOptions()
	o.InboundInterceptionMode = mode
	o.InboundPortsInclude = "*"
	o.InboundPortsExclude = fmt.Sprint(excludedIn)
	o.ProxyUID = fmt.Sprint(proxyUID)
	o.DualStack = true
	return o
}

func tpApply(t *testing.T, p *harness.Pair, o translate.Options) {
	t.Helper()
	if _, err := libtest.Apply(libtest.Request{Options: o, NetNSPath: p.PodPath, System: fakeSystem{}}); err != nil {
		t.Fatalf("Apply %s: %v", o.InboundInterceptionMode, err)
	}
}

// tpFamily is one address family of the pair.
type tpFamily struct {
	name        string
	pod, client netip.Addr
	passthrough netip.Addr // the proxy's inbound passthrough source
}

var tpFamilies = []tpFamily{
	{"ipv4", harness.PodV4, harness.PeerV4, netip.MustParseAddr("127.0.0.6")},
	{"ipv6", harness.PodV6, harness.PeerV6, netip.MustParseAddr("::6")},
}

// standIn describes a connection made the way Envoy's original_src filter
// makes its upstream connection in TPROXY mode: an IP_TRANSPARENT socket
// bound to the downstream client's address, carrying a socket mark.
type standIn struct {
	owner harness.Owner  // socket owner (as skuid/skgid see it)
	src   netip.Addr     // bound even though not local
	dst   netip.AddrPort // the app
	mark  uint32         // SO_MARK; 0 for none
}

// dial makes the connection from inside the namespace and returns the
// listener's Reply. It runs in this process, which keeps CAP_NET_ADMIN
// (needed for IP_TRANSPARENT) while the socket is owned by s.owner.
func (s standIn) dial(nsPath string, timeout time.Duration) (harness.Reply, error) {
	var reply harness.Reply
	err := harness.Do(nsPath, func() error {
		// Locked once more so the thread, whose fsuid changes, dies with
		// this goroutine instead of returning to the scheduler.
		runtime.LockOSThread()
		unix.Setfsgid(int(s.owner.GID))
		unix.Setfsuid(int(s.owner.UID))
		d := net.Dialer{
			Timeout:   timeout,
			LocalAddr: &net.TCPAddr{IP: s.src.AsSlice()},
			Control:   harness.Flow{Mark: s.mark, Transparent: true}.Control,
		}
		c, err := d.Dial("tcp", s.dst.String())
		if err != nil {
			return err
		}
		defer c.Close()
		if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
			return err
		}
		line, err := bufio.NewReader(c).ReadBytes('\n')
		if err != nil {
			return fmt.Errorf("read reply: %w", err)
		}
		return json.Unmarshal(line, &reply)
	})
	return reply, err
}

func addrOf(t *testing.T, s string) netip.Addr {
	t.Helper()
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		t.Fatalf("listener reported address %q: %v", s, err)
	}
	return ap.Addr()
}

// tpListeners starts the transparent inbound listener (as Envoy's is in
// TPROXY mode) and the app on appPort and excludedIn.
func tpListeners(t *testing.T, p *harness.Pair) {
	t.Helper()
	for _, addr := range []string{"0.0.0.0:15006", "[::]:15006"} {
		harness.ListenTCP(t, p.PodPath, addr, tagInbound, harness.ListenOptions{Transparent: true})
	}
	harness.ListenBoth(t, p.PodPath, "tcp", appPort, tagApp)
	harness.ListenBoth(t, p.PodPath, "tcp", excludedIn, tagApp)
}

// clientFlow connects from the peer to the pod and returns where it landed.
func clientFlow(t *testing.T, p *harness.Pair, dst netip.AddrPort) harness.Reply {
	t.Helper()
	r := harness.Run(t, p.PeerPath, harness.Flow{Proto: "tcp", Dst: dst})
	if r.Err != nil {
		t.Fatalf("client → %s: %v", dst, r.Err)
	}
	return r.Reply
}

func TestTProxyTransparentPath(t *testing.T) {
	p := tpPair(t)
	tpListeners(t, p)
	tpApply(t, p, tpOptions("TPROXY"))
	checkPolicyRouting(t, p, "-4", true)
	checkPolicyRouting(t, p, "-6", true)

	for _, f := range tpFamilies {
		t.Run(f.name, func(t *testing.T) {
			app := netip.AddrPortFrom(f.pod, appPort)

			// The transparent listener gets the connection as the client
			// made it: local = pod address and app port, remote = client.
			r := clientFlow(t, p, app)
			if r.Tag != tagInbound || r.Local != app.String() || addrOf(t, r.Remote) != f.client {
				t.Errorf("client → %s: reached %q local %s remote %s; want %q local %s remote %s:*",
					app, r.Tag, r.Local, r.Remote, tagInbound, app, f.client)
			}

			// Excluded inbound port: the app itself answers.
			excl := netip.AddrPortFrom(f.pod, excludedIn)
			if r := clientFlow(t, p, excl); r.Tag != tagApp || r.Local != excl.String() || addrOf(t, r.Remote) != f.client {
				t.Errorf("client → %s (excluded): reached %q local %s remote %s; want the app", excl, r.Tag, r.Local, r.Remote)
			}

			// The proxy's upstream from the client's address: the app sees
			// the client, and its replies (to a non-local address) come
			// back through the conntrack mark and the fwmark route.
			// The stand-in is not owned by the proxy uid: with istio-iptables'
			// rules (11a: -o lo ! -d 127.0.0.1 --uid-owner 1337 →
			// ISTIO_IN_REDIRECT) a uid-1337 connection to the pod address is
			// redirected to :15006 whatever its mark (IPv6), or dropped as a
			// martian after REDIRECT to 127.0.0.1 (IPv4).
			proxy := standIn{owner: harness.Owner{UID: 0, GID: 0}, src: f.client, dst: app, mark: tpMark}
			r, err := proxy.dial(p.PodPath, 2*time.Second)
			if err != nil {
				t.Fatalf("stand-in proxy %s → %s with mark %d: %v", f.client, app, tpMark, err)
			}
			if r.Tag != tagApp || r.Local != app.String() || addrOf(t, r.Remote) != f.client {
				t.Errorf("stand-in proxy: reached %q local %s remote %s; want the app seeing %s", r.Tag, r.Local, r.Remote, f.client)
			}

			// Without the mark the app's replies leave through eth0 to the
			// real client, so the handshake never completes: the mark and
			// the routing above are what made it work.
			proxy.mark = 0
			if r, err := proxy.dial(p.PodPath, time.Second); err == nil {
				t.Errorf("unmarked stand-in connection succeeded (%+v); the previous check proves nothing", r)
			}
		})
	}

	// Drift: the fwmark rule removed behind our back breaks the path; a
	// re-apply puts it back.
	harness.InNS(t, p.Pod, "ip", "rule", "del", "fwmark", fmt.Sprint(tpMark), "lookup", fmt.Sprint(tpTable))
	proxy := standIn{src: harness.PeerV4, dst: netip.AddrPortFrom(harness.PodV4, appPort), mark: tpMark}
	if r, err := proxy.dial(p.PodPath, time.Second); err == nil {
		t.Errorf("stand-in connection succeeded without the fwmark rule (%+v)", r)
	}
	tpApply(t, p, tpOptions("TPROXY"))
	checkPolicyRouting(t, p, "-4", true)
	if _, err := proxy.dial(p.PodPath, 2*time.Second); err != nil {
		t.Errorf("stand-in proxy after re-apply: %v", err)
	}

	if err := libtest.Cleanup(p.PodPath); err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	checkNothingOfOurs(t, p)
}

// In REDIRECT mode the proxy reaches the app from the passthrough address,
// which is what the app sees.
func TestRedirectPassthroughSource(t *testing.T) {
	p := tpPair(t)
	tpListeners(t, p)
	harness.ListenBoth(t, p.PodPath, "tcp", 15001, tagOutbound)
	tpApply(t, p, tpOptions("REDIRECT"))
	checkPolicyRouting(t, p, "-4", false)
	checkPassthroughV6(t, p, true)

	for _, f := range tpFamilies {
		t.Run(f.name, func(t *testing.T) {
			app := netip.AddrPortFrom(f.pod, appPort)
			r := clientFlow(t, p, app)
			if want := netip.AddrPortFrom(f.pod, 15006).String(); r.Tag != tagInbound || r.Local != want || r.OrigDst != app.String() {
				t.Errorf("client → %s: reached %q local %s original dst %q; want %q local %s original dst %s",
					app, r.Tag, r.Local, r.OrigDst, tagInbound, want, app)
			}
			res := harness.Run(t, p.PodPath, harness.Flow{Proto: "tcp", UID: proxyUID, GID: proxyUID, Src: f.passthrough, Dst: app})
			if res.Err != nil {
				t.Fatalf("proxy from %s → %s: %v", f.passthrough, app, res.Err)
			}
			if res.Tag != tagApp || addrOf(t, res.Remote) != f.passthrough {
				t.Errorf("proxy from %s: reached %q remote %s; want the app seeing %s", f.passthrough, res.Tag, res.Remote, f.passthrough)
			}
		})
	}
	if err := libtest.Cleanup(p.PodPath); err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	checkNothingOfOurs(t, p)
}

// echoServer accepts on a transparent listener and echoes lines back.
func echoServer(t *testing.T, nsPath, addr string) {
	t.Helper()
	var ln net.Listener
	err := harness.Do(nsPath, func() error {
		lc := net.ListenConfig{Control: harness.Flow{Transparent: true}.Control}
		network := "tcp4"
		if strings.HasPrefix(addr, "[") {
			network = "tcp6"
		}
		var err error
		ln, err = lc.Listen(context.Background(), network, addr)
		return err
	})
	if err != nil {
		t.Fatalf("echo listener %s: %v", addr, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
}

// An established inbound connection keeps flowing while the rules and the
// routing are replaced, including with another mark and table.
func TestTProxyEstablishedAcrossReapply(t *testing.T) {
	p := tpPair(t)
	echoServer(t, p.PodPath, "0.0.0.0:15006")
	echoServer(t, p.PodPath, "[::]:15006")
	tpApply(t, p, tpOptions("TPROXY"))

	conns := map[string]net.Conn{}
	for _, f := range tpFamilies {
		err := harness.Do(p.PeerPath, func() error {
			c, err := net.DialTimeout("tcp", netip.AddrPortFrom(f.pod, appPort).String(), 2*time.Second)
			conns[f.name] = c
			return err
		})
		if err != nil {
			t.Fatalf("%s: client connect: %v", f.name, err)
		}
		t.Cleanup(func() { conns[f.name].Close() })
	}
	exchange := func(step string) {
		t.Helper()
		for name, c := range conns {
			msg := fmt.Sprintf("%s %s\n", name, step)
			_ = c.SetDeadline(time.Now().Add(2 * time.Second))
			if _, err := io.WriteString(c, msg); err != nil {
				t.Fatalf("%s, %s: write: %v", step, name, err)
			}
			got, err := bufio.NewReader(c).ReadString('\n')
			if err != nil || got != msg {
				t.Fatalf("%s, %s: echo %q, %v; want %q", step, name, got, err, msg)
			}
		}
	}
	exchange("before re-apply")

	tpApply(t, p, tpOptions("TPROXY"))
	exchange("after identical re-apply")

	o := tpOptions("TPROXY")
	o.InboundTProxyMark = "0x200"
	o.InboundTProxyRouteTable = "150"
	tpApply(t, p, o)
	for _, fam := range []string{"-4", "-6"} {
		rules := harness.InNS(t, p.Pod, "ip", fam, "rule", "show")
		if !strings.Contains(rules, "fwmark 0x200 lookup 150") || strings.Contains(rules, "lookup 133") {
			t.Errorf("ip %s rule after changing -t/-r: want only fwmark 0x200 lookup 150 of ours:\n%s", fam, rules)
		}
		if routes := harness.InNS(t, p.Pod, "ip", fam, "route", "show", "table", "all"); strings.Contains(routes, "table 133") ||
			!strings.Contains(routes, "local default dev lo table 150") {
			t.Errorf("ip %s routes after changing -t/-r: want the local route in table 150 only:\n%s", fam, routes)
		}
	}
	exchange("after re-apply with another mark and table")

	// New connections are captured under the new mark too.
	err := harness.Do(p.PeerPath, func() error {
		c, err := net.DialTimeout("tcp", netip.AddrPortFrom(harness.PodV4, appPort).String(), 2*time.Second)
		if err == nil {
			conns["ipv4 new"] = c
		}
		return err
	})
	if err != nil {
		t.Fatalf("new connection after the change: %v", err)
	}
	t.Cleanup(func() { conns["ipv4 new"].Close() })
	exchange("new connection")

	if err := libtest.Cleanup(p.PodPath); err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	checkNothingOfOurs(t, p)
}

// checkNothingOfOurs checks that the pod holds no rule, route, table or
// address of ours: the namespace is fresh, so anything left is ours.
func checkNothingOfOurs(t *testing.T, p *harness.Pair) {
	t.Helper()
	for _, fam := range []string{"-4", "-6"} {
		if rules := harness.InNS(t, p.Pod, "ip", fam, "rule", "show"); strings.Contains(rules, "fwmark") {
			t.Errorf("ip %s rule after cleanup:\n%s", fam, rules)
		}
		for _, line := range strings.Split(harness.InNS(t, p.Pod, "ip", fam, "route", "show", "table", "all"), "\n") {
			if strings.Contains(line, "local default") {
				t.Errorf("ip %s route left after cleanup: %s", fam, line)
			}
		}
	}
	if rs := strings.TrimSpace(nftList(t, p.Pod, "ruleset")); rs != "" {
		t.Errorf("nft list ruleset after cleanup:\n%s", rs)
	}
	if addrs := harness.InNS(t, p.Pod, "ip", "-6", "addr", "show", "dev", "lo"); strings.Contains(addrs, " ::6/128 ") {
		t.Errorf("::6 left on lo after cleanup:\n%s", addrs)
	}
}

// TestTProxyCLI runs the binary as an operator would, inside a throwaway
// namespace, programming the pod through --network-namespace.
func TestTProxyCLI(t *testing.T) {
	p := tpPair(t)
	tpListeners(t, p)
	args := []string{"-m", "TPROXY", "-b", "*", "-d", fmt.Sprint(excludedIn), "-u", fmt.Sprint(proxyUID),
		"-t", "0x300", "-r", "160", "--dual-stack"}
	for range 2 { // re-running the command succeeds (istio-iptables fails on EEXIST)
		mustCLI(t, "", withNS(p, args...)...)
	}
	for _, fam := range []string{"-4", "-6"} {
		var rules []string
		for _, line := range strings.Split(harness.InNS(t, p.Pod, "ip", fam, "rule", "show"), "\n") {
			if strings.Contains(line, "fwmark") {
				rules = append(rules, strings.TrimSpace(line[strings.Index(line, ":")+1:]))
			}
		}
		if len(rules) != 1 || rules[0] != "from all fwmark 0x300 lookup 160 proto 201" {
			t.Errorf("ip %s rule: fwmark rules %q, want exactly one fwmark 0x300 lookup 160 proto 201", fam, rules)
		}
		if routes := harness.InNS(t, p.Pod, "ip", fam, "route", "show", "table", "160"); !strings.HasPrefix(routes, "local default dev lo proto 201") {
			t.Errorf("ip %s route show table 160: %q", fam, routes)
		}
	}
	for _, f := range tpFamilies {
		app := netip.AddrPortFrom(f.pod, appPort)
		if r := clientFlow(t, p, app); r.Tag != tagInbound || r.Local != app.String() || addrOf(t, r.Remote) != f.client {
			t.Errorf("%s: client → %s reached %q local %s remote %s", f.name, app, r.Tag, r.Local, r.Remote)
		}
		proxy := standIn{src: f.client, dst: app, mark: 0x300}
		if r, err := proxy.dial(p.PodPath, 2*time.Second); err != nil || r.Tag != tagApp || addrOf(t, r.Remote) != f.client {
			t.Errorf("%s: stand-in proxy → %s: %+v, %v; want the app seeing %s", f.name, app, r, err, f.client)
		}
	}
	for range 2 { // cleanup is idempotent
		mustCLI(t, "", "cleanup", "--network-namespace", p.PodPath)
	}
	checkNothingOfOurs(t, p)
}
