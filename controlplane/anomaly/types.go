package anomaly

import (
	"time"
)

// Event is one observation of a user's LLM use: a provider usage record
// (tokens, model) or a device connection seen by the agent (domain, bytes,
// process). Fields a source cannot know are left zero.
type Event struct {
	At time.Time `json:"at"`
	// Source is "device" (agent telemetry) or "provider" (usage API).
	Source string `json:"source"`
	// Provider is the LLM vendor ("openai", "anthropic", ...). Device events
	// should carry the provider their domain maps to; when it is empty the
	// domain stands in for it.
	Provider      string `json:"provider,omitempty"`
	Model         string `json:"model,omitempty"`
	Domain        string `json:"domain,omitempty"`
	InputTokens   int64  `json:"input_tokens,omitempty"`
	OutputTokens  int64  `json:"output_tokens,omitempty"`
	BytesSent     int64  `json:"bytes_sent,omitempty"`
	BytesReceived int64  `json:"bytes_received,omitempty"`
	Process       string `json:"process,omitempty"`
}

// Source values for [Event.Source].
const (
	SourceDevice   = "device"
	SourceProvider = "provider"
)

// History is everything the detector knows about one user: their events from
// (end − window − baseline) to end, the org's peer aggregates for the
// cold-start case, and their timezone when the directory knows it.
type History struct {
	User   string
	Events []Event
	// Location is the user's timezone; nil means learn it from activity.
	Location *time.Location
	// Peers describes the rest of the org over the same period; nil when
	// unavailable, in which case a user with little history gets fewer
	// checks (the report says which).
	Peers *PeerDaily
}

// PeerDaily summarizes the org's other users over the baseline and window
// period, so a user with little history can be compared with their peers.
// [PeerAccumulator] builds one from peers' events.
type PeerDaily struct {
	// Peers is the number of other users with any activity in the period.
	Peers int `json:"peers"`
	// LogDayTokens is the distribution of ln(daily tokens) over peers'
	// active days (one value per peer per day with tokens).
	LogDayTokens Distribution `json:"log_day_tokens"`
	// DayLogMAD is the median over peers of each peer's scaled MAD of
	// ln(daily tokens): how much a typical user's volume varies from day to
	// day, as a log-scale spread.
	DayLogMAD float64 `json:"day_log_mad"`
	// LogBytesSent is the distribution of ln(bytes sent) over peers' events
	// that sent bytes.
	LogBytesSent Distribution `json:"log_bytes_sent"`
	// ModelUsers and ProviderUsers count the peers that used each model or
	// provider in the period.
	ModelUsers    map[string]int `json:"model_users,omitempty"`
	ProviderUsers map[string]int `json:"provider_users,omitempty"`
	// ModelAdopters and ProviderAdopters count the peers who used each model
	// or provider in the window but not in the baseline: many of them at once
	// is an org-wide rollout, not one user's anomaly.
	ModelAdopters    map[string]int `json:"model_adopters,omitempty"`
	ProviderAdopters map[string]int `json:"provider_adopters,omitempty"`
}

// Distribution is a robust summary of a sample: its size, median and
// unscaled median absolute deviation.
type Distribution struct {
	N      int     `json:"n"`
	Median float64 `json:"median"`
	MAD    float64 `json:"mad"`
}

// Options tune a detection run. The zero value means the defaults.
type Options struct {
	// Window is the period examined, in whole local calendar days ending on
	// the day of end (default 14 days).
	Window time.Duration
	// Baseline is the period before the window the user is compared with
	// (default 90 days).
	Baseline time.Duration
	// MinBaselineDays is how many active baseline days the user needs before
	// their own daily-volume baseline is trusted; below it the peer baseline
	// is used (default 10).
	MinBaselineDays int
}

// Defaults for [Options].
const (
	DefaultWindow          = 14 * 24 * time.Hour
	DefaultBaseline        = 90 * 24 * time.Hour
	DefaultMinBaselineDays = 10
)

// Type names a kind of finding.
type Type string

// Finding types.
const (
	TokenSpike  Type = "token_spike"
	NewModel    Type = "new_model"
	NewProvider Type = "new_provider"
	OffHours    Type = "off_hours"
	LargeUpload Type = "large_upload"
)

// Types lists every finding type in a fixed order.
var Types = []Type{TokenSpike, NewModel, NewProvider, OffHours, LargeUpload}

// Severity grades how extreme a finding is; see the package documentation
// for the rule per type.
type Severity string

// Severities, lowest first.
const (
	Low    Severity = "low"
	Medium Severity = "medium"
	High   Severity = "high"
)

