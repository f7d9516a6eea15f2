package objectstore

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Period is a retention period in calendar years and days: "7y" keeps an
// object until the same date seven years on, whatever the leap days (a
// fixed 7×365 days would end one or two days early).
type Period struct {
	Years, Days int
}

// DefaultRetention is how long evidence is kept unless configured.
var DefaultRetention = Period{Years: 7}

// maxRetentionYears bounds a period to something a bucket accepts.
const maxRetentionYears = 100

// ParsePeriod reads "7y", "30d" or "1y30d".
func ParsePeriod(s string) (Period, error) {
	var p Period
	rest := strings.TrimSpace(s)
	if rest == "" {
		return p, fmt.Errorf("retention %q: empty; want e.g. 7y, 30d or 1y30d", s)
	}
	seen := ""
	for rest != "" {
		i := strings.IndexFunc(rest, func(r rune) bool { return r < '0' || r > '9' })
		if i <= 0 {
			return Period{}, fmt.Errorf("retention %q: want a number then y or d, e.g. 7y, 30d or 1y30d", s)
		}
		n, err := strconv.Atoi(rest[:i])
		if err != nil || n > 366*maxRetentionYears {
			return Period{}, fmt.Errorf("retention %q: number out of range", s)
		}
		unit := rest[i]
		if strings.IndexByte(seen, unit) >= 0 {
			return Period{}, fmt.Errorf("retention %q: unit %c given twice", s, unit)
		}
		switch unit {
		case 'y':
			if seen != "" {
				return Period{}, fmt.Errorf("retention %q: years come before days", s)
			}
			p.Years = n
		case 'd':
			p.Days = n
		default:
			return Period{}, fmt.Errorf("retention %q: unit %q: want y (years) or d (days)", s, unit)
		}
		seen += string(unit)
		rest = rest[i+1:]
	}
	if err := p.Validate(); err != nil {
		return Period{}, err
	}
	return p, nil
}

// Validate checks that p lasts at least a day and at most 100 years.
func (p Period) Validate() error {
	if p.Years < 0 || p.Days < 0 {
		return fmt.Errorf("retention %s: negative", p)
	}
	if p.Years == 0 && p.Days == 0 {
		return fmt.Errorf("retention %s: must be at least 1d", p)
	}
	if p.Years*366+p.Days > maxRetentionYears*366 {
		return fmt.Errorf("retention %s: longer than %d years", p, maxRetentionYears)
	}
	return nil
}

// String returns p as ParsePeriod reads it.
func (p Period) String() string {
	switch {
	case p.Years != 0 && p.Days != 0:
		return fmt.Sprintf("%dy%dd", p.Years, p.Days)
	case p.Days != 0:
		return fmt.Sprintf("%dd", p.Days)
	default:
		return fmt.Sprintf("%dy", p.Years)
	}
}

// Set implements flag.Value.
func (p *Period) Set(s string) error {
	v, err := ParsePeriod(s)
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// From returns when p ends if it starts at t.
func (p Period) From(t time.Time) time.Time { return t.AddDate(p.Years, 0, p.Days) }

// RetainUntil is the retain-until time of an object written at now: the
// longer of the store's period and the org's minimum (zero: none), in UTC
// and rounded up to the second, as S3 records it.
func RetainUntil(now time.Time, store, orgMin Period) time.Time {
	until := store.From(now)
	if m := orgMin.From(now); m.After(until) {
		until = m
	}
	until = until.UTC()
	if t := until.Truncate(time.Second); !t.Equal(until) {
		until = t.Add(time.Second)
	}
	return until
}
