package snapshot

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// EventListName is the file name of the attachment that holds the complete
// event list.
const EventListName = "usage-events.jsonl"

// eventJSON is one line of the event list attachment. Times are RFC 3339
// in UTC with all their precision; an unknown end is omitted.
type eventJSON struct {
	StartedAt      string `json:"started_at"`
	EndedAt        string `json:"ended_at,omitempty"`
	Source         string `json:"source"`
	DeviceID       string `json:"device_id,omitempty"`
	Provider       string `json:"provider,omitempty"`
	Model          string `json:"model,omitempty"`
	Domain         string `json:"domain,omitempty"`
	RemoteAddr     string `json:"remote_addr,omitempty"`
	RemotePort     int    `json:"remote_port,omitempty"`
	Protocol       string `json:"protocol,omitempty"`
	BytesSent      int64  `json:"bytes_sent,omitempty"`
	BytesReceived  int64  `json:"bytes_received,omitempty"`
	InputTokens    int64  `json:"input_tokens,omitempty"`
	OutputTokens   int64  `json:"output_tokens,omitempty"`
	Requests       int64  `json:"requests,omitempty"`
	ProcessName    string `json:"process_name,omitempty"`
	ProcessPath    string `json:"process_path,omitempty"`
	APIKeyID       string `json:"api_key_id,omitempty"`
	ProviderUserID string `json:"provider_user_id,omitempty"`
}

// EncodeEventList writes events as JSON Lines, one object per event in the
// given order: the attachment's exact bytes. Text that is not valid UTF-8
// is written with U+FFFD in its place (JSON cannot carry it).
func EncodeEventList(events []UsageEvent) []byte {
	var buf bytes.Buffer
	buf.Grow(len(events) * 256)
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	for _, e := range events {
		line := eventJSON{
			StartedAt: e.StartedAt.UTC().Format(time.RFC3339Nano),
			Source:    e.Source, DeviceID: e.DeviceID, Provider: e.Provider, Model: e.Model,
			Domain: e.Domain, RemoteAddr: e.RemoteAddr, RemotePort: e.RemotePort, Protocol: e.Protocol,
			BytesSent: e.BytesSent, BytesReceived: e.BytesReceived,
			InputTokens: e.InputTokens, OutputTokens: e.OutputTokens, Requests: e.Requests,
			ProcessName: e.ProcessName, ProcessPath: e.ProcessPath,
			APIKeyID: e.APIKeyID, ProviderUserID: e.ProviderUserID,
		}
		if !e.EndedAt.IsZero() {
			line.EndedAt = e.EndedAt.UTC().Format(time.RFC3339Nano)
		}
		// Encoding a struct of strings and integers cannot fail.
		_ = enc.Encode(line)
	}
	return buf.Bytes()
}

// maxEventLine bounds one line of an event list: an event is a few hundred
// bytes; a longer line is not one we wrote.
const maxEventLine = 1 << 20

// ParseEventList reads an event list attachment back (what a verifier does
// with the file pdfdetach saves). It refuses anything EncodeEventList does
// not write: unknown fields, a missing start time, bad times, blank lines.
func ParseEventList(r io.Reader) ([]UsageEvent, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxEventLine)
	var events []UsageEvent
	for n := 1; sc.Scan(); n++ {
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		var line eventJSON
		if err := dec.Decode(&line); err != nil {
			return nil, fmt.Errorf("event list line %d: %w", n, err)
		}
		if dec.More() {
			return nil, fmt.Errorf("event list line %d: more than one object", n)
		}
		e := UsageEvent{
			Source: line.Source, DeviceID: line.DeviceID, Provider: line.Provider, Model: line.Model,
			Domain: line.Domain, RemoteAddr: line.RemoteAddr, RemotePort: line.RemotePort, Protocol: line.Protocol,
			BytesSent: line.BytesSent, BytesReceived: line.BytesReceived,
			InputTokens: line.InputTokens, OutputTokens: line.OutputTokens, Requests: line.Requests,
			ProcessName: line.ProcessName, ProcessPath: line.ProcessPath,
			APIKeyID: line.APIKeyID, ProviderUserID: line.ProviderUserID,
		}
		var err error
		if line.StartedAt == "" {
			return nil, fmt.Errorf("event list line %d: no started_at", n)
		}
		if e.StartedAt, err = time.Parse(time.RFC3339Nano, line.StartedAt); err != nil {
			return nil, fmt.Errorf("event list line %d: started_at: %w", n, err)
		}
		e.StartedAt = e.StartedAt.UTC()
		if line.EndedAt != "" {
			if e.EndedAt, err = time.Parse(time.RFC3339Nano, line.EndedAt); err != nil {
				return nil, fmt.Errorf("event list line %d: ended_at: %w", n, err)
			}
			e.EndedAt = e.EndedAt.UTC()
		}
		events = append(events, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading event list: %w", err)
	}
	return events, nil
}