func (s Severity) rank() int {
	switch s {
	case High:
		return 3
	case Medium:
		return 2
	case Low:
		return 1
	}
	return 0
}

// Report is the detector's verdict on one user's window.
type Report struct {
	User string `json:"user,omitempty"`
	// WindowFrom is local midnight of the window's first day; WindowTo is end.
	WindowFrom   time.Time `json:"window_from"`
	WindowTo     time.Time `json:"window_to"`
	BaselineFrom time.Time `json:"baseline_from"`
	// BaselineDays counts the baseline days with any token use.
	BaselineDays int `json:"baseline_days"`
	// WindowEvents and BaselineEvents count the events considered.
	WindowEvents   int `json:"window_events"`
	BaselineEvents int `json:"baseline_events"`
	// UsedPeerBaseline is true when some check compared the user with their
	// peers because their own history was too short.
	UsedPeerBaseline bool `json:"used_peer_baseline"`
	// Timezone is the zone used for days and hours, and whether it was
	// learned from activity rather than given.
	Timezone        string `json:"timezone"`
	TimezoneLearned bool   `json:"timezone_learned"`
	// Findings are ordered by severity (highest first), then start time, then
	// type.
	Findings []Finding `json:"findings"`
	// Notes say what was checked differently or not at all, and what was
	// new but not flagged, so an analyst knows the report's limits.
	Notes   []string `json:"notes,omitempty"`
	Summary string   `json:"summary"`
}

// Finding is one unusual thing in the window, with the numbers behind it.
type Finding struct {
	Type        Type      `json:"type"`
	Severity    Severity  `json:"severity"`
	From        time.Time `json:"from"`
	To          time.Time `json:"to"`
	Evidence    Evidence  `json:"evidence"`
	Explanation string    `json:"explanation"`
}

// Evidence holds the numbers a finding rests on; fields that do not apply to
// its type are zero and omitted from JSON.
type Evidence struct {
	// Basis names the baseline compared with: "user" (their own history),
	// "peers" (the org's), "user+peers" (the user's level with the peers'
	// variability), "generic" (a fixed night, for off-hours without history)
	// or "absolute" (a fixed floor only).
	Basis string `json:"basis"`
	// Value is the observed number the finding is about (tokens on the peak
	// day, bytes of the largest upload, off-hours events, ...), in Unit.
	Value float64 `json:"value,omitempty"`
	Unit  string  `json:"unit,omitempty"`
	// Median is the baseline median in Unit. MAD and RobustZ are on the
	// natural-log scale for token spikes and uploads (daily tokens and bytes
	// are heavy-tailed): MAD is the scaled (×1.4826), floored MAD of ln(value)
	// and RobustZ is (ln Value − ln Median)/MAD.
	Median  float64 `json:"median,omitempty"`
	MAD     float64 `json:"mad,omitempty"`
	RobustZ float64 `json:"robust_z,omitempty"`
	// Ratio is Value divided by the baseline median.
	Ratio float64 `json:"ratio,omitempty"`
	// BaselineMax is the largest comparable value in the user's baseline.
	BaselineMax float64 `json:"baseline_max,omitempty"`
	// BaselineN is the size of the baseline sample (days or events).
	BaselineN int `json:"baseline_n,omitempty"`

	Events int   `json:"events,omitempty"`
	Tokens int64 `json:"tokens,omitempty"`
	Bytes  int64 `json:"bytes,omitempty"`
	// Days lists the local dates (YYYY-MM-DD) involved.
	Days []string `json:"days,omitempty"`

	Model    string `json:"model,omitempty"`
	Provider string `json:"provider,omitempty"`
	// WindowShare is the fraction of the window's tokens or events that the
	// new model or provider accounts for.
	WindowShare float64 `json:"window_share,omitempty"`
	// PeerShare is the fraction of peers (for models: of peers using the
	// same provider) who used it in the period; PeersCompared is the
	// denominator.
	PeerShare     float64 `json:"peer_share,omitempty"`
	PeersCompared int     `json:"peers_compared,omitempty"`
	// PeerAdopters is how many peers also started using it in the window.
	PeerAdopters int `json:"peer_adopters,omitempty"`

	// Hours are the local hours (0–23) of the off-hours activity;
	// HourShare is the share of the user's baseline activity in them.
	Hours      []int   `json:"hours,omitempty"`
	HourShare  float64 `json:"hour_share,omitempty"`
	UsualHours string  `json:"usual_hours,omitempty"`

	Domain  string `json:"domain,omitempty"`
	Process string `json:"process,omitempty"`
}
