package anomaly

import (
	"fmt"
	"math"
	"time"
)

// activeMidpoint is the local hour assumed to be the middle of a user's
// active day (a 09:00–18:00 day has its middle at 13:30); minLearnEvents is
// how many baseline events are enough to learn from the baseline alone.
const (
	activeMidpoint = 13.5
	minLearnEvents = 100
)

// learnZone guesses a fixed UTC offset from when the user is active: it finds
// the shortest stretch of the UTC day holding 90% of their events and assumes
// its middle is 13:30 local. Baseline events are used when there are enough
// of them, so an anomaly in the window cannot move the guess. Personal shifts
// make the guess off by an hour or two; it ignores daylight saving, which the
// off-hours check smooths over; for someone who works nights it is off by
// more, which moves day boundaries and the weekday/weekend split but not
// what counts as off-hours, since that is learned from the user's own hours.
func learnZone(events []Event, end time.Time, window, baseline time.Duration) (*time.Location, string) {
	winFrom := end.Add(-window)
	baseFrom := winFrom.Add(-baseline)
	var base, all [24]int
	nBase, nAll := 0, 0
	for i := range events {
		at := events[i].At
		if !at.Before(end) || at.Before(baseFrom) {
			continue
		}
		h := at.UTC().Hour()
		all[h]++
		nAll++
		if at.Before(winFrom) {
			base[h]++
			nBase++
		}
	}
	hist := base
	if nBase < minLearnEvents {
		hist = all
	}
	if nAll == 0 {
		return time.UTC, "UTC (learned: no activity)"
	}
	start, n := shortestSpan(hist, 0.9)
	mid := float64(start) + float64(n)/2
	off := int(math.Round(activeMidpoint - mid))
	off = ((off+11)%24+24)%24 - 11 // UTC−11 … UTC+12
	secs := off * 3600
	name := fmt.Sprintf("UTC%s", offsetString(secs))
	return time.FixedZone(name, secs), name + " (learned from activity)"
}

// shortestSpan returns the start and length of the shortest run of hours
// (wrapping at midnight) holding at least frac of the events; ties go to the
// earliest start.
func shortestSpan(hist [24]int, frac float64) (start, n int) {
	tot := 0
	for _, c := range hist {
		tot += c
	}
	for n = 1; n <= 24; n++ {
		for start = range 24 {
			s := 0
			for k := range n {
				s += hist[(start+k)%24]
			}
			if float64(s) >= frac*float64(tot) {
				return start, n
			}
		}
	}
	return 0, 24
}
func offsetString(secs int) string {
	sign := "+"
	if secs < 0 {
		sign = "−"
		secs = -secs
	}
	return fmt.Sprintf("%s%02d:%02d", sign, secs/3600, secs%3600/60)
}
