package synth

import (
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/toktra/toktra/controlplane/anomaly"
)

// Events returns all of user i's events from when they joined until they
// depart or the history ends. The result is the same on every call.
func (o *Org) Events(i int) []anomaly.Event {
	u := &o.Users[i]
	p := &u.p
	sc := o.Scenario
	end := sc.end()
	if u.Departure != nil {
		end = u.Departure.At
	}
	var out []anomaly.Event
	injected := map[int]bool{}
	for _, d := range p.inject.days {
		injected[d] = true
	}
	for day := 0; day < sc.Days; day++ {
		// Draw the day's randomness whether or not the user is around, so a
		// user's days do not depend on when they joined.
		dr := rand.New(rand.NewPCG(p.seed^uint64(day)*0x9e3779b97f4a7c15, uint64(o.Seed)))
		utcDay := sc.Start.AddDate(0, 0, day)
		y, m, d := utcDay.Date()
		midnight := time.Date(y, m, d, 0, 0, 0, 0, u.Location)
		if !midnight.Add(24 * time.Hour).After(u.Joined) {
			continue
		}
		if !midnight.Before(end) {
			break
		}
		emit := func(e anomaly.Event) {
			if e.At.Before(u.Joined) || !e.At.Before(end) {
				return
			}
			out = append(out, e)
		}
		o.day(u, day, midnight, dr, injected[day], emit)
	}
	return out
}

func (o *Org) day(u *User, day int, midnight time.Time, r *rand.Rand, injectedDay bool, emit func(anomaly.Event)) {
	p := &u.p
	wd := midnight.Weekday()
	weekend := wd == time.Saturday || wd == time.Sunday
	onVacation := slices.ContainsFunc(p.vacations, func(v [2]int) bool { return day >= v[0] && day < v[1] })
	working := !weekend && !onVacation && r.Float64() >= p.offRate
	weekendWork := weekend && !onVacation && r.Float64() < p.weekendRate
	inj := p.inject
	if injectedDay && (inj.typ == anomaly.TokenSpike) {
		working, weekendWork = !weekend, weekend
	}
	mix := o.mixOn(p, day)
	request := func(at time.Time, tokens float64, m useModel) {
		in := int64(tokens * (0.75 + 0.15*r.Float64()))
		out := int64(tokens) - in
		emit(anomaly.Event{At: at, Source: anomaly.SourceProvider, Provider: m.provider, Model: m.model, InputTokens: in, OutputTokens: out})
		if u.Agent {
			sent := int64(float64(in)*4*math.Exp(0.25*r.NormFloat64())) + 800
			emit(anomaly.Event{
				At: at.Add(-time.Duration(200+r.IntN(800)) * time.Millisecond), Source: anomaly.SourceDevice,
				Provider: m.provider, Domain: m.domain, BytesSent: sent, BytesReceived: out*4 + 500,
				Process: p.processes[r.IntN(len(p.processes))],
			})
		}
	}
	at := func(localHour float64) time.Time {
		return midnight.Add(time.Duration(localHour * float64(time.Hour)))
	}
	workHour := func(shift float64) float64 {
		for {
			h := p.shiftStart + shift + r.Float64()*p.shiftLen
			lunch := p.shiftStart + shift + 3.5
			if h >= lunch && h < lunch+1 && r.Float64() < 0.6 {
				continue // lunch dip
			}
			return p24(h)
		}
	}
	if working || weekendWork {
		volume := lognormal(r, p.dayMedian, p.daySigma)
		if weekendWork {
			volume *= 0.2 + 0.4*r.Float64()
		}
		if r.Float64() < p.burstRate {
			volume *= 1.5 + 1.5*r.Float64()
		}
		shift := 0.0
		if weekendWork {
			shift = 4*r.Float64() - 2
		}
		if injectedDay {
			switch inj.typ {
			case anomaly.TokenSpike:
				volume = p.dayMedian * inj.mult * math.Exp(0.2*r.NormFloat64())
				shift = 0
			case anomaly.NewModel, anomaly.NewProvider, anomaly.OffHours:
				// The injected activity replaces part of the day's usual
				// work rather than adding volume (that would be a spike).
				volume *= 0.4
			}
		}
		n := max(1, int(volume/p.reqTokens+0.5))
		for range n {
			h := workHour(shift)
			if r.Float64() < p.strayRate {
				h = 24 * r.Float64()
			}
			request(at(h), lognormal(r, volume/float64(n), 0.7), pickModel(r, mix))
		}
		if working && r.Float64() < p.eveningRate {
			for range 3 + r.IntN(13) {
				request(at(20+3*r.Float64()), lognormal(r, p.reqTokens, 0.7), pickModel(r, mix))
			}
		}
		if u.Agent && working && r.Float64() < p.uploadRate {
			m := pickModel(r, mix)
			emit(anomaly.Event{
				At: at(workHour(0)), Source: anomaly.SourceDevice, Provider: m.provider, Domain: m.domain,
				BytesSent: int64(lognormal(r, 800e3, 0.8)), BytesReceived: 2000, Process: p.processes[0],
			})
		}
		if day == p.tryDay {
			for range 1 + r.IntN(2) {
				request(at(workHour(0)), lognormal(r, p.reqTokens, 0.5), p.tryModel)
			}
		}
	}
	if !injectedDay {
		return
	}
	switch inj.typ {
	case anomaly.NewModel, anomaly.NewProvider:
		n := 5 + r.IntN(36)
		for range n {
			request(at(workHour(0)), lognormal(r, 0.6*p.dayMedian/float64(n), 0.7), inj.model)
		}
	case anomaly.OffHours:
		span := 1 + 1.5*r.Float64()
		n := 15 + r.IntN(46)
		for range n {
			request(at(p24(inj.hour+span*r.Float64())), lognormal(r, 0.6*p.dayMedian/float64(n), 0.7), pickModel(r, mix))
		}
	case anomaly.LargeUpload:
		m := pickModel(r, mix)
		for k, s := range inj.sizes {
			if inj.days[k%len(inj.days)] != day {
				continue
			}
			emit(anomaly.Event{
				At: at(workHour(0)), Source: anomaly.SourceDevice, Provider: m.provider, Domain: m.domain,
				BytesSent: int64(s), BytesReceived: 4000, Process: []string{"python3", "curl", "chrome"}[r.IntN(3)],
			})
		}
	}
}

// mixOn is the user's model mix on a day: their models already adopted,
// plus a legitimate switch once it has happened.
func (o *Org) mixOn(p *profile, day int) []useModel {
	var mix []useModel
	for _, m := range p.models {
		if day >= m.from {
			mix = append(mix, m)
		}
	}
	if p.switchDay >= 0 && day >= p.switchDay {
		mix = append(mix, p.switchModel)
	}
	return mix
}

func pickModel(r *rand.Rand, mix []useModel) useModel {
	tot := 0.0
	for _, m := range mix {
		tot += m.weight
	}
	x := r.Float64() * tot
	for _, m := range mix {
		if x < m.weight {
			return m
		}
		x -= m.weight
	}
	return mix[len(mix)-1]
}
