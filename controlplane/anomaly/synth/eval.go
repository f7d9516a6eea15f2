package synth

import (
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/toktra/toktra/controlplane/anomaly"
)

// Targets the detector must meet on the default scenario.
const (
	TargetPrecision  = 0.9
	TargetRecall     = 0.9
	TargetCleanFPMax = 0.05
)

// EvalOptions configure [Evaluate].
type EvalOptions struct {
	Detect anomaly.Options
	// Now times each Detect call; nil skips timing.
	Now func() time.Time
	// Workers run departures in parallel (default 1); results do not depend
	// on it.
	Workers int
}

// Result is the detector's score on one org.
type Result struct {
	Seed       int64       `json:"seed"`
	Users      int         `json:"users"`
	Departures int         `json:"departures"`
	Clean      int         `json:"clean"`
	Types      []TypeScore `json:"types"`
	// CleanFlagged counts clean departures with any finding.
	CleanFlagged int     `json:"clean_flagged"`
	CleanFPRate  float64 `json:"clean_fp_rate"`
	// DetectP50 and DetectP99 are per-departure Detect times (zero when not
	// timed).
	DetectP50 time.Duration `json:"detect_p50_ns"`
	DetectP99 time.Duration `json:"detect_p99_ns"`
	MaxEvents int           `json:"max_events"`
	Outcomes  []Outcome     `json:"outcomes,omitempty"`
}

// TypeScore is precision and recall for one finding type. A departure counts
// as predicted positive for a type when its report has any finding of it.
type TypeScore struct {
	Type      anomaly.Type `json:"type"`
	Support   int          `json:"support"`
	TP        int          `json:"tp"`
	FP        int          `json:"fp"`
	FN        int          `json:"fn"`
	Precision float64      `json:"precision"`
	Recall    float64      `json:"recall"`
}

// Outcome is one evaluated departure.
type Outcome struct {
	User     string         `json:"user"`
	Injected anomaly.Type   `json:"injected,omitempty"`
	Detail   string         `json:"detail,omitempty"`
	Found    []anomaly.Type `json:"found,omitempty"`
	// Report is kept only for departures the detector got wrong.
	Report  *anomaly.Report `json:"report,omitempty"`
	Elapsed time.Duration   `json:"-"`
	Events  int             `json:"-"`
}

// Correct reports whether the detector found exactly what was injected.
func (o Outcome) Correct() bool {
	if o.Injected == "" {
		return len(o.Found) == 0
	}
	return len(o.Found) == 1 && o.Found[0] == o.Injected
}

// Missed lists the targets the result falls short of; empty means all met.
func (r Result) Missed() []string {
	var out []string
	for _, t := range r.Types {
		if t.Precision < TargetPrecision {
			out = append(out, fmt.Sprintf("%s precision %.3f < %.2f", t.Type, t.Precision, TargetPrecision))
		}
		if t.Recall < TargetRecall {
			out = append(out, fmt.Sprintf("%s recall %.3f < %.2f", t.Type, t.Recall, TargetRecall))
		}
	}
	if r.CleanFPRate > TargetCleanFPMax {
		out = append(out, fmt.Sprintf("clean false-positive rate %.3f > %.2f", r.CleanFPRate, TargetCleanFPMax))
	}
	return out
}

// peerIndex holds every user's daily summaries, for building peer
// baselines at any departure time.
type peerIndex struct {
	start time.Time
	days  [][]anomaly.PeerDay // [user][day since start]
	ids   []string
}

func (o *Org) buildPeerIndex(workers int) *peerIndex {
	ix := &peerIndex{start: o.Scenario.Start, days: make([][]anomaly.PeerDay, len(o.Users)), ids: make([]string, len(o.Users))}
	parallel(len(o.Users), workers, func(i int) {
		ix.ids[i] = o.Users[i].ID
		days := make([]anomaly.PeerDay, o.Scenario.Days+1)
		for k := range days {
			days[k].Day = ix.start.Add(time.Duration(k) * 24 * time.Hour)
		}
		for _, e := range o.Events(i) {
			d := int(e.At.Sub(ix.start) / (24 * time.Hour))
			if d < 0 || d >= len(days) {
				continue
			}
			pd := &days[d]
			pd.Tokens += e.InputTokens + e.OutputTokens
			if e.Model != "" && !slices.Contains(pd.Models, e.Model) {
				pd.Models = append(pd.Models, e.Model)
			}
			if e.Provider != "" && !slices.Contains(pd.Providers, e.Provider) {
				pd.Providers = append(pd.Providers, e.Provider)
			}
			// A few samples a day are enough for the distribution.
			if e.BytesSent > 0 && len(pd.BytesSent) < 4 {
				pd.BytesSent = append(pd.BytesSent, e.BytesSent)
			}
		}
		ix.days[i] = days
	})
	return ix
}

