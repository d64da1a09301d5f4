package main

import (
	"fmt"
	"slices"
	"time"
)

// spread is a figure over the runs of a workload: its median, its least and
// greatest values, and the number of runs.
type spread struct {
	med, min, max float64
	n             int
}

// spreadOf returns the median, least and greatest of xs. The median of an
// even number of values is the mean of the two in the middle; no values
// give the zero spread.
func spreadOf(xs []float64) spread {
	if len(xs) == 0 {
		return spread{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	mid := len(s) / 2
	med := s[mid]
	if len(s)%2 == 0 {
		med = (s[mid-1] + s[mid]) / 2
	}
	return spread{med: med, min: s[0], max: s[len(s)-1], n: len(s)}
}

// over returns the spread of the figure that f reads from each run.
func over[T any](runs []T, f func(T) float64) spread {
	xs := make([]float64, len(runs))
	for i, r := range runs {
		xs[i] = f(r)
	}
	return spreadOf(xs)
}

// text renders the median with format, followed by the range and the
// number of runs when there was more than one, as in "0.85 (0.80–0.91, 3
// runs)".
func (s spread) text(format string) string {
	return s.textWith(func(v float64) string { return fmt.Sprintf(format, v) })
}

// textWith is text with each value rendered by show.
func (s spread) textWith(show func(float64) string) string {
	if s.n <= 1 {
		return show(s.med)
	}
	return fmt.Sprintf("%s (%s–%s, %d runs)", show(s.med), show(s.min), show(s.max), s.n)
}

// millis renders seconds as a duration rounded to the millisecond.
func millis(seconds float64) string {
	return time.Duration(seconds * float64(time.Second)).Round(time.Millisecond).String()
}

// mib renders bytes in whole MiB.
func mib(bytes float64) int64 { return int64(bytes) >> 20 }
