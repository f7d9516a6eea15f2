package anthropic_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/toktra/toktra/controlplane/providers"
	"github.com/toktra/toktra/controlplane/providers/providertest/fakeanthropic"
	"github.com/toktra/toktra/controlplane/providers/providertest/fakeapi"
)

const reportPath = "/v1/organizations/usage_report/messages"

// The window the pipeline asks for: the 14 days before the lockout at t0,
// covered by the UTC days 2026-11-09 to 2026-11-24 (15 buckets).
var from = t0.Add(-14 * 24 * time.Hour)

func at(d, h int) time.Time { return time.Date(2026, 11, d, h, 0, 0, 0, time.UTC) }

// seedUsage gives the leaver's keys (created by them, active or not, and
// the one acting as them) usage inside and outside the window, and
// colleagues' keys usage on the same days.
func seedUsage(f *fakeanthropic.Fake) {
	f.AddUsage(
		fakeanthropic.Usage{Day: at(1, 5), APIKeyID: "apikey_l1", Workspace: "wrkspc_1", Model: "claude-sonnet-4", UncachedInputTokens: 999},
		fakeanthropic.Usage{Day: at(24, 5), APIKeyID: "apikey_l4", Workspace: "wrkspc_2", Model: "claude-sonnet-4", UncachedInputTokens: 999},
		fakeanthropic.Usage{Day: at(9, 1), APIKeyID: "apikey_l1", Workspace: "wrkspc_1", Model: "claude-sonnet-4",
			UncachedInputTokens: 100, CacheReadTokens: 30, CacheWrite5mTokens: 5, CacheWrite1hTokens: 2, OutputTokens: 10},
		// apikey_l3 is inactive now; its earlier usage is still the leaver's.
		fakeanthropic.Usage{Day: at(12, 3), APIKeyID: "apikey_l3", Workspace: "wrkspc_3", Model: "claude-haiku-4", UncachedInputTokens: 400, OutputTokens: 40},
		fakeanthropic.Usage{Day: at(20, 3), APIKeyID: "apikey_p5", Workspace: "wrkspc_3", Model: "claude-opus-4", UncachedInputTokens: 7000, OutputTokens: 700},
		fakeanthropic.Usage{Day: at(23, 8), APIKeyID: "apikey_l2", Workspace: "wrkspc_3", Model: "claude-opus-4", UncachedInputTokens: 50000, OutputTokens: 9000},
		fakeanthropic.Usage{Day: at(23, 8), APIKeyID: "apikey_l2", Workspace: "wrkspc_3", Model: "claude-opus-4", UncachedInputTokens: 1, OutputTokens: 1},
		fakeanthropic.Usage{Day: at(9, 1), APIKeyID: "apikey_a1", Workspace: "wrkspc_1", Model: "claude-sonnet-4", UncachedInputTokens: 1},
		fakeanthropic.Usage{Day: at(20, 3), APIKeyID: "apikey_c3", Workspace: "wrkspc_3", Model: "claude-opus-4", UncachedInputTokens: 2},
		fakeanthropic.Usage{Day: at(23, 8), APIKeyID: "apikey_b2", Workspace: "wrkspc_2", Model: "claude-opus-4", UncachedInputTokens: 3},
	)
}

