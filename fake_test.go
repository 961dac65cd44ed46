package nfintercept

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/nfintercept/nfintercept/kernel"
	"github.com/nfintercept/nfintercept/nft"
	"github.com/nfintercept/nfintercept/translate"
)

// fakeKernel is a namespace in memory: which ruleset its tables hold, and
// which routing objects of ours exist. Batches are atomic as in the kernel;
// faults are injected per operation. It answers only what the
// orchestration asks, so ordering, rollback and the ambiguous-verdict
// decision are tested without root.
type fakeKernel struct {
	rs      *translate.Ruleset // what our tables hold (nil: none)
	gen     uint32
	routing map[string]bool
	addrs   []kernel.IfAddr
	known   map[[32]byte]*translate.Ruleset // batch digest → ruleset it installs
	batches map[*translate.Ruleset][]netlink.Message

	// afterRead runs when TablesUpdate has read the tables: a foreign
	// commit injected between the read and the batch.
	afterRead func(k *fakeKernel)
	updates   int // batches sent with CommitAt

	// probes is what the probe sets hold (nil: no probe sets).
	probes map[netip.Addr]bool
	// onLock runs when the lock is taken: a change another process
	// committed just before.
	onLock func(k *fakeKernel)

	calls int            // operations so far, numbered from 1
	fail  map[int]string // call number → fault: "error", "ambiguous-applied", "ambiguous-lost"
	log   []string
}

func newFake(rss ...*translate.Ruleset) *fakeKernel {
	k := &fakeKernel{gen: 1, routing: map[string]bool{}, known: map[[32]byte]*translate.Ruleset{},
		batches: map[*translate.Ruleset][]netlink.Message{}, fail: map[int]string{}}
	for _, rs := range rss {
		k.learn(rs)
	}
	return k
}

// learn makes the batch that installs rs known; a ruleset with the same
// content as a known one stands for it (its batch is the same).
func (k *fakeKernel) learn(rs *translate.Ruleset) *translate.Ruleset {
	if _, ok := k.batches[rs]; ok {
		return rs
	}
	var c captured
	if err := nft.Replace(context.Background(), &c, rs, nil); err != nil {
		panic(err)
	}
	if known, ok := k.known[digest(c.msgs)]; ok {
		return known
	}
	k.known[digest(c.msgs)] = rs
	k.batches[rs] = c.msgs
	return rs
}

type captured struct{ msgs []netlink.Message }

func (c *captured) Commit(_ context.Context, msgs []netlink.Message) error {
	c.msgs = msgs
	return nil
}

func digest(msgs []netlink.Message) [32]byte {
	h := sha256.New()
	for _, m := range msgs {
		fmt.Fprintf(h, "%d:%x;", m.Header.Type, m.Data)
	}
	return [32]byte(h.Sum(nil))
}

var errInjected = errors.New("injected fault")

// op counts an operation and returns its injected fault, if any.
func (k *fakeKernel) op(name string) string {
	k.calls++
	k.log = append(k.log, name)
	return k.fail[k.calls]
}

func (k *fakeKernel) String() string { return "fake namespace" }
func (k *fakeKernel) Lock(context.Context) (func(), error) {
	if k.onLock != nil {
		k.onLock(k)
	}
	return func() {}, nil
}
func (k *fakeKernel) Close() {}

func (k *fakeKernel) Addrs() ([]kernel.IfAddr, error) {
	if k.op("addrs") != "" {
		return nil, errInjected
	}
	return k.addrs, nil
}

func (k *fakeKernel) Generation() (uint32, error) {
	if k.op("generation") != "" {
		return 0, errInjected
	}
	return k.gen, nil
}

func (k *fakeKernel) OurTables() ([]string, error) {
	if k.op("tables") != "" {
		return nil, errInjected
	}
	return tableNames(k.rs), nil
}

func tableNames(rs *translate.Ruleset) []string {
	var names []string
	if rs != nil {
		for _, t := range rs.Tables {
			names = append(names, t.Name())
		}
	}
	return names
}

