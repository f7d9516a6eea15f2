package usage

import (
	"context"
	"time"

	"github.com/riverqueue/river"
)

// Queue is the job queue ingestion and retention run in, apart from the
// lockout queues so that they never delay a lockout.
const Queue = "usage"

// IngestArgs is the periodic job that ingests every connected provider.
type IngestArgs struct{}

// Kind names the job in the queue.
func (IngestArgs) Kind() string { return "usage_ingest" }

// RetentionArgs is the periodic job that removes events past retention.
type RetentionArgs struct{}

// Kind names the job in the queue.
func (RetentionArgs) Kind() string { return "usage_retention" }

type ingestWorker struct {
	river.WorkerDefaults[IngestArgs]
	in *Ingester
}

// Work logs the connections that failed rather than failing the job: their
// cursors did not move, so the next run reads what this one missed, and a
// retried job would only read the healthy ones again.
func (w *ingestWorker) Work(ctx context.Context, _ *river.Job[IngestArgs]) error {
	_ = w.in.IngestAll(ctx)
	return ctx.Err()
}

// Timeout lets one run read every org's providers, waits included.
func (w *ingestWorker) Timeout(*river.Job[IngestArgs]) time.Duration { return w.in.cfg.Interval }

type retentionWorker struct {
	river.WorkerDefaults[RetentionArgs]
	in *Ingester
}

func (w *retentionWorker) Work(ctx context.Context, _ *river.Job[RetentionArgs]) error {
	n, err := w.in.ApplyRetention(ctx)
	if n > 0 {
		w.in.log.Info("usage retention applied", "removed", n, "retention", w.in.cfg.Retention)
	}
	return err
}

func (w *retentionWorker) Timeout(*river.Job[RetentionArgs]) time.Duration { return time.Hour }

// RegisterWorkers adds the ingestion and retention workers to a River
// client's workers.
func (in *Ingester) RegisterWorkers(w *river.Workers) error {
	if err := river.AddWorkerSafely(w, &ingestWorker{in: in}); err != nil {
		return err
	}
	return river.AddWorkerSafely(w, &retentionWorker{in: in})
}

// Queues is the queue the workers need on the client.
func (in *Ingester) Queues() map[string]river.QueueConfig {
	return map[string]river.QueueConfig{Queue: {MaxWorkers: 2}}
}

// PeriodicJobs schedules ingestion every Interval and retention every
// RetentionInterval, both also at start. River's leader alone enqueues
// periodic jobs, and each is unique per period, so several replicas run
// each once per period.
func (in *Ingester) PeriodicJobs() []*river.PeriodicJob {
	job := func(args river.JobArgs, every time.Duration) *river.PeriodicJob {
		return river.NewPeriodicJob(river.PeriodicInterval(every), func() (river.JobArgs, *river.InsertOpts) {
			return args, &river.InsertOpts{Queue: Queue, MaxAttempts: 3, UniqueOpts: river.UniqueOpts{ByPeriod: every}}
		}, &river.PeriodicJobOpts{RunOnStart: true, ID: args.Kind()})
	}
	return []*river.PeriodicJob{job(IngestArgs{}, in.cfg.Interval), job(RetentionArgs{}, in.cfg.RetentionInterval)}
}
