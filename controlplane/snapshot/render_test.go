package snapshot_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/toktra/toktra/controlplane/snapshot"
)

// poppler runs one of poppler's command-line tools and returns its
// standard output. The tools are part of the test environment (Debian
// poppler-utils): a missing tool fails the test rather than skipping it.
func poppler(t *testing.T, tool string, args ...string) string {
	t.Helper()
	path, err := exec.LookPath(tool)
	if err != nil {
		t.Fatalf("%s not found: install Debian poppler-utils (%v)", tool, err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", tool, strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}

// writePDF stores pdf in the test's directory and returns its path.
func writePDF(t *testing.T, pdf []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "snapshot.pdf")
	if err := os.WriteFile(path, pdf, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func render(t testing.TB, in snapshot.Input) []byte {
	t.Helper()
	pdf, err := snapshot.Render(in)
	if err != nil {
		t.Fatalf("Render() = %v", err)
	}
	return pdf
}

// text extracts the PDF's text with pdftotext, reading order, one line per
// line of the page.
func text(t *testing.T, path string, pageArgs ...string) string {
	t.Helper()
	return poppler(t, "pdftotext", append(append([]string{"-layout", "-enc", "UTF-8"}, pageArgs...), path, "-")...)
}

// squash removes the layout's runs of spaces, so that a value is found
// whatever column it was printed in.
func squash(s string) string { return regexp.MustCompile(`[ \t]+`).ReplaceAllString(s, " ") }

func TestRenderIsDeterministic(t *testing.T) {
	t.Parallel()
	in := fixture(3000)
	first := render(t, in)
	for i := range 3 {
		// A fresh input each time: nothing may depend on pointers or on
		// state the previous render left behind.
		if again := render(t, fixture(3000)); !bytes.Equal(first, again) {
			t.Fatalf("Render(fixture) #%d differs from the first render (%d vs %d bytes)", i+2, len(again), len(first))
		}
	}
	// A different input gives a different document.
	in.User.Email = "someone.else@example.com"
	if other := render(t, in); bytes.Equal(first, other) {
		t.Errorf("Render() with another email = the same bytes; want different")
	}
}

func TestRenderReadableByPoppler(t *testing.T) {
	t.Parallel()
	in := fixture(2000)
	path := writePDF(t, render(t, in))

	info := poppler(t, "pdfinfo", "-isodates", path)
	for _, want := range []string{
		"Title:           Audit snapshot: lockout lo_9c1e5b",
		"Subject:         LLM access lockout of Ана Ђорђевић-Σωκράτης <ana.djordjevic@example.com>",
		"CreationDate:    2026-11-20T16:43:42",
		"Page size:       595.28 x 841.89 pts (A4)",
	} {
		if !strings.Contains(info, want) {
			t.Errorf("pdfinfo output lacks %q:\n%s", want, info)
		}
	}

	got := squash(text(t, path))
	sum := sha256.Sum256(snapshot.EncodeEventList(in.Usage.Events))
	wants := []string{
		// Identity, in several scripts, and every identifier.
		"Name Ана Ђорђевић-Σωκράτης",
		"Email ana.djordjevic@example.com",
		"User id usr_1",
		"Id at okta 00u1abcd2EFGH3ijk4x7",
		"Id at scim 2819c223-7f76-453a-919d-413861904646",
		"Organization 株式会社テスト Østfold Ltd",
		"Organization id org_7f3a",
		"U+682A U+5F0F U+4F1A",
		// Lockout and triggers, with exact times.
		"Lockout id lo_9c1e5b",
		"Locked out at 2026-11-20T16:42:07.123456Z",
		"okta hr-admin@example.",
		`"eventType":"user.lifecycle.deactivate"`,
		"api:key_admin",
		// Usage.
		"Window 2026-11-06 16:42:07 UTC to 2026-11-20 16:42:07 UTC",
		"Events 2,000",
		"usage-events.jsonl SHA-256 " + hex.EncodeToString(sum[:]),
		"2026-11-13 Fri",
		"anthropic / claude-sonnet-4 (provider)",
		"480,000,000",
		// Confirmations and their absence.
		"openai: confirmed",
		"req_7d1f0c9e",
		"anthropic: unconfirmed",
		"No confirmation the provider was overloaded for every one of 8 attempts",
		"dev_00", "applied", "dev_01", "rejected", "expired",
		"No acknowledgement: offline",
		// Custody.
		"Timestamping authority: Toktra local TSA",
		"Node 3: device_ack",
		"RFC 3161 time 2026-11-20T16:42:07.323456Z",
	}
	for _, n := range in.Custody.Nodes {
		wants = append(wants, "Node hash "+n.Hash, "Payload hash "+n.PayloadHash)
	}
	if len(in.Anomalies.Findings) == 0 {
		t.Fatal("fixture: the anomaly detector found nothing; the fixture should make it find a spike and an upload")
	}
	for i, f := range in.Anomalies.Findings {
		wants = append(wants, fmt.Sprintf("Finding %d: %s, %s severity", i+1, f.Type, f.Severity))
	}
	wants = append(wants, "Summary "+in.Anomalies.Summary)
	for _, want := range wants {
		if !strings.Contains(got, want) {
			t.Errorf("pdftotext output lacks %q", want)
		}
	}
	// Explanations are wrapped across lines and pages; compare them
	// without layout, headers and footers.
	var body []string
	for _, l := range strings.Split(got, "\n") {
		if !strings.Contains(l, "Lockout lo_9c1e5b") {
			body = append(body, l)
		}
	}
	flat := strings.Join(strings.Fields(strings.Join(body, " ")), " ")
	for _, f := range in.Anomalies.Findings {
		if !strings.Contains(flat, strings.Join(strings.Fields(f.Explanation), " ")) {
			t.Errorf("pdftotext output lacks the explanation %q", f.Explanation)
		}
	}
}

func TestRenderStructure(t *testing.T) {
	t.Parallel()
	in := fixture(5000)
	path := writePDF(t, render(t, in))
	info := poppler(t, "pdfinfo", path)
	m := regexp.MustCompile(`(?m)^Pages:\s+(\d+)$`).FindStringSubmatch(info)
	if m == nil {
		t.Fatalf("pdfinfo gives no page count:\n%s", info)
	}
	pages, _ := strconv.Atoi(m[1])
	if pages < 4 {
		t.Fatalf("pages = %d; want at least 4 for this fixture", pages)
	}
	// Every page has the header with the lockout id and the footer with
	// its number out of the total.
	for p := 1; p <= pages; p++ {
		page := squash(text(t, path, "-f", strconv.Itoa(p), "-l", strconv.Itoa(p)))
		for _, want := range []string{
			"Toktra audit snapshot Lockout lo_9c1e5b",
			fmt.Sprintf("Page %d of %d", p, pages),
		} {
			if !strings.Contains(page, want) {
				t.Errorf("page %d lacks %q:\n%s", p, want, page)
			}
		}
	}
	// The sections come in order.
	all := text(t, path)
	last := -1
	for _, h := range []string{
		"1. Person and organization", "2. Lockout", "3. LLM use in the 14 days before the lockout",
		"By day (UTC)", "By provider and model", "Largest events by tokens", "Largest uploads by bytes sent",
		"4. Anomalies", "5. Provider revocations", "6. Device locks", "7. Chain of custody", "8. Verifying this document",
	} {
		i := strings.Index(all, h)
		if i < 0 {
			t.Errorf("section %q is missing", h)
			continue
		}
		if i < last {
			t.Errorf("section %q is out of order", h)
		}
		last = i
	}
	// The daily table has every day of the window, and a table that runs
	// over a page repeats its header.
	days := regexp.MustCompile(`(?m)^\s*2026-11-\d\d (Mon|Tue|Wed|Thu|Fri|Sat|Sun)\s`).FindAllString(all, -1)
	if len(days) != 15 {
		t.Errorf("daily rows = %d; want 15 (the 14-day window spans 15 UTC dates)", len(days))
	}
	if n := strings.Count(all, "Line Start"); n < 2 {
		t.Errorf("largest-event tables have %d headers; want at least 2", n)
	}
}

func TestAttachmentRoundTrips(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, 1, 5000} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			t.Parallel()
			in := fixture(n)
			path := writePDF(t, render(t, in))
			list := poppler(t, "pdfdetach", "-list", "-enc", "UTF-8", path)
			if !strings.Contains(list, snapshot.EventListName) || !strings.Contains(list, snapshot.AnomalyReportName) {
				t.Fatalf("pdfdetach -list = %q; want %s and %s", list, snapshot.EventListName, snapshot.AnomalyReportName)
			}
			dir := t.TempDir()
			poppler(t, "pdfdetach", "-saveall", "-o", dir, path)
			data, err := os.ReadFile(filepath.Join(dir, snapshot.EventListName))
			if err != nil {
				t.Fatal(err)
			}
			if want := snapshot.EncodeEventList(in.Usage.Events); !bytes.Equal(data, want) {
				t.Fatalf("attachment = %d bytes; want the %d bytes of the encoded event list", len(data), len(want))
			}
			got, err := snapshot.ParseEventList(bytes.NewReader(data))
			if err != nil {
				t.Fatalf("ParseEventList(attachment) = %v", err)
			}
			if diff := cmp.Diff(in.Usage.Events, got, cmpTimes, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("ParseEventList(attachment) differs from the input events (-want +got):\n%s", diff)
			}
			// The printed hash is the attachment's.
			sum := sha256.Sum256(data)
			if !strings.Contains(squash(text(t, path)), "SHA-256 "+hex.EncodeToString(sum[:])) {
				t.Errorf("the document does not print the attachment's SHA-256 %x", sum)
			}
		})
	}
}

// cmpTimes compares times as instants.
var cmpTimes = cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })
