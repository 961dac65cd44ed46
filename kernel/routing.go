package kernel

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/nfintercept/nfintercept/translate"
)

// RouteProtocol is the rtnetlink protocol number ("proto 201" in ip's
// output) carried by every policy rule, route and address nfintercept adds.
// It is how cleanup, given only a namespace, finds exactly what is ours and
// leaves everything else alone. 201 is not assigned in iproute2's rt_protos.
const RouteProtocol = 201

// ifaProto is IFA_PROTO (Linux 6.3+); x/sys and netlink v1.3.1 lack it.
// Older kernels ignore the attribute: the address is then added untagged
// and cleanup leaves it, as istio-iptables always does.
const ifaProto = 11

// dumpRetries bounds retries of a dump the kernel reports as interrupted
// (istio-iptables retries its lo lookup the same way).
const dumpRetries = 5

// ApplyRouting installs rs.Routes and rs.LoopbackAddrs in the namespace
// and removes rules, routes and addresses of ours that rs no longer wants,
// in one step (tests and benchmarks; Apply uses Begin and Prune around its
// batch). The returned undo reverts exactly what this call changed.
func ApplyRouting(rs *translate.Ruleset, ns *Namespace) (undo func() error, err error) {
	r, err := OpenRouting(ns)
	if err != nil {
		return nil, err
	}
	c, err := r.Begin(rs)
	if err != nil {
		r.Close()
		return nil, err
	}
	// Journaled, unlike Prune: undo restores what this call removed too.
	if err := c.r.removeStale(c.want, c.have, &c.j); err != nil {
		if uerr := c.Undo(); uerr != nil {
			err = fmt.Errorf("%w (and reverting the partial change failed: %v)", err, uerr)
		}
		r.Close()
		return nil, err
	}
	return func() error { defer r.Close(); return c.Undo() }, nil
}

// Routing is the rtnetlink side of a namespace: nfintercept's policy
// rules, routes and loopback addresses.
type Routing struct{ r *rtnl }

// OpenRouting connects to the namespace's rtnetlink (nil: the current
// namespace).
func OpenRouting(ns *Namespace) (*Routing, error) {
	r, err := dialRtnl(ns)
	if err != nil {
		return nil, err
	}
	return &Routing{r: r}, nil
}

// Close releases the connection.
func (r *Routing) Close() { r.r.close() }

// RoutingChange is one change of the namespace's routing to what a
// ruleset wants, in two halves around the nftables batch: Begin adds what
// is missing (Undo reverts exactly that), Prune removes what was ours and
// stale when Begin looked. An interrupted change leaves extra routing,
// never capture rules without their routes.
type RoutingChange struct {
	r    *rtnl
	want routingState
	have snapshot
	j    journal
}

// Begin adds (or repairs) the routing rs wants and the namespace lacks.
// On error, what it changed is reverted.
func (r *Routing) Begin(rs *translate.Ruleset) (*RoutingChange, error) {
	want, err := desiredRouting(rs)
	if err != nil {
		return nil, r.r.errorf("%w", err)
	}
	c := &RoutingChange{r: r.r}
	if c.want, err = r.r.located(want); err != nil {
		return nil, err
	}
	if c.have, err = r.r.snapshot(); err == nil {
		err = r.r.addMissing(c.want, &c.have, &c.j)
	}
	if err != nil {
		if uerr := c.j.revert(r.r); uerr != nil {
			err = fmt.Errorf("%w (and reverting the partial change failed: %v)", err, uerr)
		}
		return nil, err
	}
	return c, nil
}

// Undo reverts what Begin changed.
func (c *RoutingChange) Undo() error {
	err := c.j.revert(c.r)
	c.j = nil
	return err
}

// Prune removes our rules, routes and addresses that were there when
// Begin looked and the ruleset does not want.
func (c *RoutingChange) Prune() error {
	var j journal // pruning is not reverted
	return c.r.removeStale(c.want, c.have, &j)
}

// Cleanup removes every policy rule, route and loopback address tagged
// with RouteProtocol. Nothing installed is not an error; foreign objects
// are never touched.
func (r *Routing) Cleanup() error {
	have, err := r.r.snapshot()
	if err != nil {
		return err
	}
	var j journal // unused: cleanup is not reverted
	return r.r.removeStale(routingState{}, have, &j)
}

