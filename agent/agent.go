// Package agent is the Toktra agent that runs as a service on each device:
// it enrolls, keeps one mTLS stream to the control plane, verifies signed
// commands, keeps its lock state durably, and enforces it through platform.
package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/proto"

	"github.com/toktra/toktra/internal/clock"
	"github.com/toktra/toktra/pki"
	"github.com/toktra/toktra/platform"
	agentv1 "github.com/toktra/toktra/proto/toktra/agent/v1"
)

// Resolver turns a policy's domains and CIDRs into enforceable targets
// (platform.Resolver). Domains that fail to resolve are left out, not an error.
type Resolver interface {
	Resolve(ctx context.Context, p platform.Policy) (platform.Resolution, error)
}

// Options configure an Agent.
type Options struct {
	StateDir StateDir
	Enforcer platform.Enforcer
	Resolver Resolver
	// Watch, if set, calls onChange whenever the enforcement may have been
	// changed behind the agent's back, until ctx ends.
	Watch        func(ctx context.Context, onChange func())
	Capabilities *agentv1.Capabilities
	Version      string
	Logger       *slog.Logger
	Clock        clock.Clock
	// HeartbeatInterval defaults to 15s.
	HeartbeatInterval time.Duration
	// CheckInterval is how often enforcement is checked without a watch
	// event (defaults to 1s).
	CheckInterval time.Duration
	// Usage, if set, holds usage batches to send on the stream until the
	// control plane acknowledges them (telemetry.Buffer).
	Usage UsageOutbox
}

// UsageOutbox is where usage batches wait for the control plane
// (telemetry.Buffer): sent in sequence order, removed on acknowledgement.
type UsageOutbox interface {
	// Pending lists the batches not yet acknowledged, in sequence order.
	Pending() []uint64
	// Batch reads one pending batch.
	Batch(seq uint64) (*agentv1.UsageBatch, error)
	// Ack removes a batch the control plane stored.
	Ack(seq uint64) error
	// Reject removes a batch the control plane refused, counting it as dropped.
	Reject(seq uint64) error
	// Sealed signals that a new batch is pending.
	Sealed() <-chan struct{}
}

// usageWindow is how many usage batches may await acknowledgement on a
// stream at once.
const usageWindow = 4

// Timing of reconnection and DNS refresh.
const (
	backoffMin        = 250 * time.Millisecond
	backoffMax        = 30 * time.Second
	stableConnection  = 10 * time.Second
	lockResolveBudget = 2 * time.Second
	refreshMin        = 5 * time.Second
	refreshMax        = 5 * time.Minute
	// bootEntryTimeout keeps addresses remembered from before a restart in
	// force until fresh DNS answers replace them.
	bootEntryTimeout = 10 * time.Minute
)

// Agent is a running agent.
type Agent struct {
	opts     Options
	log      *slog.Logger
	clk      clock.Clock
	id       Identity
	verifier *pki.Verifier

	mu                sync.Mutex // guards everything below
	state             State
	enforcementActive bool
	status            Status

	events  chan *agentv1.AgentMessage
	refresh chan struct{}
}

// New loads the agent's identity and durable state.
func New(opts Options) (*Agent, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.HeartbeatInterval == 0 {
		opts.HeartbeatInterval = 15 * time.Second
	}
	if opts.CheckInterval == 0 {
		opts.CheckInterval = time.Second
	}
	id, err := opts.StateDir.LoadIdentity()
	if err != nil {
		return nil, err
	}
	v, err := pki.NewVerifier(id.OrgID, id.DeviceID, id.verificationKeys())
	if err != nil {
		return nil, fmt.Errorf("loading command keys: %w", err)
	}
	st, err := opts.StateDir.LoadState()
	if err != nil {
		return nil, fmt.Errorf("loading state: %w", err)
	}
	a := &Agent{
		opts: opts, log: opts.Logger, clk: opts.Clock, id: id, verifier: v, state: st,
		events: make(chan *agentv1.AgentMessage, 16), refresh: make(chan struct{}, 1),
	}
	a.status = Status{PID: os.Getpid(), Server: id.Server, OrgID: id.OrgID, DeviceID: id.DeviceID, Version: opts.Version}
	if opts.Capabilities != nil {
		a.status.Enforcers = opts.Capabilities.GetEnforcers()
		a.status.Unsupported = opts.Capabilities.GetUnsupported()
	}
	return a, nil
}

