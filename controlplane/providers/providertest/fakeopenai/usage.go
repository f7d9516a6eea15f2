package fakeopenai

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

// Usage is completions usage of one user, key, project and model, as GET
// /v1/organization/usage/completions aggregates it.
type Usage struct {
	// Day is when the usage happened: a day bucket counts it in its UTC
	// day, an hour bucket in its hour.
	Day                                 time.Time
	UserID, APIKeyID, ProjectID, Model  string
	InputTokens, OutputTokens           int64
	CachedInputTokens, CacheWriteTokens int64
	Requests                            int64
}

// AddUsage seeds usage rows.
func (f *Fake) AddUsage(u ...Usage) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	f.usage = append(f.usage, u...)
}

const day = 24 * time.Hour

// usageGroups are the group_by values the reference lists.
var usageGroups = []string{"project_id", "user_id", "api_key_id", "model", "batch", "service_tier", "api_source"}

// multi reads an array query parameter in any of the forms clients send:
// name[]=a&name[]=b, name=a&name=b or name=a,b.
func multi(q url.Values, name string) []string {
	var out []string
	for _, v := range append(q[name+"[]"], q[name]...) {
		for s := range strings.SplitSeq(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}

// bucketLimits are the default and largest page sizes per bucket_width, as
// the reference gives them.
var bucketLimits = map[string]struct {
	width     time.Duration
	def, most int
}{"1d": {day, 7, 31}, "1h": {time.Hour, 24, 168}, "1m": {time.Minute, 60, 1440}}

// usageCompletions serves buckets of bucket_width (1d, 1h or 1m; default
// 1d) from start_time (snapped to the bucket's start in UTC) to end_time
// (exclusive), every bucket present even when empty, limit buckets a page
// (1d: default 7, max 31; 1h: 24, 168; 1m: 60, 1440; capped by MaxPage),
// with an opaque next_page cursor. Results are the rows matching the
// filters, summed per group_by combination; dimensions not grouped by are
// null.
func (f *Fake) usageCompletions(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	bad := func(msg string) { writeError(w, http.StatusBadRequest, "invalid_request_error", "", msg) }
	st, err := strconv.ParseInt(q.Get("start_time"), 10, 64)
	if err != nil {
		bad("start_time is required and must be a unix timestamp in seconds")
		return
	}
	bw := q.Get("bucket_width")
	if bw == "" {
		bw = "1d"
	}
	bl, ok := bucketLimits[bw]
	if !ok {
		bad("bucket_width must be 1m, 1h or 1d")
		return
	}
	width := bl.width
	start := time.Unix(st, 0).UTC().Truncate(width)
	end := start.Add(width)
	if v := q.Get("end_time"); v != "" {
		et, err := strconv.ParseInt(v, 10, 64)
		if err != nil || et <= st {
			bad("end_time must be a unix timestamp after start_time")
			return
		}
		end = time.Unix(et, 0).UTC()
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
			bad(fmt.Sprintf("limit must be between 1 and %d for bucket_width=%s", bl.most, bw))
			return
		}
	}
	limit = min(limit, f.MaxPage)
	groups := multi(q, "group_by")
	for _, g := range groups {
		if !slices.Contains(usageGroups, g) {
			bad("Invalid group_by: " + g)
			return
		}
	}
	if p := q.Get("page"); p != "" {
		b, err := base64.StdEncoding.DecodeString(p)
		ps, perr := strconv.ParseInt(string(b), 10, 64)
		if err != nil || perr != nil {
			bad("Invalid page cursor")
			return
		}
		start = time.Unix(ps, 0).UTC()
	}
	users, keys, projects, models := multi(q, "user_ids"), multi(q, "api_key_ids"), multi(q, "project_ids"), multi(q, "models")
	in := func(filter []string, v string) bool { return len(filter) == 0 || slices.Contains(filter, v) }
	grouped := func(g string) bool { return slices.Contains(groups, g) }

	data := []any{}
	bs := start
	for ; bs.Before(end) && len(data) < limit; bs = bs.Add(width) {
		type sums struct{ in, out, cached, written, reqs int64 }
		var order []Usage
		totals := map[Usage]*sums{}
		for _, u := range f.usage {
			// Rows of deleted users have lost their user id (see
			// deleteUser), so user_ids no longer matches them.
			if !u.Day.UTC().Truncate(width).Equal(bs) || !in(users, u.UserID) || !in(keys, u.APIKeyID) ||
				!in(projects, u.ProjectID) || !in(models, u.Model) {
				continue
			}
			k := Usage{}
			if grouped("user_id") {
				k.UserID = u.UserID
			}
			if grouped("api_key_id") {
				k.APIKeyID = u.APIKeyID
			}
			if grouped("project_id") {
				k.ProjectID = u.ProjectID
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
			s.in += u.InputTokens
			s.out += u.OutputTokens
			s.cached += u.CachedInputTokens
			s.written += u.CacheWriteTokens
			s.reqs += u.Requests
		}
		results := []any{}
		for _, k := range order {
			s := totals[k]
			results = append(results, map[string]any{
				"object": "organization.usage.completions.result", "input_tokens": s.in, "output_tokens": s.out,
				"input_cached_tokens": s.cached, "input_cache_write_tokens": s.written, "num_model_requests": s.reqs,
				"input_audio_tokens": 0, "output_audio_tokens": 0,
				"user_id": nullable(grouped("user_id"), k.UserID), "api_key_id": nullable(grouped("api_key_id"), k.APIKeyID),
				"project_id": nullable(grouped("project_id"), k.ProjectID), "model": nullable(grouped("model"), k.Model),
				"batch": nil, "service_tier": nil, "api_source": nil,
			})
		}
		data = append(data, map[string]any{"object": "bucket", "start_time": bs.Unix(), "end_time": bs.Add(width).Unix(), "results": results})
	}
	var next any
	more := bs.Before(end)
	if more {
		next = base64.StdEncoding.EncodeToString([]byte(strconv.FormatInt(bs.Unix(), 10)))
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "page", "data": data, "has_more": more, "next_page": next})
}

// nullable renders a grouped dimension: null when not grouped by, or when
// the row has no value (a deleted user's id).
func nullable(grouped bool, v string) any {
	if !grouped || v == "" {
		return nil
	}
	return v
}
