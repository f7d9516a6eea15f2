package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/riverqueue/river"

	"github.com/toktra/toktra/controlplane/anomaly"
	"github.com/toktra/toktra/controlplane/custody"
	"github.com/toktra/toktra/controlplane/objectstore"
	"github.com/toktra/toktra/controlplane/snapshot"
	"github.com/toktra/toktra/controlplane/store"
	"github.com/toktra/toktra/controlplane/usage"
)

// Evidence configures steps 3 and 4: the audit snapshot and its upload to
// the write-once store.
type Evidence struct {
	// Usage reports the user's usage and anomalies for the snapshot.
	Usage *usage.Service
	// Signer signs the PDF (evidence key, chain, and the TSA that
	// timestamps the signature).
	Signer snapshot.Signer
	// Timestamper timestamps the signed PDF's SHA-256 on its own; the
	// token is stored beside the PDF.
	Timestamper snapshot.Timestamper
	// TSAs describe the time-stamping authorities for the document.
	TSAs []snapshot.TSA
	// Custody records each evidence event as a time-stamped node of the
	// org's chain of custody; nil records none.
	Custody *custody.Service
	// Objects is the write-once store the snapshot is uploaded to.
	Objects objectstore.Store
	// MinRetention is the shortest retention a snapshot gets (the store's
	// own configured retention applies when longer).
	MinRetention objectstore.Period
	// AckWait is how long after the lockout the snapshot waits for the
	// devices' lock acknowledgements (default 5m); a device that has not
	// answered by then is reported as such.
	AckWait time.Duration
	// ProviderWait is the longest the snapshot waits for the providers'
	// revocations to finish retrying (default 1h); one still retrying then
	// is reported as unconfirmed so far.
	ProviderWait time.Duration
	// Poll is how often a waiting snapshot checks again (default 2s).
	Poll time.Duration
}

// The evidence steps follow the device lock.
const (
	StepSnapshot = "snapshot"
	StepUpload   = "upload"
)

// SnapshotArgs is the audit snapshot of one lockout.
type SnapshotArgs struct {
	OrgID     string `json:"org_id"`
	LockoutID string `json:"lockout_id"`
}

// Kind names the job.
func (SnapshotArgs) Kind() string { return "lockout_snapshot" }

// UploadArgs is the upload of one lockout's snapshot.
type UploadArgs struct {
	OrgID     string `json:"org_id"`
	LockoutID string `json:"lockout_id"`
}

// Kind names the job.
func (UploadArgs) Kind() string { return "lockout_upload" }

func (e *Evidence) withDefaults() {
	e.AckWait = orDefault(e.AckWait, 5*time.Minute)
	e.ProviderWait = orDefault(e.ProviderWait, time.Hour)
	e.Poll = orDefault(e.Poll, 2*time.Second)
}

func (e *Evidence) validate() error {
	switch {
	case e.Usage == nil:
		return errors.New("pipeline: evidence needs the usage service")
	case e.Signer.Key == nil || len(e.Signer.Chain) == 0 || e.Signer.TSA == nil:
		return errors.New("pipeline: evidence needs the signing key, its chain and a TSA")
	case e.Timestamper == nil:
		return errors.New("pipeline: evidence needs a timestamper")
	case e.Objects == nil:
		return errors.New("pipeline: evidence needs the write-once store")
	}
	return nil
}

type snapshotWorker struct {
	river.WorkerDefaults[SnapshotArgs]
	p *Pipeline
}

