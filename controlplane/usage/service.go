// Package usage turns the org's LLM usage into what people read: it ingests
// the providers' usage reports on a schedule (Ingester), keeps them within
// the retention, and answers for one user — summaries by day, provider and
// model, and the anomaly report of the days before a date (Service), which
// the audit snapshot and the API both use.
package usage

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/toktra/toktra/controlplane/anomaly"
	"github.com/toktra/toktra/controlplane/store"
)

// Limits of what a caller may ask for.
const (
	// MaxWindow is the longest anomaly window (the baseline comes on top).
	MaxWindow = 90 * 24 * time.Hour
	// MinWindow is the shortest: one day.
	MinWindow = 24 * time.Hour
	// Baseline is how far before the window the user's history is read.
	Baseline = anomaly.DefaultBaseline
)

// ErrInvalid marks a request the service refuses (a window out of range).
var ErrInvalid = errors.New("invalid usage request")

// Service answers questions about one user's usage from the store.
type Service struct {
	st store.Store
}

// NewService returns a Service reading st.
func NewService(st store.Store) *Service { return &Service{st: st} }

// Report is a user's usage before end: the window's summaries and the
// anomaly detector's verdict on it.
type Report struct {
	OrgID, UserID string
	// WindowFrom and WindowTo are the period examined (WindowTo is end);
	// BaselineFrom is where the history read starts.
	WindowFrom, WindowTo, BaselineFrom time.Time
	// Summaries total the window's events by UTC day, source, provider and
	// model.
	Summaries []store.UsageSummary
	// Anomalies is the detector's report.
	Anomalies anomaly.Report
	// Events is how many of the user's events were read (baseline and
	// window).
	Events int
}

// Report runs the anomaly detection for the user's window (default 14
// days) ending at end, against their own 90-day baseline before it and the
// org's peers over the same period. The user must be the org's
// (store.ErrNotFound otherwise). The full event list of the window is
// available through ScanEvents(r.WindowFrom, r.WindowTo).
func (s *Service) Report(ctx context.Context, orgID, userID string, end time.Time, window time.Duration) (Report, error) {
	if window == 0 {
		window = anomaly.DefaultWindow
	}
	if window < MinWindow || window > MaxWindow {
		return Report{}, fmt.Errorf("%w: window %s is not between %s and %s", ErrInvalid, window, MinWindow, MaxWindow)
	}
	if end.IsZero() {
		return Report{}, fmt.Errorf("%w: no end time", ErrInvalid)
	}
	end = end.UTC()
	if _, err := s.st.GetUser(ctx, orgID, userID); err != nil {
		return Report{}, fmt.Errorf("usage report of user %s: %w", userID, err)
	}
	h, err := s.History(ctx, orgID, userID, end, window)
	if err != nil {
		return Report{}, err
	}
	rep := Report{OrgID: orgID, UserID: userID, WindowTo: end, Events: len(h.Events)}
	rep.Anomalies = anomaly.Detect(h, end, anomaly.Options{Window: window, Baseline: Baseline})
	rep.WindowFrom, rep.BaselineFrom = rep.Anomalies.WindowFrom, rep.Anomalies.BaselineFrom
	rep.Summaries, err = s.st.SummarizeUserUsage(ctx, store.SummarizeUserUsageParams{OrgID: orgID, UserID: userID, From: rep.WindowFrom, To: end})
	if err != nil {
		return Report{}, err
	}
	return rep, nil
}

// readFrom is where a detection's reads start: the window and the baseline
// before end, and two more days since the detector counts whole local days
// (a zone up to 14 hours ahead or behind moves the window's first midnight).
func readFrom(end time.Time, window time.Duration) time.Time {
	return end.Add(-window - Baseline - 48*time.Hour)
}

// History loads what the detector needs for the user's window ending at
// end: their events of the window and baseline, and the org's peer
// aggregates over the same period (computed in the store, per user and
// day, so the peers' events are never loaded).
func (s *Service) History(ctx context.Context, orgID, userID string, end time.Time, window time.Duration) (anomaly.History, error) {
	from := readFrom(end, window)
	h := anomaly.History{User: userID}
	err := s.st.ScanUserUsage(ctx, store.ScanUserUsageParams{OrgID: orgID, UserID: userID, From: from, To: end},
		func(e store.UsageEvent) error {
			h.Events = append(h.Events, Event(e))
			return nil
		})
	if err != nil {
		return h, fmt.Errorf("loading usage of user %s: %w", userID, err)
	}
	days, err := s.st.ListUsageDays(ctx, store.ListUsageDaysParams{OrgID: orgID, From: from, To: end})
	if err != nil {
		return h, fmt.Errorf("loading peer usage of org %s: %w", orgID, err)
	}
	acc := anomaly.NewPeerAccumulator(end.Add(-window))
	for _, d := range days {
		if d.UserID == userID {
			continue
		}
		pd := anomaly.PeerDay{Day: d.Day, Tokens: d.Tokens, Models: d.Models, Providers: d.Providers}
		for _, b := range []int64{d.MinBytesSent, d.MeanBytesSent, d.MaxBytesSent} {
			if b > 0 {
				pd.BytesSent = append(pd.BytesSent, b)
			}
		}
		acc.Add(d.UserID, pd)
	}
	h.Peers = acc.Build(userID)
	return h, nil
}

// Event is a stored event as the detector sees it.
func Event(e store.UsageEvent) anomaly.Event {
	return anomaly.Event{
		At: e.StartedAt, Source: e.Source, Provider: e.Provider, Model: e.Model, Domain: e.Domain,
		InputTokens: e.InputTokens, OutputTokens: e.OutputTokens, BytesSent: e.BytesSent,
		BytesReceived: e.BytesReceived, Process: e.ProcessName,
	}
}

// ScanEvents streams the user's events that started in [from, to), in
// time order (the snapshot's full event list).
func (s *Service) ScanEvents(ctx context.Context, orgID, userID string, from, to time.Time, fn func(store.UsageEvent) error) error {
	return s.st.ScanUserUsage(ctx, store.ScanUserUsageParams{OrgID: orgID, UserID: userID, From: from, To: to}, fn)
}

// Summaries totals the user's events in [from, to) by UTC day, source,
// provider and model. The user must be the org's.
func (s *Service) Summaries(ctx context.Context, orgID, userID string, from, to time.Time) ([]store.UsageSummary, error) {
	if !to.After(from) {
		return nil, fmt.Errorf("%w: empty range %s to %s", ErrInvalid, from, to)
	}
	if _, err := s.st.GetUser(ctx, orgID, userID); err != nil {
		return nil, fmt.Errorf("usage of user %s: %w", userID, err)
	}
	return s.st.SummarizeUserUsage(ctx, store.SummarizeUserUsageParams{OrgID: orgID, UserID: userID, From: from, To: to})
}
