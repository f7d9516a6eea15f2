package openai_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/toktra/toktra/controlplane/providers"
	"github.com/toktra/toktra/controlplane/providers/providertest/fakeapi"
	"github.com/toktra/toktra/controlplane/providers/providertest/fakeopenai"
)

const usagePath = "/v1/organization/usage/completions"

var (
	// The window the pipeline asks for: the 14 days before the lockout at t0.
	from = t0.Add(-14 * 24 * time.Hour)
	// The whole UTC days that cover it: 2026-11-09 to 2026-11-24, 15 buckets.
	dayFrom = time.Date(2026, 11, 9, 0, 0, 0, 0, time.UTC)
	dayTo   = time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
)

func at(y, m, d, h int) time.Time { return time.Date(y, time.Month(m), d, h, 0, 0, 0, time.UTC) }

// seedUsage gives the leaver usage inside and outside the window, and
// colleagues usage on the same days, keys' projects and models.
func seedUsage(f *fakeopenai.Fake) {
	f.AddUsage(
		// Outside the window, before and after.
		fakeopenai.Usage{Day: at(2026, 11, 3, 12), UserID: "user-leaver", APIKeyID: "key-l1", ProjectID: "proj-1", Model: "gpt-4o", InputTokens: 999, Requests: 9},
		fakeopenai.Usage{Day: at(2026, 11, 24, 1), UserID: "user-leaver", APIKeyID: "key-l1", ProjectID: "proj-1", Model: "gpt-4o", InputTokens: 999, Requests: 9},
		// Inside: the first day (before from's hour), two rows summed on
		// one day, another key and model that day, and the lockout day.
		fakeopenai.Usage{Day: at(2026, 11, 9, 2), UserID: "user-leaver", APIKeyID: "key-l1", ProjectID: "proj-1", Model: "gpt-4o", InputTokens: 100, OutputTokens: 10, CachedInputTokens: 40, CacheWriteTokens: 5, Requests: 2},
		fakeopenai.Usage{Day: at(2026, 11, 20, 8), UserID: "user-leaver", APIKeyID: "key-l1", ProjectID: "proj-1", Model: "gpt-4o", InputTokens: 300, OutputTokens: 30, Requests: 3},
		fakeopenai.Usage{Day: at(2026, 11, 20, 22), UserID: "user-leaver", APIKeyID: "key-l1", ProjectID: "proj-1", Model: "gpt-4o", InputTokens: 200, OutputTokens: 20, Requests: 1},
		fakeopenai.Usage{Day: at(2026, 11, 20, 9), UserID: "user-leaver", APIKeyID: "key-l3", ProjectID: "proj-3", Model: "gpt-4o-mini", InputTokens: 7000, OutputTokens: 700, Requests: 70},
		fakeopenai.Usage{Day: at(2026, 11, 23, 8), UserID: "user-leaver", APIKeyID: "key-l4", ProjectID: "proj-4", Model: "o3", InputTokens: 50000, OutputTokens: 9000, Requests: 400},
		// Colleagues, same days and projects.
		fakeopenai.Usage{Day: at(2026, 11, 9, 2), UserID: "user-ann", APIKeyID: "key-a1", ProjectID: "proj-1", Model: "gpt-4o", InputTokens: 1, Requests: 1},
		fakeopenai.Usage{Day: at(2026, 11, 20, 8), UserID: "user-bob", APIKeyID: "key-b3", ProjectID: "proj-3", Model: "gpt-4o-mini", InputTokens: 2, Requests: 1},
		fakeopenai.Usage{Day: at(2026, 11, 23, 8), UserID: "user-cat", APIKeyID: "key-c4", ProjectID: "proj-4", Model: "o3", InputTokens: 3, Requests: 1},
	)
}

func n(v int64) *int64 { return &v }