func TestCaptureUsageReturnsExactlyTheUsersBuckets(t *testing.T) {
	t.Parallel()
	e := setup(t, adminKey)
	seedUsage(e.fake)
	capt, err := e.conn.CaptureUsage(context.Background(), "leaver@EXAMPLE.com", from, t0)
	if err != nil {
		t.Fatalf("CaptureUsage = %v; want nil", err)
	}
	if !capt.UserFound || capt.UserID != "user_leaver" || capt.Provider != "anthropic" {
		t.Errorf("CaptureUsage = found %v, user %q, provider %q; want true, user_leaver, anthropic", capt.UserFound, capt.UserID, capt.Provider)
	}
	if want := []string{"apikey_l1", "apikey_l2", "apikey_l3", "apikey_l4", "apikey_p5"}; !slices.Equal(capt.APIKeyIDs, want) {
		t.Errorf("CaptureUsage APIKeyIDs = %v; want %v", capt.APIKeyIDs, want)
	}
	want := []providers.UsageBucket{
		{Start: at(9, 0), End: at(10, 0), Model: "claude-sonnet-4", APIKeyID: "apikey_l1", ProjectOrWorkspace: "wrkspc_1",
			InputTokens: 137, CachedInputTokens: 30, CacheWriteInputTokens: 7, OutputTokens: 10},
		{Start: at(12, 0), End: at(13, 0), Model: "claude-haiku-4", APIKeyID: "apikey_l3", ProjectOrWorkspace: "wrkspc_3", InputTokens: 400, OutputTokens: 40},
		{Start: at(20, 0), End: at(21, 0), Model: "claude-opus-4", APIKeyID: "apikey_p5", ProjectOrWorkspace: "wrkspc_3", InputTokens: 7000, OutputTokens: 700},
		{Start: at(23, 0), End: at(24, 0), Model: "claude-opus-4", APIKeyID: "apikey_l2", ProjectOrWorkspace: "wrkspc_3", InputTokens: 50001, OutputTokens: 9001},
	}
	if got, w := mustJSON(t, capt.Buckets), mustJSON(t, want); got != w {
		t.Errorf("CaptureUsage buckets =\n%s\nwant\n%s", got, w)
	}
	if strings.Contains(mustJSON(t, capt), `"requests"`) {
		t.Errorf("capture reports a request count; the usage report has none")
	}
	if strings.Contains(mustJSON(t, capt), adminKey) {
		t.Errorf("capture JSON contains the admin key")
	}
	if n := e.fake.Mutations(); n != 0 {
		t.Errorf("CaptureUsage made %d mutating calls; want 0", n)
	}
}

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
		if c.Path == reportPath {
			q, _ := url.ParseQuery(c.Query)
			pages = append(pages, q)
		}
	}
	if len(pages) != 8 {
		t.Fatalf("usage report pages = %d; want 8 (15 day buckets, 2 a page)", len(pages))
	}
	for i, q := range pages {
		for k, v := range map[string]string{"starting_at": "2026-11-09T00:00:00Z", "ending_at": "2026-11-24T00:00:00Z", "bucket_width": "1d", "limit": "31"} {
			if q.Get(k) != v {
				t.Errorf("page %d: %s = %q; want %q", i+1, k, q.Get(k), v)
			}
		}
		if got := q["group_by[]"]; !slices.Equal(got, []string{"api_key_id", "model"}) {
			t.Errorf("page %d: group_by[] = %v; want [api_key_id model]", i+1, got)
		}
		if got := q["api_key_ids[]"]; !slices.Equal(got, capt.APIKeyIDs) {
			t.Errorf("page %d: api_key_ids[] = %v; want the user's keys %v", i+1, got, capt.APIKeyIDs)
		}
		if (i == 0) != (q.Get("page") == "") {
			t.Errorf("page %d: page = %q; want a token on every page but the first", i+1, q.Get("page"))
		}
	}
	reports := 0
	for _, c := range capt.Calls {
		if c.Status != 200 || c.RequestID == "" || !c.At.Equal(t0) {
			t.Errorf("call %+v: want 200, a request id, At=%v", c, t0)
		}
		switch {
		case strings.HasPrefix(c.Path, reportPath):
			reports++
			if !strings.Contains(string(c.Response), `"has_more"`) {
				t.Errorf("report call response = %s; want the report", c.Response)
			}
		case strings.HasPrefix(c.Path, "/v1/organizations/users"), strings.Contains(c.Path, "status=active"):
			if c.Response != nil {
				t.Errorf("organization-wide listing %s kept its body; want none", c.Path)
			}
		case strings.Contains(c.Path, "created_by_user_id=user_leaver"):
			if c.Response == nil {
				t.Errorf("the user's key listing %s kept no body; want it", c.Path)
			}
		}
	}
	if reports != 8 {
		t.Errorf("report calls in the evidence = %d; want 8", reports)
	}
}

