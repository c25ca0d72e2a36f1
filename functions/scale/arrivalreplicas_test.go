package scale

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"function/shared/policy"
	"function/shared/tsdb"
)

// The gateway runs several replicas, each counting the requests it
// answers in its own series. This file measures the curve's arrival
// estimate (TestGatewayArrivalsWhileInstancesComeUp's "curve") when the
// requests are split over replicas, so that the k-th request to complete
// overall need not be the k-th to arrive.

// replicaSplit says which replica each arriving request goes to: in turn
// when weights is nil, else at random with those weights.
type replicaSplit struct {
	name     string
	replicas int
	weights  []float64
}

// assign is the replica of each of n requests, from a fixed seed.
func (s replicaSplit) assign(n int) []int {
	rng := rand.New(rand.NewPCG(1, 2))
	out := make([]int, n)
	for i := range out {
		out[i] = i % s.replicas
		if s.weights != nil {
			u := rng.Float64()
			r := 0
			for ; r < len(s.weights)-1 && u >= s.weights[r]; r++ {
				u -= s.weights[r]
			}
			out[i] = r
		}
	}
	return out
}

// replicaInstances is how the replicas reach the function's instances.
type replicaInstances string

const (
	// oneQueue: every request joins one FIFO queue behind the replicas,
	// which only count (the order is one FIFO order, as the fit assumes).
	oneQueue replicaInstances = "one queue"
	// sharedInstances: each replica queues its own requests; its head
	// takes the first instance free (serveReplicas), so backlogged
	// replicas take turns whatever their share of the arrivals.
	sharedInstances replicaInstances = "shared"
	// ownedInstances: instance i serves replica i mod R only, as a proxy
	// with its own pool would; a replica owns none until there are R.
	ownedInstances replicaInstances = "owned"
)

// shareOf is the part of a ramp that replica r of n owns.
func shareOf(ramp []rampStep, r, n int) []rampStep {
	out := make([]rampStep, len(ramp))
	for i, st := range ramp {
		out[i] = rampStep{st.at, (st.servers - r + n - 1) / n}
	}
	return out
}

// replicaQueues serves arrivals split over replicas and returns each
// replica's counters and their sum over the replicas, scraped together.
func replicaQueues(s replicaSplit, how replicaInstances, arrivals []float64, service, scrape float64, ramp []rampStep) (replicas []fifoQueue, summed fifoQueue) {
	assign := s.assign(len(arrivals))
	queues := make([][]float64, s.replicas)
	for i, a := range arrivals {
		queues[assign[i]] = append(queues[assign[i]], a)
	}
	var byReplica [][]served
	switch how {
	case oneQueue:
		byReplica = make([][]served, s.replicas)
		for i, r := range serveReplicas([][]float64{arrivals}, service, ramp)[0] { // in arrival order
			byReplica[assign[i]] = append(byReplica[assign[i]], r)
		}
	case sharedInstances:
		byReplica = serveReplicas(queues, service, ramp)
	case ownedInstances:
		for r := range queues {
			byReplica = append(byReplica, serveReplicas(queues[r:r+1], service, shareOf(ramp, r, s.replicas))[0])
		}
	}
	var all []served
	for _, reqs := range byReplica {
		replicas = append(replicas, queueOf(reqs, scrape, ramp))
		all = append(all, reqs...)
	}
	return replicas, queueOf(all, scrape, ramp)
}

// tsdbIntervals are the scrape intervals of the queues' series over
// (t-span, t], in the order GatewayMetrics gives them: by end.
func tsdbIntervals(t, span float64, queues ...fifoQueue) []tsdb.CompletionInterval {
	var out []tsdb.CompletionInterval
	for _, q := range queues {
		for _, iv := range q.intervals(t, span) {
			out = append(out, tsdb.CompletionInterval{From: iv.From, To: iv.To, Completed: iv.Completed, LatencySum: iv.LatencySum})
		}
	}
	slices.SortFunc(out, func(a, b tsdb.CompletionInterval) int { return a.To.Compare(b.To) })
	return out
}

