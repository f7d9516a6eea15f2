package synth

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/toktra/toktra/controlplane/anomaly"
)

// profile is a user's hidden behavior.
type profile struct {
	seed uint64

	shiftStart, shiftLen float64 // local hours
	eveningRate          float64 // share of workdays with an evening session
	weekendRate          float64 // share of weekend days worked
	offRate              float64 // share of workdays off sick etc.
	vacations            [][2]int

	dayMedian   float64 // tokens on a typical working day
	daySigma    float64 // log-scale day-to-day noise
	burstRate   float64
	reqTokens   float64 // median tokens per request
	uploadRate  float64 // share of workdays with a legitimate file upload
	strayRate   float64 // share of requests at a random hour
	processes   []string
	models      []useModel // personal model mix (weights sum arbitrary)
	tryDay      int        // day index of a one-off try of a random model, or -1
	tryModel    useModel
	switchDay   int // day a legitimate new model joins the mix, or -1
	switchModel useModel

	inject injection
}

type useModel struct {
	model, provider, domain string
	weight                  float64
	from                    int // first day index it is used
}

type injection struct {
	typ   anomaly.Type
	days  []int // day indexes (org days since Start) involved
	mult  float64
	model useModel
	sizes []float64
	hour  float64 // off-hours session start, local hours
}

// Generate builds the org for seed and sc. Events are produced on demand by
// [Org.Events].
func Generate(seed int64, sc Scenario) *Org {
	if sc.Users <= 0 {
		sc.Users = DefaultScenario().Users
	}
	if sc.Days <= 0 {
		sc.Days = DefaultScenario().Days
	}
	if sc.Window <= 0 {
		sc.Window = anomaly.DefaultWindow
	}
	if sc.Baseline <= 0 {
		sc.Baseline = anomaly.DefaultBaseline
	}
	r := rand.New(rand.NewPCG(uint64(seed), 0x7e57))
	o := &Org{Seed: seed, Scenario: sc}
	for _, l := range launchPlan {
		if l.day < sc.Days {
			o.Launches = append(o.Launches, Launch{Model: l.model, Provider: l.provider, At: sc.Start.AddDate(0, 0, l.day)})
		}
	}
	var zw []float64
	for _, z := range zones {
		zw = append(zw, z.weight)
	}
	o.Users = make([]User, sc.Users)
	for i := range o.Users {
		u := &o.Users[i]
		u.ID = fmt.Sprintf("user%03d@example.com", i)
		loc, err := time.LoadLocation(zones[pick(r, zw)].name)
		if err != nil {
			loc = time.UTC // unreachable: tzdata is embedded
		}
		u.Location = loc
		u.TimezoneKnown = r.Float64() < sc.KnownTimezoneShare
		u.Agent = r.Float64() < sc.AgentShare
		u.Joined = sc.Start
		u.p = newProfile(r, sc, o.Launches)
	}
	// Departures: a random subset, placed where a full baseline exists.
	nDep := int(math.Round(sc.DepartureShare * float64(sc.Users)))
	order := r.Perm(sc.Users)
	firstDep := int((sc.Window+sc.Baseline)/(24*time.Hour)) + 3
	nClean := int(math.Round(sc.CleanShare * float64(nDep)))
	types := anomaly.Types
	for k, idx := range order[:nDep] {
		u := &o.Users[idx]
		span := max(1, sc.Days-firstDep)
		day := firstDep + r.IntN(span)
		at := sc.Start.AddDate(0, 0, day).Add(time.Duration(9+r.IntN(8)) * time.Hour)
		dep := &Departure{At: at}
		if k >= nClean {
			dep.Injected = types[(k-nClean)%len(types)]
		}
		u.Departure = dep
	}
	// Recent joiners, among departing and staying users alike.
	for _, idx := range r.Perm(sc.Users)[:int(math.Round(sc.RecentJoinerShare*float64(sc.Users)))] {
		u := &o.Users[idx]
		ref := sc.end()
		if u.Departure != nil {
			ref = u.Departure.At
		}
		u.Joined = ref.AddDate(0, 0, -(16 + r.IntN(11)))
	}
	for i := range o.Users {
		u := &o.Users[i]
		if u.Departure == nil || u.Departure.Injected == "" {
			continue
		}
		if u.Departure.Injected == anomaly.LargeUpload {
			u.Agent = true // an upload is only visible to the agent
		}
		u.p.inject, u.Departure.Detail = o.planInjection(r, u)
	}
	return o
}

