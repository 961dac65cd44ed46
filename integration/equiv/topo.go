package equiv

import (
	"bytes"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/vishvananda/netns"

	"github.com/nfintercept/nfintercept/integration/harness"
)

// Prefix starts the name of every namespace this package creates, followed
// by the creating process id (so leftovers of dead runs can be swept).
const Prefix = "nfi-eq-"

// Addresses of a twin. The pod reaches everything through its default
// routes via the peer, except the "behind" prefixes of its extra interfaces,
// which are routed to the side namespace. The peer and the side answer any
// destination they receive (a TPROXY catch-all), so flows need no address
// assignment.
var (
	PodV4  = netip.MustParseAddr("172.30.0.2")
	PodV6  = netip.MustParseAddr("fd00:30::2")
	PeerV4 = netip.MustParseAddr("172.30.0.1")
	PeerV6 = netip.MustParseAddr("fd00:30::1")

	// VIPs are routed by the peer to the pod and blackholed there: only
	// interception can accept them.
	VIPV4 = netip.MustParseAddr("203.0.113.200")
	VIPV6 = netip.MustParseAddr("fd00:99::200")
)

// catchAllPort is where the TPROXY catch-all of the peer and the side
// delivers every connection and datagram.
const catchAllPort = 9999

// catchAllMark and catchAllTable route TPROXYed packets locally in the peer
// and the side.
const (
	catchAllMark  = 1
	catchAllTable = 100
	sideTableBase = 200 // + interface number: the side's per-link source routing
)

// Iface is an extra pod interface (besides eth0) leading to the side
// namespace. Number k (from 1) fixes its addresses.
type Iface struct {
	Name string
	K    int
}

// PodAddr is the pod's address on the interface.
func (i Iface) PodAddr(v6 bool) netip.Addr { return ifaceAddr(i.K, 2, v6) }

// SideAddr is the side's address on the link.
func (i Iface) SideAddr(v6 bool) netip.Addr { return ifaceAddr(i.K, 1, v6) }

// Behind is an address the pod routes through this interface to the side.
func (i Iface) Behind(v6 bool) netip.Addr {
	if v6 {
		return netip.MustParseAddr(fmt.Sprintf("fd00:18:%x::10", i.K))
	}
	return netip.MustParseAddr(fmt.Sprintf("198.18.%d.10", i.K))
}

func (i Iface) behindPrefix(v6 bool) string {
	if v6 {
		return fmt.Sprintf("fd00:18:%x::/64", i.K)
	}
	return fmt.Sprintf("198.18.%d.0/24", i.K)
}

func (i Iface) sideEnd() string { return fmt.Sprintf("s%d", i.K) }

// mac is the fixed MAC address of host (1 far end, 2 pod) on link k (0 is
// eth0).
func mac(k, host int) string { return fmt.Sprintf("02:00:00:00:%02x:%02x", k, host) }

func ifaceAddr(k, host int, v6 bool) netip.Addr {
	if v6 {
		return netip.MustParseAddr(fmt.Sprintf("fd00:31:%x::%d", k, host))
	}
	return netip.MustParseAddr(fmt.Sprintf("172.31.%d.%d", k, host))
}

// Topology is the shape of a twin: which extra interfaces the pod has.
type Topology struct {
	Ifaces []Iface
}

// Origin says which namespace of a twin a flow starts in.
type Origin string

const (
	FromPod  Origin = "pod"
	FromPeer Origin = "peer"
	FromSide Origin = "side"
)

// Twin is one pod with its peer (behind eth0) and side (behind the extra
// interfaces), all in their own namespaces.
type Twin struct {
	Backend Backend
	Topo    Topology
	names   map[Origin]string
	handles map[Origin]netns.NsHandle
}

// Name is the namespace name of a part of the twin.
func (tw *Twin) Name(o Origin) string { return tw.names[o] }

// Path is the namespace file of a part of the twin.
func (tw *Twin) Path(o Origin) string { return filepath.Join(harness.NetNSDir, tw.names[o]) }

var sweepOnce sync.Once

