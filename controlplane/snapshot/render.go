package snapshot

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/go-pdf/fpdf"

	"github.com/toktra/toktra/controlplane/anomaly"
)

// AnomalyReportName is the file name of the attachment that holds the
// anomaly report as JSON.
const AnomalyReportName = "anomaly-report.json"

// Attachment is a file embedded in the snapshot, with the hash the
// document prints for it.
type Attachment struct {
	Name   string
	SHA256 string // hex
	Size   int
}

// Render lays the snapshot out as a PDF. The same Input renders the same
// bytes: the creation date is Input.GeneratedAt, fpdf's catalogs are
// sorted, and nothing depends on map order or the clock.
func Render(in Input) (pdf []byte, err error) {
	if err := in.Validate(); err != nil {
		return nil, err
	}
	defer func() {
		// fpdf reports most failures through Err, but a few paths panic;
		// a snapshot that cannot be rendered is an error, not a crash.
		if r := recover(); r != nil {
			pdf, err = nil, fmt.Errorf("rendering snapshot: %v", r)
		}
	}()
	r := newRenderer(&in)
	r.render()
	var buf bytes.Buffer
	if err := r.pdf.Output(&buf); err != nil {
		return nil, fmt.Errorf("rendering snapshot: %w", err)
	}
	return buf.Bytes(), nil
}

type renderer struct {
	doc
	in          *Input
	eventList   []byte
	attachments []fpdf.Attachment
}

func newRenderer(in *Input) *renderer {
	p := fpdf.New("P", "mm", "A4", "")
	for _, f := range fontFiles {
		// fpdf writes into the font bytes it is given while subsetting:
		// each document gets its own copy, or the second document would
		// differ from the first and concurrent renders would race.
		p.AddUTF8FontFromBytes(f.family, f.style, bytes.Clone(f.ttf))
	}
	p.SetCatalogSort(true)
	p.SetCompression(true)
	p.SetCreationDate(in.GeneratedAt.UTC())
	p.SetModificationDate(in.GeneratedAt.UTC())
	p.SetProducer("Toktra", true)
	p.SetCreator("Toktra control plane", true)
	p.SetAuthor("Toktra", true)
	p.SetTitle(printable("Audit snapshot: lockout "+in.Lockout.ID), true)
	p.SetSubject(printable(fmt.Sprintf("LLM access lockout of %s <%s>", in.User.Name, in.User.Email)), true)
	p.SetKeywords(printable("toktra audit snapshot lockout "+in.Lockout.ID+" org "+in.Org.ID), true)
	p.SetMargins(marginX, marginTop, marginX)
	p.SetCellMargin(cellMargin)
	p.SetAutoPageBreak(false, 0)
	p.AliasNbPages("{nb}")

	r := &renderer{doc: doc{pdf: p}, in: in}
	p.SetHeaderFunc(r.header)
	p.SetFooterFunc(r.footer)

	r.eventList = EncodeEventList(in.Usage.Events)
	r.attachments = append(r.attachments, fpdf.Attachment{
		Content: r.eventList, Filename: EventListName,
		Description: "Every LLM usage event of the window, JSON Lines",
	})
	if in.Anomalies != nil {
		report, err := json.MarshalIndent(in.Anomalies, "", "  ")
		if err != nil {
			panic("encoding the anomaly report: " + err.Error())
		}
		r.attachments = append(r.attachments, fpdf.Attachment{
			Content: append(report, '\n'), Filename: AnomalyReportName,
			Description: "The anomaly report with its evidence, JSON",
		})
	}
	p.SetAttachments(r.attachments)
	return r
}

func (r *renderer) header() {
	p := r.pdf
	r.use(fSmall)
	p.SetTextColor(90, 90, 90)
	p.SetXY(marginX, 9)
	p.CellFormat(contentW/2, 4, "Toktra audit snapshot", "", 0, "L", false, 0, "")
	p.CellFormat(contentW/2, 4, printable("Lockout "+r.in.Lockout.ID), "", 0, "R", false, 0, "")
	p.SetDrawColor(180, 180, 180)
	p.Line(marginX, 14, pageW-marginX, 14)
	p.SetDrawColor(0, 0, 0)
	p.SetTextColor(0, 0, 0)
	p.SetXY(marginX, marginTop)
}

func (r *renderer) footer() {
	p := r.pdf
	r.use(fSmall)
	p.SetTextColor(90, 90, 90)
	p.SetXY(marginX, pageH-12)
	p.CellFormat(contentW*2/3, 4, printable("Lockout "+r.in.Lockout.ID+" · generated "+fmtTime(r.in.GeneratedAt)), "", 0, "L", false, 0, "")
	p.CellFormat(contentW/3, 4, fmt.Sprintf("Page %d of {nb}", p.PageNo()), "", 0, "R", false, 0, "")
	p.SetTextColor(0, 0, 0)
}

