package anomaly

import (
	"maps"
	"math"
	"slices"
	"time"
)

// PeerDay is one user's activity on one day, as the peer baseline needs it:
// what a store can aggregate per user and day without keeping every event.
type PeerDay struct {
	// Day is any instant of the day; days before the accumulator's window
	// start count as baseline.
	Day time.Time
	// Tokens is the day's input plus output tokens.
	Tokens int64
	// Models and Providers are those the user used that day (duplicates
	// are harmless).
	Models, Providers []string
	// BytesSent samples the bytes sent by the day's events (a few per day
	// is enough for the distribution; zeros are ignored).
	BytesSent []int64
}

// PeerAccumulator builds the org's peer baseline ([PeerDaily]) for one
// period from every user's [PeerDay]s, so the detector can judge a user with
// little history against the people around them.
type PeerAccumulator struct {
	windowFrom time.Time
	users      map[string]*peerUser
}

type peerUser struct {
	logTokens            []float64
	logBytes             []float64
	models, baseModels   map[string]bool
	providers, baseProvs map[string]bool
	activeDays           int
}

// minPeerOwnDays is how many active days a peer needs before their own
// day-to-day spread counts towards the typical spread (DayLogMAD).
const minPeerOwnDays = 10

// NewPeerAccumulator returns an accumulator for a period whose window
// starts at windowFrom; the caller adds only days of the period.
func NewPeerAccumulator(windowFrom time.Time) *PeerAccumulator {
	return &PeerAccumulator{windowFrom: windowFrom, users: map[string]*peerUser{}}
}

// Add records one day of one user. Days of one user must not repeat.
func (a *PeerAccumulator) Add(user string, d PeerDay) {
	u := a.users[user]
	if u == nil {
		u = &peerUser{models: map[string]bool{}, baseModels: map[string]bool{}, providers: map[string]bool{}, baseProvs: map[string]bool{}}
		a.users[user] = u
	}
	baseline := d.Day.Before(a.windowFrom)
	if d.Tokens > 0 {
		u.logTokens = append(u.logTokens, math.Log(float64(d.Tokens)))
	}
	if d.Tokens > 0 || len(d.Providers) > 0 {
		u.activeDays++
	}
	for _, m := range d.Models {
		u.models[m] = true
		if baseline {
			u.baseModels[m] = true
		}
	}
	for _, p := range d.Providers {
		u.providers[p] = true
		if baseline {
			u.baseProvs[p] = true
		}
	}
	for _, b := range d.BytesSent {
		if b > 0 {
			u.logBytes = append(u.logBytes, math.Log(float64(b)))
		}
	}
}

// Build summarizes every user but exclude (the user under examination).
// It can be called again with another exclude; the result depends only on
// what was added, not on the order.
func (a *PeerAccumulator) Build(exclude string) *PeerDaily {
	pd := &PeerDaily{
		ModelUsers: map[string]int{}, ProviderUsers: map[string]int{},
		ModelAdopters: map[string]int{}, ProviderAdopters: map[string]int{},
	}
	var dayTokens, logBytes, spreads []float64
	for _, name := range slices.Sorted(maps.Keys(a.users)) {
		u := a.users[name]
		if name == exclude || u.activeDays == 0 {
			continue
		}
		pd.Peers++
		dayTokens = append(dayTokens, u.logTokens...)
		logBytes = append(logBytes, u.logBytes...)
		if len(u.logTokens) >= minPeerOwnDays {
			spreads = append(spreads, madScale*Summarize(u.logTokens).MAD)
		}
		for m := range u.models {
			pd.ModelUsers[m]++
			if !u.baseModels[m] {
				pd.ModelAdopters[m]++
			}
		}
		for p := range u.providers {
			pd.ProviderUsers[p]++
			if !u.baseProvs[p] {
				pd.ProviderAdopters[p]++
			}
		}
	}
	pd.LogDayTokens = Summarize(dayTokens)
	pd.LogBytesSent = Summarize(logBytes)
	pd.DayLogMAD = Summarize(spreads).Median
	return pd
}