// usageTotals adds up events.
type usageTotals struct {
	Events, Requests, InputTokens, OutputTokens, BytesSent, BytesReceived int64
}

func (t *usageTotals) add(e *UsageEvent) {
	t.Events++
	t.Requests += e.Requests
	t.InputTokens += e.InputTokens
	t.OutputTokens += e.OutputTokens
	t.BytesSent += e.BytesSent
	t.BytesReceived += e.BytesReceived
}

func (t usageTotals) cells() []string {
	return []string{fmtInt(t.Events), fmtInt(t.Requests), fmtInt(t.InputTokens), fmtInt(t.OutputTokens),
		fmtInt(t.BytesSent), fmtInt(t.BytesReceived)}
}

type dayTotals struct {
	day time.Time
	usageTotals
}

type modelKey struct{ source, provider, model string }

type modelTotals struct {
	modelKey
	usageTotals
}

// usageSummary is what the PDF prints of the event list.
type usageSummary struct {
	total   usageTotals
	days    []dayTotals
	models  []modelTotals
	byToken []int // indexes of the largest events by tokens
	byBytes []int // and by bytes sent
}

// largestN is how many of the largest events are listed.
const largestN = 15

// summarize totals events by UTC day (every day of the window, and any
// day outside it that has events) and by source, provider and model, and
// picks the largest events. It depends only on its input's order for ties.
func summarize(u Usage) usageSummary {
	var s usageSummary
	days := map[time.Time]*usageTotals{}
	models := map[modelKey]*usageTotals{}
	first := truncDay(u.From)
	for d := first; d.Before(u.To); d = d.AddDate(0, 0, 1) {
		days[d] = &usageTotals{}
	}
	for i := range u.Events {
		e := &u.Events[i]
		s.total.add(e)
		d := truncDay(e.StartedAt)
		if days[d] == nil {
			days[d] = &usageTotals{}
		}
		days[d].add(e)
		k := modelKey{e.Source, e.Provider, e.Model}
		if models[k] == nil {
			models[k] = &usageTotals{}
		}
		models[k].add(e)
	}
	for d, t := range days {
		s.days = append(s.days, dayTotals{d, *t})
	}
	slices.SortFunc(s.days, func(a, b dayTotals) int { return a.day.Compare(b.day) })
	for k, t := range models {
		s.models = append(s.models, modelTotals{k, *t})
	}
	slices.SortFunc(s.models, func(a, b modelTotals) int {
		if c := strings.Compare(a.provider, b.provider); c != 0 {
			return c
		}
		if c := strings.Compare(a.model, b.model); c != 0 {
			return c
		}
		return strings.Compare(a.source, b.source)
	})
	s.byToken = largest(u.Events, func(e *UsageEvent) int64 { return e.InputTokens + e.OutputTokens })
	s.byBytes = largest(u.Events, func(e *UsageEvent) int64 { return e.BytesSent })
	return s
}

// largest returns the indexes of the largestN events with the highest
// positive key, highest first, earlier index first among equals.
func largest(events []UsageEvent, key func(*UsageEvent) int64) []int {
	var top []int
	for i := range events {
		k := key(&events[i])
		if k <= 0 {
			continue
		}
		if len(top) == largestN && k <= key(&events[top[len(top)-1]]) {
			continue
		}
		pos, _ := slices.BinarySearchFunc(top, k, func(j int, k int64) int {
			// top is sorted by key descending; equal keys keep index order,
			// so a new (later) index goes after them.
			if key(&events[j]) >= k {
				return -1
			}
			return 1
		})
		top = slices.Insert(top, pos, i)
		if len(top) > largestN {
			top = top[:largestN]
		}
	}
	return top
}

func truncDay(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}
