package anomaly

import (
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

var end = time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)

// steady returns a user who, on every weekday of [from, to), makes four
// requests between 10:00 and 16:00 UTC to gpt-4o with tokens tokens a day
// (varied by ±vary), sending 20 KiB each.
func steady(from, to time.Time, tokens int64, vary float64, seed uint64) []Event {
	r := rand.New(rand.NewPCG(seed, 1))
	var evs []Event
	for day := from; day.Before(to); day = day.Add(24 * time.Hour) {
		if wd := day.Weekday(); wd == time.Saturday || wd == time.Sunday {
			continue
		}
		dayTok := float64(tokens) * (1 + vary*(2*r.Float64()-1))
		for k := range 4 {
			evs = append(evs, Event{
				At:     day.Add(time.Duration(10+k) * time.Hour).Add(time.Duration(r.IntN(3600)) * time.Second),
				Source: SourceProvider, Provider: "openai", Model: "gpt-4o",
				InputTokens: int64(dayTok / 8), OutputTokens: int64(dayTok / 8),
				BytesSent: 20 << 10,
			})
		}
	}
	return evs
}

func types(r Report) []Type {
	var ts []Type
	for _, f := range r.Findings {
		if !slices.Contains(ts, f.Type) {
			ts = append(ts, f.Type)
		}
	}
	slices.Sort(ts)
	return ts
}

func TestDetectCleanUserHasNoFindings(t *testing.T) {
	t.Parallel()
	h := History{User: "u", Location: time.UTC, Events: steady(end.AddDate(0, 0, -104), end, 40_000, 0.3, 1)}
	r := Detect(h, end, Options{})
	if len(r.Findings) != 0 {
		t.Errorf("Detect(steady user) findings = %+v; want none", r.Findings)
	}
	if r.BaselineDays < 50 || r.WindowEvents == 0 {
		t.Errorf("Detect(steady user) baseline days %d, window events %d; want ~64 and > 0", r.BaselineDays, r.WindowEvents)
	}
}

func TestDetectFindsEachType(t *testing.T) {
	t.Parallel()
	spikeDay := end.AddDate(0, 0, -3).Add(11 * time.Hour)
	cases := []struct {
		name   string
		inject []Event
		want   Type
	}{
		{"token spike", []Event{{At: spikeDay, Source: SourceProvider, Provider: "openai", Model: "gpt-4o", InputTokens: 900_000, OutputTokens: 100_000}}, TokenSpike},
		{"new model", repeat(5, Event{At: spikeDay, Source: SourceProvider, Provider: "openai", Model: "o3-pro", InputTokens: 2000}), NewModel},
		{"new provider", repeat(5, Event{At: spikeDay, Source: SourceDevice, Provider: "deepseek", Domain: "api.deepseek.com", BytesSent: 4096}), NewProvider},
		{"off hours", offHours(end.AddDate(0, 0, -10), 5), OffHours},
		{"large upload", []Event{{At: spikeDay, Source: SourceDevice, Provider: "openai", Domain: "api.openai.com", BytesSent: 300 << 20, Process: "curl"}}, LargeUpload},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			evs := append(steady(end.AddDate(0, 0, -104), end, 40_000, 0.3, 2), tc.inject...)
			r := Detect(History{User: "u", Location: time.UTC, Events: evs}, end, Options{})
			if got := types(r); !reflect.DeepEqual(got, []Type{tc.want}) {
				t.Fatalf("Detect(%s) types = %v; want [%s]\n%+v", tc.name, got, tc.want, r.Findings)
			}
			f := r.Findings[0]
			if f.Explanation == "" || f.Evidence.Basis == "" || f.From.IsZero() || f.To.Before(f.From) {
				t.Errorf("finding %+v lacks its explanation, basis or time range", f)
			}
			if f.From.Before(r.WindowFrom) || !f.To.Before(end) {
				t.Errorf("finding range %v–%v outside the window %v–%v", f.From, f.To, r.WindowFrom, end)
			}
		})
	}
}

func repeat(n int, e Event) []Event {
	out := make([]Event, n)
	for i := range out {
		out[i] = e
		out[i].At = e.At.Add(time.Duration(i) * time.Minute)
	}
	return out
}

// offHours returns sessions at 03:00 UTC on n consecutive nights from day.
func offHours(day time.Time, n int) []Event {
	var evs []Event
	for i := range n {
		at := day.AddDate(0, 0, i).Add(3 * time.Hour)
		evs = append(evs, repeat(15, Event{At: at, Source: SourceProvider, Provider: "openai", Model: "gpt-4o", InputTokens: 3000, OutputTokens: 500})...)
	}
	return evs
}

// A user whose every day is identical has a MAD of zero: the floor keeps a
// small wobble from looking infinite, and a real spike still shows.
func TestDetectZeroMAD(t *testing.T) {
	t.Parallel()
	base := steady(end.AddDate(0, 0, -104), end, 40_000, 0, 3)
	if r := Detect(History{User: "u", Location: time.UTC, Events: append(slices.Clone(base),
		Event{At: end.AddDate(0, 0, -2).Add(12 * time.Hour), Source: SourceProvider, Provider: "openai", Model: "gpt-4o", InputTokens: 20_000})}, end, Options{}); len(r.Findings) != 0 {
		t.Errorf("Detect(1.5× day, zero MAD) = %+v; want no finding", r.Findings)
	}
	r := Detect(History{User: "u", Location: time.UTC, Events: append(slices.Clone(base),
		Event{At: end.AddDate(0, 0, -2).Add(12 * time.Hour), Source: SourceProvider, Provider: "openai", Model: "gpt-4o", InputTokens: 400_000})}, end, Options{})
	if got := types(r); !reflect.DeepEqual(got, []Type{TokenSpike}) {
		t.Fatalf("Detect(11× day, zero MAD) types = %v; want [token_spike]", got)
	}
	if ev := r.Findings[0].Evidence; ev.MAD <= 0 || ev.Ratio < 10 {
		t.Errorf("evidence %+v; want the floored MAD and the ratio", ev)
	}
}