func TestCaptureUsageReturnsExactlyTheUsersBuckets(t *testing.T) {
	t.Parallel()
	e := setup(t, adminKey)
	seedUsage(e.fake)
	capt, err := e.conn.CaptureUsage(context.Background(), " leaver@EXAMPLE.com", from, t0)
	if err != nil {
		t.Fatalf("CaptureUsage = %v; want nil", err)
	}
	if !capt.UserFound || capt.UserID != "user-leaver" || capt.Provider != "openai" || !capt.From.Equal(from) || !capt.To.Equal(t0) {
		t.Errorf("CaptureUsage = found %v, user %q, provider %q, window %v-%v; want true, user-leaver, openai, %v-%v",
			capt.UserFound, capt.UserID, capt.Provider, capt.From, capt.To, from, t0)
	}
	d := func(day int) (time.Time, time.Time) { return at(2026, 11, day, 0), at(2026, 11, day+1, 0) }
	s9, e9 := d(9)
	s20, e20 := d(20)
	s23, e23 := d(23)
	want := []providers.UsageBucket{
		{Start: s9, End: e9, Model: "gpt-4o", APIKeyID: "key-l1", ProjectOrWorkspace: "proj-1", InputTokens: 100, OutputTokens: 10, CachedInputTokens: 40, CacheWriteInputTokens: 5, Requests: n(2)},
		{Start: s20, End: e20, Model: "gpt-4o", APIKeyID: "key-l1", ProjectOrWorkspace: "proj-1", InputTokens: 500, OutputTokens: 50, Requests: n(4)},
		{Start: s20, End: e20, Model: "gpt-4o-mini", APIKeyID: "key-l3", ProjectOrWorkspace: "proj-3", InputTokens: 7000, OutputTokens: 700, Requests: n(70)},
		{Start: s23, End: e23, Model: "o3", APIKeyID: "key-l4", ProjectOrWorkspace: "proj-4", InputTokens: 50000, OutputTokens: 9000, Requests: n(400)},
	}
	if got, wantJSON := mustJSON(t, capt.Buckets), mustJSON(t, want); got != wantJSON {
		t.Errorf("CaptureUsage buckets =\n%s\nwant\n%s", got, wantJSON)
	}
	if want := []string{"key-l1", "key-l3", "key-l4"}; !slices.Equal(capt.APIKeyIDs, want) {
		t.Errorf("CaptureUsage APIKeyIDs = %v; want %v", capt.APIKeyIDs, want)
	}
	if s := mustJSON(t, capt); strings.Contains(s, adminKey) {
		t.Errorf("capture JSON contains the admin key")
	}
}

// TestCaptureUsageFollowsPaginationWithTheDocumentedQuery checks every
// usage page: 15 day buckets served two at a time are 8 pages.
func TestCaptureUsageFollowsPaginationWithTheDocumentedQuery(t *testing.T) {
	t.Parallel()
	e := setup(t, adminKey)
	seedUsage(e.fake)
	capt, err := e.conn.CaptureUsage(context.Background(), "leaver@example.com", from, t0)
	if err != nil {
		t.Fatalf("CaptureUsage = %v", err)
	}
	var pages []url.Values
	for _, c := range e.fake.Calls() {
		if c.Path == usagePath {
			q, _ := url.ParseQuery(c.Query)
			pages = append(pages, q)
		}
	}
	if len(pages) != 8 {
		t.Fatalf("usage pages = %d; want 8", len(pages))
	}
	for i, q := range pages {
		want := map[string]string{
			"start_time": strconv.FormatInt(dayFrom.Unix(), 10), "end_time": strconv.FormatInt(dayTo.Unix(), 10),
			"bucket_width": "1d", "limit": "31",
		}
		for k, v := range want {
			if q.Get(k) != v {
				t.Errorf("page %d: %s = %q; want %q", i+1, k, q.Get(k), v)
			}
		}
		if got := append(q["user_ids[]"], q["user_ids"]...); !slices.Equal(got, []string{"user-leaver"}) {
			t.Errorf("page %d: user_ids = %v; want [user-leaver]", i+1, got)
		}
		groups := append(q["group_by[]"], q["group_by"]...)
		for _, g := range []string{"user_id", "api_key_id", "model", "project_id"} {
			if !slices.Contains(groups, g) {
				t.Errorf("page %d: group_by = %v; want %s among them", i+1, groups, g)
			}
		}
		if (i == 0) != (q.Get("page") == "") {
			t.Errorf("page %d: page cursor = %q; want one on every page but the first", i+1, q.Get("page"))
		}
	}

	// The evidence: 3 user pages (bodies left out) and 8 usage pages.
	var users, usage int
	for _, c := range capt.Calls {
		if c.Status != 200 || c.RequestID == "" || !c.At.Equal(t0) || c.Method != "GET" || c.Error != "" {
			t.Errorf("call %+v: want GET, 200, a request id, At=%v", c, t0)
		}
		switch {
		case strings.HasPrefix(c.Path, "/v1/organization/users"):
			users++
			if c.Response != nil {
				t.Errorf("user list call kept its body %s; want none (it names colleagues)", c.Response)
			}
		case strings.HasPrefix(c.Path, usagePath):
			usage++
			if !strings.Contains(string(c.Response), `"object":"page"`) {
				t.Errorf("usage call response = %s; want the page", c.Response)
			}
		}
	}
	if users != 3 || usage != 8 || len(capt.Calls) != 11 {
		t.Errorf("calls: %d user pages, %d usage pages, %d in all; want 3, 8, 11", users, usage, len(capt.Calls))
	}
}