// Run restores the enforcement the state calls for, before any network,
// then keeps the stream to the control plane until ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	if err := a.restore(ctx); err != nil {
		// Keep going: the check loop retries, and the control plane hears of it.
		a.log.Error("restoring enforcement at start", "err", err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Add(2)
	go func() { defer wg.Done(); a.checkLoop(ctx) }()
	go func() { defer wg.Done(); a.refreshLoop(ctx) }()
	a.streamLoop(ctx)
	return nil
}

// restore puts the enforcement the durable state says into force.
func (a *Agent) restore(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.status.Since = a.clk.Now()
	if !a.state.Locked {
		a.enforcementActive = false
		a.writeStatus()
		return a.opts.Enforcer.Remove(ctx)
	}
	now := a.clk.Now()
	var entries []platform.Entry
	for _, r := range a.state.Resolved {
		timeout := r.ExpiresAt.Sub(now)
		if timeout < bootEntryTimeout {
			timeout = bootEntryTimeout
		}
		entries = append(entries, platform.Entry{Prefix: r.Prefix, Timeout: timeout})
	}
	if p := a.state.Policy; p != nil {
		for _, c := range p.CIDRs {
			if pfx, err := platform.ParseCIDR(c); err == nil {
				entries = append(entries, platform.Entry{Prefix: pfx})
			}
		}
	}
	err := a.opts.Enforcer.Apply(ctx, platform.Targets{Entries: entries})
	a.enforcementActive = err == nil
	a.writeStatus()
	a.requestRefresh()
	if err != nil {
		return fmt.Errorf("re-applying lock: %w", err)
	}
	a.log.Info("lock restored at start", "entries", len(entries), "last_applied", a.state.LastAppliedSeq)
	return nil
}

func (a *Agent) requestRefresh() {
	select {
	case a.refresh <- struct{}{}:
	default:
	}
}

// refreshLoop re-resolves the policy's domains on their TTL while locked.
func (a *Agent) refreshLoop(ctx context.Context) {
	timer := time.NewTimer(refreshMax)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.refresh:
		case <-timer.C:
		}
		next := a.refreshOnce(ctx)
		wait := next.Sub(a.clk.Now())
		wait = min(max(wait, refreshMin), refreshMax)
		timer.Reset(wait)
	}
}

