package kernel

import (
	"fmt"

	"github.com/mdlayher/netlink"
	vnetlink "github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Sockets are every netlink socket one operation uses, opened in a single
// visit of the namespace: entering a namespace costs a locked thread and
// two setns calls, which several separate visits paid on the path of every
// apply.
type Sockets struct {
	ns      *Namespace
	route   int // addresses (Addrs)
	NF      *NFTablesConn
	Routing *Routing
}

// OpenSockets opens the namespace's address, nf_tables and routing
// sockets in one visit.
func OpenSockets(ns *Namespace) (*Sockets, error) {
	s := &Sockets{ns: ns, route: -1}
	r := &rtnl{ns: ns, lo: loopbackIndex}
	err := ns.Do(func() error {
		fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
		if err != nil {
			return fmt.Errorf("rtnetlink socket: %w", err)
		}
		s.route = fd
		c, err := netlink.Dial(unix.NETLINK_NETFILTER, nil) // this thread's namespace: ns
		if err != nil {
			return fmt.Errorf("nf_tables socket: %w", err)
		}
		s.NF = &NFTablesConn{c: c, ns: ns}
		sock, err := nl.GetNetlinkSocketAt(vnetns.None(), vnetns.None(), unix.NETLINK_ROUTE)
		if err != nil {
			return fmt.Errorf("rtnetlink socket: %w", err)
		}
		r.raw = &nl.SocketHandle{Socket: sock}
		r.h, err = vnetlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return fmt.Errorf("rtnetlink socket: %w", err)
		}
		return nil
	})
	s.Routing = &Routing{r: r}
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("%s: %w", ns, err)
	}
	return s, nil
}

// Addrs is the package's Addrs over the address socket.
func (s *Sockets) Addrs() ([]IfAddr, error) { return addrsOn(s.ns, s.route) }

// Close closes every socket but NF, which the caller closes (Close waits
// for the kernel's deferred cleanup after a deletion; see NFTablesConn).
func (s *Sockets) Close() {
	if s.route >= 0 {
		unix.Close(s.route)
		s.route = -1
	}
	if s.Routing != nil {
		s.Routing.Close()
		s.Routing = nil
	}
}