func TestCaptureUsageUserNotFoundOrWithoutKeys(t *testing.T) {
	t.Parallel()
	e := setup(t, adminKey)
	seedUsage(e.fake)
	e.fake.AddUser(fakeanthropic.User{ID: "user_nokeys", Email: "nokeys@example.com", Role: "user"})
	capt, err := e.conn.CaptureUsage(context.Background(), "nobody@example.com", from, t0)
	if err != nil || capt.UserFound || len(capt.Buckets) != 0 || len(capt.Calls) == 0 {
		t.Errorf("CaptureUsage(nobody) = %+v, %v; want not found, no buckets, the lookup calls, nil", capt, err)
	}
	capt, err = e.conn.CaptureUsage(context.Background(), "nokeys@example.com", from, t0)
	if err != nil || !capt.UserFound || len(capt.Buckets) != 0 || len(capt.APIKeyIDs) != 0 {
		t.Errorf("CaptureUsage(nokeys) = %+v, %v; want found, no keys, no buckets, nil", capt, err)
	}
	for _, c := range e.fake.Calls() {
		if c.Path == reportPath {
			t.Errorf("usage report read with no keys to attribute: %v", c)
		}
	}
}

// TestCaptureUsageAfterRemovalFindsNothing is why the pipeline captures
// before it revokes: the report still holds the keys' usage, but nothing
// leads from the email to the keys any more.
func TestCaptureUsageAfterRemovalFindsNothing(t *testing.T) {
	t.Parallel()
	e := setup(t, adminKey)
	seedUsage(e.fake)
	if _, err := e.conn.RevokeUser(context.Background(), "leaver@example.com"); err != nil {
		t.Fatalf("RevokeUser = %v", err)
	}
	capt, err := e.conn.CaptureUsage(context.Background(), "leaver@example.com", from, t0)
	if err != nil || capt.UserFound || len(capt.Buckets) != 0 {
		t.Errorf("CaptureUsage after removal = found %v, %d buckets, %v; want nothing, nil", capt.UserFound, len(capt.Buckets), err)
	}
	if n := rawReportResults(t, e.fake, "apikey_l2"); n != 1 {
		t.Errorf("report results for apikey_l2 after removal = %d; want 1 (the usage is there, unattributed)", n)
	}
}