func (a *Agent) refreshOnce(ctx context.Context) time.Time {
	a.mu.Lock()
	locked, policy := a.state.Locked, a.state.Policy
	a.mu.Unlock()
	if !locked || policy == nil {
		return a.clk.Now().Add(refreshMax)
	}
	res, err := a.opts.Resolver.Resolve(ctx, policy.platformPolicy())
	if err != nil {
		a.log.Warn("resolving policy", "err", err)
		return a.clk.Now().Add(refreshMin)
	}
	if err := res.Err(); err != nil {
		a.log.Debug("some policy domains did not resolve", "err", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.state.Locked || a.state.Policy != policy {
		// A command changed things while we resolved; the next round uses it.
		return a.clk.Now()
	}
	if err := a.enforce(ctx, res.Targets); err != nil {
		a.log.Error("refreshing enforcement", "err", err)
		return a.clk.Now().Add(refreshMin)
	}
	if res.NextRefresh.IsZero() {
		return a.clk.Now().Add(refreshMax)
	}
	return res.NextRefresh
}

// enforce applies targets and remembers the resolved addresses durably.
// Called with a.mu held.
func (a *Agent) enforce(ctx context.Context, targets platform.Targets) error {
	err := a.opts.Enforcer.Apply(ctx, targets)
	a.enforcementActive = err == nil
	a.writeStatus()
	if err != nil {
		return err
	}
	now := a.clk.Now()
	resolved := make([]ResolvedAddr, 0, len(targets.Entries))
	for _, e := range targets.Entries {
		if e.Timeout > 0 {
			resolved = append(resolved, ResolvedAddr{Prefix: e.Prefix, ExpiresAt: now.Add(e.Timeout)})
		}
	}
	a.state.Resolved = resolved
	return a.opts.StateDir.SaveState(a.state)
}

// checkLoop re-applies the lock when someone removed it, and says so.
func (a *Agent) checkLoop(ctx context.Context) {
	changed := make(chan struct{}, 1)
	if a.opts.Watch != nil {
		go a.opts.Watch(ctx, func() {
			select {
			case changed <- struct{}{}:
			default:
			}
		})
	}
	ticker := time.NewTicker(a.opts.CheckInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-ticker.C:
		}
		a.checkEnforcement(ctx)
	}
}

func (a *Agent) checkEnforcement(ctx context.Context) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.state.Locked {
		return
	}
	active, err := a.opts.Enforcer.Active(ctx)
	if err != nil {
		a.log.Warn("checking enforcement", "err", err)
		return
	}
	if active {
		if !a.enforcementActive {
			a.enforcementActive = true
			a.writeStatus()
		}
		return
	}
	if !a.enforcementActive {
		// It was never in force (an earlier apply failed): retry quietly.
		if err := a.enforce(ctx, a.currentTargets()); err != nil {
			a.log.Warn("retrying enforcement", "err", err)
		}
		a.requestRefresh()
		return
	}
	a.log.Warn("enforcement was removed while locked; re-applying")
	detected := a.clk.Now()
	targets := a.currentTargets()
	err = a.enforce(ctx, targets)
	if err != nil {
		a.log.Error("re-applying enforcement", "err", err)
	}
	a.sendEvent(&agentv1.AgentMessage{Msg: &agentv1.AgentMessage_Tamper{Tamper: &agentv1.TamperEvent{
		Kind: "enforcement_removed", Detail: fmt.Sprintf("%s rules were missing while locked", a.opts.Enforcer.Name()),
		DetectedAtUnixNano: detected.UnixNano(), Restored: err == nil,
	}}})
	a.requestRefresh()
}

// currentTargets rebuilds targets from remembered state. Called with a.mu held.
func (a *Agent) currentTargets() platform.Targets {
	now := a.clk.Now()
	var entries []platform.Entry
	for _, r := range a.state.Resolved {
		if d := r.ExpiresAt.Sub(now); d > 0 {
			entries = append(entries, platform.Entry{Prefix: r.Prefix, Timeout: d})
		}
	}
	if p := a.state.Policy; p != nil {
		for _, c := range p.CIDRs {
			if pfx, err := platform.ParseCIDR(c); err == nil {
				entries = append(entries, platform.Entry{Prefix: pfx})
			}
		}
	}
	return platform.Targets{Entries: entries}
}

func (a *Agent) sendEvent(m *agentv1.AgentMessage) {
	select {
	case a.events <- m:
	default:
		a.log.Warn("event queue full; dropping event")
	}
}