// Work renders, signs and timestamps the lockout's snapshot once the
// providers and devices have answered (or stopped being waited for), and
// records it with the upload's job in one transaction.
func (w *snapshotWorker) Work(ctx context.Context, job *river.Job[SnapshotArgs]) error {
	p, a := w.p, job.Args
	ev := p.cfg.Evidence
	st := p.cfg.Store
	l, err := st.GetLockout(ctx, a.OrgID, a.LockoutID)
	if errors.Is(err, store.ErrNotFound) {
		return river.JobCancel(fmt.Errorf("lockout %s does not exist", a.LockoutID))
	}
	if err != nil {
		return err
	}
	if _, err := st.GetLockoutSnapshot(ctx, a.OrgID, a.LockoutID); err == nil {
		// Made by an earlier run whose completion was lost: move on.
		return w.p.cfg.Store.InTx(ctx, func(st store.Store, tx any) error { return w.finishIn(ctx, st, tx, job) })
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	now := p.cfg.Clock.Now()
	if wait, err := w.waitFor(ctx, l, now); err != nil {
		return err
	} else if wait > 0 {
		return river.JobSnooze(wait)
	}
	step, err := st.UpdateLockoutStep(ctx, store.UpdateLockoutStepParams{
		OrgID: a.OrgID, LockoutID: a.LockoutID, Step: StepSnapshot, State: store.StepRunning, Attempts: job.Attempt, At: now,
	})
	if err != nil {
		return err
	}
	in, err := w.input(ctx, l, *step.StartedAt)
	if err != nil {
		return w.failed(ctx, job, err)
	}
	var nodes []store.CustodyNode
	if p.custodyEnabled() {
		if err := p.recordDeviceAcks(ctx, l); err != nil {
			return w.failed(ctx, job, fmt.Errorf("recording device acknowledgements: %w", err))
		}
		if nodes, in.Custody.Nodes, err = p.custodyForSnapshot(ctx, l); err != nil {
			return w.failed(ctx, job, err)
		}
	}
	doc, err := snapshot.Render(in)
	if err != nil {
		return w.failed(ctx, job, fmt.Errorf("rendering: %w", err))
	}
	signed, err := snapshot.Sign(ctx, doc, ev.Signer)
	if err != nil {
		return w.failed(ctx, job, fmt.Errorf("signing: %w", err))
	}
	sum := sha256.Sum256(signed)
	tok, err := ev.Timestamper.Timestamp(ctx, sum[:])
	if err != nil {
		return w.failed(ctx, job, fmt.Errorf("timestamping the snapshot's hash: %w", err))
	}
	var (
		snap     store.Snapshot
		snapNode store.CustodyNode
	)
	err = st.InTx(ctx, func(st store.Store, tx any) error {
		var (
			err     error
			created bool
		)
		snap, created, err = st.PutSnapshot(ctx, store.PutSnapshotParams{
			OrgID: a.OrgID, LockoutID: a.LockoutID, ID: store.NewID("snap"), PDF: signed, SHA256: sum[:],
			TimestampToken: tok.DER, At: p.cfg.Clock.Now(),
		})
		if err != nil {
			return err
		}
		if created && p.custodyEnabled() {
			parents := make([][]byte, len(nodes))
			for i, n := range nodes {
				parents[i] = n.Hash
			}
			snapNode, err = ev.Custody.Record(ctx, st, custody.RecordParams{
				OrgID: a.OrgID, LockoutID: a.LockoutID, Kind: custody.KindSnapshot, Parents: parents,
				Payload: evidenceJSON(map[string]any{
					"snapshot_id": snap.ID, "sha256": hex.EncodeToString(snap.SHA256), "bytes": len(snap.PDF),
					"events": len(in.Usage.Events), "timestamp_token_sha256": hex.EncodeToString(sha256Of(snap.TimestampToken)),
				}),
			})
			if err != nil {
				return err
			}
		}
		return w.finishIn(ctx, st, tx, job)
	})
	if err != nil {
		return fmt.Errorf("recording the snapshot of lockout %s: %w", a.LockoutID, err)
	}
	if snapNode.Hash != nil {
		p.stamp(ctx, a.OrgID, snapNode)
	}
	p.metrics.snapshots.Inc()
	p.log.Info("audit snapshot made", "org", a.OrgID, "lockout", a.LockoutID, "snapshot", snap.ID,
		"bytes", len(snap.PDF), "events", len(in.Usage.Events))
	return nil
}

// waitFor says how long the snapshot should still wait for the evidence it
// reports: the providers' final answers and the devices' acknowledgements.
func (w *snapshotWorker) waitFor(ctx context.Context, l store.Lockout, now time.Time) (time.Duration, error) {
	ev := w.p.cfg.Evidence
	st := w.p.cfg.Store
	var waits []time.Time
	revs, err := st.ListProviderRevocations(ctx, l.OrgID, l.ID)
	if err != nil {
		return 0, err
	}
	for _, r := range revs {
		if r.State == store.RevocationPending {
			waits = append(waits, l.CreatedAt.Add(ev.ProviderWait))
			break
		}
	}
	steps, err := st.ListLockoutSteps(ctx, l.OrgID, l.ID)
	if err != nil {
		return 0, err
	}
	for _, s := range steps {
		if s.Step == StepLock && s.State != store.StepDone {
			// The lock job ends within its retries; should it not, the
			// snapshot says so rather than wait for ever.
			waits = append(waits, l.CreatedAt.Add(ev.ProviderWait))
		}
	}
	cmds, err := st.ListCommandsByLockout(ctx, l.OrgID, l.ID)
	if err != nil {
		return 0, err
	}
	for _, c := range cmds {
		if c.State != store.CommandApplied && c.State != store.CommandRejected {
			waits = append(waits, l.CreatedAt.Add(ev.AckWait))
			break
		}
	}
	var longest time.Duration
	for _, until := range waits {
		longest = max(longest, until.Sub(now))
	}
	if longest <= 0 {
		return 0, nil
	}
	return min(longest, ev.Poll), nil
}

// input gathers what the snapshot shows, from the store.
func (w *snapshotWorker) input(ctx context.Context, l store.Lockout, generatedAt time.Time) (snapshot.Input, error) {
	p := w.p
	ev := p.cfg.Evidence
	st := p.cfg.Store
	org, err := st.GetOrg(ctx, l.OrgID)
	if err != nil {
		return snapshot.Input{}, err
	}
	user, err := st.GetUser(ctx, l.OrgID, l.UserID)
	if err != nil {
		return snapshot.Input{}, err
	}
	in := snapshot.Input{
		GeneratedAt: generatedAt,
		Org:         snapshot.Org{ID: org.ID, Name: org.Name},
		User:        snapshot.User{ID: user.ID, Name: user.Name, Email: user.Email},
		Lockout:     snapshot.Lockout{ID: l.ID, CreatedAt: l.CreatedAt, State: string(l.State)},
		Usage:       snapshot.Usage{From: l.CreatedAt.Add(-anomaly.DefaultWindow), To: l.CreatedAt},
		Custody:     snapshot.Custody{TSAs: ev.TSAs},
	}
	triggers, err := st.ListLockoutTriggers(ctx, l.OrgID, l.ID)
	if err != nil {
		return snapshot.Input{}, err
	}
	for _, t := range triggers {
		in.Lockout.Triggers = append(in.Lockout.Triggers, snapshot.TriggerFromRecord(t))
	}

	rep, err := ev.Usage.Report(ctx, l.OrgID, l.UserID, l.CreatedAt, anomaly.DefaultWindow)
	switch {
	case errors.Is(err, usage.ErrInvalid):
		in.AnomaliesMissing = err.Error()
	case err != nil:
		return snapshot.Input{}, fmt.Errorf("reporting usage: %w", err)
	default:
		in.Anomalies = &rep.Anomalies
	}
	err = ev.Usage.ScanEvents(ctx, l.OrgID, l.UserID, in.Usage.From, in.Usage.To, func(e store.UsageEvent) error {
		in.Usage.Events = append(in.Usage.Events, snapshotEvent(e))
		return nil
	})
	if err != nil {
		return snapshot.Input{}, fmt.Errorf("reading usage events: %w", err)
	}
	in.Usage.Sources = append(in.Usage.Sources, "device telemetry from the Toktra agent and hourly provider usage ingested into Toktra")
	captures, err := st.ListUsageCaptures(ctx, l.OrgID, l.ID)
	if err != nil {
		return snapshot.Input{}, err
	}
	for _, c := range captures {
		line := fmt.Sprintf("%s usage captured at lockout time before revocation: %s", c.Provider, c.State)
		if c.LastError != "" {
			line += " (" + c.LastError + ")"
		}
		in.Usage.Sources = append(in.Usage.Sources, line)
	}

	revs, err := st.ListProviderRevocations(ctx, l.OrgID, l.ID)
	if err != nil {
		return snapshot.Input{}, err
	}
	for _, r := range revs {
		sr, err := snapshot.RevocationFromRecord(r)
		if err != nil {
			return snapshot.Input{}, err
		}
		in.Revocations = append(in.Revocations, sr)
	}
	devices, err := st.ListDevices(ctx, store.ListDevicesParams{OrgID: l.OrgID, UserID: l.UserID, IncludeRevoked: true})
	if err != nil {
		return snapshot.Input{}, err
	}
	cmds, err := st.ListCommandsByLockout(ctx, l.OrgID, l.ID)
	if err != nil {
		return snapshot.Input{}, err
	}
	in.Devices = snapshot.DeviceLocksFromRecords(devices, cmds)
	return in, nil
}

func snapshotEvent(e store.UsageEvent) snapshot.UsageEvent {
	return snapshot.UsageEvent{
		StartedAt: e.StartedAt, EndedAt: e.EndedAt, Source: e.Source, DeviceID: e.DeviceID,
		Provider: e.Provider, Model: e.Model, Domain: e.Domain, RemoteAddr: e.RemoteAddr, RemotePort: e.RemotePort,
		Protocol: e.Protocol, BytesSent: e.BytesSent, BytesReceived: e.BytesReceived,
		InputTokens: e.InputTokens, OutputTokens: e.OutputTokens, Requests: e.Requests,
		ProcessName: e.ProcessName, ProcessPath: e.ProcessPath, APIKeyID: e.APIKeyID, ProviderUserID: e.ProviderUserID,
	}
}

// failed records a failed attempt on the step; River retries the job.
func (w *snapshotWorker) failed(ctx context.Context, job *river.Job[SnapshotArgs], cause error) error {
	p, a := w.p, job.Args
	state := store.StepRunning
	if job.Attempt >= job.MaxAttempts {
		state = store.StepUnconfirmed
	}
	if _, err := p.cfg.Store.UpdateLockoutStep(ctx, store.UpdateLockoutStepParams{
		OrgID: a.OrgID, LockoutID: a.LockoutID, Step: StepSnapshot, State: state, Attempts: job.Attempt,
		LastError: cause.Error(), At: p.cfg.Clock.Now(),
	}); err != nil {
		p.log.Error("recording a failed snapshot attempt", "lockout", a.LockoutID, "err", err)
	}
	p.log.Warn("audit snapshot failed; retrying", "org", a.OrgID, "lockout", a.LockoutID, "attempt", job.Attempt, "err", cause)
	return fmt.Errorf("snapshot of lockout %s: %w", a.LockoutID, cause)
}

// finishIn marks the snapshot step done and enqueues the upload, in tx.
func (w *snapshotWorker) finishIn(ctx context.Context, st store.Store, tx any, job *river.Job[SnapshotArgs]) error {
	p, a := w.p, job.Args
	if _, err := st.UpdateLockoutStep(ctx, store.UpdateLockoutStepParams{
		OrgID: a.OrgID, LockoutID: a.LockoutID, Step: StepSnapshot, State: store.StepDone, Attempts: job.Attempt, At: p.cfg.Clock.Now(),
	}); err != nil {
		return err
	}
	_, err := p.insertTx(ctx, tx, UploadArgs(a), &river.InsertOpts{Queue: evidenceQueue, UniqueOpts: uniqueByArgs, MaxAttempts: 25})
	return err
}

type uploadWorker struct {
	river.WorkerDefaults[UploadArgs]
	p *Pipeline
}

// Work writes the snapshot and its timestamp token to the write-once
// store and records where. Put is idempotent for the same bytes, so a run
// repeated after a crash finds the objects already there.
func (w *uploadWorker) Work(ctx context.Context, job *river.Job[UploadArgs]) error {
	p, a := w.p, job.Args
	st := p.cfg.Store
	snap, err := st.GetLockoutSnapshot(ctx, a.OrgID, a.LockoutID)
	if errors.Is(err, store.ErrNotFound) {
		return river.JobCancel(fmt.Errorf("lockout %s has no snapshot to upload", a.LockoutID))
	}
	if err != nil {
		return err
	}
	if snap.UploadedAt == nil {
		obj, err := w.put(ctx, snap)
		if err != nil {
			state := store.StepRunning
			if job.Attempt >= job.MaxAttempts {
				state = store.StepUnconfirmed
			}
			if _, uerr := st.UpdateLockoutStep(ctx, store.UpdateLockoutStepParams{
				OrgID: a.OrgID, LockoutID: a.LockoutID, Step: StepUpload, State: state, Attempts: job.Attempt,
				LastError: err.Error(), At: p.cfg.Clock.Now(),
			}); uerr != nil {
				p.log.Error("recording a failed upload attempt", "lockout", a.LockoutID, "err", uerr)
			}
			p.log.Warn("snapshot upload failed; retrying", "org", a.OrgID, "lockout", a.LockoutID, "attempt", job.Attempt, "err", err)
			return err
		}
		if snap, err = st.MarkSnapshotUploaded(ctx, store.MarkSnapshotUploadedParams{
			OrgID: a.OrgID, ID: snap.ID, ObjectKey: obj.Key, VersionID: obj.VersionID, RetainUntil: obj.RetainUntil, At: p.cfg.Clock.Now(),
		}); err != nil {
			return err
		}
	}
	if p.custodyEnabled() {
		if err := w.recordUpload(ctx, snap); err != nil {
			return err
		}
	}
	if _, err := st.UpdateLockoutStep(ctx, store.UpdateLockoutStepParams{
		OrgID: a.OrgID, LockoutID: a.LockoutID, Step: StepUpload, State: store.StepDone, Attempts: job.Attempt, At: p.cfg.Clock.Now(),
	}); err != nil {
		return err
	}
	p.metrics.uploads.Inc()
	p.log.Info("audit snapshot stored write-once", "org", a.OrgID, "lockout", a.LockoutID, "snapshot", snap.ID,
		"key", snap.ObjectKey, "version", snap.VersionID, "retain_until", snap.RetainUntil)
	return nil
}

// put writes the timestamp token, then the PDF, and returns the PDF's object.
func (w *uploadWorker) put(ctx context.Context, snap store.Snapshot) (objectstore.Object, error) {
	ev := w.p.cfg.Evidence
	tokKey, err := objectstore.SnapshotTokenKey(snap.OrgID, snap.LockoutID, snap.ID)
	if err != nil {
		return objectstore.Object{}, err
	}
	if _, err := ev.Objects.Put(ctx, objectstore.PutParams{
		Key: tokKey, Body: snap.TimestampToken, ContentType: "application/timestamp-reply", MinRetention: ev.MinRetention,
	}); err != nil {
		return objectstore.Object{}, fmt.Errorf("storing the snapshot's timestamp token: %w", err)
	}
	key, err := objectstore.SnapshotKey(snap.OrgID, snap.LockoutID, snap.ID)
	if err != nil {
		return objectstore.Object{}, err
	}
	var digest objectstore.Digest
	copy(digest[:], snap.SHA256)
	obj, err := ev.Objects.Put(ctx, objectstore.PutParams{
		Key: key, Body: snap.PDF, SHA256: digest, ContentType: "application/pdf", MinRetention: ev.MinRetention,
	})
	if err != nil {
		return objectstore.Object{}, fmt.Errorf("storing the snapshot: %w", err)
	}
	return obj, nil
}

func sha256Of(b []byte) []byte {
	sum := sha256.Sum256(b)
	return sum[:]
}

// recordUpload records the upload as a child of the snapshot's node,
// stamps it and checkpoints the org's log, whose checkpoint goes to the
// write-once store too.
func (w *uploadWorker) recordUpload(ctx context.Context, snap store.Snapshot) error {
	p := w.p
	cs := p.cfg.Evidence.Custody
	parent, ok, err := p.findNode(ctx, snap.OrgID, snap.LockoutID, custody.KindSnapshot)
	if err != nil {
		return err
	}
	if !ok {
		if parent, err = p.lockoutNode(ctx, p.cfg.Store, snap.OrgID, snap.LockoutID); err != nil {
			return err
		}
	}
	payload := map[string]any{
		"snapshot_id": snap.ID, "object_key": snap.ObjectKey, "version_id": snap.VersionID,
		"sha256": hex.EncodeToString(snap.SHA256),
	}
	if snap.RetainUntil != nil {
		payload["retain_until"] = snap.RetainUntil.UTC().Format(time.RFC3339)
	}
	n, err := cs.Record(ctx, nil, custody.RecordParams{
		OrgID: snap.OrgID, LockoutID: snap.LockoutID, Kind: custody.KindUpload, Payload: evidenceJSON(payload), Parents: [][]byte{parent.Hash},
	})
	if err != nil {
		return err
	}
	if _, err := cs.Stamp(ctx, snap.OrgID, n.Hash); err != nil {
		return fmt.Errorf("time-stamping the upload's custody node: %w", err)
	}
	if _, err := cs.Checkpoint(ctx, snap.OrgID); err != nil {
		return fmt.Errorf("checkpointing the custody log: %w", err)
	}
	return nil
}
