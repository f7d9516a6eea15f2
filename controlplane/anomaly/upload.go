package anomaly

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
)

// Large-upload thresholds. A window event is a large upload when it sent at
// least MinUploadBytes, its robust z on the log scale is at least UploadZ
// against the user's per-event bytes sent (or the peers' when the user has
// fewer than minUploadBaseline such events), and it is larger than anything
// the user sent in the baseline.
const (
	MinUploadBytes    = 8 << 20
	UploadZ           = 4.0
	minUploadBaseline = 50
	// minLogScale floors the log-scale MAD: a factor of e^0.25 ≈ 1.28.
	minLogScale = 0.25
)

func (d *detection) checkUploads() {
	if len(d.uploads) == 0 {
		return
	}
	basis := "user"
	var dist Distribution
	var max float64
	switch p := d.h.Peers; {
	case len(d.baseLogBytes) >= minUploadBaseline:
		dist = Summarize(d.baseLogBytes)
		max = float64(d.baseMaxBytes)
	case p != nil && p.LogBytesSent.N > 0:
		basis = "peers"
		dist = p.LogBytesSent
		d.usedPeers = true
		d.note("Large uploads: only %s with bytes sent in the baseline; compared with peers' requests.",
			plural(len(d.baseLogBytes), "event", "events"))
	default:
		basis = "absolute"
		d.note("Large uploads: only %s with bytes sent in the baseline and no peer baseline; flagged on the %s floor alone.",
			plural(len(d.baseLogBytes), "event", "events"), size(MinUploadBytes))
	}
	scale := robustScale(dist, minLogScale)
	z := func(b int64) float64 {
		if basis == "absolute" {
			return math.Inf(1)
		}
		return (math.Log(float64(b)) - dist.Median) / scale
	}
	var hits []upload
	for _, u := range d.uploads {
		if float64(u.bytes) > max && z(u.bytes) >= UploadZ {
			hits = append(hits, u)
		}
	}
	if len(hits) == 0 {
		return
	}
	// Deterministic order whatever the input order.
	slices.SortFunc(hits, func(a, b upload) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		if c := cmp.Compare(a.bytes, b.bytes); c != 0 {
			return c
		}
		if c := strings.Compare(a.domain, b.domain); c != 0 {
			return c
		}
		return strings.Compare(a.process, b.process)
	})
	var total int64
	var days []string
	largest := hits[0]
	for _, u := range hits {
		total = satAdd(total, u.bytes)
		if ds := dateString(u.day); !slices.Contains(days, ds) {
			days = append(days, ds)
		}
		if u.bytes > largest.bytes {
			largest = u
		}
	}
	sev := Low
	switch {
	case largest.bytes >= 100<<20 || total >= 500<<20:
		sev = High
	case largest.bytes >= 32<<20 || total >= 100<<20:
		sev = Medium
	}
	lz := z(largest.bytes)
	when := "On " + days[0]
	if len(days) > 1 {
		when = fmt.Sprintf("On %d days (%s)", len(days), strings.Join(days, ", "))
	}
	expl := fmt.Sprintf("%s the user sent %s of %s or more to LLM endpoints, %s in total; the largest, %s to %s from %s at %s",
		when, plural(len(hits), "request", "requests"), size(MinUploadBytes), size(float64(total)),
		size(float64(largest.bytes)), orUnknown(largest.domain), orUnknown(largest.process),
		largest.at.In(d.loc).Format("2006-01-02 15:04 MST"))
	median := math.Exp(dist.Median)
	switch basis {
	case "user":
		expl += fmt.Sprintf(", is %s their median request (%s), %.1f scaled MADs above it on a log scale, and larger than anything in their %d-day baseline (max %s).",
			times(float64(largest.bytes)/median), size(median), lz, d.baselineDays, size(max))
	case "peers":
		expl += fmt.Sprintf(", is %s their peers' median request (%s) and %.1f scaled MADs above it on a log scale; the user has too little history of their own.",
			times(float64(largest.bytes)/median), size(median), lz)
	default:
		expl += "; there is no baseline to compare with, only the size floor."
		median, lz = 0, 0
	}
	ev := Evidence{
		Basis: basis, Value: float64(largest.bytes), Unit: "bytes",
		Events: len(hits), Bytes: total, Days: days,
		BaselineMax: max, BaselineN: dist.N,
		Domain: largest.domain, Process: largest.process,
	}
	if basis != "absolute" {
		ev.Median, ev.MAD, ev.RobustZ = round(median, 0), round(scale, 4), round(lz, 2)
		ev.Ratio = round(float64(largest.bytes)/median, 1)
	}
	d.add(Finding{Type: LargeUpload, Severity: sev, From: hits[0].at, To: hits[len(hits)-1].at, Evidence: ev, Explanation: expl})
}

func orUnknown(s string) string {
	if s == "" {
		return "(unknown)"
	}
	return s
}