// HandleCommand verifies and applies one signed command and returns the
// acknowledgement to send. It is safe to call with any input.
func (a *Agent) HandleCommand(ctx context.Context, sc *agentv1.SignedCommand) *agentv1.CommandAck {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.clk.Now()
	envelope := envelopeHash(sc)
	for _, r := range a.state.RecentAcks {
		if string(r.EnvelopeHash) == string(envelope) {
			// The same command again (its ack was lost): the same answer.
			return r.ack()
		}
	}
	body, err := a.verifier.Verify(sc, a.state.LastAppliedSeq, now)
	if err != nil {
		reason, _ := pki.RejectReason(err)
		if reason == "" {
			reason = pki.ReasonMalformed
		}
		rec := RecordedAck{EnvelopeHash: envelope, Sequence: sc.GetSequenceHint(), Reason: reason, Detail: err.Error(), AtUnixNano: now.UnixNano()}
		a.log.Warn("command rejected", "seq_hint", sc.GetSequenceHint(), "reason", reason, "detail", err.Error())
		return a.finish(rec, sc.GetSequenceHint(), "unknown")
	}
	rec := RecordedAck{EnvelopeHash: envelope, Sequence: body.GetSequence(), Applied: true, AtUnixNano: now.UnixNano()}
	// The decision is made durable before it is enforced: a crash in
	// between restores it at start instead of losing it.
	prev := a.state
	switch body.GetKind() {
	case agentv1.CommandKind_COMMAND_KIND_LOCK, agentv1.CommandKind_COMMAND_KIND_POLICY_UPDATE:
		p := body.GetPolicy()
		a.state.Locked = true
		a.state.LockoutID = body.GetLockoutId()
		a.state.Policy = &PolicyState{Version: p.GetVersion(), Domains: p.GetDomains(), CIDRs: p.GetCidrs()}
	case agentv1.CommandKind_COMMAND_KIND_UNLOCK:
		a.state.Locked = false
		a.state.LockoutID = ""
		a.state.Policy = nil
		a.state.Resolved = nil
	}
	a.state.LastAppliedSeq = body.GetSequence()
	if err := a.opts.StateDir.SaveState(a.state); err != nil {
		a.state = prev
		a.log.Error("saving state", "err", err)
		return &agentv1.CommandAck{Sequence: body.GetSequence(), Status: agentv1.AckStatus_ACK_STATUS_REJECTED, Reason: "state_unwritable", Detail: err.Error()}
	}
	var enfErr error
	if a.state.Locked {
		enfErr = a.applyPolicy(ctx)
	} else {
		enfErr = a.opts.Enforcer.Remove(ctx)
		a.enforcementActive = false
		a.writeStatus()
	}
	if enfErr != nil {
		// The lock stays wanted; the check loop keeps trying to apply it.
		rec.Applied = false
		rec.Reason = "enforcement_failed"
		rec.Detail = enfErr.Error()
		a.log.Error("enforcing command", "seq", body.GetSequence(), "err", enfErr)
	} else {
		a.log.Info("command applied", "seq", body.GetSequence(), "kind", body.GetKind().String(), "lockout", body.GetLockoutId())
	}
	return a.finish(rec, body.GetSequence(), kindName(body.GetKind()))
}

// applyPolicy resolves the policy within a short budget and enforces what
// it got; the refresh loop fills in stragglers. Called with a.mu held.
func (a *Agent) applyPolicy(ctx context.Context) error {
	p := a.state.Policy
	rctx, cancel := context.WithTimeout(ctx, lockResolveBudget)
	defer cancel()
	res, err := a.opts.Resolver.Resolve(rctx, p.platformPolicy())
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("resolving policy: %w", err)
		}
		// The budget ran out: block what resolved in time (hosts-file names,
		// CIDRs, fast answers) now rather than leave the device open; the
		// refresh loop adds the rest as it resolves.
		a.log.Warn("policy not fully resolved within the lock budget; enforcing what resolved", "budget", lockResolveBudget, "err", err)
	}
	if err := a.enforce(ctx, res.Targets); err != nil {
		return err
	}
	a.requestRefresh()
	return nil
}

// finish records the answer durably and returns it. Called with a.mu held.
func (a *Agent) finish(rec RecordedAck, seq uint64, kind string) *agentv1.CommandAck {
	a.state.recordAck(rec)
	a.state.LastCommand = &CommandRecord{Sequence: seq, Kind: kind, Applied: rec.Applied, Reason: rec.Reason, At: time.Unix(0, rec.AtUnixNano).UTC()}
	if err := a.opts.StateDir.SaveState(a.state); err != nil {
		a.log.Error("saving state", "err", err)
	}
	a.writeStatus()
	return rec.ack()
}

func (r RecordedAck) ack() *agentv1.CommandAck {
	a := &agentv1.CommandAck{Sequence: r.Sequence, Reason: r.Reason, Detail: r.Detail, AppliedAtUnixNano: r.AtUnixNano}
	if r.Applied {
		a.Status = agentv1.AckStatus_ACK_STATUS_APPLIED
	} else {
		a.Status = agentv1.AckStatus_ACK_STATUS_REJECTED
	}
	return a
}

func envelopeHash(sc *agentv1.SignedCommand) []byte {
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(sc)
	h := sha256.Sum256(b)
	return h[:]
}

func kindName(k agentv1.CommandKind) string {
	switch k {
	case agentv1.CommandKind_COMMAND_KIND_LOCK:
		return "lock"
	case agentv1.CommandKind_COMMAND_KIND_UNLOCK:
		return "unlock"
	case agentv1.CommandKind_COMMAND_KIND_POLICY_UPDATE:
		return "policy_update"
	}
	return "unknown"
}

