// Package synth generates seeded synthetic organizations of LLM users, with
// departures that carry known injected anomalies, and scores the anomaly
// detector against them.
//
// An org is a set of users, each with a timezone, a working-hours shift with
// a lunch dip, occasional evenings and weekends, vacations, heavy-tailed
// daily token volumes with day-to-day noise and rare legitimate bursts,
// occasional legitimate large-ish file uploads, stray events at odd hours, a
// personal set of providers and models, and adoption of org-wide model
// launches. Some users joined recently. A share of users depart; each
// departure is either clean or carries exactly one injected anomaly in the
// 14 days before it. The same seed and scenario always give the same org and
// the same events.
package synth

import (
	"math"
	"math/rand/v2"
	"time"
	_ "time/tzdata" // the generator's timezones must exist on any machine

	"github.com/toktra/toktra/controlplane/anomaly"
)

// Scenario sizes and shapes a synthetic org.
type Scenario struct {
	Users int
	// Days is how long the org's history is; Start is its first day (UTC).
	Days  int
	Start time.Time
	// DepartureShare of users depart during the last part of the history;
	// CleanShare of those depart with nothing injected.
	DepartureShare float64
	CleanShare     float64
	// RecentJoinerShare of users joined 2–4 weeks before they are evaluated,
	// so they have little history of their own.
	RecentJoinerShare float64
	// KnownTimezoneShare of users have a timezone in the directory; the
	// detector learns the others'.
	KnownTimezoneShare float64
	// AgentShare of users run the device agent, so their connections (and
	// bytes sent) are seen, not just providers' usage records.
	AgentShare float64
	// Window and Baseline are the detector's periods; departures are placed
	// so that established users have a full baseline.
	Window, Baseline time.Duration
}

// DefaultScenario is the evaluation's reference scenario: 300 users, about
// six months.
func DefaultScenario() Scenario {
	return Scenario{
		Users:              300,
		Days:               182,
		Start:              time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC),
		DepartureShare:     0.6,
		CleanShare:         0.4,
		RecentJoinerShare:  0.08,
		KnownTimezoneShare: 0.7,
		AgentShare:         0.75,
		Window:             anomaly.DefaultWindow,
		Baseline:           anomaly.DefaultBaseline,
	}
}

// Org is a generated organization.
type Org struct {
	Seed     int64
	Scenario Scenario
	Users    []User
	Launches []Launch
}

// Launch is an org-wide release of a new model that users adopt over the
// following days.
type Launch struct {
	Model, Provider string
	At              time.Time
}

// User is one synthetic employee.
type User struct {
	ID            string
	Location      *time.Location
	TimezoneKnown bool
	Agent         bool
	Joined        time.Time
	// Departure is nil for users who stay.
	Departure *Departure

	p profile
}

// Departure is a user's last day and what, if anything, was injected into
// the window before it.
type Departure struct {
	At time.Time
	// Injected is the anomaly type injected, or "" for a clean departure.
	Injected anomaly.Type
	// Detail says what was injected, for reading misses.
	Detail string
}

// provider is one LLM vendor in the catalog.
type provider struct {
	name, domain string
	common       []string // models many users use
	niche        []string // models few users use
}

var majors = []provider{
	{"openai", "api.openai.com", []string{"gpt-4o", "gpt-4.1", "gpt-4o-mini", "o3", "o4-mini"}, []string{"o1-pro", "gpt-4.5-preview", "o3-deep-research", "davinci-002"}},
	{"anthropic", "api.anthropic.com", []string{"claude-sonnet-4", "claude-3-5-haiku", "claude-opus-4"}, []string{"claude-3-opus", "claude-2.1", "claude-instant-1.2"}},
	{"google", "generativelanguage.googleapis.com", []string{"gemini-2.5-pro", "gemini-2.5-flash"}, []string{"gemini-1.5-pro", "gemini-ultra", "gemma-3-27b"}},
}

var majorWeights = []float64{0.55, 0.35, 0.10}

var longTail = []provider{
	{"mistral", "api.mistral.ai", []string{"mistral-large", "codestral"}, nil},
	{"groq", "api.groq.com", []string{"llama-3.3-70b-versatile"}, nil},
	{"together", "api.together.xyz", []string{"Qwen2.5-72B-Instruct", "Llama-3-70b-chat"}, nil},
	{"openrouter", "openrouter.ai", []string{"openrouter/auto"}, nil},
	{"deepseek", "api.deepseek.com", []string{"deepseek-chat", "deepseek-reasoner"}, nil},
	{"cohere", "api.cohere.com", []string{"command-r-plus"}, nil},
	{"perplexity", "api.perplexity.ai", []string{"sonar-pro"}, nil},
}

var launchPlan = []struct {
	model, provider string
	day             int
}{
	{"gpt-5", "openai", 35},
	{"claude-sonnet-4.5", "anthropic", 80},
	{"gemini-3-pro", "google", 125},
	{"gpt-5.1", "openai", 158},
}

var zones = []struct {
	name   string
	weight float64
}{
	{"America/Los_Angeles", 0.20}, {"America/New_York", 0.25}, {"America/Chicago", 0.08},
	{"Europe/London", 0.12}, {"Europe/Berlin", 0.12}, {"Asia/Kolkata", 0.08},
	{"Asia/Singapore", 0.05}, {"Asia/Tokyo", 0.04}, {"Australia/Sydney", 0.03}, {"America/Sao_Paulo", 0.03},
}

var processes = []string{"code", "cursor", "python3", "chrome", "node", "firefox", "jetbrains"}

func pick(r *rand.Rand, weights []float64) int {
	x := r.Float64()
	for i, w := range weights {
		if x < w {
			return i
		}
		x -= w
	}
	return len(weights) - 1
}

func lognormal(r *rand.Rand, median, sigma float64) float64 {
	return median * math.Exp(sigma*r.NormFloat64())
}

func clamp(v, lo, hi float64) float64 { return math.Max(lo, math.Min(hi, v)) }

func (sc Scenario) end() time.Time { return sc.Start.AddDate(0, 0, sc.Days) }