func TestCaptureUsageUserNotFound(t *testing.T) {
	t.Parallel()
	e := setup(t, adminKey)
	seedUsage(e.fake)
	capt, err := e.conn.CaptureUsage(context.Background(), "nobody@example.com", from, t0)
	if err != nil {
		t.Fatalf("CaptureUsage = %v; want nil", err)
	}
	if capt.UserFound || capt.UserID != "" || len(capt.Buckets) != 0 || len(capt.APIKeyIDs) != 0 {
		t.Errorf("CaptureUsage = %+v; want user not found and nothing captured", capt)
	}
	if len(capt.Calls) != 3 {
		t.Errorf("calls = %d; want the 3 user pages", len(capt.Calls))
	}
	for _, c := range e.fake.Calls() {
		if c.Path == usagePath {
			t.Errorf("usage read for a user not found: %v", c)
		}
	}
	if b, err := json.Marshal(capt); err != nil || !strings.Contains(string(b), `"buckets":[]`) {
		t.Errorf("json.Marshal(capture) = %s, %v; want empty arrays, not null", b, err)
	}
}

// TestCaptureUsageAfterDeletionFindsNothing is why the pipeline captures
// before it revokes: the deleted user's usage stays in the organization's
// totals, but no longer carries their id.
func TestCaptureUsageAfterDeletionFindsNothing(t *testing.T) {
	t.Parallel()
	e := setup(t, adminKey)
	seedUsage(e.fake)
	before, err := e.conn.CaptureUsage(context.Background(), "leaver@example.com", from, t0)
	if err != nil || len(before.Buckets) != 4 {
		t.Fatalf("CaptureUsage before revocation = %d buckets, %v; want 4, nil", len(before.Buckets), err)
	}
	if byUser := rawUsage(t, e.fake, "user_ids[]=user-leaver"); byUser != 4 {
		t.Fatalf("usage results for user_ids=user-leaver before deletion = %d; want 4", byUser)
	}
	total := rawUsage(t, e.fake, "")
	if _, err := e.conn.RevokeUser(context.Background(), "leaver@example.com"); err != nil {
		t.Fatalf("RevokeUser = %v", err)
	}

	after, err := e.conn.CaptureUsage(context.Background(), "leaver@example.com", from, t0)
	if err != nil {
		t.Fatalf("CaptureUsage after revocation = %v; want nil", err)
	}
	if after.UserFound || len(after.Buckets) != 0 {
		t.Errorf("CaptureUsage after revocation = found %v, %d buckets; want nothing", after.UserFound, len(after.Buckets))
	}
	if byUser := rawUsage(t, e.fake, "user_ids[]=user-leaver"); byUser != 0 {
		t.Errorf("usage results for user_ids=user-leaver after deletion = %d; want 0", byUser)
	}
	if got := rawUsage(t, e.fake, ""); got != total {
		t.Errorf("usage results without a filter after deletion = %d; want %d (the usage stays, anonymous)", got, total)
	}
}

// rawUsage counts the results the fake's usage endpoint returns for the
// window, grouped by user, with extra query.
func rawUsage(t *testing.T, f *fakeopenai.Fake, extra string) int {
	t.Helper()
	u := fmt.Sprintf("%s/organization/usage/completions?start_time=%d&end_time=%d&limit=31&group_by[]=user_id&group_by[]=api_key_id&group_by[]=model&%s",
		f.URL(), dayFrom.Unix(), dayTo.Unix(), extra)
	n := 0
	for {
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		req.Header.Set("Authorization", "Bearer "+adminKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET usage: %v", err)
		}
		var page struct {
			Data []struct {
				Results []json.RawMessage `json:"results"`
			} `json:"data"`
			HasMore  bool   `json:"has_more"`
			NextPage string `json:"next_page"`
		}
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET usage = %d, %v", resp.StatusCode, err)
		}
		for _, b := range page.Data {
			n += len(b.Results)
		}
		if !page.HasMore {
			return n
		}
		u = strings.Split(u, "&page=")[0] + "&page=" + url.QueryEscape(page.NextPage)
	}
}