// hello describes the agent at the start of a stream.
func (a *Agent) hello() *agentv1.AgentMessage {
	a.mu.Lock()
	defer a.mu.Unlock()
	return &agentv1.AgentMessage{Msg: &agentv1.AgentMessage_Hello{Hello: &agentv1.Hello{
		LastAppliedSequence: a.state.LastAppliedSeq,
		Locked:              a.state.Locked,
		AgentVersion:        a.opts.Version,
		Capabilities:        a.opts.Capabilities,
		EnforcementActive:   a.enforcementActive,
	}}}
}

func (a *Agent) heartbeat() *agentv1.AgentMessage {
	a.mu.Lock()
	defer a.mu.Unlock()
	return &agentv1.AgentMessage{Msg: &agentv1.AgentMessage_Heartbeat{Heartbeat: &agentv1.Heartbeat{
		SentAtUnixNano: a.clk.Now().UnixNano(), Locked: a.state.Locked, EnforcementActive: a.enforcementActive,
	}}}
}

// streamLoop keeps a stream open, reconnecting with jittered exponential backoff.
func (a *Agent) streamLoop(ctx context.Context) {
	backoff := backoffMin
	for ctx.Err() == nil {
		started := time.Now()
		err := a.connectOnce(ctx)
		a.setConnected(false, err)
		if ctx.Err() != nil {
			return
		}
		if time.Since(started) > stableConnection {
			backoff = backoffMin
		}
		// Full jitter keeps a fleet from reconnecting in lockstep after an outage.
		wait := time.Duration(rand.Int64N(int64(backoff))) + backoffMin/2
		a.log.Warn("stream ended; reconnecting", "err", err, "in", wait.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		backoff = min(backoff*2, backoffMax)
	}
}

var errReconnect = errors.New("reconnecting with renewed certificate")

func (a *Agent) connectOnce(ctx context.Context) error {
	cert, leaf, err := a.opts.StateDir.clientCert()
	if err != nil {
		return err
	}
	caDER, err := a.opts.StateDir.caDER()
	if err != nil {
		return err
	}
	conn, err := grpc.NewClient(a.id.Server,
		grpc.WithTransportCredentials(credentials.NewTLS(pki.AgentTLSConfig(caDER, cert, a.id.ServerName))),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second, PermitWithoutStream: true}),
	)
	if err != nil {
		return fmt.Errorf("dialing %s: %w", a.id.Server, err)
	}
	defer conn.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := agentv1.NewAgentServiceClient(conn).Connect(sctx)
	if err != nil {
		return fmt.Errorf("opening stream: %w", err)
	}
	var sendMu sync.Mutex
	send := func(m *agentv1.AgentMessage) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		return stream.Send(m)
	}
	if err := send(a.hello()); err != nil {
		return fmt.Errorf("sending hello: %w", err)
	}
	// The first message back proves the server accepted us.
	first, err := stream.Recv()
	if err != nil {
		return fmt.Errorf("stream refused: %w", err)
	}
	a.setConnected(true, nil)
	a.log.Info("connected to control plane", "server", a.id.Server)

	errc := make(chan error, 2)
	go func() {
		t := time.NewTicker(a.opts.HeartbeatInterval)
		defer t.Stop()
		for {
			select {
			case <-sctx.Done():
				return
			case m := <-a.events:
				if err := send(m); err != nil {
					errc <- err
					return
				}
			case <-t.C:
				if err := send(a.heartbeat()); err != nil {
					errc <- err
					return
				}
			}
		}
	}()

	usageAcks := make(chan *agentv1.UsageAck, 2*usageWindow)
	if a.opts.Usage != nil {
		go func() {
			if err := a.sendUsage(sctx, send, usageAcks); err != nil {
				errc <- err
			}
		}()
	}

	var pendingKey *ecdsa.PrivateKey
	if renewDue(leaf, a.clk.Now()) {
		key, csr, err := newKeyAndCSR()
		if err == nil {
			pendingKey = key
			if err := send(&agentv1.AgentMessage{Msg: &agentv1.AgentMessage_Renew{Renew: &agentv1.RenewRequest{CsrDer: csr}}}); err != nil {
				return err
			}
		}
	}

	msg := first
	for {
		switch m := msg.GetMsg().(type) {
		case *agentv1.ServerMessage_Command:
			ack := a.HandleCommand(ctx, m.Command)
			if err := send(&agentv1.AgentMessage{Msg: &agentv1.AgentMessage_Ack{Ack: ack}}); err != nil {
				return err
			}
			// The server learns the new lock state at once, not at the next heartbeat.
			if err := send(a.heartbeat()); err != nil {
				return err
			}
		case *agentv1.ServerMessage_Renew:
			if err := a.finishRenewal(pendingKey, m.Renew); err != nil {
				a.log.Warn("certificate renewal", "err", err)
			} else {
				return errReconnect
			}
		case *agentv1.ServerMessage_HeartbeatAck:
		case *agentv1.ServerMessage_UsageAck:
			select {
			case usageAcks <- m.UsageAck:
			case <-sctx.Done():
				return sctx.Err()
			}
		}
		select {
		case err := <-errc:
			return err
		default:
		}
		msg, err = stream.Recv()
		if err != nil {
			return err
		}
	}
}

