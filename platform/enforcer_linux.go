//go:build linux

package platform

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"reflect"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// The objects the enforcer owns. Everything lives in one table of its own
// so that it never touches anyone else's rules and can be removed whole.
const (
	nftTable   = "toktra"
	nftSet4    = "llm4"
	nftSet6    = "llm6"
	nftOutput  = "output"
	nftInput   = "input"
	nftForward = "forward"
)

// nftPriority places the chains just ahead of the usual filter chains
// (priority filter - 1), so a reject here happens before anyone's accept
// there; an accept elsewhere cannot undo a reject anyway.
const nftPriority = -1

// ICMP codes for "communication administratively prohibited".
const (
	icmpPktFiltered     = 13 // ICMP_PKT_FILTERED, RFC 1812
	icmpv6AdmProhibited = 1  // ICMPV6_ADM_PROHIBITED
)

// maxElemsPerMsg keeps each set-element message well under the 64 KiB a
// netlink attribute can hold; a transaction may carry many such messages.
const maxElemsPerMsg = 512

// Nftables blocks LLM destinations with an nftables table of its own,
// `inet toktra`:
//
//	table inet toktra {
//		set llm4 { type ipv4_addr; flags interval,timeout; }
//		set llm6 { type ipv6_addr; flags interval,timeout; }
//		chain output  { type filter hook output  priority filter - 1; policy accept; ... }
//		chain input   { type filter hook input   priority filter - 1; policy accept; ... }
//		chain forward { type filter hook forward priority filter - 1; policy accept; ... }
//	}
//
// Output and forward reject packets to an address in the sets, input and
// forward packets from one: TCP with a reset, everything else with ICMP
// "administratively prohibited", so programs fail at once (connect gets
// ECONNREFUSED) instead of waiting on a silent drop. Incoming TCP resets
// are let through: the resets that reject itself sends back to this host
// come from the blocked address, and a reset only ends a connection.
//
// One set per family holds both CIDRs and resolved addresses: interval
// sets take per-element timeouts (the kernel's rbtree set backend gained
// timeouts in Linux 4.18; expiry bugs were fixed through the 5.x and 6.x
// series, and ProbeNftables and the tests check the running kernel), so
// CIDRs are intervals without a timeout and DNS answers are one-address
// intervals that the kernel expires by itself if the agent stops
// refreshing them. Two details of the kernel shape the elements: interval
// sets refuse overlapping elements (EEXIST), so entries are merged first
// (see coalesce), and a timeout on an interval's end element is refused
// (EINVAL), so only the start carries it.
//
// An Nftables is safe for concurrent use.
type Nftables struct {
	log         *slog.Logger
	clock       Clock
	ns          *os.File // nil: the caller's namespace
	keepSockets bool
	watchEvery  time.Duration

	mu      sync.Mutex // serializes netlink transactions and guards below
	applied *nftApplied
	closed  bool
	done    chan struct{} // closed by Close, stops Watch

	own ownPorts // netlink port ids of our own transactions, for Watch
}

// nftApplied is what the last Apply put in force.
type nftApplied struct {
	at     time.Time
	v4, v6 []addrRange
}

var _ Enforcer = (*Nftables)(nil)

// NewNftables returns an nftables enforcer for the namespace in opts. It
// changes nothing until Apply; use ProbeNftables to learn whether the
// kernel supports it.
func NewNftables(opts NftablesOptions) (*Nftables, error) {
	n := &Nftables{
		log:         opts.Logger,
		clock:       clockOrSystem(opts.Clock),
		keepSockets: opts.KeepSockets,
		watchEvery:  orDefault(opts.WatchInterval, 500*time.Millisecond),
		done:        make(chan struct{}),
	}
	if n.log == nil {
		n.log = slog.New(slog.DiscardHandler)
	}
	n.log = n.log.With("enforcer", "nftables")
	if opts.NetNS != "" {
		f, err := os.Open(opts.NetNS)
		if err != nil {
			return nil, fmt.Errorf("opening network namespace: %w", err)
		}
		n.ns = f
	}
	return n, nil
}

// Name returns "nftables".
func (n *Nftables) Name() string { return "nftables" }

// nsFd returns the namespace fd for netlink, 0 meaning the current one.
func (n *Nftables) nsFd() int {
	if n.ns == nil {
		return 0
	}
	return int(n.ns.Fd())
}