func (r *renderer) render() {
	r.pdf.AddPage()
	r.title()
	r.identity()
	r.lockout()
	r.usage()
	r.anomalies()
	r.revocations()
	r.devices()
	r.custody()
	r.verification()
}

func (r *renderer) title() {
	in := r.in
	r.use(fTitle)
	r.pdf.SetX(marginX)
	r.pdf.CellFormat(contentW, 9, "Audit snapshot of an LLM access lockout", "", 1, "L", false, 0, "")
	r.para(fBody, fmt.Sprintf(
		"This document records the lockout of %s <%s> from the LLM tools of %s: "+
			"who or what asked for it, the person's LLM use in the %s before it with the anomalies found, "+
			"each provider's confirmation that their access was revoked, each device's acknowledgement of its lock, "+
			"and the chain of custody of this evidence. Generated %s by the Toktra control plane.",
		orDash(in.User.Name), in.User.Email, orDash(in.Org.Name), windowLength(in.Usage), fmtTime(in.GeneratedAt)))
	r.pdf.Ln(1)
}

func windowLength(u Usage) string {
	days := u.To.Sub(u.From).Hours() / 24
	if days == float64(int(days)) {
		return fmt.Sprintf("%d days", int(days))
	}
	return fmt.Sprintf("%.1f days", days)
}

func (r *renderer) identity() {
	in := r.in
	r.heading("1. Person and organization")
	r.kv("Name", in.User.Name)
	r.kv("Email", in.User.Email)
	r.kvFont("User id", in.User.ID, fMono)
	for _, id := range in.User.IdPIDs {
		r.kvFont("Id at "+id.System, id.ID, fMono)
	}
	if len(in.User.IdPIDs) == 0 {
		r.kv("Identity providers", "none recorded")
	}
	r.kv("Organization", in.Org.Name)
	r.kvFont("Organization id", in.Org.ID, fMono)
	// The embedded font lacks some scripts; spell such names out so that
	// the printed page identifies the person unambiguously.
	for _, f := range []struct{ label, value string }{
		{"Name", in.User.Name}, {"Email", in.User.Email}, {"Organization", in.Org.Name},
	} {
		if f.value != "" && uncovered(f.value) {
			r.kvFont(f.label+" (code points)", codePoints(f.value), fMono)
		}
	}
}

func (r *renderer) lockout() {
	in := r.in
	r.heading("2. Lockout")
	r.kvFont("Lockout id", in.Lockout.ID, fMono)
	r.kv("Locked out at", fmtExact(in.Lockout.CreatedAt))
	r.kv("State", in.Lockout.State)
	r.subheading(fmt.Sprintf("Triggers (%d)", len(in.Lockout.Triggers)))
	if len(in.Lockout.Triggers) == 0 {
		r.para(fBody, "No trigger was recorded.")
		return
	}
	rows := make([][]string, len(in.Lockout.Triggers))
	for i, t := range in.Lockout.Triggers {
		rows[i] = []string{fmtExact(t.At), t.Source, orDash(t.Actor), canonicalJSON(t.Evidence)}
	}
	r.table([]column{
		{title: "Time (UTC)", width: 0.25},
		{title: "Source", width: 0.14},
		{title: "Actor", width: 0.15},
		{title: "Evidence", width: 0.46, mono: true},
	}, rows)
}

// canonicalJSON prints JSON with object keys sorted and no insignificant
// space; numbers are kept as written.
func canonicalJSON(raw json.RawMessage) string {
	if len(bytes.TrimSpace(raw)) == 0 {
		return "—"
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return string(raw)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return string(raw)
	}
	return strings.TrimSpace(buf.String())
}