func rawReportResults(t *testing.T, f *fakeanthropic.Fake, key string) int {
	t.Helper()
	u := fmt.Sprintf("%s%s?starting_at=2026-11-09T00:00:00Z&ending_at=2026-11-24T00:00:00Z&limit=31&group_by[]=api_key_id&api_key_ids[]=%s", f.URL(), reportPath, key)
	n := 0
	for {
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		req.Header.Set("X-Api-Key", adminKey)
		req.Header.Set("Anthropic-Version", "2023-06-01")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET report: %v", err)
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
			t.Fatalf("GET report = %d, %v", resp.StatusCode, err)
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

// TestCaptureUsageBatchesManyKeys covers a user with more keys than one
// report query names.
func TestCaptureUsageBatchesManyKeys(t *testing.T) {
	t.Parallel()
	e := setup(t, adminKey)
	e.fake.MaxPage = 20
	e.fake.AddUser(fakeanthropic.User{ID: "user_many", Email: "many@example.com", Role: "developer"})
	for i := range 55 {
		id := fmt.Sprintf("apikey_m%02d", i)
		e.fake.AddKey(fakeanthropic.Key{ID: id, Workspace: "wrkspc_1", CreatedBy: "user_many", Status: "active"})
		e.fake.AddUsage(fakeanthropic.Usage{Day: at(10+i%10, 0), APIKeyID: id, Workspace: "wrkspc_1", Model: "claude-sonnet-4", OutputTokens: int64(i)})
	}
	capt, err := e.conn.CaptureUsage(context.Background(), "many@example.com", from, t0)
	if err != nil || len(capt.APIKeyIDs) != 55 || len(capt.Buckets) != 55 {
		t.Fatalf("CaptureUsage = %d keys, %d buckets, %v; want 55, 55, nil", len(capt.APIKeyIDs), len(capt.Buckets), err)
	}
	var batches [][]string
	for _, c := range e.fake.Calls() {
		if c.Path == reportPath {
			q, _ := url.ParseQuery(c.Query)
			if q.Get("page") == "" {
				batches = append(batches, q["api_key_ids[]"])
			}
		}
	}
	if len(batches) != 2 || len(batches[0]) != 50 || len(batches[1]) != 5 {
		t.Errorf("report batches = %d; want 2 of 50 and 5 keys", len(batches))
	}
	for i := 1; i < len(capt.Buckets); i++ {
		if a, b := capt.Buckets[i-1], capt.Buckets[i]; a.Start.After(b.Start) || (a.Start.Equal(b.Start) && a.APIKeyID > b.APIKeyID) {
			t.Fatalf("buckets not sorted at %d: %+v before %+v", i, a, b)
		}
	}
}

func TestCaptureUsageFailures(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name   string
		fault  fakeapi.Fault
		status int
		limit  bool
	}{
		{"429 on the report", fakeapi.Fault{Method: "GET", PathPrefix: reportPath, Status: 429, RetryAfter: "30"}, 429, true},
		{"529 on the report", fakeapi.Fault{Method: "GET", PathPrefix: reportPath, Status: 529}, 529, false},
		{"500 on the key listing", fakeapi.Fault{Method: "GET", PathPrefix: "/v1/organizations/api_keys", Status: 500}, 500, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := setup(t, adminKey)
			seedUsage(e.fake)
			e.fake.Inject(tt.fault)
			capt, err := e.conn.CaptureUsage(context.Background(), "leaver@example.com", from, t0)
			var pe *providers.Error
			if !providers.Retryable(err) || !errors.As(err, &pe) || pe.Status != tt.status || pe.RequestID == "" ||
				errors.Is(err, providers.ErrRateLimited) != tt.limit {
				t.Fatalf("CaptureUsage = %v; want a retryable %d with a request id", err, tt.status)
			}
			if last := capt.Calls[len(capt.Calls)-1]; last.Status != tt.status || last.Error == "" || last.RequestID == "" {
				t.Errorf("last call = %+v; want the failure recorded", last)
			}
		})
	}
	t.Run("short 429 is waited out in place", func(t *testing.T) {
		t.Parallel()
		e := setup(t, adminKey)
		seedUsage(e.fake)
		e.fake.Inject(fakeapi.Fault{Method: "GET", PathPrefix: reportPath, Status: 429, RetryAfter: "1"})
		capt, err := e.conn.CaptureUsage(context.Background(), "leaver@example.com", from, t0)
		if err != nil || len(capt.Buckets) != 4 || !slices.Equal(e.waits, []time.Duration{time.Second}) {
			t.Errorf("CaptureUsage = %d buckets, %v, waits %v; want 4, nil, [1s]", len(capt.Buckets), err, e.waits)
		}
	})
	t.Run("bad admin key is permanent", func(t *testing.T) {
		t.Parallel()
		const wrong = "sk-ant-admin01-WRONGwrongWRONGwrong1234-AA"
		e := setup(t, wrong)
		capt, err := e.conn.CaptureUsage(context.Background(), "leaver@example.com", from, t0)
		if providers.Retryable(err) || !errors.Is(err, providers.ErrUnauthorized) {
			t.Fatalf("CaptureUsage = %v; want a permanent unauthorized error", err)
		}
		if s := err.Error() + mustJSON(t, capt); strings.Contains(s, wrong) || strings.Contains(s, adminKey) {
			t.Errorf("error or capture contains an admin key: %s", s)
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