// With a few days of history and no peers, the checks that need a baseline
// say so instead of guessing; with peers they use them.
func TestDetectShortHistory(t *testing.T) {
	t.Parallel()
	evs := steady(end.AddDate(0, 0, -16), end, 40_000, 0.3, 4) // 2 baseline days
	evs = append(evs, Event{At: end.AddDate(0, 0, -1).Add(12 * time.Hour), Source: SourceProvider, Provider: "openai", Model: "gpt-4o", InputTokens: 2_000_000})
	r := Detect(History{User: "u", Location: time.UTC, Events: evs}, end, Options{})
	if len(r.Findings) != 0 || r.UsedPeerBaseline {
		t.Errorf("Detect(short history, no peers) = %+v; want no findings", r.Findings)
	}
	if !strings.Contains(strings.Join(r.Notes, " "), "Token spikes not checked") {
		t.Errorf("notes %q; want one saying spikes were not checked", r.Notes)
	}

	acc := NewPeerAccumulator(end.AddDate(0, 0, -14))
	for p := range 20 {
		for d := range 100 {
			day := end.AddDate(0, 0, -104+d)
			acc.Add(string(rune('a'+p)), PeerDay{Day: day, Tokens: int64(30_000 + 1000*(d%7) + 500*p), Models: []string{"gpt-4o"}, Providers: []string{"openai"}, BytesSent: []int64{20 << 10}})
		}
	}
	r = Detect(History{User: "u", Location: time.UTC, Events: evs, Peers: acc.Build("u")}, end, Options{})
	if got := types(r); !reflect.DeepEqual(got, []Type{TokenSpike}) || !r.UsedPeerBaseline {
		t.Fatalf("Detect(short history, peers) types = %v (peers used %v); want [token_spike] from peers\n%+v", got, r.UsedPeerBaseline, r.Findings)
	}
	if b := r.Findings[0].Evidence.Basis; b != "peers" {
		t.Errorf("basis = %q; want peers", b)
	}
}

// The report depends on the data only: not on the events' order.
func TestDetectDeterministic(t *testing.T) {
	t.Parallel()
	evs := append(steady(end.AddDate(0, 0, -104), end, 40_000, 0.5, 5), offHours(end.AddDate(0, 0, -6), 3)...)
	evs = append(evs, repeat(4, Event{At: end.AddDate(0, 0, -2), Source: SourceDevice, Domain: "api.mistral.ai", BytesSent: 64 << 20})...)
	want, err := json.Marshal(Detect(History{User: "u", Events: evs}, end, Options{}))
	if err != nil {
		t.Fatal(err)
	}
	for seed := range uint64(5) {
		shuffled := slices.Clone(evs)
		rand.New(rand.NewPCG(seed, 9)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		got, err := json.Marshal(Detect(History{User: "u", Events: shuffled}, end, Options{}))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Fatalf("Detect(shuffle %d) differs:\n got %s\nwant %s", seed, got, want)
		}
	}
}

func TestSummarize(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   []float64
		want Distribution
	}{
		{nil, Distribution{}},
		{[]float64{5}, Distribution{N: 1, Median: 5}},
		{[]float64{1, 2, 3, 4}, Distribution{N: 4, Median: 2.5, MAD: 1}},
		{[]float64{7, 7, 7, 100}, Distribution{N: 4, Median: 7, MAD: 0}},
		{[]float64{1, 1, 2, 2, 4, 6, 9}, Distribution{N: 7, Median: 2, MAD: 1}},
	} {
		if got := Summarize(tc.in); got != tc.want {
			t.Errorf("Summarize(%v) = %+v; want %+v", tc.in, got, tc.want)
		}
	}
}

// BenchmarkDetect100k is the detection target: one user with 100k
// events in the 14-day window (and a 90-day baseline of the same rhythm),
// target ≤ 50 ms.
func BenchmarkDetect100k(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	winFrom := end.AddDate(0, 0, -14)
	var evs []Event
	for i := range 100_000 {
		evs = append(evs, Event{
			At:     winFrom.Add(time.Duration(r.Int64N(int64(14 * 24 * time.Hour)))),
			Source: []string{SourceDevice, SourceProvider}[i%2], Provider: "openai", Model: "gpt-4o",
			Domain: "api.openai.com", InputTokens: 500, OutputTokens: 100, BytesSent: int64(1000 + r.IntN(50_000)),
		})
	}
	evs = append(evs, steady(end.AddDate(0, 0, -104), winFrom, 40_000, 0.3, 7)...)
	h := History{User: "u", Events: evs, Location: time.UTC}
	b.ResetTimer()
	for b.Loop() {
		Detect(h, end, Options{})
	}
	b.ReportMetric(b.Elapsed().Seconds()*1000/float64(b.N), "ms/detect")
}
