package kernel

import (
	"slices"

	"github.com/vishvananda/netlink"

	"github.com/nfintercept/nfintercept/translate"
)

// RoutingDrift is one difference between the routing a ruleset wants and
// the namespace's.
type RoutingDrift struct {
	Missing bool   // wanted but absent; otherwise present but unwanted
	Object  string // "policy rule", "route", "address"
	Where   string // "dev lo" for addresses
	Text    string // the object as ip(8) writes it
}

// Diff compares the policy rules, routes and loopback addresses of ours
// (RouteProtocol) with what Begin installs for rs. Like Begin it accepts an
// equivalent foreign route already holding the slot, and a wanted address
// present on lo whoever added it.
func (r *Routing) Diff(rs *translate.Ruleset) ([]RoutingDrift, error) {
	want, err := desiredRouting(rs)
	if err != nil {
		return nil, r.r.errorf("%w", err)
	}
	var d []RoutingDrift
	if err := r.r.diff(want, &d); err != nil {
		return nil, err
	}
	return d, nil
}

func (r *rtnl) diff(want routingState, d *[]RoutingDrift) error {
	if _, err := r.handle(); err != nil {
		return err
	}
	want, err := r.located(want)
	if err != nil {
		return err
	}
	rules, err := r.ourRules()
	if err != nil {
		return err
	}
	routes, err := r.ourRoutes()
	if err != nil {
		return err
	}
	addrs, err := r.loAddrs()
	if err != nil {
		return err
	}

	kept := make([]bool, len(rules))
	for _, w := range want.rules {
		i := slices.IndexFunc(rules, func(h netlink.Rule) bool { return sameRule(h, w) })
		if i < 0 {
			*d = append(*d, RoutingDrift{Missing: true, Object: "policy rule", Text: ruleText(w)})
			continue
		}
		kept[i] = true
	}
	for i, h := range rules {
		if !kept[i] {
			*d = append(*d, RoutingDrift{Object: "policy rule", Text: ruleText(h)})
		}
	}

	for _, w := range want.routes {
		if slices.ContainsFunc(routes, func(h netlink.Route) bool { return sameRoute(h, w) }) {
			continue
		}
		foreign, err := r.equivalentRoute(w)
		if err != nil {
			return err
		}
		if !foreign {
			*d = append(*d, RoutingDrift{Missing: true, Object: "route", Text: routeText(w)})
		}
	}
	for _, h := range routes {
		if !slices.ContainsFunc(want.routes, func(w netlink.Route) bool { return sameRoute(h, w) }) {
			*d = append(*d, RoutingDrift{Object: "route", Text: routeText(h)})
		}
	}

	for _, p := range want.addrs {
		if !slices.ContainsFunc(addrs, func(a loAddr) bool { return a.prefix == p }) {
			*d = append(*d, RoutingDrift{Missing: true, Object: "address", Where: "dev lo", Text: p.String()})
		}
	}
	for _, a := range addrs {
		if a.ours && !slices.Contains(want.addrs, a.prefix) {
			*d = append(*d, RoutingDrift{Object: "address", Where: "dev lo", Text: a.prefix.String()})
		}
	}
	return nil
}

// equivalentRoute reports whether the route's table holds an equivalent
// route that is not ours (ApplyRouting accepts it instead of adding one).
func (r *rtnl) equivalentRoute(w netlink.Route) (bool, error) {
	var all []netlink.Route
	err := retryDump(func() (err error) {
		all, err = r.h.RouteListFiltered(w.Family, &netlink.Route{Table: w.Table}, netlink.RT_FILTER_TABLE)
		return err
	})
	if err := skipNoFamily(err); err != nil {
		return false, r.errorf("list routes of table %d: %w", w.Table, err)
	}
	for _, h := range all {
		h.Family = w.Family
		if sameRoute(h, w) {
			return true, nil
		}
	}
	return false, nil
}
