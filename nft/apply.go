// Package nft installs the rule model in the kernel with nftables netlink
// messages (github.com/google/nftables, no nft binary), reads it back and
// renders the same ruleset as an `nft -f` script.
package nft

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/nfintercept/nfintercept/translate"
)

// Apply replaces all nfintercept tables (translate.TableKinds, named
// translate.TablePrefix+kind) in the network namespace at nsPath ("" = the
// caller's current namespace) with rs, in ONE netlink batch: for each kind
// the previous version is removed (DESTROYTABLE, or AddTable+DelTable on
// kernels before 6.3), even of tables rs no longer needs, then the new
// tables, chains, sets and rules are added. The kernel applies a batch
// atomically, so a failure leaves the old state.
func Apply(rs *translate.Ruleset, nsPath string) error {
	if err := apply(rs, nsPath); err != nil {
		return fmt.Errorf("apply nfintercept ruleset in %s: %w", nsName(nsPath), err)
	}
	return nil
}

func apply(rs *translate.Ruleset, nsPath string) error {
	tables, err := lowerRuleset(rs)
	if err != nil {
		return err
	}
	return applyTables(nsPath, tables, nil)
}

// applyTables replaces our tables (and the extra ones named) in the
// namespace with tables, in one batch.
func applyTables(nsPath string, tables []*loweredTable, extra []string) error {
	rules := 0
	for _, lt := range tables {
		for _, lc := range lt.chains {
			rules += len(lc.rules)
		}
	}
	for {
		destroy := !noDestroy.Load()
		t, err := replaceTxn(tables, extra, destroy)
		if err != nil {
			return err
		}
		err = t.commit(nsPath)
		if destroy && destroyUnsupported(err) {
			noDestroy.Store(true) // kernel before 6.3: replace the old way
			continue
		}
		if err != nil {
			return fmt.Errorf("netlink batch (%d tables, %d rules): %w", len(tables), rules, err)
		}
		return nil
	}
}

// replaceTxn builds the batch that replaces our tables with tables. With
// destroy, each old table is removed with DESTROYTABLE (a no-op when it is
// absent); otherwise with AddTable+DelTable (the add makes the delete
// safe), which always leaves a deletion for the kernel to clean up.
func replaceTxn(tables []*loweredTable, extra []string, destroy bool) (*txn, error) {
	return buildTxn(tables, extra, destroy, false)
}

// buildTxn is replaceTxn; libRules has the library encode the rules.
func buildTxn(tables []*loweredTable, extra []string, destroy, libRules bool) (*txn, error) {
	t, err := newTxn()
	if err != nil {
		return nil, err
	}
	names := replacedTables(tables)
	for _, n := range extra {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	for _, name := range names {
		if destroy {
			t.destroyTable(name)
			continue
		}
		tb := &nftables.Table{Family: nftables.TableFamilyINet, Name: name}
		t.lib.AddTable(tb)
		t.lib.DelTable(tb)
		if err := t.take(); err != nil {
			return nil, err
		}
	}
	enc := &encoder{txn: t, conn: t.lib, libRules: libRules}
	for _, lt := range tables {
		if err := enc.addTable(lt); err != nil {
			return nil, err
		}
	}
	if err := t.take(); err != nil {
		return nil, err
	}
	return t, nil
}

// replacedTables names every table Apply deletes first: each known kind
// plus any other kind the ruleset defines.
func replacedTables(tables []*loweredTable) []string {
	var names []string
	for _, k := range translate.TableKinds {
		names = append(names, translate.TablePrefix+string(k))
	}
	for _, lt := range tables {
		if !slices.Contains(names, lt.name) {
			names = append(names, lt.name)
		}
	}
	return names
}

// Cleanup deletes every nfintercept table in one batch; idempotent (no
// error when none exists). Returns the names of the tables that existed.
func Cleanup(nsPath string) ([]string, error) {
	var existed []string
	err := withConn(nsPath, 0, func(c *nftables.Conn) error {
		var err error
		if existed, err = ourTables(c); err != nil {
			return err
		}
		names := replacedTables(nil)
		for _, n := range existed {
			if !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
		for _, name := range names {
			t := &nftables.Table{Family: nftables.TableFamilyINet, Name: name}
			c.AddTable(t)
			c.DelTable(t)
		}
		if err := c.Flush(); err != nil {
			return fmt.Errorf("netlink batch: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("clean up nfintercept tables in %s: %w", nsName(nsPath), err)
	}
	return existed, nil
}

// ourTables lists the names of the inet tables with our prefix.
func ourTables(c *nftables.Conn) ([]string, error) {
	ts, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	var names []string
	for _, t := range ts {
		if strings.HasPrefix(t.Name, translate.TablePrefix) {
			names = append(names, t.Name)
		}
	}
	return names, nil
}

func nsName(nsPath string) string {
	if nsPath == "" {
		return "the current netns"
	}
	return "netns " + nsPath
}

// withConn runs fn with a fresh Conn (one per transaction: a v0.3.0 Conn
// keeps the first marshalling error forever) talking to the namespace at
// nsPath through its fd; the process never enters the namespace.
func withConn(nsPath string, bufBytes int, fn func(*nftables.Conn) error) error {
	opts := []nftables.ConnOption{nftables.WithSockOptions(sockBuffers(bufBytes))}
	if nsPath != "" {
		h, err := netns.GetFromPath(nsPath)
		if err != nil {
			return fmt.Errorf("open netns: %w", err)
		}
		defer h.Close()
		opts = append(opts, nftables.WithNetNSFd(int(h)))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return fmt.Errorf("open netlink: %w", err)
	}
	return fn(c)
}

const (
	minSockBuf = 4 << 20
	maxSockBuf = 1 << 30
)

// batchSize estimates the bytes a batch sends (and receives back as acks
// and rule echoes), generously.
func batchSize(tables []*loweredTable) int {
	n := 64 << 10
	for _, lt := range tables {
		for _, s := range lt.sets {
			n += 2 * s.len() * 64
		}
		for _, lc := range lt.chains {
			n += len(lc.rules) * 2048
		}
	}
	return n
}

// sockBuffers raises both socket buffers to hold the whole batch, which is
// sent in one sendmsg. SO_*BUFFORCE (we run with CAP_NET_ADMIN) passes the
// wmem_max/rmem_max caps; without the capability the capped size is used.
func sockBuffers(want int) nftables.SockOption {
	size := min(max(2*want, minSockBuf), maxSockBuf)
	return func(c *netlink.Conn) error {
		rc, err := c.SyscallConn()
		if err != nil {
			return fmt.Errorf("netlink socket: %w", err)
		}
		var forceErr error
		err = rc.Control(func(fd uintptr) {
			forceErr = errors.Join(
				unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, size),
				unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size))
		})
		if err != nil {
			return fmt.Errorf("netlink socket: %w", err)
		}
		if forceErr == nil {
			return nil
		}
		if err := c.SetWriteBuffer(size); err != nil {
			return fmt.Errorf("set netlink send buffer: %w", err)
		}
		if err := c.SetReadBuffer(size); err != nil {
			return fmt.Errorf("set netlink receive buffer: %w", err)
		}
		return nil
	}
}