// Commit applies a known ruleset's batch, or a batch that only deletes
// tables (cleanup).
func (k *fakeKernel) Commit(_ context.Context, msgs []netlink.Message) error {
	return k.commit(k.op("commit"), msgs)
}

// TablesUpdate stands for nft.Diff: the fake's update for rs is the batch
// that installs rs, nothing when the tables hold rs. Faults: "error" (the
// read fails), "not-incremental".
func (k *fakeKernel) TablesUpdate(rs *translate.Ruleset, _ []string) (*nft.Update, error) {
	switch k.op("update") {
	case "":
	case "not-incremental":
		return nil, fmt.Errorf("fake: %w", nft.ErrNotIncremental)
	default:
		return nil, errInjected
	}
	rs = k.learn(rs)
	u := &nft.Update{Generation: k.gen}
	if k.rs != rs {
		u.Msgs = k.batches[rs]
	}
	if k.afterRead != nil {
		k.afterRead(k)
	}
	return u, nil
}

// CommitAt refuses a batch computed at another generation as the kernel
// does (ERESTART on the batch begin), else commits it.
func (k *fakeKernel) CommitAt(_ context.Context, gen uint32, msgs []netlink.Message) error {
	fault := k.op("commit")
	k.updates++
	if gen != k.gen {
		return &kernel.RefusedError{Index: -1, Errno: unix.ERESTART}
	}
	return k.commit(fault, msgs)
}

// foreignCommit is another process committing a batch: a new generation.
func (k *fakeKernel) foreignCommit() { k.gen++ }

func (k *fakeKernel) commit(fault string, msgs []netlink.Message) error {
	if fault == "error" {
		return &kernel.RefusedError{Index: 0, Errno: unix.EINVAL}
	}
	if fault == "ambiguous-lost" {
		return &kernel.AmbiguousError{Err: errInjected}
	}
	if k.commitProbes(msgs) {
		k.gen++
		if fault == "ambiguous-applied" {
			return &kernel.AmbiguousError{Err: errInjected}
		}
		return nil
	}
	rs, ok := k.known[digest(msgs)]
	if !ok {
		for _, m := range msgs {
			if typ := uint16(m.Header.Type) & 0xff; typ != unix.NFT_MSG_DELTABLE && typ != 0x1a && typ != unix.NFT_MSG_NEWTABLE {
				return fmt.Errorf("fake: unknown batch")
			}
		}
		rs = nil
	}
	k.rs = rs
	k.gen++
	if fault == "ambiguous-applied" {
		return &kernel.AmbiguousError{Err: errInjected}
	}
	return nil
}

func (k *fakeKernel) TablesDrift(rs *translate.Ruleset) (*nft.Drift, error) {
	if k.op("read") != "" {
		return nil, errInjected
	}
	rs = k.learn(rs)
	d := &nft.Drift{}
	have, want := tableNames(k.rs), tableNames(rs)
	for _, n := range want {
		if !slices.Contains(have, n) || k.rs != rs {
			d.Items = append(d.Items, nft.DriftItem{Kind: nft.Missing, Object: "table", Want: n})
		}
	}
	for _, n := range have {
		if !slices.Contains(want, n) {
			d.Items = append(d.Items, nft.DriftItem{Kind: nft.Extra, Object: "table", Have: n})
		}
	}
	return d, nil
}

// routingKeys names the routing objects rs wants.
func routingKeys(rs *translate.Ruleset) []string {
	var keys []string
	for _, r := range rs.Routes {
		keys = append(keys, fmt.Sprintf("rule %v %#x/%#x %d", r.Family, r.Mark, r.MarkMask(), r.Table),
			fmt.Sprintf("route %v %d", r.Family, r.Table))
	}
	for _, a := range rs.LoopbackAddrs {
		keys = append(keys, "addr "+a.String())
	}
	return keys
}

type fakeChange struct {
	k          *fakeKernel
	want       []string
	added, had []string
}

func (k *fakeKernel) BeginRouting(rs *translate.Ruleset) (routingChange, error) {
	if k.op("begin-routing") != "" {
		return nil, errInjected
	}
	c := &fakeChange{k: k, want: routingKeys(rs)}
	for key := range k.routing {
		c.had = append(c.had, key)
	}
	for _, key := range c.want {
		if !k.routing[key] {
			k.routing[key] = true
			c.added = append(c.added, key)
		}
	}
	return c, nil
}

