package anomaly

import (
	"fmt"
	"math"
	"time"
)

// Token-spike thresholds. Daily token totals are heavy-tailed, so they are
// compared on a log scale: a day is a spike when its robust z,
// (ln tokens − ln median) / (1.4826 × MAD of ln daily tokens), is at least
// SpikeZ, it is at least SpikeRatio times the baseline median, and at least
// MinSpikeTokens, and (when the user has history) higher than every day of
// their baseline: a day they have matched before is not a spike for them.
const (
	SpikeZ         = 3.5
	SpikeRatio     = 5.0
	MinSpikeTokens = 10_000
	// minSpikeLogScale floors the log-scale spread (a factor of e^0.1 ≈ 1.1)
	// for users whose days barely vary (MAD 0); SpikeRatio then decides.
	minSpikeLogScale = 0.1
	// minOwnDays is how many active days a short history needs before its own
	// median is used (with the peers' spread) instead of the peers' median.
	minOwnDays = 3
)

// spikeBaseline is the center and scale a window day is compared with.
type spikeBaseline struct {
	basis    string
	median   float64 // tokens
	scale    float64 // log scale
	n        int
	max      float64
	describe string // "their median active day" etc.
}

func (d *detection) spikeBaseline() (spikeBaseline, bool) {
	var vals, logs []float64
	var maxv float64
	for _, t := range d.dayTokens[:d.baselineDays] {
		if t > 0 {
			vals = append(vals, float64(t))
			logs = append(logs, math.Log(float64(t)))
			maxv = math.Max(maxv, float64(t))
		}
	}
	n := len(vals)
	if n >= d.opts.MinBaselineDays {
		return spikeBaseline{
			basis: "user", median: Summarize(vals).Median,
			scale: robustScale(Summarize(logs), minSpikeLogScale),
			n:     n, max: maxv, describe: "their median active day",
		}, true
	}
	p := d.h.Peers
	if p == nil || p.LogDayTokens.N == 0 {
		d.note("Token spikes not checked: %s in the baseline (fewer than %d) and no peer baseline.",
			plural(n, "active day", "active days"), d.opts.MinBaselineDays)
		return spikeBaseline{}, false
	}
	d.usedPeers = true
	if n >= minOwnDays && p.DayLogMAD > 0 {
		d.note("Token spikes: only %s in the baseline; used the user's own median with their peers' typical day-to-day spread (a factor of %.2f).",
			plural(n, "active day", "active days"), math.Exp(p.DayLogMAD))
		return spikeBaseline{
			basis: "user+peers", median: Summarize(vals).Median,
			scale: math.Max(p.DayLogMAD, minSpikeLogScale),
			n:     n, max: maxv, describe: "their median active day",
		}, true
	}
	d.note("Token spikes: only %s in the baseline; compared with %s peer active days instead.",
		plural(n, "active day", "active days"), count(float64(p.LogDayTokens.N)))
	return spikeBaseline{
		basis: "peers", median: math.Exp(p.LogDayTokens.Median),
		scale: robustScale(p.LogDayTokens, minSpikeLogScale),
		n:     p.LogDayTokens.N, max: maxv, describe: "their peers' median active day",
	}, true
}

func (b spikeBaseline) z(tokens float64) float64 {
	if b.median <= 0 {
		return math.Inf(1)
	}
	return (math.Log(tokens) - math.Log(b.median)) / b.scale
}

func (d *detection) checkSpikes() {
	b, ok := d.spikeBaseline()
	if !ok {
		return
	}
	win := d.dayTokens[d.baselineDays:]
	flagged := make([]bool, len(win))
	for i, t := range win {
		v := float64(t)
		flagged[i] = t >= MinSpikeTokens && b.z(v) >= SpikeZ && v >= SpikeRatio*b.median && v > b.max
	}
	for i := 0; i < len(win); {
		if !flagged[i] {
			i++
			continue
		}
		j := i
		for j+1 < len(win) && flagged[j+1] {
			j++
		}
		d.addSpike(b, i, j)
		i = j + 1
	}
}

func (d *detection) addSpike(b spikeBaseline, first, last int) {
	win := d.dayTokens[d.baselineDays:]
	peak, total := first, int64(0)
	var days []string
	for i := first; i <= last; i++ {
		total = satAdd(total, win[i])
		if win[i] > win[peak] {
			peak = i
		}
		days = append(days, dateString(d.winStart+int64(i)))
	}
	v := float64(win[peak])
	z := b.z(v)
	ratio := math.Inf(1)
	if b.median > 0 {
		ratio = v / b.median
	}
	sev := Low
	switch {
	case z >= 7 || ratio >= 20:
		sev = High
	case z >= 5 || ratio >= 10:
		sev = Medium
	}
	from := d.midnight(d.winStart + int64(first))
	to := d.dayEnd(d.winStart + int64(last))
	peakDay := dateString(d.winStart + int64(peak))
	ratioText := "above " + b.describe + " of 0"
	if b.median > 0 {
		ratioText = fmt.Sprintf("%s %s (%s)", times(ratio), b.describe, count(b.median))
	}
	what := fmt.Sprintf("On %s the user used %s tokens", peakDay, count(v))
	if last > first {
		what = fmt.Sprintf("From %s to %s (%d days) the user used %s tokens; the peak, %s, was %s tokens",
			days[0], days[len(days)-1], last-first+1, count(float64(total)), peakDay, count(v))
	}
	spread := "their active days typically vary by"
	if b.basis != "user" {
		spread = "a typical peer's days vary by"
	}
	expl := fmt.Sprintf("%s, %s; %s a factor of %.2f (scaled MAD of ln daily tokens %.2f), so this is %.1f scaled MADs above the median on a log scale",
		what, ratioText, spread, math.Exp(b.scale), b.scale, z)
	switch b.basis {
	case "user":
		if v > b.max {
			expl += fmt.Sprintf("; the highest day in their %d-day baseline was %s", d.baselineDays, count(b.max))
		} else {
			expl += fmt.Sprintf("; their %d-day baseline had a day at least as high (%s)", d.baselineDays, count(b.max))
		}
	case "user+peers":
		expl += fmt.Sprintf("; the user has only %s in the baseline, so the spread is their peers' typical variability", plural(b.n, "active day", "active days"))
	case "peers":
		expl += "; the user has too little history of their own, so this compares with their peers"
	}
	d.add(Finding{
		Type: TokenSpike, Severity: sev, From: from, To: to,
		Evidence: Evidence{
			Basis: b.basis, Value: v, Unit: "tokens/day",
			Median: round(b.median, 1), MAD: round(b.scale, 4), RobustZ: round(z, 2), Ratio: round(ratio, 2),
			BaselineMax: b.max, BaselineN: b.n, Tokens: total, Days: days,
		},
		Explanation: expl + ".",
	})
}

// dayEnd is the end of the local day, clipped to the window end.
func (d *detection) dayEnd(day int64) time.Time {
	t := d.midnight(day + 1)
	if t.After(d.end) {
		return d.end
	}
	return t
}