// routingState is the set of objects of ours a namespace should hold.
type routingState struct {
	rules  []netlink.Rule
	routes []netlink.Route // LinkIndex filled in once lo is known
	// needsLoV6[i]: routes[i] is left out when lo's IPv6 is disabled.
	needsLoV6 []bool
	addrs     []netip.Prefix // on lo
}

func desiredRouting(rs *translate.Ruleset) (routingState, error) {
	var s routingState
	for _, pr := range rs.Routes {
		fam, err := nlFamily(pr.Family)
		if err != nil {
			return s, err
		}
		// Also refused by option validation; repeated here because a rule
		// for mark 0 or a local default route in a kernel table would
		// capture every packet of the namespace.
		if pr.Mark == 0 {
			return s, errors.New("TPROXY mark 0 would send every unmarked packet to the local table")
		}
		switch pr.Table {
		case unix.RT_TABLE_UNSPEC, unix.RT_TABLE_DEFAULT, unix.RT_TABLE_MAIN, unix.RT_TABLE_LOCAL:
			return s, fmt.Errorf("route table %d is reserved by the kernel", pr.Table)
		}
		ru := policyRule(fam, pr.Mark, pr.MarkMask(), pr.Table)
		if pr.Priority != 0 {
			ru.Priority = int(pr.Priority)
		}
		s.rules = append(s.rules, ru)
		s.routes = append(s.routes, localDefault(fam, pr.Table))
		s.needsLoV6 = append(s.needsLoV6, pr.RouteNeedsLoIPv6)
	}
	s.addrs = append(s.addrs, rs.LoopbackAddrs...)
	return s, nil
}

func nlFamily(f translate.Family) (int, error) {
	switch f {
	case translate.IPv4:
		return unix.AF_INET, nil
	case translate.IPv6:
		return unix.AF_INET6, nil
	}
	return 0, fmt.Errorf("policy route for family %v: want exactly one family", f)
}

var fullMask uint32 = 0xffffffff

// policyRule is "ip [-6] rule add fwmark MARK/MASK lookup TABLE proto 201".
// The priority is left to the kernel (just above main), as istio-iptables
// does.
func policyRule(family int, mark, mask, table uint32) netlink.Rule {
	r := netlink.NewRule()
	r.Family = family
	r.Mark = mark
	r.Mask = &mask
	r.Table = int(table)
	r.Protocol = RouteProtocol
	return *r
}

// localDefault is "ip [-6] route add local default dev lo table TABLE proto 201".
func localDefault(family int, table uint32) netlink.Route {
	dst := &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}
	if family == unix.AF_INET6 {
		dst = &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
	}
	return netlink.Route{
		Family:   family,
		Dst:      dst,
		Type:     unix.RTN_LOCAL,
		Scope:    netlink.SCOPE_HOST,
		Table:    int(table),
		Protocol: RouteProtocol,
	}
}

// rtnl is an rtnetlink connection into one namespace. The namespace is
// entered only to open the sockets, by a goroutine of its own on a locked
// thread; the process never changes namespace.
type rtnl struct {
	ns  *Namespace
	h   *netlink.Handle  // see handle
	raw *nl.SocketHandle // requests the library cannot express (IFA_PROTO)
	lo  int
}

// loopbackIndex is lo's interface index in every namespace: the kernel
// registers lo first and asserts it gets LOOPBACK_IFINDEX (1).
const loopbackIndex = 1

// dialRtnl connects to the namespace through its descriptor. The library
// handle is opened by handle() when policy rules or routes are to be read
// or changed: a pod in REDIRECT mode never needs it.
func dialRtnl(ns *Namespace) (*rtnl, error) {
	r := &rtnl{ns: ns, lo: loopbackIndex}
	err := ns.Do(func() error {
		sock, err := nl.GetNetlinkSocketAt(vnetns.None(), vnetns.None(), unix.NETLINK_ROUTE)
		if err != nil {
			return err
		}
		r.raw = &nl.SocketHandle{Socket: sock}
		return nil
	})
	if err != nil {
		return nil, r.errorf("rtnetlink socket: %w", err)
	}
	return r, nil
}

// handle returns the library handle, opening it on first use.
func (r *rtnl) handle() (*netlink.Handle, error) {
	if r.h != nil {
		return r.h, nil
	}
	err := r.ns.Do(func() error {
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		r.h = h
		return err
	})
	if err != nil {
		return nil, r.errorf("rtnetlink socket: %w", err)
	}
	return r.h, nil
}