// conn returns a connection for one operation. Changes go through
// connections whose port ids are remembered, so that Watch can tell our
// own changes from someone else's.
//
// A transaction goes to the kernel in one sendmsg, which must fit the
// socket's send buffer; sndbuf, if more than the default, raises it.
func (n *Nftables) conn(mutating bool, sndbuf int) (*nftables.Conn, error) {
	opts := []nftables.ConnOption{nftables.WithNetNSFd(n.nsFd())}
	if mutating {
		opts = append(opts, nftables.WithSockOptions(n.own.record))
	}
	if sndbuf > 0 {
		opts = append(opts, nftables.WithSockOptions(func(c *netlink.Conn) error {
			return forceSendBuffer(c, sndbuf)
		}))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("opening nftables netlink connection: %w", err)
	}
	return c, nil
}

var errClosed = errors.New("nftables enforcer closed")

// Apply puts exactly t's entries in force, in one transaction that
// (re-)creates the table, its sets, chains and rules, so that whatever
// state the table was in — absent, tampered with, from an earlier run — it
// ends up as this call describes, and traffic never sees a half-built
// table. Calling it again with fresh DNS answers is how the block is
// refreshed. Unless KeepSockets is set it then aborts the device's open
// connections to blocked addresses.
func (n *Nftables) Apply(ctx context.Context, t Targets) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	v4, v6, err := coalesce(t.Entries)
	if err != nil {
		return fmt.Errorf("applying nftables block: %w", err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return errClosed
	}
	elems4, elems6 := setElements(v4), setElements(v6)
	// Roughly 40 bytes per IPv4 element and 52 per IPv6 one, plus the
	// table, chains and rules, generously rounded up; small policies fit
	// the default buffer.
	const perElem, rest = 64, 64 << 10
	c, err := n.conn(true, perElem*(len(elems4)+len(elems6))+rest)
	if err != nil {
		return err
	}
	table := &nftables.Table{Name: nftTable, Family: nftables.TableFamilyINet}
	// Adding first makes the delete valid whether or not the table
	// exists; the second add starts from nothing.
	c.AddTable(table)
	c.DelTable(table)
	c.AddTable(table)
	s4, s6 := nftSets(table)
	for _, s := range []struct {
		set   *nftables.Set
		elems []nftables.SetElement
	}{{s4, elems4}, {s6, elems6}} {
		if err := c.AddSet(s.set, nil); err != nil {
			return fmt.Errorf("adding nftables set %s: %w", s.set.Name, err)
		}
		elems := s.elems
		for len(elems) > 0 {
			chunk := elems[:min(len(elems), maxElemsPerMsg)]
			elems = elems[len(chunk):]
			if err := c.SetAddElements(s.set, chunk); err != nil {
				return fmt.Errorf("adding elements to nftables set %s: %w", s.set.Name, err)
			}
		}
	}
	for _, ch := range nftChains(table) {
		c.AddChain(ch)
		for _, exprs := range chainRules(ch.Name, s4, s6) {
			c.AddRule(&nftables.Rule{Table: table, Chain: ch, Exprs: exprs})
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("committing nftables block: %w", err)
	}
	n.applied = &nftApplied{at: n.clock.Now(), v4: v4, v6: v6}
	n.log.Info("block applied", "ipv4_ranges", len(v4), "ipv6_ranges", len(v6))

	if !n.keepSockets {
		aborted, err := abortSockets(n.nsFd(), v4, v6)
		if err != nil {
			// The block holds; open connections end when they next send.
			n.log.Warn("aborting open connections to blocked addresses", "err", err)
		}
		if aborted > 0 {
			n.log.Info("aborted open connections to blocked addresses", "sockets", aborted)
		}
	}
	return nil
}

// Remove deletes the table, and with it the whole block, in one
// transaction. Removing what is not there is no error.
func (n *Nftables) Remove(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return errClosed
	}
	c, err := n.conn(true, 0)
	if err != nil {
		return err
	}
	table := &nftables.Table{Name: nftTable, Family: nftables.TableFamilyINet}
	c.AddTable(table) // so that the delete cannot fail for absence
	c.DelTable(table)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("removing nftables block: %w", err)
	}
	n.applied = nil
	n.log.Info("block removed")
	return nil
}

