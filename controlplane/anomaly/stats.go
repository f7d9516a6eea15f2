package anomaly

import "math"

// madScale makes the MAD a consistent estimator of the standard deviation
// for normally distributed data.
const madScale = 1.4826

// Summarize returns the size, median and unscaled MAD of values. It does not
// modify values.
func Summarize(values []float64) Distribution {
	if len(values) == 0 {
		return Distribution{}
	}
	buf := make([]float64, len(values))
	copy(buf, values)
	m := medianInPlace(buf)
	for i, v := range values {
		buf[i] = math.Abs(v - m)
	}
	return Distribution{N: len(values), Median: m, MAD: medianInPlace(buf)}
}

// medianInPlace returns the median of xs, reordering xs. NaNs must not be
// present. It runs in expected linear time with a deterministic pivot, so the
// result (and the work done) depend only on the values.
func medianInPlace(xs []float64) float64 {
	n := len(xs)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return selectKth(xs, n/2)
	}
	hi := selectKth(xs, n/2)
	// After selection everything left of n/2 is <= hi; the lower middle is
	// their maximum.
	lo := xs[0]
	for _, v := range xs[1 : n/2] {
		if v > lo {
			lo = v
		}
	}
	return lo/2 + hi/2
}

// selectKth partially orders xs so xs[k] is the k-th smallest and returns it.
func selectKth(xs []float64, k int) float64 {
	lo, hi := 0, len(xs)-1
	for lo < hi {
		// Median of three as pivot.
		mid := lo + (hi-lo)/2
		a, b, c := xs[lo], xs[mid], xs[hi]
		p := b
		if (a <= b) == (b <= c) {
			p = b
		} else if (b <= a) == (a <= c) {
			p = a
		} else {
			p = c
		}
		i, j := lo, hi
		for i <= j {
			for xs[i] < p {
				i++
			}
			for xs[j] > p {
				j--
			}
			if i <= j {
				xs[i], xs[j] = xs[j], xs[i]
				i++
				j--
			}
		}
		switch {
		case k <= j:
			hi = j
		case k >= i:
			lo = i
		default:
			return xs[k]
		}
	}
	return xs[k]
}

// robustScale is the scaled MAD of d, raised to floor when smaller (the MAD is
// zero whenever more than half the values are equal).
func robustScale(d Distribution, floor float64) float64 {
	s := madScale * d.MAD
	if s < floor || math.IsNaN(s) {
		return floor
	}
	return s
}