func (r *rtnl) close() {
	if r.h != nil {
		r.h.Close()
	}
	if r.raw != nil {
		r.raw.Close()
	}
}

// probe reports whether the namespace holds policy rules or routes of ours,
// with one raw dump each: only then are they read through the library,
// which parses every rule and route of every table.
func (r *rtnl) probe() (rules, routes bool, err error) {
	for _, d := range []struct {
		typ, resp int
		found     *bool
		ours      func(msg []byte) bool
	}{
		{unix.RTM_GETRULE, unix.RTM_NEWRULE, &rules, ruleIsOurs},
		{unix.RTM_GETROUTE, unix.RTM_NEWROUTE, &routes, routeIsOurs},
	} {
		err := retryDump(func() error {
			req := r.request(d.typ, unix.NLM_F_DUMP)
			req.AddData(nl.NewRtMsg()) // AF_UNSPEC: every family
			msgs, err := req.Execute(unix.NETLINK_ROUTE, uint16(d.resp))
			*d.found = slices.ContainsFunc(msgs, d.ours)
			return err
		})
		if err := skipNoFamily(err); err != nil {
			return false, false, r.errorf("list policy rules and routes: %w", err)
		}
	}
	return rules, routes, nil
}

// ruleIsOurs reads FRA_PROTOCOL after the fib_rule_hdr.
func ruleIsOurs(msg []byte) bool {
	const hdr = 12 // struct fib_rule_hdr
	if len(msg) < hdr {
		return false
	}
	attrs, err := nl.ParseRouteAttr(msg[hdr:])
	if err != nil {
		return false
	}
	for _, a := range attrs {
		if a.Attr.Type == unix.FRA_PROTOCOL && len(a.Value) > 0 {
			return a.Value[0] == RouteProtocol
		}
	}
	return false
}

// routeIsOurs reads rtm_protocol from the rtmsg.
func routeIsOurs(msg []byte) bool {
	return len(msg) >= unix.SizeofRtMsg && msg[5] == RouteProtocol
}

func (r *rtnl) errorf(format string, args ...any) error {
	return fmt.Errorf("policy routing in %s: "+format, append([]any{r.ns}, args...)...)
}

// journal records applied changes as their inverses, to revert them.
type journal []func(*rtnl) error