func newProfile(r *rand.Rand, sc Scenario, launches []Launch) profile {
	p := profile{seed: r.Uint64(), tryDay: -1, switchDay: -1}
	p.shiftStart = clamp(9+1.1*r.NormFloat64(), 6.5, 12.5)
	p.shiftLen = 7.5 + 2.5*r.Float64()
	if r.Float64() < 0.25 {
		p.eveningRate = 0.05 + 0.15*r.Float64()
	}
	if r.Float64() < 0.5 {
		p.weekendRate = 0.15 * r.Float64()
	}
	p.offRate = 0.02 + 0.03*r.Float64()
	for range 1 + r.IntN(3) {
		s := r.IntN(sc.Days)
		p.vacations = append(p.vacations, [2]int{s, s + 3 + r.IntN(8)})
	}
	p.dayMedian = lognormal(r, 120_000, 0.9)
	p.daySigma = 0.3 + 0.3*r.Float64()
	p.burstRate = 0.02
	p.reqTokens = lognormal(r, 2500, 0.4)
	p.uploadRate = 0.03
	p.strayRate = 0.003
	for range 1 + r.IntN(2) {
		p.processes = append(p.processes, processes[r.IntN(len(processes))])
	}

	prim := majors[pick(r, majorWeights)]
	add := func(pv provider, model string, weight float64, from int) {
		for _, m := range p.models {
			if m.model == model {
				return
			}
		}
		p.models = append(p.models, useModel{model: model, provider: pv.name, domain: pv.domain, weight: weight, from: from})
	}
	for range 1 + r.IntN(3) {
		add(prim, prim.common[r.IntN(len(prim.common))], 0.2+r.Float64(), 0)
	}
	if r.Float64() < 0.03 {
		add(prim, prim.niche[r.IntN(len(prim.niche))], 0.1+0.3*r.Float64(), 0)
	}
	if r.Float64() < 0.3 {
		sec := majors[r.IntN(len(majors))]
		add(sec, sec.common[r.IntN(len(sec.common))], 0.1+0.4*r.Float64(), 0)
	}
	if r.Float64() < 0.04 {
		lt := longTail[r.IntN(len(longTail))]
		add(lt, lt.common[r.IntN(len(lt.common))], 0.1+0.3*r.Float64(), 0)
	}
	// Launch adoption by users of the launching provider.
	for _, l := range launches {
		if !slices.ContainsFunc(p.models, func(m useModel) bool { return m.provider == l.Provider }) || r.Float64() >= 0.7 {
			continue
		}
		day := int(l.At.Sub(sc.Start).Hours()/24) + int(r.ExpFloat64()*5)
		pv := majorByName(l.Provider)
		add(pv, l.Model, 0.5+r.Float64(), day)
	}
	if r.Float64() < 0.25 {
		p.tryDay = r.IntN(sc.Days)
		pv := majors[r.IntN(len(majors))]
		p.tryModel = useModel{model: pv.niche[r.IntN(len(pv.niche))], provider: pv.name, domain: pv.domain}
	}
	if r.Float64() < 0.05 {
		p.switchDay = r.IntN(sc.Days)
		p.switchModel = useModel{model: prim.common[r.IntN(len(prim.common))], provider: prim.name, domain: prim.domain, weight: 0.5}
	}
	return p
}

func majorByName(name string) provider {
	for _, pv := range majors {
		if pv.name == name {
			return pv
		}
	}
	return majors[0]
}

// planInjection chooses what to inject into u's window.
func (o *Org) planInjection(r *rand.Rand, u *User) (injection, string) {
	sc := o.Scenario
	depDay := int(u.Departure.At.Sub(sc.Start).Hours() / 24)
	winDays := int(sc.Window / (24 * time.Hour))
	in := injection{typ: u.Departure.Injected}
	// Days strictly before the departure day, inside the window.
	someDays := func(n int, consecutive bool) []int {
		if consecutive {
			s := depDay - 1 - r.IntN(winDays-n)
			var ds []int
			for k := range n {
				ds = append(ds, s-k)
			}
			slices.Sort(ds)
			return ds
		}
		ds := r.Perm(winDays - 1)[:n]
		for k := range ds {
			ds[k] = depDay - 1 - ds[k]
		}
		slices.Sort(ds)
		return ds
	}
	switch in.typ {
	case anomaly.TokenSpike:
		in.days = someDays(1+r.IntN(3), true)
		in.mult = 8 + 22*r.Float64()
		return in, fmt.Sprintf("%.1f× tokens on %d day(s)", in.mult, len(in.days))
	case anomaly.NewModel:
		prim := majorByName(u.p.models[0].provider)
		var cands []string
		for _, m := range prim.niche {
			// Never one the user has used, even once.
			if m != u.p.tryModel.model && !slices.ContainsFunc(u.p.models, func(x useModel) bool { return x.model == m }) {
				cands = append(cands, m)
			}
		}
		m := cands[r.IntN(len(cands))]
		in.model = useModel{model: m, provider: prim.name, domain: prim.domain}
		in.days = someDays(2+r.IntN(4), false)
		return in, fmt.Sprintf("model %s on %d days", m, len(in.days))
	case anomaly.NewProvider:
		var cands []provider
		for _, pv := range longTail {
			if !slices.ContainsFunc(u.p.models, func(x useModel) bool { return x.provider == pv.name }) {
				cands = append(cands, pv)
			}
		}
		pv := cands[r.IntN(len(cands))]
		in.model = useModel{model: pv.common[r.IntN(len(pv.common))], provider: pv.name, domain: pv.domain}
		in.days = someDays(2+r.IntN(4), false)
		return in, fmt.Sprintf("provider %s on %d days", pv.name, len(in.days))
	case anomaly.OffHours:
		in.days = someDays(2+r.IntN(4), false)
		// Middle of the user's night: about 18 hours after their shift starts.
		in.hour = math.Mod(p24(u.p.shiftStart+16.5+2*r.Float64()), 24)
		return in, fmt.Sprintf("sessions at %.1fh local on %d nights", in.hour, len(in.days))
	case anomaly.LargeUpload:
		in.days = someDays(1+r.IntN(2), false)
		n := 1 + r.IntN(4)
		for range n {
			in.sizes = append(in.sizes, math.Exp(math.Log(12e6)+r.Float64()*math.Log(300e6/12e6)))
		}
		return in, fmt.Sprintf("%d uploads, largest %.0f MB", n, slices.Max(in.sizes)/1e6)
	}
	return in, ""
}

func p24(h float64) float64 { return math.Mod(h+48, 24) }