// peers summarizes every user but self over [from, to), the window starting
// at winFrom, as the control plane does from its store.
func (ix *peerIndex) peers(self int, from, winFrom, to time.Time) *anomaly.PeerDaily {
	d0 := max(0, int(from.Sub(ix.start)/(24*time.Hour)))
	d1 := int(to.Sub(ix.start) / (24 * time.Hour))
	acc := anomaly.NewPeerAccumulator(winFrom)
	for u, days := range ix.days {
		if u == self {
			continue
		}
		for d := d0; d < min(d1, len(days)); d++ {
			if pd := days[d]; pd.Tokens > 0 || len(pd.Providers) > 0 || len(pd.BytesSent) > 0 {
				acc.Add(ix.ids[u], pd)
			}
		}
	}
	return acc.Build(ix.ids[self])
}

// Evaluate runs the detector on every departure in o and scores it against
// the injected ground truth.
func Evaluate(o *Org, opts EvalOptions) Result {
	workers := max(1, opts.Workers)
	ix := o.buildPeerIndex(workers)
	var deps []int
	for i, u := range o.Users {
		if u.Departure != nil {
			deps = append(deps, i)
		}
	}
	window := opts.Detect.Window
	if window <= 0 {
		window = anomaly.DefaultWindow
	}
	baseline := opts.Detect.Baseline
	if baseline <= 0 {
		baseline = anomaly.DefaultBaseline
	}
	outs := make([]Outcome, len(deps))
	parallel(len(deps), workers, func(k int) {
		i := deps[k]
		u := o.Users[i]
		end := u.Departure.At
		h := anomaly.History{
			User:   u.ID,
			Events: o.Events(i),
			Peers:  ix.peers(i, end.Add(-window-baseline), end.Add(-window), end),
		}
		if u.TimezoneKnown {
			h.Location = u.Location
		}
		var t0 time.Time
		if opts.Now != nil {
			t0 = opts.Now()
		}
		rep := anomaly.Detect(h, end, opts.Detect)
		out := Outcome{User: u.ID, Injected: u.Departure.Injected, Detail: u.Departure.Detail, Events: rep.WindowEvents + rep.BaselineEvents}
		if opts.Now != nil {
			out.Elapsed = opts.Now().Sub(t0)
		}
		for _, f := range rep.Findings {
			if !slices.Contains(out.Found, f.Type) {
				out.Found = append(out.Found, f.Type)
			}
		}
		slices.Sort(out.Found)
		if !out.Correct() {
			out.Report = &rep
		}
		outs[k] = out
	})
	return score(o, outs)
}

func score(o *Org, outs []Outcome) Result {
	r := Result{Seed: o.Seed, Users: len(o.Users), Departures: len(outs), Outcomes: outs}
	for _, t := range anomaly.Types {
		ts := TypeScore{Type: t}
		for _, out := range outs {
			found := slices.Contains(out.Found, t)
			switch {
			case out.Injected == t && found:
				ts.TP++
			case out.Injected == t:
				ts.FN++
			case found:
				ts.FP++
			}
			if out.Injected == t {
				ts.Support++
			}
		}
		ts.Precision, ts.Recall = 1, 1
		if ts.TP+ts.FP > 0 {
			ts.Precision = float64(ts.TP) / float64(ts.TP+ts.FP)
		}
		if ts.Support > 0 {
			ts.Recall = float64(ts.TP) / float64(ts.Support)
		}
		r.Types = append(r.Types, ts)
	}
	var times []time.Duration
	for _, out := range outs {
		if out.Injected == "" {
			r.Clean++
			if len(out.Found) > 0 {
				r.CleanFlagged++
			}
		}
		times = append(times, out.Elapsed)
		r.MaxEvents = max(r.MaxEvents, out.Events)
	}
	if r.Clean > 0 {
		r.CleanFPRate = float64(r.CleanFlagged) / float64(r.Clean)
	}
	if len(times) > 0 {
		slices.Sort(times)
		r.DetectP50 = times[len(times)/2]
		r.DetectP99 = times[min(len(times)-1, int(math.Ceil(0.99*float64(len(times))))-1)]
	}
	return r
}

// parallel calls f(0..n-1) on up to workers goroutines.
func parallel(n, workers int, f func(int)) {
	if workers <= 1 {
		for i := range n {
			f(i)
		}
		return
	}
	var wg sync.WaitGroup
	next := make(chan int)
	for range workers {
		wg.Go(func() {
			for i := range next {
				f(i)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}
