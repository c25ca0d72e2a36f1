package scale

import (
	"cmp"
	"math"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"function/shared/policy"
	"function/shared/tsdb"
)

// The gateway counts a request when it completes, and its arrivals are
// estimated from the completions and the growth of their latency
// (policy.ArrivalsFromCompletions). This file measures that estimate on a
// deterministic queue whose instances come up while a backlog waits, as
// in the closed loop's TestGatewayAndBYOCFollowStep, where one decision
// read 6.1 req/s for 5 and asked 9 instances for 7.

// rampStep is the number of servers (instances of concurrency 1) online
// from at on.
type rampStep struct {
	at      float64
	servers int
}

// fifoQueue is a simulated gateway: requests arriving every 1/lambda s,
// served in arrival order by the servers of a ramp, each request taking
// one service time. It keeps what a TSDB would see: the completion counter
// and the duration-sum counter, sampled every scrape seconds (offset
// seconds past each multiple of scrape: a TSDB spreads its targets'
// scrapes over the interval).
type fifoQueue struct {
	lambda, scrape, offset float64
	ramp                   []rampStep
	done                   []float64 // completion times, sorted
	latencySum             []float64 // latencySum[k]: summed latency of the first k completions
}

func simulateFIFO(lambda, service, scrape, until float64, ramp []rampStep) fifoQueue {
	var arrivals []float64
	for k := 0; float64(k)/lambda < until; k++ {
		arrivals = append(arrivals, float64(k)/lambda)
	}
	q := serveFIFO(arrivals, service, scrape, ramp)
	q.lambda = lambda
	return q
}

// serveFIFO serves requests arriving at the given times (sorted) in
// arrival order, as simulateFIFO does.
func serveFIFO(arrivals []float64, service, scrape float64, ramp []rampStep) fifoQueue {
	return queueOf(serveReplicas([][]float64{arrivals}, service, ramp)[0], scrape, ramp)
}

// served is one request as the gateway counts it when it completes.
type served struct{ done, latency float64 }

// serveReplicas serves the requests of several gateway replicas, each
// with its own FIFO queue (queues[r]: the arrival times at replica r,
// sorted), on the instances of one ramp that they share: a replica's
// head request takes the first instance free, and of heads waiting
// together the one that reached its head first goes first (of those that
// reached it together, the one that arrived first), so replicas that are
// all backlogged take turns. With one replica that is arrival order. It
// returns what each replica served, in the order it started.
func serveReplicas(queues [][]float64, service float64, ramp []rampStep) [][]served {
	var free []float64 // when each server can next start a request
	for _, r := range ramp {
		for len(free) < r.servers {
			free = append(free, r.at)
		}
	}
	out := make([][]served, len(queues))
	next := make([]int, len(queues))        // each replica's head
	reached := make([]float64, len(queues)) // when it reached the head: its predecessor's start
	head := func(r int) float64 { return math.Max(queues[r][next[r]], reached[r]) }
	for {
		h := -1
		for r := range queues {
			if next[r] < len(queues[r]) && (h < 0 || head(r) < head(h) ||
				head(r) == head(h) && queues[r][next[r]] < queues[h][next[h]]) {
				h = r
			}
		}
		if h < 0 {
			return out
		}
		i := 0
		for j := range free {
			if free[j] < free[i] {
				i = j
			}
		}
		arrived := queues[h][next[h]]
		start := math.Max(head(h), free[i])
		free[i] = start + service
		reached[h] = start
		next[h]++
		out[h] = append(out[h], served{start + service, start + service - arrived})
	}
}

// queueOf is what a TSDB scraping every scrape seconds sees of the
// requests served on a ramp.
func queueOf(reqs []served, scrape float64, ramp []rampStep) fifoQueue {
	reqs = slices.Clone(reqs)
	slices.SortFunc(reqs, func(a, b served) int { return cmp.Compare(a.done, b.done) })
	q := fifoQueue{scrape: scrape, ramp: ramp, done: make([]float64, 0, len(reqs)), latencySum: make([]float64, 1, len(reqs)+1)}
	for _, r := range reqs {
		q.done = append(q.done, r.done)
		q.latencySum = append(q.latencySum, q.latencySum[len(q.latencySum)-1]+r.latency)
	}
	return q
}