func (r *renderer) usage() {
	in := r.in
	s := summarize(in.Usage)
	r.heading("3. LLM use in the " + windowLength(in.Usage) + " before the lockout")
	r.kv("Window", fmtTime(in.Usage.From)+" to "+fmtTime(in.Usage.To))
	r.kv("Events", fmtInt(s.total.Events))
	r.kv("Requests", fmtInt(s.total.Requests))
	r.kv("Tokens", fmtInt(s.total.InputTokens)+" input, "+fmtInt(s.total.OutputTokens)+" output")
	r.kv("Bytes", fmtInt(s.total.BytesSent)+" sent, "+fmtInt(s.total.BytesReceived)+" received")
	for i, src := range in.Usage.Sources {
		label := ""
		if i == 0 {
			label = "Sources"
		}
		r.kv(label, src)
	}
	r.subheading("Attachments")
	r.para(fBody, "Nothing is truncated: every event of the window is attached to this PDF as "+EventListName+
		" (JSON Lines, one event per line, times in UTC). Save it with `pdfdetach -saveall` and compare its SHA-256 with the value below.")
	for _, a := range r.attachedFiles() {
		r.kvFont(a.Name, fmt.Sprintf("SHA-256 %s\n%s bytes", a.SHA256, fmtInt(int64(a.Size))), fMono)
	}

	num := func(title string, w float64) column { return column{title: title, width: w, align: "R"} }
	totalsCols := func(first ...column) []column {
		return append(first, num("Events", 0.1), num("Requests", 0.11), num("Input tok.", 0.13),
			num("Output tok.", 0.13), num("Bytes sent", 0.13), num("Bytes recv.", 0.13))
	}
	r.subheading("By day (UTC)")
	rows := make([][]string, 0, len(s.days)+1)
	for _, d := range s.days {
		rows = append(rows, append([]string{d.day.Format("2006-01-02 Mon")}, d.cells()...))
	}
	rows = append(rows, append([]string{"Total"}, s.total.cells()...))
	r.table(totalsCols(column{title: "Day", width: 0.27}), rows)

	r.subheading("By provider and model")
	rows = rows[:0]
	for _, m := range s.models {
		rows = append(rows, append([]string{orDash(m.provider) + " / " + orDash(m.model) + " (" + m.source + ")"}, m.cells()...))
	}
	if len(rows) == 0 {
		r.para(fBody, "No events.")
	} else {
		r.table(totalsCols(column{title: "Provider / model (source)", width: 0.27}), rows)
	}

	r.subheading(fmt.Sprintf("Largest events by tokens (up to %d)", largestN))
	r.largest(s.byToken, func(e *UsageEvent) []string {
		return []string{fmtInt(e.InputTokens), fmtInt(e.OutputTokens)}
	}, "Input tok.", "Output tok.")
	r.subheading(fmt.Sprintf("Largest uploads by bytes sent (up to %d)", largestN))
	r.largest(s.byBytes, func(e *UsageEvent) []string {
		return []string{fmtInt(e.BytesSent), fmtInt(e.BytesReceived)}
	}, "Bytes sent", "Bytes recv.")
}

func (r *renderer) largest(idx []int, nums func(*UsageEvent) []string, t1, t2 string) {
	if len(idx) == 0 {
		r.para(fBody, "None.")
		return
	}
	rows := make([][]string, len(idx))
	for i, j := range idx {
		e := &r.in.Usage.Events[j]
		where := e.Domain
		if e.RemoteAddr != "" {
			where = strings.TrimSpace(where + " " + hostPort(e.RemoteAddr, e.RemotePort))
		}
		who := e.DeviceID
		if e.ProcessName != "" {
			who = strings.TrimSpace(who + " " + e.ProcessName)
		}
		if e.APIKeyID != "" {
			who = strings.TrimSpace(who + " key " + e.APIKeyID)
		}
		rows[i] = append([]string{strconv.Itoa(j + 1), fmtTime(e.StartedAt), e.Source,
			orDash(e.Provider) + " / " + orDash(e.Model), orDash(where), orDash(who)}, nums(e)...)
	}
	r.table([]column{
		{title: "Line", width: 0.06, align: "R"},
		{title: "Start", width: 0.14},
		{title: "Source", width: 0.08},
		{title: "Provider / model", width: 0.17},
		{title: "Destination", width: 0.18},
		{title: "Device, process, key", width: 0.17},
		{title: t1, width: 0.1, align: "R"},
		{title: t2, width: 0.1, align: "R"},
	}, rows)
	r.para(fSmall, "Line is the event's line number in "+EventListName+".")
}

func hostPort(addr string, port int) string {
	if port == 0 {
		return addr
	}
	if strings.Contains(addr, ":") {
		return "[" + addr + "]:" + strconv.Itoa(port)
	}
	return addr + ":" + strconv.Itoa(port)
}

// attachedFiles lists the attachments with their hashes, in order.
func (r *renderer) attachedFiles() []Attachment {
	out := make([]Attachment, len(r.attachments))
	for i, a := range r.attachments {
		sum := sha256.Sum256(a.Content)
		out[i] = Attachment{Name: a.Filename, SHA256: hex.EncodeToString(sum[:]), Size: len(a.Content)}
	}
	return out
}