// Active reports whether the table, its sets, chains and rules are in the
// kernel exactly as Apply makes them and, if this Nftables applied a block,
// whether the sets still hold every entry that has not timed out (and no
// others). Without an Apply in this process (say, after a restart) only
// the structure is checked.
func (n *Nftables) Active(ctx context.Context) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return false, errClosed
	}
	why, err := n.check()
	if err != nil {
		return false, fmt.Errorf("checking nftables block: %w", err)
	}
	if why != "" {
		n.log.Debug("block not in force as applied", "reason", why)
		return false, nil
	}
	return true, nil
}

// check returns why the block is not as applied, or "" if it is.
func (n *Nftables) check() (string, error) {
	c, err := n.conn(false, 0)
	if err != nil {
		return "", err
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return "", fmt.Errorf("listing tables: %w", err)
	}
	var table *nftables.Table
	for _, t := range tables {
		if t.Name == nftTable {
			table = t
		}
	}
	if table == nil {
		return "table missing", nil
	}

	wantSets := map[string]*nftables.Set{}
	s4, s6 := nftSets(table)
	wantSets[s4.Name], wantSets[s6.Name] = s4, s6
	sets, err := c.GetSets(table)
	if err != nil {
		return "", fmt.Errorf("listing sets: %w", err)
	}
	if len(sets) != len(wantSets) {
		return fmt.Sprintf("%d sets, want %d", len(sets), len(wantSets)), nil
	}
	for _, s := range sets {
		w, ok := wantSets[s.Name]
		if !ok || s.KeyType.Name != w.KeyType.Name || s.Interval != w.Interval || s.HasTimeout != w.HasTimeout || s.Timeout != 0 {
			return fmt.Sprintf("set %s differs", s.Name), nil
		}
	}

	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return "", fmt.Errorf("listing chains: %w", err)
	}
	wantChains := map[string]*nftables.Chain{}
	for _, ch := range nftChains(table) {
		wantChains[ch.Name] = ch
	}
	var got int
	for _, ch := range chains {
		if ch.Table.Name != nftTable {
			continue
		}
		got++
		w, ok := wantChains[ch.Name]
		if !ok || ch.Type != w.Type || !eqPtr(ch.Hooknum, w.Hooknum) || !eqPtr(ch.Priority, w.Priority) || !eqPtr(ch.Policy, w.Policy) {
			return fmt.Sprintf("chain %s differs", ch.Name), nil
		}
		rules, err := c.GetRules(table, ch)
		if err != nil {
			return "", fmt.Errorf("listing rules of chain %s: %w", ch.Name, err)
		}
		want := chainRules(ch.Name, s4, s6)
		if len(rules) != len(want) {
			return fmt.Sprintf("chain %s has %d rules, want %d", ch.Name, len(rules), len(want)), nil
		}
		for i, r := range rules {
			if !sameExprs(r.Exprs, want[i]) {
				return fmt.Sprintf("chain %s rule %d differs", ch.Name, i), nil
			}
		}
	}
	if got != len(wantChains) {
		return fmt.Sprintf("%d chains, want %d", got, len(wantChains)), nil
	}

	if n.applied == nil {
		return "", nil
	}
	// Entries that are about to expire may or may not still be there.
	now := n.clock.Now()
	const slack = time.Second
	for _, s := range []struct {
		set    *nftables.Set
		ranges []addrRange
	}{{s4, n.applied.v4}, {s6, n.applied.v6}} {
		elems, err := c.GetSetElements(s.set)
		if err != nil {
			return "", fmt.Errorf("listing elements of set %s: %w", s.set.Name, err)
		}
		type key struct {
			addr netip.Addr
			end  bool
		}
		present := map[key]bool{}
		for _, e := range elems {
			a, ok := netip.AddrFromSlice(e.Key)
			if !ok {
				return fmt.Sprintf("set %s has a malformed element", s.set.Name), nil
			}
			present[key{a, e.IntervalEnd}] = true
		}
		expected := map[key]bool{}
		for _, r := range s.ranges {
			expected[key{r.first, false}] = true
			end := r.last.Next()
			if end.IsValid() {
				// An end may outlive its expired start until the kernel's
				// garbage collection; it is harmless and expected.
				expected[key{end, true}] = true
			}
			alive := r.timeout == 0 || n.applied.at.Add(r.timeout).After(now.Add(slack))
			if !alive {
				continue
			}
			if !present[key{r.first, false}] || (end.IsValid() && !present[key{end, true}]) {
				return fmt.Sprintf("set %s lacks %s-%s", s.set.Name, r.first, r.last), nil
			}
		}
		for k := range present {
			if !expected[k] {
				return fmt.Sprintf("set %s has unexpected element %s", s.set.Name, k.addr), nil
			}
		}
	}
	return "", nil
}