func TestCaptureUsageFailures(t *testing.T) {
	t.Parallel()
	t.Run("long 429 is a retryable rate limit", func(t *testing.T) {
		t.Parallel()
		e := setup(t, adminKey)
		seedUsage(e.fake)
		e.fake.Inject(fakeapi.Fault{Method: "GET", PathPrefix: usagePath, Status: 429, RetryAfter: "30"})
		capt, err := e.conn.CaptureUsage(context.Background(), "leaver@example.com", from, t0)
		if !providers.Retryable(err) || !errors.Is(err, providers.ErrRateLimited) {
			t.Fatalf("CaptureUsage = %v; want a retryable rate limit", err)
		}
		if d, ok := providers.RetryAfter(err); !ok || d != 30*time.Second {
			t.Errorf("RetryAfter(err) = %v, %v; want 30s, true", d, ok)
		}
		last := capt.Calls[len(capt.Calls)-1]
		if last.Status != 429 || last.RequestID == "" || last.Error == "" || !strings.HasPrefix(last.Path, usagePath) {
			t.Errorf("last call = %+v; want the failed usage read with status 429, a request id and the error", last)
		}
	})
	t.Run("short 429 is waited out in place and both attempts are evidence", func(t *testing.T) {
		t.Parallel()
		e := setup(t, adminKey)
		seedUsage(e.fake)
		e.fake.Inject(fakeapi.Fault{Method: "GET", PathPrefix: usagePath, Status: 429, RetryAfter: "1"})
		capt, err := e.conn.CaptureUsage(context.Background(), "leaver@example.com", from, t0)
		if err != nil || len(capt.Buckets) != 4 {
			t.Fatalf("CaptureUsage = %d buckets, %v; want 4, nil", len(capt.Buckets), err)
		}
		if !slices.Equal(e.waits, []time.Duration{time.Second}) {
			t.Errorf("waits = %v; want [1s]", e.waits)
		}
		if len(capt.Calls) != 12 || capt.Calls[3].Status != 429 || capt.Calls[4].Status != 200 {
			t.Errorf("calls = %d, 4th status %d, 5th %d; want 12 with the 429 then its retry", len(capt.Calls), capt.Calls[3].Status, capt.Calls[4].Status)
		}
	})
	t.Run("5xx is retryable", func(t *testing.T) {
		t.Parallel()
		e := setup(t, adminKey)
		seedUsage(e.fake)
		e.fake.Inject(fakeapi.Fault{Method: "GET", PathPrefix: usagePath, Status: 503})
		_, err := e.conn.CaptureUsage(context.Background(), "leaver@example.com", from, t0)
		var pe *providers.Error
		if !providers.Retryable(err) || !errors.As(err, &pe) || pe.Status != 503 || pe.RequestID == "" {
			t.Errorf("CaptureUsage = %v; want a retryable 503 with a request id", err)
		}
	})
	t.Run("a failed user lookup is returned", func(t *testing.T) {
		t.Parallel()
		e := setup(t, adminKey)
		e.fake.Inject(fakeapi.Fault{Method: "GET", PathPrefix: "/v1/organization/users", Status: 500})
		capt, err := e.conn.CaptureUsage(context.Background(), "leaver@example.com", from, t0)
		if !providers.Retryable(err) || capt.UserFound || len(capt.Calls) != 1 {
			t.Errorf("CaptureUsage = %+v, %v; want a retryable error after one call", capt, err)
		}
	})
	t.Run("bad admin key is permanent and not repeated", func(t *testing.T) {
		t.Parallel()
		const wrong = "sk-admin-WRONGwrongWRONGwrong1234"
		e := setup(t, wrong)
		capt, err := e.conn.CaptureUsage(context.Background(), "leaver@example.com", from, t0)
		if providers.Retryable(err) || !errors.Is(err, providers.ErrUnauthorized) {
			t.Fatalf("CaptureUsage = %v; want a permanent unauthorized error", err)
		}
		if s := err.Error() + mustJSON(t, capt); strings.Contains(s, wrong) || strings.Contains(s, adminKey) {
			t.Errorf("error or capture contains an admin key: %s", s)
		}
	})
	t.Run("bad arguments are permanent", func(t *testing.T) {
		t.Parallel()
		e := setup(t, adminKey)
		for _, c := range []struct {
			email    string
			from, to time.Time
		}{{" ", from, t0}, {"leaver@example.com", t0, t0}, {"leaver@example.com", t0, from}} {
			if _, err := e.conn.CaptureUsage(context.Background(), c.email, c.from, c.to); err == nil || providers.Retryable(err) {
				t.Errorf("CaptureUsage(%q, %v, %v) = %v; want a permanent error", c.email, c.from, c.to, err)
			}
		}
		if len(e.fake.Calls()) != 0 {
			t.Errorf("calls made for bad arguments; want none")
		}
	})
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		t.Fatalf("json.Marshal: %v", err)
	}
	return string(b)
}
