package anomaly

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// Off-hours thresholds. An hour of the day is rare for the user when both
// (a) after smoothing with its neighbors (weights ½, 1, ½, which also absorbs
// a daylight-saving shift) it holds less than RareHourShare of their baseline
// activity, and (b) they were active in it (at least three events) on fewer
// than max(2, RareHourDays × active days) baseline days, again smoothed, so
// occasional evening work that recurs is learned as theirs. Weekdays and
// weekends are profiled separately when there is enough weekend data. A
// window day is flagged when its requests in rare hours (the larger of the
// agent's and the provider's event counts, since one request can appear in
// both) reach both MinOffHoursEvents and 3λ+3√λ, where λ is the larger of
// the user's usual rare-hour events per active day and the day's requests
// times the baseline share of rare hours (a busy day has more strays).
const (
	RareHourShare     = 0.005
	RareHourDays      = 0.05
	MinOffHoursEvents = 12
	minProfileEvents  = 200
	minProfileDays    = 5
	minDayTypeEvents  = 200
	genericNightEnd   = 6 // without a profile, 00:00–05:59 local is off-hours
	// minHourEvents is how many events make an hour of a day count as used:
	// one request often shows up twice (agent and provider), and a stray
	// request is not a habit.
	minHourEvents = 3
)

func (d *detection) checkOffHours() {
	if d.windowEvents == 0 {
		return
	}
	var pooled [24]int
	for h := range 24 {
		pooled[h] = d.baseHours[0][h] + d.baseHours[1][h]
	}
	// Days on which each hour was used, per day type.
	var usedDays [2][24]int
	for i, hrs := range d.baseDayHrs {
		dt := isWeekend(d.baseStart + int64(i))
		for h, n := range hrs {
			if n >= minHourEvents {
				usedDays[dt][h]++
			}
		}
	}
	var rare [2][24]bool
	var lambda, rareFrac [2]float64
	basis := "user"
	if d.baseEvents >= minProfileEvents && d.activeAnyDays >= minProfileDays {
		for dt := range 2 {
			prof, days, used := d.baseHours[dt], d.baseDays[dt], usedDays[dt]
			if sum(prof[:]) < minDayTypeEvents {
				prof, days = pooled, d.baseDays[0]+d.baseDays[1]
				for h := range 24 {
					used[h] = usedDays[0][h] + usedDays[1][h]
				}
			}
			tot := float64(sum(prof[:]))
			dayLimit := math.Max(2, RareHourDays*float64(days))
			rareEvents := 0
			for h := range 24 {
				share := (float64(prof[h]) + 0.5*float64(prof[(h+23)%24]+prof[(h+1)%24])) / (2 * tot)
				usedSm := float64(used[h]) + 0.5*float64(used[(h+23)%24]+used[(h+1)%24])
				rare[dt][h] = share < RareHourShare && usedSm < dayLimit
				if rare[dt][h] {
					rareEvents += prof[h]
				}
			}
			lambda[dt] = float64(rareEvents) / float64(max(1, days))
			// Strays scale with volume; estimate their rate from all days
			// so a thin weekend profile does not make it zero.
			pooledRare := 0
			for h := range 24 {
				if rare[dt][h] {
					pooledRare += pooled[h]
				}
			}
			rareFrac[dt] = float64(pooledRare) / float64(d.baseEvents)
		}
	} else {
		basis = "generic"
		for dt := range 2 {
			for h := range genericNightEnd {
				rare[dt][h] = true
			}
		}
		d.note("Off-hours: only %s and %s in the baseline, too little to learn the user's hours; treated 00:00–05:59 local as off-hours.",
			plural(d.baseEvents, "event", "events"), plural(d.activeAnyDays, "active day", "active days"))
	}

	var days []string
	var hours [24]bool
	events := 0
	var tokens int64
	var first, last int64
	seen := false
	for w := range d.windowDays {
		day := d.winStart + int64(w)
		dt := isWeekend(day)
		n := 0
		for h := range 24 {
			if rare[dt][h] {
				n += d.requests(w, h)
			}
		}
		dayEvents := 0.0
		for h := range 24 {
			dayEvents += float64(d.requests(w, h))
		}
		lam := math.Max(lambda[dt], dayEvents*rareFrac[dt])
		thr := math.Max(MinOffHoursEvents, math.Ceil(3*lam+3*math.Sqrt(lam)))
		if float64(n) < thr {
			continue
		}
		days = append(days, dateString(day))
		for h := range 24 {
			if !rare[dt][h] || d.winHours[w][h] == 0 {
				continue
			}
			hours[h] = true
			events += d.requests(w, h)
			tokens = satAdd(tokens, d.winHourTok[w][h])
			if !seen || d.winHourMin[w][h] < first {
				first = d.winHourMin[w][h]
			}
			if !seen || d.winHourMax[w][h] > last {
				last = d.winHourMax[w][h]
			}
			seen = true
		}
	}
	if len(days) == 0 {
		return
	}
	var hourList []int
	baseIn := 0
	for h := range 24 {
		if hours[h] {
			hourList = append(hourList, h)
			baseIn += pooled[h]
		}
	}
	var share float64
	if d.baseEvents > 0 {
		share = float64(baseIn) / float64(d.baseEvents)
	}
	sev := Low
	switch {
	case events >= 100 || len(days) >= 4:
		sev = High
	case events >= 30 || len(days) >= 2:
		sev = Medium
	}
	when := "On " + days[0]
	if len(days) > 1 {
		when = fmt.Sprintf("On %d days (%s)", len(days), strings.Join(days, ", "))
	}
	expl := fmt.Sprintf("%s the user made %s (%s tokens) at %s local time (%s)",
		when, plural(events, "request", "requests"), count(float64(tokens)), hourRanges(hourList), d.tzName)
	usual := ""
	if basis == "user" {
		usual = usualHours(pooled)
		expl += fmt.Sprintf(", hours that held %s of their activity over their %d-day baseline (%s events); they are usually active %s (90%% of baseline activity).",
			percent(share), d.baselineDays, count(float64(d.baseEvents)), usual)
	} else {
		expl += "; the user has too little history to learn their hours, so this uses a generic night."
	}
	d.add(Finding{
		Type: OffHours, Severity: sev,
		From: time.Unix(0, first), To: time.Unix(0, last),
		Evidence: Evidence{
			Basis: basis, Value: float64(events), Unit: "requests",
			Events: events, Tokens: tokens, Days: days, Hours: hourList,
			HourShare: round(share, 5), UsualHours: usual, BaselineN: d.baseEvents,
		},
		Explanation: expl,
	})
}

func sum(xs []int) int {
	s := 0
	for _, x := range xs {
		s += x
	}
	return s
}

// usualHours is the shortest run of local hours (wrapping at midnight) that
// holds at least 90% of the baseline activity.
func usualHours(prof [24]int) string {
	if sum(prof[:]) == 0 {
		return ""
	}
	start, n := shortestSpan(prof, 0.9)
	return fmt.Sprintf("%02d:00–%02d:59", start, (start+n-1)%24)
}

// hourRanges renders sorted hours as runs: "01:00–04:59, 22:00–22:59".
func hourRanges(hours []int) string {
	var parts []string
	for i := 0; i < len(hours); {
		j := i
		for j+1 < len(hours) && hours[j+1] == hours[j]+1 {
			j++
		}
		parts = append(parts, fmt.Sprintf("%02d:00–%02d:59", hours[i], hours[j]))
		i = j + 1
	}
	return strings.Join(parts, ", ")
}
