package pipeline

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/toktra/toktra/controlplane/custody"
	"github.com/toktra/toktra/controlplane/snapshot"
	"github.com/toktra/toktra/controlplane/store"
)

// This file records the lockout's evidence events in the chain of custody:
// the lockout itself (with the transaction that creates it), each usage
// capture and provider confirmation (when final), each device
// acknowledgement (gathered when the snapshot is made), the snapshot and
// its upload. Each node's parent is the lockout's node (the snapshot's are
// every node before it), and each is time-stamped after its commit; the
// snapshot step stamps whatever is still unstamped before it renders.

// custodyEnabled reports whether the pipeline records custody nodes.
func (p *Pipeline) custodyEnabled() bool {
	return p.cfg.Evidence != nil && p.cfg.Evidence.Custody != nil
}

// evidenceJSON encodes a node payload; encoding/json sorts map keys, and
// the structs here have fixed field orders, so the bytes are canonical.
func evidenceJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// Only plain values are encoded here.
		panic(fmt.Sprintf("encoding custody payload: %v", err))
	}
	return b
}

// recordLockoutNode records the lockout's own node in st.
func (p *Pipeline) recordLockoutNode(ctx context.Context, st store.Store, l store.Lockout) (store.CustodyNode, error) {
	user, err := st.GetUser(ctx, l.OrgID, l.UserID)
	if err != nil {
		return store.CustodyNode{}, err
	}
	return p.cfg.Evidence.Custody.Record(ctx, st, custody.RecordParams{
		OrgID: l.OrgID, LockoutID: l.ID, Kind: custody.KindLockout,
		Payload: evidenceJSON(map[string]any{
			"lockout_id": l.ID, "user_id": user.ID, "email": user.Email, "trigger": l.Trigger,
			"created_at": l.CreatedAt.UTC().Format(time.RFC3339Nano),
		}),
	})
}

// lockoutNode returns the lockout's node, recording it if an older
// lockout has none.
func (p *Pipeline) lockoutNode(ctx context.Context, st store.Store, orgID, lockoutID string) (store.CustodyNode, error) {
	nodes, err := st.ListCustodyNodes(ctx, store.ListCustodyNodesParams{OrgID: orgID, LockoutID: lockoutID, AfterIndex: -1, Limit: 1})
	if err != nil {
		return store.CustodyNode{}, err
	}
	if len(nodes) == 1 && nodes[0].Kind == custody.KindLockout {
		return nodes[0], nil
	}
	l, err := st.GetLockout(ctx, orgID, lockoutID)
	if err != nil {
		return store.CustodyNode{}, err
	}
	return p.recordLockoutNode(ctx, st, l)
}

// recordEvidence records one event as a child of the lockout's node, in
// st (a transaction's store, or the pipeline's).
func (p *Pipeline) recordEvidence(ctx context.Context, st store.Store, orgID, lockoutID, kind, subject string, payload any) (store.CustodyNode, error) {
	parent, err := p.lockoutNode(ctx, st, orgID, lockoutID)
	if err != nil {
		return store.CustodyNode{}, fmt.Errorf("finding the lockout's custody node: %w", err)
	}
	return p.cfg.Evidence.Custody.Record(ctx, st, custody.RecordParams{
		OrgID: orgID, LockoutID: lockoutID, Kind: kind, Subject: subject,
		Payload: evidenceJSON(payload), Parents: [][]byte{parent.Hash},
	})
}

// stamp time-stamps a committed node; a failure is left to the snapshot
// step's StampPending.
func (p *Pipeline) stamp(ctx context.Context, orgID string, n store.CustodyNode) {
	if _, err := p.cfg.Evidence.Custody.Stamp(ctx, orgID, n.Hash); err != nil {
		p.log.Warn("time-stamping a custody node; the snapshot step will retry", "org", orgID, "lockout", n.LockoutID, "kind", n.Kind, "err", err)
	}
}

// recordDeviceAcks records each answered lock command of the lockout.
func (p *Pipeline) recordDeviceAcks(ctx context.Context, l store.Lockout) error {
	cmds, err := p.cfg.Store.ListCommandsByLockout(ctx, l.OrgID, l.ID)
	if err != nil {
		return err
	}
	for _, c := range cmds {
		if c.State != store.CommandApplied && c.State != store.CommandRejected {
			continue
		}
		payload := map[string]any{
			"device_id": c.DeviceID, "sequence": c.Seq, "kind": string(c.Kind), "state": string(c.State),
			"reason": c.Reason, "detail": c.Detail, "issued_at": c.CreatedAt.UTC().Format(time.RFC3339Nano),
		}
		if c.AckedAt != nil {
			payload["acked_at"] = c.AckedAt.UTC().Format(time.RFC3339Nano)
		}
		if _, err := p.recordEvidence(ctx, p.cfg.Store, l.OrgID, l.ID, custody.KindDeviceAck, fmt.Sprintf("%s/%d", c.DeviceID, c.Seq), payload); err != nil {
			return err
		}
	}
	return nil
}

// custodyForSnapshot stamps the lockout's nodes and returns them, for the
// document.
func (p *Pipeline) custodyForSnapshot(ctx context.Context, l store.Lockout) ([]store.CustodyNode, []snapshot.CustodyNode, error) {
	cs := p.cfg.Evidence.Custody
	if _, err := cs.StampPending(ctx, l.OrgID, l.ID); err != nil {
		return nil, nil, fmt.Errorf("time-stamping the lockout's custody nodes: %w", err)
	}
	nodes, err := p.lockoutNodes(ctx, l.OrgID, l.ID)
	if err != nil {
		return nil, nil, err
	}
	var out []snapshot.CustodyNode
	for _, n := range nodes {
		sn := snapshot.CustodyNode{Hash: hex.EncodeToString(n.Hash), Kind: n.Kind, PayloadHash: hex.EncodeToString(n.PayloadHash), At: n.At}
		for _, par := range n.Parents {
			sn.Parents = append(sn.Parents, hex.EncodeToString(par))
		}
		if n.Token != nil {
			sn.TimestampedAt, sn.TSA = n.Token.GenTime, n.Token.TSA
		}
		out = append(out, sn)
	}
	return nodes, out, nil
}

// lockoutNodes returns all of the lockout's custody nodes, oldest first.
func (p *Pipeline) lockoutNodes(ctx context.Context, orgID, lockoutID string) ([]store.CustodyNode, error) {
	var nodes []store.CustodyNode
	after := int64(-1)
	for {
		page, err := p.cfg.Store.ListCustodyNodes(ctx, store.ListCustodyNodesParams{OrgID: orgID, LockoutID: lockoutID, AfterIndex: after, Limit: store.MaxCustodyPageLimit})
		if err != nil {
			return nil, err
		}
		nodes = append(nodes, page...)
		if len(page) < store.MaxCustodyPageLimit {
			return nodes, nil
		}
		after = int64(page[len(page)-1].Index)
	}
}

// findNode returns the lockout's first node of a kind.
func (p *Pipeline) findNode(ctx context.Context, orgID, lockoutID, kind string) (store.CustodyNode, bool, error) {
	nodes, err := p.lockoutNodes(ctx, orgID, lockoutID)
	if err != nil {
		return store.CustodyNode{}, false, err
	}
	for _, n := range nodes {
		if n.Kind == kind {
			return n, true, nil
		}
	}
	return store.CustodyNode{}, false, nil
}
