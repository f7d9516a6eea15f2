package anomaly

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

const secondsPerDay = 86400

// Detect examines the window that ends at end against the user's baseline
// before it and returns the findings. It only reads h, never consults the
// clock, and returns the same report for the same inputs whatever the order
// of h.Events. Events at or after end, or before the baseline, are ignored.
func Detect(h History, end time.Time, opts Options) Report {
	opts = opts.withDefaults()
	d := newDetection(h, end, opts)
	d.aggregate()
	d.checkSpikes()
	d.checkNovelty()
	d.checkOffHours()
	d.checkUploads()
	return d.report()
}

func (o Options) withDefaults() Options {
	if o.Window <= 0 {
		o.Window = DefaultWindow
	}
	if o.Baseline <= 0 {
		o.Baseline = DefaultBaseline
	}
	if o.MinBaselineDays <= 0 {
		o.MinBaselineDays = DefaultMinBaselineDays
	}
	// Bound the day arrays; no audit looks back further than this.
	o.Window = min(o.Window, 366*24*time.Hour)
	o.Baseline = min(o.Baseline, 3660*24*time.Hour)
	return o
}

// wholeDays rounds d to whole days, at least min.
func wholeDays(d time.Duration, min int) int {
	n := int((d + 12*time.Hour) / (24 * time.Hour))
	if n < min {
		return min
	}
	return n
}

// zoner converts instants to local seconds, remembering the current zone
// period so most events cost no zone lookup.
type zoner struct {
	loc    *time.Location
	lo, hi int64 // the cached offset is valid for unix seconds in [lo, hi)
	off    int64
}

func newZoner(loc *time.Location) *zoner { return &zoner{loc: loc, lo: 1, hi: 0} }

