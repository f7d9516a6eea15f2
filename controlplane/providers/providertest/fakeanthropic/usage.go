package fakeanthropic

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Usage is Messages API usage of one key and model, as GET
// /v1/organizations/usage_report/messages aggregates it. The report knows
// keys, not users.
type Usage struct {
	// Day is when the usage happened: a day bucket counts it in its UTC
	// day, an hour bucket in its hour.
	Day                                    time.Time
	APIKeyID, Workspace, Model             string
	UncachedInputTokens, CacheReadTokens   int64
	CacheWrite5mTokens, CacheWrite1hTokens int64
	OutputTokens                           int64
}

// AddUsage seeds usage rows.
func (f *Fake) AddUsage(u ...Usage) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	f.usage = append(f.usage, u...)
}

const day = 24 * time.Hour

// reportGroups are the group_by values the reference lists.
var reportGroups = []string{"api_key_id", "workspace_id", "model", "service_tier", "context_window", "inference_geo", "speed", "account_id", "service_account_id"}

// multi reads an array query parameter: name[]=a&name[]=b (what the
// reference's examples send) or name=a&name=b.
func multi(q url.Values, name string) []string {
	return append(q[name+"[]"], q[name]...)
}

// bucketLimits are the default and largest page sizes per bucket_width, as
// the reference gives them.
var bucketLimits = map[string]struct {
	width     time.Duration
	def, most int
}{"1d": {day, 7, 31}, "1h": {time.Hour, 24, 168}, "1m": {time.Minute, 60, 1440}}

// usageReport serves buckets of bucket_width (1d, 1h or 1m; default 1d)
// from starting_at (snapped to the bucket's start in UTC) while they end no
// later than ending_at, every bucket present even when empty, limit
// buckets a page (1d: default 7, max 31; 1h: 24, 168; 1m: 60, 1440; capped
// by MaxPage), with a page_... next_page token. Results are the rows
// matching the filters, summed per group_by combination; dimensions not
// grouped by are null.
func (f *Fake) usageReport(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	rid := w.Header().Get("request-id")
	bad := func(msg string) { writeError(w, rid, http.StatusBadRequest, "invalid_request_error", msg) }
	from, err := time.Parse(time.RFC3339, q.Get("starting_at"))
	if err != nil {
		bad("starting_at: Field required (an RFC 3339 timestamp)")
		return
	}
	bw := q.Get("bucket_width")
	if bw == "" {
		bw = "1d"
	}
	bl, ok := bucketLimits[bw]
	if !ok {
		bad("bucket_width: must be one of 1d, 1h, 1m")
		return
	}
	width := bl.width
	start := from.UTC().Truncate(width)
	end := start.Add(width)
	if v := q.Get("ending_at"); v != "" {
		to, err := time.Parse(time.RFC3339, v)
		if err != nil || !to.After(from) {
			bad("ending_at: must be an RFC 3339 timestamp after starting_at")
			return
		}
		end = to.UTC()
	} else {
		for _, u := range f.usage {
			if e := u.Day.UTC().Truncate(width).Add(width); e.After(end) {
				end = e
			}
		}
	}
	limit := bl.def
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > bl.most {
			bad(fmt.Sprintf("limit: must be between 1 and %d for bucket_width %s", bl.most, bw))
			return
		}
	}
	limit = min(limit, f.MaxPage)
	groups := multi(q, "group_by")
	for _, g := range groups {
		if !slices.Contains(reportGroups, g) {
			bad("group_by: invalid value " + g)
			return
		}
	}
	if p := q.Get("page"); p != "" {
		b, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(p, "page_"))
		t, perr := time.Parse(time.RFC3339, string(b))
		if err != nil || perr != nil || !strings.HasPrefix(p, "page_") {
			bad("page: invalid token")
			return
		}
		start = t
	}
	keys, workspaces, models := multi(q, "api_key_ids"), multi(q, "workspace_ids"), multi(q, "models")
	in := func(filter []string, v string) bool { return len(filter) == 0 || slices.Contains(filter, v) }
	grouped := func(g string) bool { return slices.Contains(groups, g) }

	data := []any{}
	bs := start
	for ; !bs.Add(width).After(end) && len(data) < limit; bs = bs.Add(width) {
		type sums struct{ uncached, read, w5m, w1h, out int64 }
		var order []Usage
		totals := map[Usage]*sums{}
		for _, u := range f.usage {
			if !u.Day.UTC().Truncate(width).Equal(bs) || !in(keys, u.APIKeyID) || !in(workspaces, u.Workspace) || !in(models, u.Model) {
				continue
			}
			k := Usage{}
			if grouped("api_key_id") {
				k.APIKeyID = u.APIKeyID
			}
			if grouped("workspace_id") {
				k.Workspace = u.Workspace
			}
			if grouped("model") {
				k.Model = u.Model
			}
			s := totals[k]
			if s == nil {
				s = &sums{}
				totals[k] = s
				order = append(order, k)
			}
			s.uncached += u.UncachedInputTokens
			s.read += u.CacheReadTokens
			s.w5m += u.CacheWrite5mTokens
			s.w1h += u.CacheWrite1hTokens
			s.out += u.OutputTokens
		}
		results := []any{}
		for _, k := range order {
			s := totals[k]
			results = append(results, map[string]any{
				"uncached_input_tokens":   s.uncached,
				"cache_creation":          map[string]any{"ephemeral_1h_input_tokens": s.w1h, "ephemeral_5m_input_tokens": s.w5m},
				"cache_read_input_tokens": s.read,
				"output_tokens":           s.out,
				"server_tool_use":         map[string]any{"web_search_requests": 0},
				"api_key_id":              nullable(grouped("api_key_id"), k.APIKeyID),
				"workspace_id":            nullable(grouped("workspace_id"), k.Workspace),
				"model":                   nullable(grouped("model"), k.Model),
				"service_tier":            nil,
				"context_window":          nil,
			})
		}
		data = append(data, map[string]any{"starting_at": bs.Format(time.RFC3339), "ending_at": bs.Add(width).Format(time.RFC3339), "results": results})
	}
	var next any
	more := !bs.Add(width).After(end)
	if more {
		next = "page_" + base64.StdEncoding.EncodeToString([]byte(bs.Format(time.RFC3339)))
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": data, "has_more": more, "next_page": next})
}

// nullable renders a grouped dimension: null when not grouped by, or when
// the row has no value (the default workspace).
func nullable(grouped bool, v string) any {
	if !grouped || v == "" {
		return nil
	}
	return v
}