// NewTwin creates the namespaces of one twin, wires them and installs the
// catch-alls. Everything is deleted when the test ends.
func NewTwin(t testing.TB, backend Backend, topo Topology) *Twin {
	t.Helper()
	harness.RequireRoot(t)
	sweepOnce.Do(func() { harness.SweepNamespaces(Prefix) })

	base := harness.OwnedName(Prefix) + "-" + backend.short()
	tw := &Twin{Backend: backend, Topo: topo, names: map[Origin]string{}, handles: map[Origin]netns.NsHandle{}}
	origins := []Origin{FromPod, FromPeer}
	if len(topo.Ifaces) > 0 {
		origins = append(origins, FromSide)
	}
	for _, o := range origins {
		name := base + "-" + string(o)
		harness.AddNS(t, name)
		tw.names[o] = name
		// Set before any interface exists, so new interfaces inherit it.
		sysctls := []string{
			"net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0",
			"net.ipv4.conf.all.accept_redirects=0", "net.ipv4.conf.default.accept_redirects=0",
			"net.ipv6.conf.all.accept_redirects=0", "net.ipv6.conf.default.accept_redirects=0",
		}
		if o == FromPod {
			// The pod routes for the VMs behind its virtual interfaces.
			sysctls = append(sysctls, "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1",
				"net.ipv4.conf.all.send_redirects=0", "net.ipv4.conf.default.send_redirects=0")
		}
		harness.InNS(t, name, "sysctl", append([]string{"-q", "-w"}, sysctls...)...)
	}

	var pod4, pod6, peer4, peer6, side4, side6 []string
	// Fixed MAC addresses and permanent neighbour entries: no ARP or
	// neighbour discovery can delay (and so time out) the first flows.
	pod4 = append(pod4,
		fmt.Sprintf("link add eth0 address %s type veth peer name eth0 address %s netns %s", mac(0, 2), mac(0, 1), tw.names[FromPeer]),
		"link set lo up", "link set eth0 up",
		"addr add "+PodV4.String()+"/24 dev eth0",
		"neigh add "+PeerV4.String()+" lladdr "+mac(0, 1)+" dev eth0 nud permanent",
		"route add default via "+PeerV4.String(),
		"route add blackhole "+VIPV4.String()+"/32",
	)
	pod6 = append(pod6,
		"addr add "+PodV6.String()+"/64 dev eth0 nodad",
		"neigh add "+PeerV6.String()+" lladdr "+mac(0, 1)+" dev eth0 nud permanent",
		"route add default via "+PeerV6.String(),
		"route add blackhole "+VIPV6.String()+"/128",
	)
	peer4 = append(peer4, "link set lo up", "link set eth0 up",
		"addr add "+PeerV4.String()+"/24 dev eth0",
		"neigh add "+PodV4.String()+" lladdr "+mac(0, 2)+" dev eth0 nud permanent",
		"route add default via "+PodV4.String())
	peer6 = append(peer6, "addr add "+PeerV6.String()+"/64 dev eth0 nodad",
		"neigh add "+PodV6.String()+" lladdr "+mac(0, 2)+" dev eth0 nud permanent",
		"route add default via "+PodV6.String())
	if len(topo.Ifaces) > 0 {
		side4 = append(side4, "link set lo up")
	}
	for _, i := range topo.Ifaces {
		end := i.sideEnd()
		table := strconv.Itoa(sideTableBase + i.K)
		podMAC, sideMAC := mac(i.K, 2), mac(i.K, 1)
		pod4 = append(pod4,
			fmt.Sprintf("link add %s address %s type veth peer name %s address %s netns %s", i.Name, podMAC, end, sideMAC, tw.names[FromSide]),
			"link set "+i.Name+" up",
			"addr add "+i.PodAddr(false).String()+"/24 dev "+i.Name,
			"neigh add "+i.SideAddr(false).String()+" lladdr "+sideMAC+" dev "+i.Name+" nud permanent",
			"route add "+i.behindPrefix(false)+" via "+i.SideAddr(false).String())
		pod6 = append(pod6,
			"addr add "+i.PodAddr(true).String()+"/64 dev "+i.Name+" nodad",
			"neigh add "+i.SideAddr(true).String()+" lladdr "+sideMAC+" dev "+i.Name+" nud permanent",
			"route add "+i.behindPrefix(true)+" via "+i.SideAddr(true).String())
		side4 = append(side4, "link set "+end+" up",
			"addr add "+i.SideAddr(false).String()+"/24 dev "+end,
			"neigh add "+i.PodAddr(false).String()+" lladdr "+podMAC+" dev "+end+" nud permanent",
			"rule add from "+i.SideAddr(false).String()+" lookup "+table,
			"route add default via "+i.PodAddr(false).String()+" dev "+end+" table "+table)
		side6 = append(side6,
			"addr add "+i.SideAddr(true).String()+"/64 dev "+end+" nodad",
			"neigh add "+i.PodAddr(true).String()+" lladdr "+podMAC+" dev "+end+" nud permanent",
			"rule add from "+i.SideAddr(true).String()+" lookup "+table,
			"route add default via "+i.PodAddr(true).String()+" dev "+end+" table "+table)
	}
	// The catch-all's policy routing: TPROXYed packets are local.
	for _, l := range []*[]string{&peer4, &side4} {
		if len(*l) > 0 {
			*l = append(*l, fmt.Sprintf("rule add fwmark %d lookup %d", catchAllMark, catchAllTable),
				fmt.Sprintf("route add local 0.0.0.0/0 dev lo table %d", catchAllTable))
		}
	}
	for _, l := range []*[]string{&peer6, &side6} {
		if len(*l) > 0 {
			*l = append(*l, fmt.Sprintf("rule add fwmark %d lookup %d", catchAllMark, catchAllTable),
				fmt.Sprintf("route add local ::/0 dev lo table %d", catchAllTable))
		}
	}
	// Links first (the pod batch creates them), then the far ends.
	ipBatch(t, tw.names[FromPod], "", pod4)
	ipBatch(t, tw.names[FromPod], "-6", pod6)
	ipBatch(t, tw.names[FromPeer], "", peer4)
	ipBatch(t, tw.names[FromPeer], "-6", peer6)
	if len(topo.Ifaces) > 0 {
		ipBatch(t, tw.names[FromSide], "", side4)
		ipBatch(t, tw.names[FromSide], "-6", side6)
	}

	for _, o := range origins {
		if o != FromPod {
			installCatchAll(t, tw, o)
		}
		h, err := netns.GetFromPath(tw.Path(o))
		if err != nil {
			t.Fatalf("open netns %s: %v", tw.Path(o), err)
		}
		tw.handles[o] = h
		t.Cleanup(func() { _ = h.Close() })
	}
	return tw
}

