package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/toktra/toktra/controlplane/anomaly"
	"github.com/toktra/toktra/controlplane/store"
	"github.com/toktra/toktra/controlplane/usage"
)

// Usage ranges: the default is the anomaly window; the longest is the
// retention's default, so a request cannot ask for a scan of everything.
const (
	defaultUsageRange = 14 * 24 * time.Hour
	maxUsageRange     = 400 * 24 * time.Hour
)

func init() {
	routeDocs["GET /v1/users/{id}/usage"] = routeDoc{
		Summary:  "Summarize a user's LLM usage (devices and providers) by UTC day, source, provider and model",
		Response: usageView{}, Status: 200,
		Query: map[string]string{
			"from": "RFC 3339 time; events that started at or after it (default: 14 days before to)",
			"to":   "RFC 3339 time; events that started before it (default: now); at most 400 days after from",
		},
	}
	routeDocs["GET /v1/users/{id}/anomalies"] = routeDoc{
		Summary:  "Detect what was unusual in a user's LLM use in the window before end, against their own 90-day baseline and their peers'",
		Response: anomaliesView{}, Status: 200,
		Query: map[string]string{
			"end":    "RFC 3339 time the window ends at (default: now)",
			"window": "the window's length: whole days (\"14d\") or a duration (\"336h\"), 1 to 90 days (default 14d)",
		},
	}
}

// usageView is a user's usage summaries.
type usageView struct {
	UserID string             `json:"user_id"`
	From   time.Time          `json:"from"`
	To     time.Time          `json:"to"`
	Data   []usageSummaryView `json:"data"`
	Totals usageTotalsView    `json:"totals"`
}

type usageSummaryView struct {
	// Day is the UTC date, YYYY-MM-DD.
	Day      string `json:"day"`
	Source   string `json:"source"`
	Provider string `json:"provider"`
	Model    string `json:"model"`
	usageTotalsView
}

type usageTotalsView struct {
	Events        int64 `json:"events"`
	Requests      int64 `json:"requests"`
	InputTokens   int64 `json:"input_tokens"`
	OutputTokens  int64 `json:"output_tokens"`
	BytesSent     int64 `json:"bytes_sent"`
	BytesReceived int64 `json:"bytes_received"`
}

func (t *usageTotalsView) add(s store.UsageSummary) {
	t.Events += s.Events
	t.Requests += s.Requests
	t.InputTokens += s.InputTokens
	t.OutputTokens += s.OutputTokens
	t.BytesSent += s.BytesSent
	t.BytesReceived += s.BytesReceived
}

// anomaliesView is the detector's report on a user's window.
type anomaliesView struct {
	UserID string `json:"user_id"`
	// Events counts the user's events read (window and baseline).
	Events int            `json:"events"`
	Report anomaly.Report `json:"report"`
}

// parseTimeParam reads an optional RFC 3339 query parameter.
func parseTimeParam(r *http.Request, name string, def time.Time) (time.Time, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, invalid(name + ": an RFC 3339 time, e.g. 2026-01-02T15:04:05Z")
	}
	return t.UTC(), nil
}

func (s *Server) getUserUsage(ctx context.Context, p principal, r *http.Request) (int, any, error) {
	to, err := parseTimeParam(r, "to", s.clock.Now().UTC())
	if err != nil {
		return 0, nil, err
	}
	from, err := parseTimeParam(r, "from", to.Add(-defaultUsageRange))
	if err != nil {
		return 0, nil, err
	}
	switch {
	case !from.Before(to):
		return 0, nil, invalid("from must be before to")
	case to.Sub(from) > maxUsageRange:
		return 0, nil, invalid("from and to are more than 400 days apart")
	}
	sums, err := s.usage.Summaries(ctx, p.key.OrgID, r.PathValue("id"), from, to)
	if err != nil {
		return 0, nil, err
	}
	out := usageView{UserID: r.PathValue("id"), From: from, To: to, Data: []usageSummaryView{}}
	for _, u := range sums {
		v := usageSummaryView{Day: u.Day.Format(time.DateOnly), Source: u.Source, Provider: u.Provider, Model: u.Model}
		v.add(u)
		out.Totals.add(u)
		out.Data = append(out.Data, v)
	}
	return http.StatusOK, out, nil
}

// parseWindow reads "14d" (days) or a Go duration ("336h").
func parseWindow(v string) (time.Duration, error) {
	if v == "" {
		return anomaly.DefaultWindow, nil
	}
	var d time.Duration
	if days, ok := strings.CutSuffix(v, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 1 || n > 90 {
			return 0, invalid("window: whole days from 1d to 90d, or a duration such as 336h")
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			return 0, invalid("window: whole days from 1d to 90d, or a duration such as 336h")
		}
	}
	if d < usage.MinWindow || d > usage.MaxWindow {
		return 0, invalid("window: from 1 to 90 days")
	}
	return d, nil
}

func (s *Server) getUserAnomalies(ctx context.Context, p principal, r *http.Request) (int, any, error) {
	end, err := parseTimeParam(r, "end", s.clock.Now().UTC())
	if err != nil {
		return 0, nil, err
	}
	window, err := parseWindow(r.URL.Query().Get("window"))
	if err != nil {
		return 0, nil, err
	}
	rep, err := s.usage.Report(ctx, p.key.OrgID, r.PathValue("id"), end, window)
	if errors.Is(err, usage.ErrInvalid) {
		return 0, nil, invalid(err.Error())
	}
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, anomaliesView{UserID: rep.UserID, Events: rep.Events, Report: rep.Anomalies}, nil
}