// sendUsage sends the pending usage batches in sequence order, at most
// usageWindow unacknowledged at a time, and removes each as its
// acknowledgement arrives. Whatever is unacknowledged when the stream ends
// is sent again on the next one: the control plane stores a batch once.
func (a *Agent) sendUsage(ctx context.Context, send func(*agentv1.AgentMessage) error, acks <-chan *agentv1.UsageAck) error {
	out := a.opts.Usage
	inflight := map[uint64]bool{}
	var last uint64 // the highest sequence sent on this stream
	for {
		for _, seq := range out.Pending() {
			if len(inflight) >= usageWindow {
				break
			}
			if seq <= last {
				continue
			}
			b, err := out.Batch(seq)
			if err != nil {
				// Dropped meanwhile, or unreadable: skip it, never block the rest.
				a.log.Warn("reading usage batch", "batch_seq", seq, "err", err)
				last = seq
				continue
			}
			if err := send(&agentv1.AgentMessage{Msg: &agentv1.AgentMessage_Usage{Usage: b}}); err != nil {
				return err
			}
			inflight[seq] = true
			last = seq
		}
		select {
		case <-ctx.Done():
			return nil
		case <-out.Sealed():
		case ack := <-acks:
			seq := ack.GetBatchSeq()
			delete(inflight, seq)
			var err error
			if ack.GetRejected() != "" {
				a.log.Error("control plane refused a usage batch; its events are dropped", "batch_seq", seq, "reason", ack.GetRejected())
				err = out.Reject(seq)
			} else {
				err = out.Ack(seq)
			}
			if err != nil {
				a.log.Error("removing acknowledged usage batch", "batch_seq", seq, "err", err)
			}
		}
	}
}

// PolicyDestinations returns the domains and networks of the policy in
// force (none while unlocked), for usage telemetry to recognize the
// organization's own LLM destinations.
func (a *Agent) PolicyDestinations() ([]string, []netip.Prefix) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.state.Policy == nil {
		return nil, nil
	}
	p := a.state.Policy.platformPolicy()
	return p.Domains, p.CIDRs
}

// renewDue says whether less than a third of the certificate's life is left.
func renewDue(leaf *x509.Certificate, now time.Time) bool {
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	return leaf.NotAfter.Sub(now) < life/3
}

func (a *Agent) finishRenewal(key *ecdsa.PrivateKey, r *agentv1.RenewResponse) error {
	if key == nil {
		return errors.New("renewal response without a request")
	}
	if r.GetError() != "" {
		return fmt.Errorf("control plane refused renewal: %s", r.GetError())
	}
	cert, err := x509.ParseCertificate(r.GetCertificateDer())
	if err != nil {
		return fmt.Errorf("parsing renewed certificate: %w", err)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return errors.New("renewed certificate is not for the new key")
	}
	if err := a.opts.StateDir.saveCredentials(key, r.GetCertificateDer()); err != nil {
		return err
	}
	a.log.Info("device certificate renewed", "not_after", cert.NotAfter)
	return nil
}

// Locked reports whether the agent's durable state is locked.
func (a *Agent) Locked() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.state.Locked
}
