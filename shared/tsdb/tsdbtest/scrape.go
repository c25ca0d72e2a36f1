package tsdbtest

import "time"

// Scrape samples value every interval from start to end (both included),
// as a scraper would: the way to ingest a series whose every number a
// test knows, such as a counter that changes slope at a load step.
func Scrape(labels map[string]string, start, end time.Time, interval time.Duration, value func(time.Time) float64) Series {
	s := Series{Labels: labels}
	for t := start; !t.After(end); t = t.Add(interval) {
		s.Samples = append(s.Samples, Point{T: t, V: value(t)})
	}
	return s
}

// Counter is a counter that grows at rates[i] per second from steps[i]
// (steps ascending, the first one the counter's start) until the next
// step: a load that changes at known times.
func Counter(steps []time.Time, rates []float64) func(time.Time) float64 {
	return func(t time.Time) float64 {
		var v float64
		for i, from := range steps {
			if !t.After(from) {
				break
			}
			until := t
			if i+1 < len(steps) && steps[i+1].Before(t) {
				until = steps[i+1]
			}
			v += rates[i] * until.Sub(from).Seconds()
		}
		return v
	}
}