// exact is the completion counter and the duration sum at t.
func (q fifoQueue) exact(t float64) (completed, latency float64) {
	k := sort.SearchFloat64s(q.done, t+1e-9)
	return float64(k), q.latencySum[k]
}

// counters are the counters as the newest scrape at or before t saw them.
func (q fifoQueue) counters(t float64) (completed, latency float64) {
	return q.exact(math.Floor((t-q.offset)/q.scrape+1e-9)*q.scrape + q.offset)
}

func (q fifoQueue) servers(t float64) float64 {
	n := 0
	for _, r := range q.ramp {
		if r.at <= t {
			n = r.servers
		}
	}
	return float64(n)
}

// step is the rate window of length w ending at t, as gatewayDemand reads it.
func (q fifoQueue) step(t, w float64) slotStep {
	n1, s1 := q.counters(t)
	n0, s0 := q.counters(t - w)
	at := time.Unix(1_800_000_000, 0).Add(time.Duration(t * float64(time.Second)))
	return slotStep{at: at, rate: (n1 - n0) / w, inFlight: (s1 - s0) / w, instances: q.servers(t), utilization: math.NaN()}
}

// timeWeightedLatency is the time-weighted mean, over the window of length
// w ending at t, of the latency of the request completing at each instant
// (fluid arrivals: the n-th completion arrived at n/lambda). A TSDB cannot
// give it; the simulation can.
func (q fifoQueue) timeWeightedLatency(t, w float64) float64 {
	const points = 4000
	sum := 0.0
	for i := 0; i < points; i++ {
		at := t - w + (float64(i)+0.5)*w/points
		n, _ := q.exact(at)
		sum += at - (n-0.5)/q.lambda
	}
	return sum / points
}

// centroidArrivals is the estimate with the completion weighting taken
// out, from what a TSDB can also give: the raw completion counter's
// samples over each window (avg_over_time, and its values at the window's
// ends). For requests served in arrival order at a constant rate lambda,
// the mean latency of those completing in a window is their mean
// completion time (the window's centroid of completions, not its middle)
// minus their mean arrival time (their mean index / lambda), so between
// two windows lambda = the shift of the mean index / (the shift of the
// centroid - the shift of the mean latency), whatever the completion rate
// did inside the windows. Only the scrapes blur it: a completion is seen
// at the scrape after it (2 s scrapes in 4 s steps: within 14 %; 10 s
// scrapes in 60 s steps: within 3 %). It is not what gatewayDemand
// does: it needs the raw counter, not its rates, and a counter reset
// inside a window would break it.
func (q fifoQueue) centroidArrivals(t, dt, w float64) float64 {
	type window struct{ meanIndex, centroid, latency float64 }
	at := func(end float64) window {
		n0, s0 := q.counters(end - w)
		n1, s1 := q.counters(end)
		// avg_over_time of the counter: its mean over the window's scrapes.
		sum, k := 0.0, 0
		for s := end - w + q.scrape; s <= end+1e-9; s += q.scrape {
			n, _ := q.counters(s)
			sum += n
			k++
		}
		// The completions' summed completion time, by parts: end x n1 -
		// (end - w) x n0 - the integral of the counter over the window;
		// a completion shows at the scrape after it, half a scrape late
		// on average.
		completions := n1 - n0
		centroid := end - w*(sum/float64(k)-n0)/completions + q.scrape/2
		return window{(n0 + n1) / 2, centroid, (s1 - s0) / completions}
	}
	prev, last := at(t-dt), at(t)
	return (last.meanIndex - prev.meanIndex) / ((last.centroid - prev.centroid) - (last.latency - prev.latency))
}

