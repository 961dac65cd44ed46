package nft

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/nfintercept/nfintercept/translate"
)

// The ambient node profile's probe sets (translate.ProbeSetV4/V6 in the
// nat table) change while the rules stay: a node agent adds a pod's IPs
// when the pod joins the mesh and removes them when it leaves, each in one
// small batch of its own, without rebuilding the table.

// probeTable is the table holding the probe sets.
var probeTable = translate.TablePrefix + string(translate.TableNAT)

// ErrNoProbeSet is returned when the ambient-node profile is not applied.
var ErrNoProbeSet = errors.New("set " + translate.ProbeSetV4 + " not found in table inet " + probeTable + ": the ambient-node profile is not applied")

// ProbeAddrs lists the addresses the snapshot's probe sets hold, sorted.
func ProbeAddrs(s *Snapshot) []netip.Addr {
	var out []netip.Addr
	for _, ks := range probeSets(s) {
		for _, e := range ks.elems {
			if a, ok := netip.AddrFromSlice(e.key); ok && !e.end {
				out = append(out, a)
			}
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

func probeSets(s *Snapshot) map[string]*kernelSet {
	out := map[string]*kernelSet{}
	if s == nil || s.state == nil {
		return out
	}
	t := s.state.table(probeTable)
	if t == nil {
		return out
	}
	for _, ks := range t.sets {
		if (ks.name == translate.ProbeSetV4 || ks.name == translate.ProbeSetV6) && !ks.interval && !ks.isMap {
			out[ks.name] = ks
		}
	}
	return out
}

// CheckProbeAddrs refuses what cannot be a pod IP in the probe sets: the
// zero address or one with a zone.
func CheckProbeAddrs(addrs []netip.Addr) error {
	for _, a := range addrs {
		if a = a.Unmap(); !a.IsValid() || a.Zone() != "" {
			return fmt.Errorf("pod IP %q: want a plain IPv4 or IPv6 address", a)
		}
	}
	return nil
}

// ProbeAddrsChange is the batch that adds (or removes) pod IPs in the
// probe sets of s: only the addresses that change, so a batch sent at the
// snapshot's generation cannot fail on an element already there or
// missing; nil when nothing changes. IPv6 addresses are skipped when the
// IPv6 set does not exist (the profile runs with IPv6 off), as Istio's
// node agent does; without the IPv4 set the profile is not applied.
func ProbeAddrsChange(s *Snapshot, addrs []netip.Addr, add bool) ([]netlink.Message, error) {
	sets := probeSets(s)
	if sets[translate.ProbeSetV4] == nil {
		return nil, ErrNoProbeSet
	}
	byName := map[string][][]byte{}
	seen := map[netip.Addr]bool{}
	if err := CheckProbeAddrs(addrs); err != nil {
		return nil, err
	}
	for _, a := range addrs {
		a = a.Unmap()
		name := translate.ProbeSet(a)
		ks := sets[name]
		if ks == nil || seen[a] {
			continue
		}
		seen[a] = true
		present := slices.ContainsFunc(ks.elems, func(e dumpedElem) bool { return !e.end && slices.Equal(e.key, a.AsSlice()) })
		if present != add {
			byName[name] = append(byName[name], a.AsSlice())
		}
	}
	typ := uint16(unix.NFT_MSG_DELSETELEM)
	if add {
		typ = unix.NFT_MSG_NEWSETELEM
	}
	var msgs []netlink.Message
	for _, name := range []string{translate.ProbeSetV4, translate.ProbeSetV6} {
		keys := byName[name]
		if len(keys) == 0 {
			continue
		}
		walk := func(yield func(key []byte, end bool)) {
			for _, k := range keys {
				yield(k, false)
			}
		}
		msgs = append(msgs, elemMsgs(typ, probeTable, name, 0, len(keys[0]), len(keys), walk)...)
	}
	return msgs, nil
}