func (c *fakeChange) Undo() error {
	if c.k.op("undo-routing") != "" {
		return errInjected
	}
	for _, key := range c.added {
		delete(c.k.routing, key)
	}
	return nil
}

func (c *fakeChange) Prune() error {
	if c.k.op("prune-routing") != "" {
		return errInjected
	}
	for _, key := range c.had {
		if !slices.Contains(c.want, key) {
			delete(c.k.routing, key)
		}
	}
	return nil
}

func (k *fakeKernel) RoutingDiff(rs *translate.Ruleset) ([]kernel.RoutingDrift, error) {
	if k.op("routing-diff") != "" {
		return nil, errInjected
	}
	var d []kernel.RoutingDrift
	want := routingKeys(rs)
	for _, key := range want {
		if !k.routing[key] {
			d = append(d, kernel.RoutingDrift{Missing: true, Object: "routing", Text: key})
		}
	}
	for key := range k.routing {
		if !slices.Contains(want, key) {
			d = append(d, kernel.RoutingDrift{Object: "routing", Text: key})
		}
	}
	return d, nil
}

func (k *fakeKernel) CleanupRouting() error {
	if k.op("cleanup-routing") != "" {
		return errInjected
	}
	clear(k.routing)
	return nil
}

// captureWithoutRouting names the policy routing the installed tables
// need and the namespace lacks: the state that must never be seen.
func (k *fakeKernel) captureWithoutRouting() string {
	if k.rs == nil {
		return ""
	}
	var missing []string
	for _, key := range routingKeys(k.rs) {
		if !k.routing[key] {
			missing = append(missing, key)
		}
	}
	return strings.Join(missing, ", ")
}

// ifAddr is an address of the fake namespace.
func ifAddr(index int, prefix string, ours bool) kernel.IfAddr {
	p := netip.MustParsePrefix(prefix)
	return kernel.IfAddr{Index: index, Addr: p.Addr(), Bits: p.Bits(), Ours: ours}
}

// ProbeAddrsUpdate stands for nft.ProbeAddrsChange: one message per
// address that changes (NEWSETELEM or DELSETELEM, the address as data).
// Faults: "error" (the read fails).
func (k *fakeKernel) ProbeAddrsUpdate(addrs []netip.Addr, add bool) (*nft.Update, error) {
	if k.op("probe-update") != "" {
		return nil, errInjected
	}
	if k.probes == nil {
		return nil, fmt.Errorf("fake: %w", nft.ErrNoProbeSet)
	}
	typ := netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_DELSETELEM)
	if add {
		typ = netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWSETELEM)
	}
	u := &nft.Update{Generation: k.gen}
	for _, a := range addrs {
		if k.probes[a] != add {
			u.Msgs = append(u.Msgs, netlink.Message{Header: netlink.Header{Type: typ}, Data: a.AsSlice()})
		}
	}
	if k.afterRead != nil {
		k.afterRead(k)
	}
	return u, nil
}

func (k *fakeKernel) ProbeAddrs() ([]netip.Addr, error) {
	if k.op("probe-read") != "" {
		return nil, errInjected
	}
	var addrs []netip.Addr
	for a, in := range k.probes {
		if in {
			addrs = append(addrs, a)
		}
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	return addrs, nil
}

// commitProbes applies a batch of ProbeAddrsUpdate; false for any other.
func (k *fakeKernel) commitProbes(msgs []netlink.Message) bool {
	if len(msgs) == 0 {
		return false
	}
	for _, m := range msgs {
		switch uint16(m.Header.Type) & 0xff {
		case unix.NFT_MSG_NEWSETELEM, unix.NFT_MSG_DELSETELEM:
		default:
			return false
		}
	}
	for _, m := range msgs {
		a, _ := netip.AddrFromSlice(m.Data)
		k.probes[a] = uint16(m.Header.Type)&0xff == unix.NFT_MSG_NEWSETELEM
	}
	return true
}