func (r *renderer) anomalies() {
	r.heading("4. Anomalies")
	rep := r.in.Anomalies
	if rep == nil {
		r.para(fBody, "Anomaly detection did not run: "+r.in.AnomaliesMissing)
		return
	}
	r.kv("Summary", rep.Summary)
	r.kv("Window", fmtTime(rep.WindowFrom)+" to "+fmtTime(rep.WindowTo))
	r.kv("Baseline", fmt.Sprintf("from %s; %d active days, %s events (window: %s events)",
		fmtTime(rep.BaselineFrom), rep.BaselineDays, fmtInt(int64(rep.BaselineEvents)), fmtInt(int64(rep.WindowEvents))))
	tz := rep.Timezone
	if rep.TimezoneLearned {
		tz += " (learned from activity)"
	}
	r.kv("Timezone", tz)
	if rep.UsedPeerBaseline {
		r.kv("Peer baseline", "used where the person's own history was too short")
	}
	if len(rep.Findings) == 0 {
		r.subheading("Findings")
		r.para(fBody, "No anomaly was found.")
	}
	for i, f := range rep.Findings {
		r.subheading(fmt.Sprintf("Finding %d: %s, %s severity", i+1, f.Type, f.Severity))
		r.kv("Period", fmtTime(f.From)+" to "+fmtTime(f.To))
		r.kv("Explanation", f.Explanation)
		for _, kv := range evidenceFields(f.Evidence) {
			r.kv(kv[0], kv[1])
		}
	}
	if len(rep.Notes) > 0 {
		r.subheading("Notes on the analysis")
		for _, n := range rep.Notes {
			r.para(fBody, "• "+n)
		}
	}
}

// evidenceFields lists a finding's evidence numbers that apply to it.
func evidenceFields(e anomaly.Evidence) [][2]string {
	var out [][2]string
	add := func(label, value string) { out = append(out, [2]string{label, value}) }
	addF := func(label string, v float64) {
		if v != 0 {
			add(label, fmtFloat(v))
		}
	}
	addI := func(label string, v int64) {
		if v != 0 {
			add(label, fmtInt(v))
		}
	}
	addS := func(label, v string) {
		if v != "" {
			add(label, v)
		}
	}
	addS("Compared with", e.Basis)
	if e.Value != 0 {
		add("Observed", strings.TrimSpace(fmtFloat(e.Value)+" "+e.Unit))
	}
	addF("Baseline median", e.Median)
	addF("MAD (log scale)", e.MAD)
	addF("Robust z", e.RobustZ)
	addF("Ratio to median", e.Ratio)
	addF("Baseline maximum", e.BaselineMax)
	addI("Baseline sample", int64(e.BaselineN))
	addI("Events", int64(e.Events))
	addI("Tokens", e.Tokens)
	addI("Bytes", e.Bytes)
	if len(e.Days) > 0 {
		add("Days", strings.Join(e.Days, ", "))
	}
	addS("Model", e.Model)
	addS("Provider", e.Provider)
	addF("Share of window", e.WindowShare)
	addF("Peer share", e.PeerShare)
	addI("Peers compared", int64(e.PeersCompared))
	addI("Peer adopters", int64(e.PeerAdopters))
	if len(e.Hours) > 0 {
		hours := make([]string, len(e.Hours))
		for i, h := range e.Hours {
			hours[i] = fmt.Sprintf("%02d:00", h)
		}
		add("Hours (local)", strings.Join(hours, ", "))
	}
	addF("Baseline share of hours", e.HourShare)
	addS("Usual hours", e.UsualHours)
	addS("Domain", e.Domain)
	addS("Process", e.Process)
	return out
}

func (r *renderer) revocations() {
	r.heading("5. Provider revocations")
	if len(r.in.Revocations) == 0 {
		r.para(fBody, "No LLM provider was connected for this organization, so no provider access was revoked.")
		return
	}
	for _, rv := range r.in.Revocations {
		r.subheading(fmt.Sprintf("%s: %s", rv.Provider, orDash(rv.State)))
		r.kv("Attempts", strconv.Itoa(rv.Attempts))
		found := "no"
		if rv.UserFound {
			found = "yes"
		}
		r.kv("User found", found)
		r.kv("Last updated", fmtExact(rv.UpdatedAt))
		if rv.Error != "" {
			r.kv("Last error", rv.Error)
		}
		if rv.Missing != "" {
			r.kv("No confirmation", rv.Missing)
		}
		if len(rv.Resources) == 0 {
			continue
		}
		rows := make([][]string, len(rv.Resources))
		for i, a := range rv.Resources {
			status := "—"
			if a.Status != 0 {
				status = strconv.Itoa(a.Status)
			}
			outcome := a.Outcome
			if a.Error != "" {
				outcome += ": " + a.Error
			}
			rows[i] = []string{a.Kind, orDash(a.Resource), orDash(a.Scope), outcome, orDash(a.RequestID), status, fmtTime(a.At)}
		}
		r.table([]column{
			{title: "Kind", width: 0.14},
			{title: "Resource", width: 0.17, mono: true},
			{title: "Scope", width: 0.12, mono: true},
			{title: "Outcome", width: 0.16},
			{title: "Request id", width: 0.17, mono: true},
			{title: "HTTP", width: 0.06, align: "R"},
			{title: "Time (UTC)", width: 0.18},
		}, rows)
	}
}