func (j journal) revert(r *rtnl) error {
	var errs []error
	for i := len(j) - 1; i >= 0; i-- {
		if err := j[i](r); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// located fills in lo's index in the wanted routes, and leaves out the
// IPv6 routes wanted only where lo has IPv6 (lo's disable_ipv6 is 1).
func (r *rtnl) located(want routingState) (routingState, error) {
	var routes []netlink.Route
	var v6Off *bool
	for i, rt := range want.routes {
		if want.needsLoV6[i] && rt.Family == unix.AF_INET6 {
			if v6Off == nil {
				off, err := r.loIPv6Disabled()
				if err != nil {
					return want, err
				}
				v6Off = &off
			}
			if *v6Off {
				continue
			}
		}
		rt.LinkIndex = r.lo
		routes = append(routes, rt)
	}
	want.routes, want.needsLoV6 = routes, nil
	return want, nil
}

// snapshot is our part of a namespace's routing, and lo's addresses.
type snapshot struct {
	rules  []netlink.Rule
	routes []netlink.Route
	addrs  []loAddr
}

func (r *rtnl) snapshot() (snapshot, error) {
	var s snapshot
	rules, routes, err := r.probe()
	if err != nil {
		return s, err
	}
	if rules {
		if s.rules, err = r.ourRules(); err != nil {
			return s, err
		}
	}
	if routes {
		if s.routes, err = r.ourRoutes(); err != nil {
			return s, err
		}
	}
	s.addrs, err = r.loAddrs()
	return s, err
}

// addMissing adds what want holds and have lacks, journaling each change:
// addresses, then routes, then the rules pointing at them, so traffic is
// never sent to an empty table. A route of ours that holds the wanted slot
// but differs (changed by hand) is replaced, and dropped from have so that
// pruning does not delete the repaired slot.
func (r *rtnl) addMissing(want routingState, have *snapshot, j *journal) error {
	for _, p := range want.addrs {
		if slices.ContainsFunc(have.addrs, func(a loAddr) bool { return a.prefix == p }) {
			continue // ours already, or someone else's we leave alone
		}
		err := r.addAddr(p)
		if err == nil || lostAck(err) {
			*j = append(*j, func(r *rtnl) error { return r.delAddr(p, true) })
		}
		if err != nil {
			return err
		}
	}
	for _, rt := range want.routes {
		if slices.ContainsFunc(have.routes, func(h netlink.Route) bool { return sameRoute(h, rt) }) {
			continue
		}
		if i := slices.IndexFunc(have.routes, func(h netlink.Route) bool { return sameSlot(h, rt) }); i >= 0 {
			old := have.routes[i]
			if err := r.replaceRoute(rt); err != nil {
				return err
			}
			*j = append(*j, func(r *rtnl) error { return r.replaceRoute(old) })
			have.routes = slices.Delete(have.routes, i, i+1)
			continue
		}
		added, err := r.addRoute(rt)
		if added || lostAck(err) {
			*j = append(*j, func(r *rtnl) error { return r.delRoute(rt, true) })
		}
		if err != nil {
			return err
		}
	}
	for _, ru := range want.rules {
		if slices.ContainsFunc(have.rules, func(h netlink.Rule) bool { return sameRule(h, ru) }) {
			continue
		}
		err := r.addRule(ru)
		if err == nil || lostAck(err) {
			*j = append(*j, func(r *rtnl) error { return r.delRule(ru, true) })
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// lostAck reports whether an add failed in a way that may have left the
// object added (its answer was not read): the rollback then deletes it if
// present. Only our own objects match the deletes (protocol 201), except
// addresses, which a refusal (EEXIST: someone else's) never reaches here.
func lostAck(err error) bool {
	return err != nil && !errors.Is(err, unix.EEXIST) && !errors.Is(err, unix.EINVAL) &&
		!errors.Is(err, unix.EPERM) && !errors.Is(err, unix.EOPNOTSUPP)
}

// sameSlot reports whether two default routes occupy the same place: same
// family, table and type (the kernel refuses a second one there).
func sameSlot(a, b netlink.Route) bool {
	ones := func(r netlink.Route) int {
		if r.Dst == nil {
			return 0
		}
		n, _ := r.Dst.Mask.Size()
		return n
	}
	return a.Family == b.Family && a.Table == b.Table && a.Type == b.Type && ones(a) == 0 && ones(b) == 0
}

// removeStale removes what have holds of ours that want does not (and
// duplicates of wanted ones), journaling each change.
func (r *rtnl) removeStale(want routingState, have snapshot, j *journal) error {
	kept := make([]bool, len(want.rules))
	for _, h := range have.rules {
		if i := slices.IndexFunc(want.rules, func(w netlink.Rule) bool { return sameRule(h, w) }); i >= 0 && !kept[i] {
			kept[i] = true
			continue
		}
		if err := r.delRule(h, false); err != nil {
			return err
		}
		*j = append(*j, func(r *rtnl) error { return r.addRule(h) })
	}
	for _, h := range have.routes {
		if slices.ContainsFunc(want.routes, func(w netlink.Route) bool { return sameRoute(h, w) }) {
			continue
		}
		if err := r.delRoute(h, false); err != nil {
			return err
		}
		*j = append(*j, func(r *rtnl) error { _, err := r.addRoute(h); return err })
	}
	for _, h := range have.addrs {
		if !h.ours || slices.Contains(want.addrs, h.prefix) {
			continue
		}
		if err := r.delAddr(h.prefix, false); err != nil {
			return err
		}
		*j = append(*j, func(r *rtnl) error { return r.addAddr(h.prefix) })
	}
	return nil
}

func sameRule(a, b netlink.Rule) bool {
	mask := func(r netlink.Rule) uint32 {
		if r.Mask == nil {
			return fullMask // the kernel's default for a non-zero mark
		}
		return *r.Mask
	}
	// A priority of ours that is not set (-1) is the kernel's choice.
	prio := a.Priority < 0 || b.Priority < 0 || a.Priority == b.Priority
	return a.Family == b.Family && a.Mark == b.Mark && mask(a) == mask(b) && a.Table == b.Table && prio &&
		a.Src == nil && a.Dst == nil && a.IifName == "" && a.OifName == "" && !a.Invert && a.Goto < 0
}

func sameRoute(a, b netlink.Route) bool { return sameSlot(a, b) && a.LinkIndex == b.LinkIndex }

func ruleText(r netlink.Rule) string {
	mark := fmt.Sprintf("%#x", r.Mark)
	if r.Mask != nil && *r.Mask != fullMask {
		mark += fmt.Sprintf("/%#x", *r.Mask)
	}
	pref := ""
	if r.Priority >= 0 {
		pref = fmt.Sprintf(" pref %d", r.Priority)
	}
	return fmt.Sprintf("ip %srule fwmark %s lookup %d%s", v6Flag(r.Family), mark, r.Table, pref)
}

func routeText(r netlink.Route) string {
	dev := "lo"
	if r.LinkIndex != loopbackIndex {
		dev = fmt.Sprintf("(index %d)", r.LinkIndex)
	}
	return fmt.Sprintf("ip %sroute local default dev %s table %d", v6Flag(r.Family), dev, r.Table)
}

func v6Flag(family int) string {
	if family == unix.AF_INET6 {
		return "-6 "
	}
	return ""
}

// retryDump runs a dump until the kernel reports it consistent.
func retryDump(fn func() error) error {
	var err error
	for range dumpRetries {
		if err = fn(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			return err
		}
	}
	return err
}

// skipNoFamily treats a family the kernel does not support (IPv6 disabled
// at boot) as holding nothing.
func skipNoFamily(err error) error {
	if errors.Is(err, unix.EAFNOSUPPORT) {
		return nil
	}
	return err
}

// ourRules lists our policy rules of both families (one dump: AF_UNSPEC
// covers every family the kernel has).
func (r *rtnl) ourRules() ([]netlink.Rule, error) {
	h, err := r.handle()
	if err != nil {
		return nil, err
	}
	var all []netlink.Rule
	err = retryDump(func() (err error) { all, err = h.RuleList(unix.AF_UNSPEC); return err })
	if err := skipNoFamily(err); err != nil {
		return nil, r.errorf("list policy rules: %w", err)
	}
	var ours []netlink.Rule
	for _, ru := range all {
		if ru.Protocol == RouteProtocol && (ru.Family == unix.AF_INET || ru.Family == unix.AF_INET6) {
			ours = append(ours, ru)
		}
	}
	return ours, nil
}

// ourRoutes lists our routes of both families in every table.
func (r *rtnl) ourRoutes() ([]netlink.Route, error) {
	h, err := r.handle()
	if err != nil {
		return nil, err
	}
	var all []netlink.Route
	// RT_FILTER_TABLE with table 0 lists every table, not only main.
	err = retryDump(func() (err error) {
		all, err = h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
		return err
	})
	if err := skipNoFamily(err); err != nil {
		return nil, r.errorf("list routes: %w", err)
	}
	var ours []netlink.Route
	for _, rt := range all {
		if rt.Protocol == RouteProtocol && (rt.Family == unix.AF_INET || rt.Family == unix.AF_INET6) {
			ours = append(ours, rt)
		}
	}
	return ours, nil
}

func (r *rtnl) addRule(ru netlink.Rule) error {
	h, err := r.handle()
	if err != nil {
		return err
	}
	if err := h.RuleAdd(&ru); err != nil {
		return r.errorf("add %q: %w", ruleText(ru), err)
	}
	return nil
}

// delRule deletes one of our rules. The protocol in the request makes the
// kernel match only ours. gone tolerates an already missing rule.
func (r *rtnl) delRule(ru netlink.Rule, gone bool) error {
	h, err := r.handle()
	if err != nil {
		return err
	}
	err = h.RuleDel(&ru)
	if err != nil && !(gone && errors.Is(err, unix.ENOENT)) {
		return r.errorf("delete %q: %w", ruleText(ru), err)
	}
	return nil
}

// addRoute adds the route. A route already holding the same slot that is
// equivalent (local default dev lo, e.g. left by istio-iptables) is
// accepted as istio-iptables does, and reported as not added.
func (r *rtnl) addRoute(rt netlink.Route) (added bool, err error) {
	h, err := r.handle()
	if err != nil {
		return false, err
	}
	err = h.RouteAdd(&rt)
	if err == nil {
		return true, nil
	}
	if !errors.Is(err, unix.EEXIST) {
		return false, r.errorf("add %q: %w", routeText(rt), err)
	}
	var existing []netlink.Route
	lerr := retryDump(func() (err error) {
		existing, err = h.RouteListFiltered(rt.Family, &netlink.Route{Table: rt.Table}, netlink.RT_FILTER_TABLE)
		return err
	})
	if lerr != nil {
		return false, r.errorf("add %q: %w (listing table %d: %v)", routeText(rt), err, rt.Table, lerr)
	}
	for _, e := range existing {
		e.Family = rt.Family
		if sameRoute(e, rt) {
			return false, nil
		}
	}
	return false, r.errorf("add %q: table %d already has a different default route; choose another route table", routeText(rt), rt.Table)
}

// replaceRoute puts rt in its slot in place of the route of ours there.
func (r *rtnl) replaceRoute(rt netlink.Route) error {
	h, err := r.handle()
	if err != nil {
		return err
	}
	if err := h.RouteReplace(&rt); err != nil {
		return r.errorf("replace the route of table %d with %q: %w", rt.Table, routeText(rt), err)
	}
	return nil
}

// delRoute deletes one of our routes; the protocol in the request makes the
// kernel match only ours.
func (r *rtnl) delRoute(rt netlink.Route, gone bool) error {
	h, err := r.handle()
	if err != nil {
		return err
	}
	err = h.RouteDel(&rt)
	if err != nil && !(gone && errors.Is(err, unix.ESRCH)) {
		return r.errorf("delete %q: %w", routeText(rt), err)
	}
	return nil
}

// loAddr is an address on lo and whether we added it.
type loAddr struct {
	prefix netip.Prefix
	ours   bool
}

func (r *rtnl) loAddrs() ([]loAddr, error) {
	var out []loAddr
	err := retryDump(func() error {
		out = out[:0]
		req := r.request(unix.RTM_GETADDR, unix.NLM_F_DUMP)
		req.AddData(nl.NewIfAddrmsg(unix.AF_UNSPEC))
		msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWADDR)
		for _, m := range msgs {
			msg := nl.DeserializeIfAddrmsg(m)
			if int(msg.Index) != r.lo {
				continue
			}
			attrs, perr := nl.ParseRouteAttr(m[msg.Len():])
			if perr != nil {
				return perr
			}
			var a loAddr
			var local, address netip.Addr
			for _, at := range attrs {
				switch at.Attr.Type {
				case unix.IFA_LOCAL:
					local, _ = netip.AddrFromSlice(at.Value)
				case unix.IFA_ADDRESS:
					address, _ = netip.AddrFromSlice(at.Value)
				case ifaProto:
					a.ours = len(at.Value) > 0 && at.Value[0] == RouteProtocol
				}
			}
			if local.IsValid() {
				address = local
			}
			if !address.IsValid() {
				continue
			}
			a.prefix = netip.PrefixFrom(address, int(msg.Prefixlen))
			out = append(out, a)
		}
		return err
	})
	if err != nil {
		return nil, r.errorf("list addresses of lo: %w", err)
	}
	return out, nil
}

func (r *rtnl) request(typ, flags int) *nl.NetlinkRequest {
	req := nl.NewNetlinkRequest(typ, flags)
	req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: r.raw}
	return req
}

func (r *rtnl) addrRequest(typ, flags int, p netip.Prefix) *nl.NetlinkRequest {
	req := r.request(typ, flags)
	fam := unix.AF_INET
	if p.Addr().Is6() {
		fam = unix.AF_INET6
	}
	msg := nl.NewIfAddrmsg(fam)
	msg.Index = uint32(r.lo)
	msg.Prefixlen = uint8(p.Bits())
	req.AddData(msg)
	ip := p.Addr().AsSlice()
	req.AddData(nl.NewRtAttr(unix.IFA_LOCAL, ip))
	req.AddData(nl.NewRtAttr(unix.IFA_ADDRESS, ip))
	return req
}

// addAddr is "ip addr add P dev lo proto 201".
func (r *rtnl) addAddr(p netip.Prefix) error {
	req := r.addrRequest(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK, p)
	req.AddData(nl.NewRtAttr(ifaProto, nl.Uint8Attr(RouteProtocol)))
	if _, err := req.Execute(unix.NETLINK_ROUTE, 0); err != nil {
		return r.errorf("add address %s to lo: %w", p, err)
	}
	return nil
}

// delAddr removes an address of ours from lo (the kernel matches addresses
// by value, so callers check ownership first).
func (r *rtnl) delAddr(p netip.Prefix, gone bool) error {
	req := r.addrRequest(unix.RTM_DELADDR, unix.NLM_F_ACK, p)
	_, err := req.Execute(unix.NETLINK_ROUTE, 0)
	if err != nil && !(gone && errors.Is(err, unix.EADDRNOTAVAIL)) {
		return r.errorf("delete address %s from lo: %w", p, err)
	}
	return nil
}