func eqPtr[T comparable](a, b *T) bool {
	return (a == nil) == (b == nil) && (a == nil || *a == *b)
}

// sameExprs compares rules as the kernel reports them with rules as Apply
// builds them, ignoring counter values and the batch-local set id.
func sameExprs(got, want []expr.Any) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		g := got[i]
		switch v := g.(type) {
		case *expr.Counter:
			g = &expr.Counter{}
		case *expr.Lookup:
			c := *v
			c.SetID = 0
			g = &c
		}
		w := want[i]
		if l, ok := w.(*expr.Lookup); ok {
			c := *l
			c.SetID = 0
			w = &c
		}
		if !reflect.DeepEqual(g, w) {
			return false
		}
	}
	return true
}

// Counters returns what the rules have rejected since the last Apply.
func (n *Nftables) Counters(ctx context.Context) (NftablesCounters, error) {
	var out NftablesCounters
	if err := ctx.Err(); err != nil {
		return out, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return out, errClosed
	}
	c, err := n.conn(false, 0)
	if err != nil {
		return out, err
	}
	table := &nftables.Table{Name: nftTable, Family: nftables.TableFamilyINet}
	for _, ch := range nftChains(table) {
		rules, err := c.GetRules(table, ch)
		if err != nil {
			return out, fmt.Errorf("reading nftables counters of chain %s: %w", ch.Name, err)
		}
		sum := map[string]*Counter{nftOutput: &out.Output, nftInput: &out.Input, nftForward: &out.Forward}[ch.Name]
		for _, r := range rules {
			for _, e := range r.Exprs {
				if cnt, ok := e.(*expr.Counter); ok {
					sum.Packets += cnt.Packets
					sum.Bytes += cnt.Bytes
				}
			}
		}
	}
	return out, nil
}

// Close stops Watch and releases the namespace handle. The block stays in
// force: a lock must outlive the agent process.
func (n *Nftables) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil
	}
	n.closed = true
	close(n.done)
	if n.ns != nil {
		return n.ns.Close()
	}
	return nil
}

// nftSets returns the sets as Apply creates them. The ids only link
// elements and rules to the set within one transaction; setting them
// keeps the library from using its unsynchronized global counter.
func nftSets(table *nftables.Table) (v4, v6 *nftables.Set) {
	v4 = &nftables.Set{
		Table: table, ID: 1, Name: nftSet4, KeyType: nftables.TypeIPAddr,
		Interval: true, HasTimeout: true,
		Comment: "IPv4 LLM destinations blocked by Toktra",
	}
	v6 = &nftables.Set{
		Table: table, ID: 2, Name: nftSet6, KeyType: nftables.TypeIP6Addr,
		Interval: true, HasTimeout: true,
		Comment: "IPv6 LLM destinations blocked by Toktra",
	}
	return v4, v6
}

func nftChains(table *nftables.Table) []*nftables.Chain {
	accept := nftables.ChainPolicyAccept
	mk := func(name string, hook *nftables.ChainHook) *nftables.Chain {
		return &nftables.Chain{
			Name: name, Table: table, Type: nftables.ChainTypeFilter,
			Hooknum: hook, Priority: nftables.ChainPriorityRef(nftPriority), Policy: &accept,
		}
	}
	return []*nftables.Chain{
		mk(nftOutput, nftables.ChainHookOutput),
		mk(nftInput, nftables.ChainHookInput),
		mk(nftForward, nftables.ChainHookForward),
	}
}