func (r *renderer) devices() {
	r.heading("6. Device locks")
	if len(r.in.Devices) == 0 {
		r.para(fBody, "The person had no enrolled device, so no device was locked.")
		return
	}
	rows := make([][]string, len(r.in.Devices))
	for i, d := range r.in.Devices {
		device := d.DeviceID
		if d.Hostname != "" {
			device += "\n" + d.Hostname
		}
		if d.OS != "" {
			device += " (" + d.OS + ")"
		}
		seq := "—"
		if d.Seq != 0 {
			seq = strconv.FormatUint(d.Seq, 10)
		}
		answer := strings.TrimSpace(strings.Join([]string{d.Reason, d.Detail}, " "))
		if d.Missing != "" {
			answer = strings.TrimSpace(answer + " No acknowledgement: " + d.Missing)
		}
		rows[i] = []string{device, seq, orDash(d.Status), fmtTime(d.IssuedAt), fmtTime(d.AckedAt), orDash(answer)}
	}
	r.table([]column{
		{title: "Device", width: 0.25},
		{title: "Seq", width: 0.06, align: "R"},
		{title: "Status", width: 0.1},
		{title: "Issued", width: 0.18},
		{title: "Acknowledged", width: 0.18},
		{title: "Device's answer or why missing", width: 0.23},
	}, rows)
}

func (r *renderer) custody() {
	c := r.in.Custody
	r.heading("7. Chain of custody")
	r.para(fBody, "Each evidence event is a node: the SHA-256 of its canonical encoding, which covers its kind, time, "+
		"payload hash and parents' hashes, with an RFC 3161 timestamp token over the node hash. "+
		"This snapshot's own node, which covers this PDF's SHA-256, is recorded after it and is not listed here.")
	for _, t := range c.TSAs {
		r.subheading("Timestamping authority: " + t.Name)
		r.kv("URL", t.URL)
		r.kv("Subject", t.Subject)
		r.kv("Issuer", t.Issuer)
		r.kvFont("Serial", t.Serial, fMono)
		r.kvFont("SHA-256 fingerprint", t.Fingerprint, fMono)
	}
	if len(c.Nodes) == 0 {
		r.subheading("Nodes")
		r.para(fBody, "No custody node was recorded before this snapshot.")
		return
	}
	for i, n := range c.Nodes {
		r.subheading(fmt.Sprintf("Node %d: %s", i+1, n.Kind))
		r.kv("Time", fmtExact(n.At))
		r.kvFont("Node hash", n.Hash, fMono)
		r.kvFont("Payload hash", n.PayloadHash, fMono)
		parents := "none (root)"
		if len(n.Parents) > 0 {
			parents = strings.Join(n.Parents, "\n")
		}
		r.kvFont("Parents", parents, fMono)
		if n.TimestampedAt.IsZero() {
			r.kv("RFC 3161 token", "none yet")
		} else {
			r.kv("RFC 3161 time", fmtExact(n.TimestampedAt))
			r.kv("TSA", n.TSA)
			if n.TokenSerial != "" {
				r.kvFont("Token serial", n.TokenSerial, fMono)
			}
		}
	}
}

func (r *renderer) verification() {
	r.heading("8. Verifying this document")
	for _, s := range []string{
		"Signature: this PDF is signed with the Toktra control plane's evidence key, and the signature carries an RFC 3161 timestamp. " +
			"`pdfsig snapshot.pdf` (poppler) or Acrobat shows whether any byte changed after signing; trusting the organization's Toktra root certificate makes the signer trusted too.",
		"Document hash: the PDF's SHA-256 is timestamped separately; `toktractl verify snapshot.pdf` checks it, every custody token and the chain, " +
			"and prints the `openssl ts -verify` commands that check the same independently.",
		"Attachments: `pdfdetach -saveall snapshot.pdf` saves " + EventListName + "; its SHA-256 must equal the one printed in section 3.",
	} {
		r.para(fBody, "• "+s)
		r.pdf.Ln(1)
	}
}
