package api

import (
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/toktra/toktra/controlplane/store"
)

// seedUsage gives org A's user device and provider usage on two UTC days
// before now, and returns the first day.
func (f *apiFixture) seedUsage(t *testing.T) time.Time {
	t.Helper()
	day := f.clk.Now().UTC().Truncate(24*time.Hour).Add(-3 * 24 * time.Hour)
	a := f.a
	_, err := f.st.AppendDeviceUsage(f.ctx, store.AppendDeviceUsageParams{OrgID: a.org.ID, DeviceID: a.device.ID, UserID: a.user.ID, BatchSeq: 1, At: day,
		Events: []store.UsageEvent{
			{Provider: "openai", Domain: "api.openai.com", StartedAt: day.Add(9 * time.Hour), EndedAt: day.Add(9 * time.Hour), BytesSent: 100, BytesReceived: 1000, Requests: 1},
			{Provider: "openai", Domain: "api.openai.com", StartedAt: day.Add(25 * time.Hour), EndedAt: day.Add(25 * time.Hour), BytesSent: 50, BytesReceived: 500, Requests: 1},
		}})
	if err != nil {
		t.Fatal(err)
	}
	err = f.st.UpsertProviderUsage(f.ctx, store.UpsertProviderUsageParams{OrgID: a.org.ID, Provider: "openai", Events: []store.UsageEvent{
		{UserID: a.user.ID, Model: "gpt-4o", StartedAt: day.Add(10 * time.Hour), EndedAt: day.Add(11 * time.Hour), InputTokens: 300, OutputTokens: 30, Requests: 3, Key: "k1"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return day
}

func TestUserUsage(t *testing.T) {
	t.Parallel()
	f := setup(t)
	day := f.seedUsage(t)
	var got usageView
	q := url.Values{"from": {day.Format(time.RFC3339)}, "to": {day.Add(48 * time.Hour).Format(time.RFC3339)}}
	if code := f.do(t, f.a.readKey, "GET", "/v1/users/"+f.a.user.ID+"/usage?"+q.Encode(), "", &got); code != http.StatusOK {
		t.Fatalf("GET usage = %d; want 200", code)
	}
	d0, d1 := day.Format(time.DateOnly), day.Add(24*time.Hour).Format(time.DateOnly)
	want := []usageSummaryView{
		{Day: d0, Source: "device", Provider: "openai", usageTotalsView: usageTotalsView{Events: 1, Requests: 1, BytesSent: 100, BytesReceived: 1000}},
		{Day: d0, Source: "provider", Provider: "openai", Model: "gpt-4o", usageTotalsView: usageTotalsView{Events: 1, Requests: 3, InputTokens: 300, OutputTokens: 30}},
		{Day: d1, Source: "device", Provider: "openai", usageTotalsView: usageTotalsView{Events: 1, Requests: 1, BytesSent: 50, BytesReceived: 500}},
	}
	if len(got.Data) != len(want) {
		t.Fatalf("GET usage data = %+v; want %+v", got.Data, want)
	}
	for i := range want {
		if got.Data[i] != want[i] {
			t.Errorf("GET usage data[%d] = %+v; want %+v", i, got.Data[i], want[i])
		}
	}
	if tot := got.Totals; tot.Events != 3 || tot.InputTokens != 300 || tot.BytesSent != 150 {
		t.Errorf("GET usage totals = %+v; want 3 events, 300 input tokens, 150 bytes sent", tot)
	}
	// The default range is the last 14 days, up to now.
	got = usageView{}
	if code := f.do(t, f.a.readKey, "GET", "/v1/users/"+f.a.user.ID+"/usage", "", &got); code != http.StatusOK || len(got.Data) != 3 ||
		!got.To.Equal(f.clk.Now().UTC()) || got.To.Sub(got.From) != 14*24*time.Hour {
		t.Errorf("GET usage with defaults = %d, %v to %v with %d rows; want 200, 14 days to now, 3 rows", code, got.From, got.To, len(got.Data))
	}
}

func TestUserAnomalies(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.seedUsage(t)
	var got anomaliesView
	if code := f.do(t, f.a.readKey, "GET", "/v1/users/"+f.a.user.ID+"/anomalies?window=7d", "", &got); code != http.StatusOK {
		t.Fatalf("GET anomalies = %d; want 200", code)
	}
	r := got.Report
	if got.Events != 3 || r.WindowEvents != 3 || !r.WindowTo.Equal(f.clk.Now().UTC()) || r.WindowTo.Sub(r.WindowFrom) < 6*24*time.Hour ||
		r.WindowTo.Sub(r.WindowFrom) > 8*24*time.Hour || r.Summary == "" || r.Findings == nil {
		t.Errorf("GET anomalies = %+v; want the 3 events in a 7-day window ending now, with a summary", got)
	}
	// The same request for the same end gives the same report.
	end := url.Values{"end": {f.clk.Now().UTC().Format(time.RFC3339Nano)}}.Encode()
	var a, b anomaliesView
	f.do(t, f.a.readKey, "GET", "/v1/users/"+f.a.user.ID+"/anomalies?"+end, "", &a)
	f.do(t, f.a.readKey, "GET", "/v1/users/"+f.a.user.ID+"/anomalies?"+end, "", &b)
	if a.Report.Summary != b.Report.Summary || len(a.Report.Findings) != len(b.Report.Findings) ||
		a.Report.WindowTo.Sub(a.Report.WindowFrom) < 13*24*time.Hour {
		t.Errorf("two GET anomalies for one end = %+v and %+v; want the same 14-day report", a.Report, b.Report)
	}
}

func TestUserUsageBadParams(t *testing.T) {
	t.Parallel()
	f := setup(t)
	u := "/v1/users/" + f.a.user.ID
	now := f.clk.Now().UTC()
	for _, tc := range []struct {
		path string
		want int
	}{
		{u + "/usage?from=yesterday", 400},
		{u + "/usage?to=2026-13-01T00:00:00Z", 400},
		{u + "/usage?from=" + now.Format(time.RFC3339) + "&to=" + now.Add(-time.Hour).Format(time.RFC3339), 400},
		{u + "/usage?from=" + now.Format(time.RFC3339) + "&to=" + now.Format(time.RFC3339), 400},
		{u + "/usage?from=" + now.Add(-401*24*time.Hour).Format(time.RFC3339), 400},
		{u + "/anomalies?end=tomorrow", 400},
		{u + "/anomalies?window=0d", 400},
		{u + "/anomalies?window=91d", 400},
		{u + "/anomalies?window=3x", 400},
		{u + "/anomalies?window=1h", 400},
		{u + "/anomalies?window=-24h", 400},
		{u + "/anomalies?window=2161h", 400},
		{"/v1/users/usr_nope/usage", 404},
		{"/v1/users/usr_nope/anomalies", 404},
		{u + "/anomalies?window=336h", 200},
		{u + "/anomalies?window=90d", 200},
		{u + "/usage?from=" + now.Add(-400*24*time.Hour).Format(time.RFC3339), 200},
	} {
		var e errorBody
		code := f.do(t, f.a.readKey, "GET", tc.path, "", &e)
		if code != tc.want {
			t.Errorf("GET %s = %d; want %d", tc.path, code, tc.want)
		}
		if tc.want == 400 && e.Error.Code != CodeInvalidArgument {
			t.Errorf("GET %s error code = %q; want %q", tc.path, e.Error.Code, CodeInvalidArgument)
		}
	}
}