// chainRules returns the rules of a chain: output matches destinations,
// input sources, forward both.
func chainRules(chain string, s4, s6 *nftables.Set) [][]expr.Any {
	var dirs []bool // true: match the destination address
	switch chain {
	case nftOutput:
		dirs = []bool{true}
	case nftInput:
		dirs = []bool{false}
	case nftForward:
		dirs = []bool{true, false}
	}
	var rules [][]expr.Any
	for _, dst := range dirs {
		for _, fam := range []struct {
			nfproto  byte
			set      *nftables.Set
			src, dst uint32 // address offsets in the network header
			alen     uint32
			icmpCode uint8
		}{
			{unix.NFPROTO_IPV4, s4, 12, 16, 4, icmpPktFiltered},
			{unix.NFPROTO_IPV6, s6, 8, 24, 16, icmpv6AdmProhibited},
		} {
			off := fam.src
			if dst {
				off = fam.dst
			}
			match := func(l4 expr.CmpOp) []expr.Any {
				return []expr.Any{
					&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
					&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{fam.nfproto}},
					&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
					&expr.Cmp{Op: l4, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
					&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: fam.alen},
					&expr.Lookup{SourceRegister: 1, SetName: fam.set.Name, SetID: fam.set.ID},
				}
			}
			// TCP, unless a reset: reject with a reset.
			tcp := append(match(expr.CmpOpEq),
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
				&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{0x04}, Xor: []byte{0x00}},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0x00}},
				&expr.Counter{},
				&expr.Reject{Type: unix.NFT_REJECT_TCP_RST},
			)
			// Everything else: ICMP administratively prohibited.
			other := append(match(expr.CmpOpNeq),
				&expr.Counter{},
				&expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: fam.icmpCode},
			)
			rules = append(rules, tcp, other)
		}
	}
	return rules
}

// setElements turns ranges into interval-set elements: a start carrying
// the timeout, and an end one past the range unless it reaches the top of
// the address space (an interval left open there runs to the end).
func setElements(ranges []addrRange) []nftables.SetElement {
	elems := make([]nftables.SetElement, 0, 2*len(ranges))
	for _, r := range ranges {
		elems = append(elems, nftables.SetElement{Key: r.first.AsSlice(), Timeout: ceilMillis(r.timeout)})
		if end := r.last.Next(); end.IsValid() {
			elems = append(elems, nftables.SetElement{Key: end.AsSlice(), IntervalEnd: true})
		}
	}
	return elems
}

// ceilMillis rounds up to the kernel's millisecond resolution, so that a
// short timeout does not become zero, which would mean none.
func ceilMillis(d time.Duration) time.Duration {
	if r := d % time.Millisecond; r != 0 {
		d += time.Millisecond - r
	}
	return d
}

// ownPorts remembers the netlink port ids of the enforcer's recent
// transactions. Port ids are unique among open sockets, and events
// arrive within moments of a commit, so a short history suffices.
type ownPorts struct {
	mu   sync.Mutex
	ids  [16]uint32
	next int
}

// record is a nftables.SockOption that notes the socket's port id.
func (o *ownPorts) record(c *netlink.Conn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil // only Watch's filtering suffers
	}
	var id uint32
	_ = rc.Control(func(fd uintptr) {
		if sa, err := unix.Getsockname(int(fd)); err == nil {
			if nl, ok := sa.(*unix.SockaddrNetlink); ok {
				id = nl.Pid
			}
		}
	})
	if id == 0 {
		return nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.ids[o.next] = id
	o.next = (o.next + 1) % len(o.ids)
	return nil
}

// forceSendBuffer raises the socket's send buffer to at least size bytes,
// past the net.core.wmem_max limit if need be (SO_SNDBUFFORCE, which needs
// CAP_NET_ADMIN, as nftables itself does).
func forceSendBuffer(c *netlink.Conn, size int) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("raising netlink send buffer: %w", err)
	}
	var sockErr error
	if err := rc.Control(func(fd uintptr) {
		cur, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF)
		if err == nil && cur >= size {
			return
		}
		sockErr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, size)
	}); err != nil {
		return fmt.Errorf("raising netlink send buffer: %w", err)
	}
	if sockErr != nil {
		return fmt.Errorf("raising netlink send buffer to %d bytes: %w", size, sockErr)
	}
	return nil
}

func (o *ownPorts) has(id uint32) bool {
	if id == 0 {
		return false // the kernel's own changes, e.g. element expiry
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, v := range o.ids {
		if v == id {
			return true
		}
	}
	return false
}