func (z *zoner) local(t time.Time) int64 {
	u := t.Unix()
	if u < z.lo || u >= z.hi {
		lt := t.In(z.loc)
		_, off := lt.Zone()
		s, e := lt.ZoneBounds()
		z.lo, z.hi, z.off = math.MinInt64, math.MaxInt64, int64(off)
		if !s.IsZero() {
			z.lo = s.Unix()
		}
		if !e.IsZero() {
			z.hi = e.Unix()
		}
	}
	return u + z.off
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// detection is the state of one Detect call.
type detection struct {
	h    History
	end  time.Time
	opts Options
	loc  *time.Location
	zone *zoner

	windowDays, baselineDays int
	baseStart                int64 // local day index of the first baseline day
	winStart                 int64 // local day index of the first window day

	dayTokens []int64 // per day from baseStart
	dayEvents []int32

	baseHours  [2][24]int  // baseline events per [weekend][local hour]
	baseDays   [2]int      // active baseline days per [weekend]
	baseDayHrs [][24]int32 // baseline events per day and local hour
	winHours   [][24]int32 // window events per day and local hour
	winDevice  [][24]int32 // of which from the device agent
	winHourTok [][24]int64
	winHourMin [][24]int64 // unix nanos of first event per window day and hour
	winHourMax [][24]int64

	models    map[string]*novelty
	providers map[string]*novelty

	baseLogBytes  []float64
	baseMaxBytes  int64
	uploads       []upload
	windowEvents  int
	baseEvents    int
	windowTokens  int64
	activeAnyDays int // baseline days with any event

	tzLearned bool
	tzName    string
	usedPeers bool
	findings  []Finding
	notes     []string
}

// novelty tracks one model or provider.
type novelty struct {
	inBaseline   bool
	windowEvents int // all sources
	deviceEvents int // of which from the agent
	windowTokens int64
	first, last  time.Time
	providers    map[string]int // for models: window events per provider
}

type upload struct {
	at      time.Time
	bytes   int64
	domain  string
	process string
	day     int64
}

func newDetection(h History, end time.Time, opts Options) *detection {
	d := &detection{h: h, end: end, opts: opts}
	d.windowDays = wholeDays(opts.Window, 1)
	d.baselineDays = wholeDays(opts.Baseline, 0)
	d.loc = h.Location
	if d.loc == nil {
		d.loc, d.tzName = learnZone(h.Events, end, opts.Window, opts.Baseline)
		d.tzLearned = true
	} else {
		d.tzName = d.loc.String()
	}
	d.zone = newZoner(d.loc)
	endDay := floorDiv(d.zone.local(end.Add(-time.Nanosecond)), secondsPerDay)
	d.winStart = endDay - int64(d.windowDays) + 1
	d.baseStart = d.winStart - int64(d.baselineDays)
	n := d.windowDays + d.baselineDays
	d.dayTokens = make([]int64, n)
	d.dayEvents = make([]int32, n)
	d.winHours = make([][24]int32, d.windowDays)
	d.winDevice = make([][24]int32, d.windowDays)
	d.baseDayHrs = make([][24]int32, d.baselineDays)
	d.winHourTok = make([][24]int64, d.windowDays)
	d.winHourMin = make([][24]int64, d.windowDays)
	d.winHourMax = make([][24]int64, d.windowDays)
	d.models = map[string]*novelty{}
	d.providers = map[string]*novelty{}
	return d
}

// midnight returns the start of local day index day.
func (d *detection) midnight(day int64) time.Time {
	y, m, dd := time.Unix(day*secondsPerDay, 0).UTC().Date()
	return time.Date(y, m, dd, 0, 0, 0, 0, d.loc)
}

func dateString(day int64) string {
	return time.Unix(day*secondsPerDay, 0).UTC().Format("2006-01-02")
}

func isWeekend(day int64) int {
	// Day 0 (1970-01-01) was a Thursday; Sunday is 0 as in time.Weekday.
	wd := (day%7 + 7 + 4) % 7
	if wd == 0 || wd == 6 {
		return 1
	}
	return 0
}

func (d *detection) aggregate() {
	var lastModel, lastProv string
	var lastModelN, lastProvN *novelty
	for i := range d.h.Events {
		e := &d.h.Events[i]
		if !e.At.Before(d.end) {
			continue
		}
		ls := d.zone.local(e.At)
		day := floorDiv(ls, secondsPerDay)
		if day < d.baseStart {
			continue
		}
		hour := int((ls - day*secondsPerDay) / 3600)
		idx := day - d.baseStart
		tok := nonNeg(e.InputTokens) + nonNeg(e.OutputTokens)
		if d.dayEvents[idx] == 0 && day < d.winStart {
			d.activeAnyDays++
			d.baseDays[isWeekend(day)]++
		}
		d.dayTokens[idx] = satAdd(d.dayTokens[idx], tok)
		d.dayEvents[idx]++
		inWindow := day >= d.winStart

		if inWindow {
			d.windowEvents++
			d.windowTokens = satAdd(d.windowTokens, tok)
			w := day - d.winStart
			ns := e.At.UnixNano()
			if d.winHours[w][hour] == 0 || ns < d.winHourMin[w][hour] {
				d.winHourMin[w][hour] = ns
			}
			if d.winHours[w][hour] == 0 || ns > d.winHourMax[w][hour] {
				d.winHourMax[w][hour] = ns
			}
			d.winHours[w][hour]++
			if e.Source == SourceDevice {
				d.winDevice[w][hour]++
			}
			d.winHourTok[w][hour] = satAdd(d.winHourTok[w][hour], tok)
			if e.BytesSent >= MinUploadBytes {
				d.uploads = append(d.uploads, upload{at: e.At, bytes: e.BytesSent, domain: e.Domain, process: e.Process, day: day})
			}
		} else {
			d.baseEvents++
			d.baseHours[isWeekend(day)][hour]++
			d.baseDayHrs[idx][hour]++
			if e.BytesSent > 0 {
				d.baseLogBytes = append(d.baseLogBytes, math.Log(float64(e.BytesSent)))
				if e.BytesSent > d.baseMaxBytes {
					d.baseMaxBytes = e.BytesSent
				}
			}
		}

		prov := e.Provider
		if prov == "" {
			prov = e.Domain
		}
		if prov != "" {
			if prov != lastProv || lastProvN == nil {
				lastProv, lastProvN = prov, d.providers[prov]
				if lastProvN == nil {
					lastProvN = &novelty{}
					d.providers[prov] = lastProvN
				}
			}
			lastProvN.see(e, tok, inWindow, "")
		}
		if e.Model != "" {
			if e.Model != lastModel || lastModelN == nil {
				lastModel, lastModelN = e.Model, d.models[e.Model]
				if lastModelN == nil {
					lastModelN = &novelty{providers: map[string]int{}}
					d.models[e.Model] = lastModelN
				}
			}
			lastModelN.see(e, tok, inWindow, prov)
		}
	}
}

func (n *novelty) see(e *Event, tok int64, inWindow bool, prov string) {
	if !inWindow {
		n.inBaseline = true
		return
	}
	at := e.At
	if e.Source == SourceDevice {
		n.deviceEvents++
	}
	if n.windowEvents == 0 || at.Before(n.first) {
		n.first = at
	}
	if n.windowEvents == 0 || at.After(n.last) {
		n.last = at
	}
	n.windowEvents++
	n.windowTokens = satAdd(n.windowTokens, tok)
	if n.providers != nil && prov != "" {
		n.providers[prov]++
	}
}

// requests estimates the requests behind the window events: the larger of
// the agent's and the provider's counts, since one request can be in both.
func (n *novelty) requests() int {
	return max(n.deviceEvents, n.windowEvents-n.deviceEvents)
}

func nonNeg(v int64) int64 {
	if v < 0 {
		return 0
	}
	return v
}

func satAdd(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

func (d *detection) note(format string, args ...any) {
	d.notes = append(d.notes, fmt.Sprintf(format, args...))
}

func (d *detection) add(f Finding) {
	f.From = f.From.In(d.loc)
	f.To = f.To.In(d.loc)
	d.findings = append(d.findings, f)
}

func (d *detection) report() Report {
	slices.SortStableFunc(d.findings, func(a, b Finding) int {
		if c := b.Severity.rank() - a.Severity.rank(); c != 0 {
			return c
		}
		if c := a.From.Compare(b.From); c != 0 {
			return c
		}
		if c := strings.Compare(string(a.Type), string(b.Type)); c != 0 {
			return c
		}
		return strings.Compare(a.Explanation, b.Explanation)
	})
	baseDays := 0
	for _, t := range d.dayTokens[:d.baselineDays] {
		if t > 0 {
			baseDays++
		}
	}
	tz := d.tzName
	r := Report{
		User:             d.h.User,
		WindowFrom:       d.midnight(d.winStart),
		WindowTo:         d.end.In(d.loc),
		BaselineFrom:     d.midnight(d.baseStart),
		BaselineDays:     baseDays,
		WindowEvents:     d.windowEvents,
		BaselineEvents:   d.baseEvents,
		UsedPeerBaseline: d.usedPeers,
		Timezone:         tz,
		TimezoneLearned:  d.tzLearned,
		Findings:         d.findings,
		Notes:            d.notes,
	}
	if r.Findings == nil {
		r.Findings = []Finding{}
	}
	r.Summary = summarize(r, d.windowDays)
	return r
}

func summarize(r Report, windowDays int) string {
	if len(r.Findings) == 0 {
		if r.WindowEvents == 0 {
			return fmt.Sprintf("No activity in the %d-day window.", windowDays)
		}
		return fmt.Sprintf("No unusual activity in the %d-day window (%s events).", windowDays, count(float64(r.WindowEvents)))
	}
	var bySev [4]int
	var types []string
	for _, f := range r.Findings {
		bySev[f.Severity.rank()]++
		if !slices.Contains(types, string(f.Type)) {
			types = append(types, string(f.Type))
		}
	}
	var parts []string
	for _, s := range []Severity{High, Medium, Low} {
		if n := bySev[s.rank()]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, s))
		}
	}
	noun := "findings"
	if len(r.Findings) == 1 {
		noun = "finding"
	}
	return fmt.Sprintf("%d %s in the %d-day window (%s): %s.", len(r.Findings), noun, windowDays,
		strings.Join(parts, ", "), strings.Join(types, ", "))
}

// requests estimates the requests in window day w, hour h. One request can
// be seen twice, by the agent and in the provider's usage records, so it is
// the larger of the two sources' counts.
func (d *detection) requests(w, h int) int {
	dev := int(d.winDevice[w][h])
	return max(dev, int(d.winHours[w][h])-dev)
}
