package nft

import (
	"slices"

	"github.com/vishvananda/netlink"

	"github.com/nfintercept/nfintercept/translate"
)

// verifyRouting compares the policy rules, routes and loopback addresses of
// ours (RouteProtocol) with what ApplyRouting installs for rs. Like
// ApplyRouting it accepts an equivalent foreign route already holding the
// slot, and a wanted address present on lo whoever added it.
func verifyRouting(d *Drift, rs *translate.Ruleset, nsPath string) error {
	want, err := desiredRouting(rs)
	if err != nil {
		return err
	}
	r, err := openRtnl(nsPath)
	if err != nil {
		return err
	}
	defer r.close()
	for i := range want.routes {
		want.routes[i].LinkIndex = r.lo
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
			d.add(DriftItem{Kind: Missing, Object: "policy rule", Want: ruleText(w)})
			continue
		}
		kept[i] = true
	}
	for i, h := range rules {
		if !kept[i] {
			d.add(DriftItem{Kind: Extra, Object: "policy rule", Have: ruleText(h)})
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
			d.add(DriftItem{Kind: Missing, Object: "route", Want: routeText(w)})
		}
	}
	for _, h := range routes {
		if !slices.ContainsFunc(want.routes, func(w netlink.Route) bool { return sameRoute(h, w) }) {
			d.add(DriftItem{Kind: Extra, Object: "route", Have: routeText(h)})
		}
	}

	for _, p := range want.addrs {
		if !slices.ContainsFunc(addrs, func(a loAddr) bool { return a.prefix == p }) {
			d.add(DriftItem{Kind: Missing, Object: "address", Where: "dev lo", Want: p.String()})
		}
	}
	for _, a := range addrs {
		if a.ours && !slices.Contains(want.addrs, a.prefix) {
			d.add(DriftItem{Kind: Extra, Object: "address", Where: "dev lo", Have: a.prefix.String()})
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
