package bench

import (
	"slices"
	"time"
)

// Stats summarises repeated samples.
type Stats struct {
	N                int
	Median, P10, P90 time.Duration
	MaxRSSKB         int64 // highest peak RSS seen
	PartMedian       time.Duration
}

// Summarize computes the statistics of samples.
func Summarize(samples []Sample) Stats {
	if len(samples) == 0 {
		return Stats{}
	}
	walls := make([]time.Duration, len(samples))
	parts := make([]time.Duration, len(samples))
	var st Stats
	for i, s := range samples {
		walls[i], parts[i] = s.Wall, s.Part
		st.MaxRSSKB = max(st.MaxRSSKB, s.MaxRSSKB)
	}
	slices.Sort(walls)
	slices.Sort(parts)
	st.N = len(samples)
	st.Median = quantile(walls, 0.5)
	st.P10 = quantile(walls, 0.1)
	st.P90 = quantile(walls, 0.9)
	st.PartMedian = quantile(parts, 0.5)
	return st
}

// quantile of sorted values, nearest rank.
func quantile(sorted []time.Duration, q float64) time.Duration {
	i := int(q*float64(len(sorted)-1) + 0.5)
	return sorted[i]
}