// catchAllRules sends every new connection or datagram entering the
// namespace to the catch-all listener, keeping its destination.
const catchAllRules = `table inet nfi-eq-catch {
	chain prerouting {
		type filter hook prerouting priority mangle; policy accept;
		meta l4proto { tcp, udp } ct direction original tproxy to :%d meta mark set %d accept
	}
}
`

// installCatchAll makes o answer anything: TCP through transparent
// listeners, UDP through a responder that answers from the datagram's
// original destination.
func installCatchAll(t testing.TB, tw *Twin, o Origin) {
	t.Helper()
	nftIn(t, tw.Name(o), fmt.Sprintf(catchAllRules, catchAllPort, catchAllMark), "-f", "-")
	transparent := harness.ListenOptions{Transparent: true}
	for _, host := range []string{"0.0.0.0", "[::]"} {
		addr := fmt.Sprintf("%s:%d", host, catchAllPort)
		harness.ListenTCP(t, tw.Path(o), addr, string(o), transparent)
		listenUDPCatchAll(t, tw.Path(o), addr, string(o))
	}
}

// ipBatch runs iproute2 commands in a namespace, one exec per family.
func ipBatch(t testing.TB, ns, family string, cmds []string) {
	t.Helper()
	if len(cmds) == 0 {
		return
	}
	args := []string{"-n", ns}
	if family != "" {
		args = append(args, family)
	}
	args = append(args, "-batch", "-")
	cmd := exec.Command("ip", args...)
	cmd.Stdin = strings.NewReader(strings.Join(cmds, "\n") + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v\n%s\ncommands:\n%s", strings.Join(args, " "), err, out, strings.Join(cmds, "\n"))
	}
}

// nftIn runs nft inside a namespace with stdin (a test tool, never the
// product).
func nftIn(t testing.TB, ns, stdin string, args ...string) string {
	t.Helper()
	out, err := runIn(ns, stdin, "nft", args...)
	if err != nil {
		t.Fatalf("nft %s in %s: %v\n%s", strings.Join(args, " "), ns, err, out)
	}
	return out
}

// runIn runs a tool inside a namespace with stdin and returns its combined
// output.
func runIn(ns, stdin, name string, args ...string) (string, error) {
	return runTool("ip", stdin, append([]string{"netns", "exec", ns, name}, args...)...)
}

// runTool runs a tool with stdin and returns its combined output.
func runTool(name, stdin string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}