// TestGatewayArrivalsThroughReplicas measures what gatewayDemand sizes
// from, against the 5 req/s that arrive, on
// TestGatewayArrivalsWhileInstancesComeUp's ramps and timings, every
// phase of the ramp against the step grid, when the requests are split
// over 2 or 3 gateway replicas (in turn, or at random 60/40 and
// 50/30/20) that reach the instances as replicaInstances says. The
// intervals are given to gatewayDemand three ways:
//   - series: each replica's own intervals, scraped at the same times,
//     as GatewayMetrics.Completions has them (no sum: one interval per
//     series and scrape);
//   - staggered: the same, replica r scraped r/R of a scrape later, as a
//     TSDB spreads its targets;
//   - summed: the replicas' counters summed at common scrapes (what sum
//     by (function_id) of the raw counters would give; not what
//     GatewayMetrics does);
//
// and, not a path of the code, "fit each": policy.ArrivalsFromCurve on
// each replica's intervals alone, summed (each replica is FIFO).
//
// What it shows (the numbers are logged): with one FIFO order behind the
// replicas, or an even split on shared instances, every way reads as one
// replica does (production: 0.95x to 1.03x). Otherwise the replicas'
// latencies differ (a backlogged replica takes its turn at the
// instances whatever its share of the arrivals; a replica that owns no
// instance waits for one), and the series, pooled into one index,
// under-read: to 0.21x in production with 50/30/20 on shared instances,
// to 0 on owned ones, where some steps do not fit at all. Points of
// different replicas in one scrape have about the same index but
// arrival times as far apart as the replicas' latencies, which flattens
// the slope. They never read much above one replica (1.18x in the closed
// loop for its 1.12x, 1.03x in production). The sum over-reads, to 1.46x
// (the replicas' share of the completions shifts between old and new
// arrivals). Fitted alone and summed, the replicas read 0.92x to 1.07x
// in production on shared instances, but up to 1.51x in the closed
// loop, where a 20 % replica completes about 2 requests a scrape.
func TestGatewayArrivalsThroughReplicas(t *testing.T) {
	const lambda = 5.0
	service := policy.Cost{SecondsPerRequest: 1, Weight: 30}
	splits := []replicaSplit{
		{"1 replica", 1, nil},
		{"2 in turn", 2, nil},
		{"3 in turn", 3, nil},
		{"2 at 60/40", 2, []float64{0.6, 0.4}},
		{"3 at 50/30/20", 3, []float64{0.5, 0.3, 0.2}},
	}
	for _, c := range []struct {
		name                    string
		window, step, scrape    float64
		servers                 int
		first, between, horizon float64
		production              bool
		// overRead is the most the series read, over the arrivals, in
		// any model: measured 1.18, 1.12, 1.03 and 1.03 (one replica:
		// 1.12, 1.04, 1.03, 1.03). The runs are deterministic; the
		// margin is for rounding, not for a change that reads higher.
		overRead float64
	}{
		{"closed loop", 8, 4, 2, 1, 16, 8, 200, false, 1.20},
		{"closed loop from 2", 8, 4, 2, 2, 10, 8, 200, false, 1.14},
		{"production", 70, 60, 10, 1, 240, 120, 2400, true, 1.05},
		{"production, instances a step apart", 70, 60, 10, 1, 240, 60, 2400, true, 1.05},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, s := range splits {
				for _, how := range []replicaInstances{oneQueue, sharedInstances, ownedInstances} {
					if s.replicas == 1 && how != oneQueue {
						continue
					}
					views := []string{"series", "staggered", "summed", "fit each"}
					high, low, missed := map[string]*extreme{}, map[string]*extreme{}, map[string]int{}
					for _, v := range views {
						high[v], low[v] = &extreme{}, &extreme{}
					}
					for phase := 0.0; phase < c.step; phase += c.scrape / 4 {
						ramp := []rampStep{{0, c.servers}}
						for i, n := range []int{3, 5, 7} {
							ramp = append(ramp, rampStep{c.first + float64(i)*c.between + phase, n})
						}
						var arrivals []float64
						for k := 0; float64(k)/lambda < c.horizon+c.window; k++ {
							arrivals = append(arrivals, float64(k)/lambda)
						}
						aligned, summed := replicaQueues(s, how, arrivals, service.SecondsPerRequest, c.scrape, ramp)
						staggered := slices.Clone(aligned)
						for r := range staggered {
							staggered[r].offset = float64(r) * c.scrape / float64(s.replicas)
						}
						span := c.window + 2*c.step // tsdb's CompletionSpan
						for at := 2 * c.step; at <= c.horizon; at += c.step {
							before, prev, last := summed.step(at-2*c.step, c.window), summed.step(at-c.step, c.window), summed.step(at, c.window)
							if before.rate == 0 {
								continue
							}
							if prev.inFlight <= 1.05*prev.rate && last.inFlight <= 1.05*last.rate {
								continue // nothing waits: the estimate sizes nothing
							}
							for v, ivs := range map[string][]tsdb.CompletionInterval{
								"series":    tsdbIntervals(at, span, aligned...),
								"staggered": tsdbIntervals(at, span, staggered...),
								"summed":    tsdbIntervals(at, span, summed),
							} {
								m := tsdb.GatewayMetrics{Versions: []tsdb.GatewayVersion{{FunctionVersionID: "a", Instances: 1, InstancesKnown: true, Concurrency: 1}},
									InFlight: last.inFlight, InFlightKnown: true, Completions: ivs}
								d := gatewayDemand(m, []slotStep{before, prev, last}, service, time.Duration(c.window)*time.Second)
								if !strings.Contains(d.Detail, "scrape intervals") {
									missed[v]++ // no fit: gatewayDemand sized from the windows
									continue
								}
								high[v].keep(d.Instances*service.SecondsPerRequest, at, phase, true)
								low[v].keep(d.Instances*service.SecondsPerRequest, at, phase, false)
							}
							each, fitted := 0.0, true
							from := last.at.Add(-time.Duration((c.window + c.step) * float64(time.Second)))
							for _, q := range aligned {
								a, _, ok := policy.ArrivalsFromCurve(intervalsIn(tsdbIntervals(at, span, q), from, last.at), last.inFlight, service)
								each, fitted = each+a, fitted && ok
							}
							if !fitted {
								missed["fit each"]++
								continue
							}
							each = min(each, last.inFlight/service.SecondsPerRequest)
							high["fit each"].keep(each, at, phase, true)
							low["fit each"].keep(each, at, phase, false)
						}
					}
					for _, v := range views {
						t.Logf("%-13s %-9s %-9s max %.2fx (t=%4.0f s, %4.1f s late)  min %.2fx (t=%4.0f s, %4.1f s late)  no fit %d",
							s.name, how, v, high[v].value/lambda, high[v].at, high[v].phase, low[v].value/lambda, low[v].at, low[v].phase, missed[v])
					}
					// What gatewayDemand sizes from never reads above what one
					// replica's does, whatever the replicas do.
					for _, v := range []string{"series", "staggered"} {
						require.LessOrEqual(t, high[v].value, c.overRead*lambda, "%s, %s: %s", s.name, how, v)
					}
					if !c.production {
						continue // 2 s scrapes split 3 ways count 0 to 3 a series: too few to bound below
					}
					// Where the replicas' latencies are alike (one FIFO order
					// behind them, or an even split on shared instances)
					// every reading is one replica's (0.99x to 1.03x), within
					// 0.95x to 1.03x.
					if how == oneQueue || how == sharedInstances && s.weights == nil {
						for _, v := range views {
							require.Zero(t, missed[v], "%s, %s: %s", s.name, how, v)
							require.GreaterOrEqual(t, low[v].value, 0.93*lambda, "%s, %s: %s", s.name, how, v)
							require.LessOrEqual(t, high[v].value, 1.05*lambda, "%s, %s: %s", s.name, how, v)
						}
					}
					// Each replica is FIFO: fitted alone and summed, the
					// replicas read the arrivals (0.92x to 1.07x) where the
					// pooled series read as low as 0.21x.
					if how == sharedInstances {
						require.Zero(t, missed["fit each"], "%s, %s", s.name, how)
						require.InEpsilon(t, lambda, low["fit each"].value, 0.1, "%s, %s", s.name, how)
						require.InEpsilon(t, lambda, high["fit each"].value, 0.1, "%s, %s", s.name, how)
					}
				}
			}
		})
	}
}