// intervals are the scrape intervals over (t-span, t], as the gateway's
// two counters' raw samples give them (shared/tsdb's
// GatewayMetrics.Completions): what completed in each, and their summed
// latency.
func (q fifoQueue) intervals(t, span float64) []policy.CompletionInterval {
	var out []policy.CompletionInterval
	at := func(s float64) time.Time {
		return time.Unix(1_800_000_000, 0).Add(time.Duration(s * float64(time.Second)))
	}
	for s := math.Floor((t-span-q.offset)/q.scrape+1e-9)*q.scrape + q.offset + q.scrape; s <= t+1e-9; s += q.scrape {
		c1, l1 := q.counters(s)
		c0, l0 := q.counters(s - q.scrape)
		out = append(out, policy.CompletionInterval{From: at(s - q.scrape), To: at(s), Completed: c1 - c0, LatencySum: l1 - l0})
	}
	return out
}

// extreme is the highest or lowest estimate seen, at which step and how
// late against the step grid the instances came.
type extreme struct {
	value, at, phase float64
	seen             bool
}

func (e *extreme) keep(v, at, phase float64, higher bool) {
	if !e.seen || (higher && v > e.value) || (!higher && v < e.value) {
		*e = extreme{v, at, phase, true}
	}
}

// TestGatewayArrivalsWhileInstancesComeUp measures the gateway's arrival
// estimate on a FIFO queue fed 5 req/s of 1 s requests while its
// instances come up (1 or 2, then 3, 5 and 7), at every phase of their
// arrival against the step grid, at every step at which a request waits.
// It records, against the 5 req/s that arrive:
//   - estimated: policy.ArrivalsFromCompletions on the newest pair;
//   - decided: what gatewayDemand sizes from (the newest pair, capped at
//     steadyRequests x the pair before while the instances change);
//   - time-weighted: the same formula with each window's latency the
//     time-weighted mean the simulation knows, not the completion-weighted
//     one the duration sum gives;
//   - exact pairing: that, with the completion rate averaged over the
//     step (the rate window's end sliding from one step to the next)
//     rather than the two windows' rates averaged;
//   - centroid: centroidArrivals, from the raw completion counter;
//   - curve: policy.ArrivalsFromCurve on the scrape intervals of the
//     newest pair's span, what gatewayDemand sizes from.
//
// What it shows (the numbers are logged): the estimate over-reads by up
// to 4.2x (21 req/s) in the closed loop and 2.2x (11.2 req/s) in
// production, in the step whose newest window holds the first new
// instance's completions, and under-reads to 0.73x the step after; the
// cap holds what is sized to 1.5x. The CI case (2 instances, the third
// while latency is near 6 s) reads 6.07 req/s, as CI read 6.1. With the
// time-weighted latency it reads 0.92x to 1.19x, and exactly 5 with the
// exact pairing: completed / (1 - growth) is exact for time-weighted
// means, and the over-read is the completion weighting of the duration
// sum, which pulls a window's mean latency toward the part of the window
// in which more requests completed: after new instances start, where
// the latencies are the highest. The remedy needs where in its window
// the completions fell (centroid), which the rates of the two counters
// over windows do not say, at any window length: with windows of one step
// (no overlap; window set to step here) the estimate still read up to
// 10 req/s in both the closed loop and production. The raw samples do:
// the curve of the scrape intervals reads 0.86x to 1.12x in the closed
// loop and 0.99x to 1.03x in production, and is what gatewayDemand now
// sizes from.
func TestGatewayArrivalsWhileInstancesComeUp(t *testing.T) {
	const lambda = 5.0 // 5 req/s of 1 s each: 7 instances at 75 %
	service := policy.Cost{SecondsPerRequest: 1, Weight: 30}
	for _, c := range []struct {
		name                    string
		window, step, scrape    float64
		servers                 int
		first, between, horizon float64
		// overRead is the most the estimate reads, over the arrivals.
		overRead float64
	}{
		// The closed loop: 8 s windows every 4 s, scraped every 2 s; one
		// instance, then 3, 5 and 7 two steps apart.
		{"closed loop", 8, 4, 2, 1, 16, 8, 200, 4.3},
		// As in CI: 2 instances, the third while latency is near 6 s.
		{"closed loop from 2", 8, 4, 2, 2, 10, 8, 200, 1.25},
		// Production: 70 s windows every 60 s, scraped every 10 s.
		{"production", 70, 60, 10, 1, 240, 120, 2400, 2.3},
		{"production, instances a step apart", 70, 60, 10, 1, 240, 60, 2400, 2.3},
	} {
		t.Run(c.name, func(t *testing.T) {
			estimates := []string{"estimated", "decided", "time-weighted", "exact pairing", "centroid", "curve"}
			high, low := map[string]*extreme{}, map[string]*extreme{}
			for _, e := range estimates {
				high[e], low[e] = &extreme{}, &extreme{}
			}
			for phase := 0.0; phase < c.step; phase += c.scrape / 4 {
				ramp := []rampStep{{0, c.servers}}
				for i, n := range []int{3, 5, 7} {
					ramp = append(ramp, rampStep{c.first + float64(i)*c.between + phase, n})
				}
				q := simulateFIFO(lambda, service.SecondsPerRequest, c.scrape, c.horizon+c.window, ramp)
				m := tsdb.GatewayMetrics{Versions: []tsdb.GatewayVersion{{FunctionVersionID: "a", Instances: 1, InstancesKnown: true, Concurrency: 1}}}
				for at := 2 * c.step; at <= c.horizon; at += c.step {
					before, prev, last := q.step(at-2*c.step, c.window), q.step(at-c.step, c.window), q.step(at, c.window)
					if before.rate == 0 {
						continue // before the first completions
					}
					if prev.inFlight <= 1.05*prev.rate && last.inFlight <= 1.05*last.rate {
						continue // nothing waits: the estimate sizes nothing
					}
					completions := func(s slotStep) policy.Completions {
						return policy.Completions{At: s.at, Rate: s.rate, InFlight: s.inFlight}
					}
					estimated, _, ok := policy.ArrivalsFromCompletions(completions(prev), completions(last), service)
					require.True(t, ok)
					require.LessOrEqual(t, estimated, last.inFlight/service.SecondsPerRequest+1e-9, "never above little's law")
					m.InFlight, m.InFlightKnown = last.inFlight, true
					decided := gatewayDemand(m, []slotStep{before, prev, last}, service, time.Duration(c.window)*time.Second)
					growth := (q.timeWeightedLatency(at, c.window) - q.timeWeightedLatency(at-c.step, c.window)) / c.step
					// The window's completion rate averaged as its end
					// slides over the step.
					slid := 0.0
					const points = 400
					for i := 0; i < points; i++ {
						end := at - c.step + (float64(i)+0.5)*c.step/points
						n1, _ := q.exact(end)
						n0, _ := q.exact(end - c.window)
						slid += (n1 - n0) / c.window / points
					}
					curve, _, cok := policy.ArrivalsFromCurve(q.intervals(at, c.window+c.step), last.inFlight, service)
					require.True(t, cok, "t=%v", at)
					for e, v := range map[string]float64{
						"curve":         curve,
						"estimated":     estimated,
						"decided":       decided.Instances * service.SecondsPerRequest,
						"time-weighted": (prev.rate + last.rate) / 2 / (1 - growth),
						"exact pairing": slid / (1 - growth),
						"centroid":      q.centroidArrivals(at, c.step, c.window),
					} {
						high[e].keep(v, at, phase, true)
						low[e].keep(v, at, phase, false)
					}
				}
			}
			for _, e := range estimates {
				t.Logf("%-13s max %5.2f req/s (t=%4.0f s, instances %4.1f s late)  min %5.2f req/s (t=%4.0f s, %4.1f s late)",
					e, high[e].value, high[e].at, high[e].phase, low[e].value, low[e].at, low[e].phase)
			}
			require.LessOrEqual(t, high["estimated"].value, c.overRead*lambda, "the over-read measured")
			require.LessOrEqual(t, high["decided"].value, steadyRequests*lambda*(1+1e-9), "the cap holds it to 1.5x")
			// The mechanism: without the completion weighting the formula is right.
			require.InDelta(t, lambda, high["exact pairing"].value, 0.01)
			require.InDelta(t, lambda, low["exact pairing"].value, 0.01)
			require.InEpsilon(t, lambda, high["time-weighted"].value, 0.2)
			require.InEpsilon(t, lambda, low["time-weighted"].value, 0.2)
			require.InEpsilon(t, lambda, high["centroid"].value, 0.15)
			require.InEpsilon(t, lambda, low["centroid"].value, 0.15)
			// What gatewayDemand sizes from when the raw samples are there.
			require.InEpsilon(t, lambda, high["curve"].value, 0.15)
			require.InEpsilon(t, lambda, low["curve"].value, 0.15)
		})
	}
}

