package anomaly

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// count renders a count the way an analyst reads it: 950, 12.3k, 1.9M.
func count(v float64) string {
	a := math.Abs(v)
	switch {
	case a >= 1e9:
		return trimZero(fmt.Sprintf("%.1f", v/1e9)) + "B"
	case a >= 1e6:
		return trimZero(fmt.Sprintf("%.1f", v/1e6)) + "M"
	case a >= 1e4:
		return fmt.Sprintf("%.0fk", v/1e3)
	case a >= 1e3:
		return trimZero(fmt.Sprintf("%.1f", v/1e3)) + "k"
	default:
		return strconv.FormatFloat(math.Round(v), 'f', -1, 64)
	}
}

// size renders bytes in decimal units.
func size(v float64) string {
	a := math.Abs(v)
	switch {
	case a >= 1e9:
		return trimZero(fmt.Sprintf("%.1f", v/1e9)) + " GB"
	case a >= 1e6:
		return trimZero(fmt.Sprintf("%.1f", v/1e6)) + " MB"
	case a >= 1e3:
		return trimZero(fmt.Sprintf("%.1f", v/1e3)) + " kB"
	default:
		return fmt.Sprintf("%.0f B", v)
	}
}

func trimZero(s string) string { return strings.TrimSuffix(s, ".0") }

// times renders a ratio such as 14.2×.
func times(r float64) string {
	if r >= 100 {
		return fmt.Sprintf("%.0f×", r)
	}
	return fmt.Sprintf("%.1f×", r)
}

func percent(f float64) string {
	switch {
	case f == 0:
		return "0%"
	case f < 0.001:
		return "<0.1%"
	case f < 0.1:
		return fmt.Sprintf("%.1f%%", 100*f)
	default:
		return fmt.Sprintf("%.0f%%", 100*f)
	}
}

// round keeps evidence numbers short and stable in JSON.
func round(v float64, digits int) float64 {
	if math.IsInf(v, 0) || math.IsNaN(v) {
		return 0
	}
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}

func plural(n int, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}
