package workday_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/toktra/toktra/controlplane/triggers/workday"
	"github.com/toktra/toktra/controlplane/triggers/workday/workdaytest"
)

const report = `{"Report_Entry":[
	{"Worker_ID":"21001","Email_Address":"Grace@A.example","Termination_Date":"2026-03-01","Event_ID":"TERMINATION-6-1234","Event_Completed_Moment":"2026-03-01T09:12:00.000-08:00"},
	{"Worker_ID":21002,"Termination_Date":"2026-04-15-07:00","Rescinded":"1"},
	{"Employee_ID":"21003","Work_Email":"not an email","Termination_Date":"2026-03-02"}
]}`

func TestParseReport(t *testing.T) {
	t.Parallel()
	es, err := workday.ParseReport([]byte(report))
	if err != nil || len(es) != 3 {
		t.Fatalf("ParseReport = %+v, %v; want 3 entries", es, err)
	}
	if e := es[0]; e.WorkerID != "21001" || e.Email != "grace@a.example" || e.EventID != "TERMINATION-6-1234" || e.Completed.IsZero() || e.Rescinded {
		t.Errorf("entry 0 = %+v", e)
	}
	if e := es[1]; e.WorkerID != "21002" || !e.Rescinded || e.EventID != "termination:2026-04-15" || !e.Date().Equal(time.Date(2026, 4, 15, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("entry 1 = %+v; want the numeric id, rescinded, the default event id", e)
	}
	if e := es[2]; e.WorkerID != "21003" || e.Email != "" {
		t.Errorf("entry 2 = %+v; want Employee_ID read, the bad email dropped", e)
	}
	if es, err := workday.ParseReport([]byte(`{"Report_Entry":[]}`)); err != nil || len(es) != 0 {
		t.Errorf("ParseReport(empty) = %v, %v; want none", es, err)
	}
	for name, body := range map[string]string{
		"not JSON":      `{"Report_Entry":`,
		"no entries":    `{"Report_Data":[]}`,
		"no worker":     `{"Report_Entry":[{"Termination_Date":"2026-03-01"}]}`,
		"bad date":      `{"Report_Entry":[{"Worker_ID":"1","Termination_Date":"March 1st"}]}`,
		"nested value":  `{"Report_Entry":[{"Worker_ID":{"id":"1"},"Termination_Date":"2026-03-01"}]}`,
		"bad moment":    `{"Report_Entry":[{"Worker_ID":"1","Termination_Date":"2026-03-01","Event_Completed_Moment":"soon"}]}`,
		"trailing data": `{"Report_Entry":[]}{}`,
	} {
		if _, err := workday.ParseReport([]byte(body)); !errors.Is(err, workday.ErrMalformed) {
			t.Errorf("ParseReport(%s) error = %v; want ErrMalformed", name, err)
		}
	}
}

func TestFetch(t *testing.T) {
	t.Parallel()
	fake := workdaytest.New("ISU_Toktra@acme", "pw", "client", "client-secret", "refresh")
	t.Cleanup(fake.Close)
	to := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	from := to.Add(-25 * time.Hour)
	fake.SetEntries(
		workdaytest.Entry{"Worker_ID": "1", "Termination_Date": "2026-03-01", "Event_Completed_Moment": "2026-03-02T08:00:00Z"},
		workdaytest.Entry{"Worker_ID": "2", "Termination_Date": "2026-01-01", "Event_Completed_Moment": "2026-01-01T08:00:00Z"},
	)
	c := &workday.Client{}
	reportURL := fake.URL() + workdaytest.ReportPath
	basic := workday.Auth{Username: "ISU_Toktra@acme", Password: "pw"}
	es, err := c.Fetch(context.Background(), reportURL, basic, from, to)
	if err != nil || len(es) != 1 || es[0].WorkerID != "1" {
		t.Fatalf("Fetch(basic) = %+v, %v; want worker 1 only", es, err)
	}
	reqs := fake.Requests()
	if len(reqs) != 1 || reqs[0].Format != "json" || reqs[0].From != from.Format(time.RFC3339) || reqs[0].To != to.Format(time.RFC3339) || reqs[0].Auth != "basic" {
		t.Errorf("report requests = %+v; want json with the window's prompts, basic auth", reqs)
	}
	oauth := workday.Auth{TokenURL: fake.URL() + workdaytest.TokenPath, ClientID: "client", ClientSecret: "client-secret", RefreshToken: "refresh"}
	if es, err := c.Fetch(context.Background(), reportURL, oauth, from, to); err != nil || len(es) != 1 || fake.Requests()[1].Auth != "bearer" {
		t.Errorf("Fetch(oauth) = %+v, %v; want the same entries with a bearer token", es, err)
	}
	for name, auth := range map[string]workday.Auth{
		"wrong password":      {Username: "ISU_Toktra@acme", Password: "nope"},
		"wrong refresh token": {TokenURL: oauth.TokenURL, ClientID: "client", ClientSecret: "client-secret", RefreshToken: "stale"},
		"wrong client secret": {TokenURL: oauth.TokenURL, ClientID: "client", ClientSecret: "x", RefreshToken: "refresh"},
	} {
		var fe *workday.FetchError
		if _, err := c.Fetch(context.Background(), reportURL, auth, from, to); !errors.As(err, &fe) {
			t.Errorf("Fetch(%s) error = %v; want a FetchError", name, err)
		} else if strings.Contains(err.Error(), "nope") || strings.Contains(err.Error(), "stale") {
			t.Errorf("Fetch(%s) error %q shows a credential", name, err)
		}
	}
	fake.FailNext(1)
	var fe *workday.FetchError
	if _, err := c.Fetch(context.Background(), reportURL, basic, from, to); !errors.As(err, &fe) || fe.Status != 500 {
		t.Errorf("Fetch while Workday fails = %v; want a FetchError 500", err)
	}
}

func FuzzParseReport(f *testing.F) {
	f.Add([]byte(report))
	f.Add([]byte(`{"Report_Entry":[]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		es, err := workday.ParseReport(body)
		if err != nil {
			if !errors.Is(err, workday.ErrMalformed) {
				t.Fatalf("ParseReport error %v is not ErrMalformed", err)
			}
			return
		}
		for _, e := range es {
			if e.WorkerID == "" || e.EventID == "" || e.Date().IsZero() {
				t.Fatalf("ParseReport accepted %+v", e)
			}
			if e.Email != "" && e.Email != strings.ToLower(e.Email) {
				t.Fatalf("email %q not lower-cased", e.Email)
			}
		}
	})
}