// TestGatewayArrivalsAfterARise: arrivals step from 2 to 5 req/s of 1 s
// requests at 3 instances (a queue builds and keeps growing). The curve
// (policy.ArrivalsFromCurve) follows the rise as fast as the pair of
// windows does, never reads above the arrivals, and settles on them;
// the pair, with production's 30 s scrapes in 70 s windows, settles
// 29 % high (6.43 req/s) for as long as the queue grows.
func TestGatewayArrivalsAfterARise(t *testing.T) {
	service := policy.Cost{SecondsPerRequest: 1, Weight: 30}
	for _, c := range []struct {
		name                 string
		window, step, scrape float64
		riseAt, horizon      float64
	}{
		{"closed loop", 8, 4, 2, 40, 120},
		{"production, 30 s scrapes", 70, 60, 30, 600, 1500},
		{"production, 10 s scrapes", 70, 60, 10, 600, 1500},
	} {
		t.Run(c.name, func(t *testing.T) {
			var arrivals []float64
			for a := 0.0; a < c.horizon+c.window; {
				arrivals = append(arrivals, a)
				if a < c.riseAt {
					a += 1.0 / 2
				} else {
					a += 1.0 / 5
				}
			}
			q := serveFIFO(arrivals, 1, c.scrape, []rampStep{{0, 3}})
			completions := func(s slotStep) policy.Completions {
				return policy.Completions{At: s.at, Rate: s.rate, InFlight: s.inFlight}
			}
			// The step at which each first reads 90 % of the new rate.
			pairNear, curveNear := -1.0, -1.0
			for at := c.riseAt; at <= c.riseAt+6*c.step; at += c.step {
				prev, last := q.step(at-c.step, c.window), q.step(at, c.window)
				pair, _, _ := policy.ArrivalsFromCompletions(completions(prev), completions(last), service)
				curve, how, ok := policy.ArrivalsFromCurve(q.intervals(at, c.window+c.step), last.inFlight, service)
				require.True(t, ok)
				t.Logf("t=%+5.0f s: pair %.2f req/s, curve %.2f (%s)", at-c.riseAt, pair, curve, how)
				require.LessOrEqual(t, curve, 5*1.01, "the curve over-read a rise")
				if pair >= 4.5 && pairNear < 0 {
					pairNear = at
				}
				if curve >= 4.5 && curveNear < 0 {
					curveNear = at
				}
				if at >= c.riseAt+4*c.step {
					require.InEpsilon(t, 5, curve, 0.01, "the curve settles on the arrivals")
				}
			}
			require.Positive(t, curveNear, "the curve never read 90 %% of the arrivals")
			require.LessOrEqual(t, curveNear, pairNear, "the curve followed the rise later than the pair")
		})
	}
}
