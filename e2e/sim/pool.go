package sim

import "math"

// requestPool is where requests wait for and hold a request slot of a
// service that does not run NVCF worker threads: a bring-your-own-cluster
// version (its own pool) or an LLM function behind the API gateway (one
// pool for all of the function's versions). Slots are instances x
// concurrency. Requests wait in arrival order for a free slot, hold it for
// the service time and complete; one that waited the give-up time leaves
// unserved, as a client or the gateway would time it out.
//
// Every request that leaves, served or not, adds its whole time in the
// system (waiting included) to the latency sum, as a server's latency
// histogram does at completion. Hence Little's law holds in the exported
// numbers: over a run, the sum's increase equals the time integral of the
// requests in flight, apart from those still in flight at either end, so
// the rate of the sum is the average number in flight, queueing included
// when capacity is short.
//
// The pool is a fluid model (fractional requests) advanced event by event
// inside each tick, so a slot freed mid-tick starts the next waiting
// request at once and capacity does not depend on the tick length.
type requestPool struct {
	service float64 // seconds a request holds a slot
	giveUp  float64 // seconds a request waits at most

	waiting []cohort // in arrival order
	serving []cohort // in finish order (the service time is fixed)

	arrived    float64 // counter: requests that arrived
	left       float64 // counter: requests that left, served or given up
	gaveUp     float64 // counter: of those, the ones never served
	latencySum float64 // counter: seconds in the system of the requests that left

	// For tests and snapshots, not exported: the integral of requests in
	// flight over time, and of slots held.
	inFlightSeconds float64
	busySeconds     float64
}

// cohort is an amount of requests that arrived together and, once serving,
// finish together.
type cohort struct {
	amount  float64
	arrived float64 // seconds since the data plane's start (the mean, once merged)
	finish  float64 // serving cohorts only
}

// finishGrid rounds finish times up to 10 ms so that requests started at
// nearby instants finish together: the serving list then stays short (at
// most service time / 10 ms cohorts) without changing any duration by more
// than the grid.
const finishGrid = 0.01

// negligible is an amount of requests too small to track.
const negligible = 1e-9

func newRequestPool(service, giveUp float64) *requestPool {
	return &requestPool{service: service, giveUp: giveUp}
}

// advance moves the pool from `from` to `to` (seconds since the start)
// with `arrivals` requests arriving at `from` and `slots` request slots
// open over the interval.
func (p *requestPool) advance(from, to, arrivals, slots float64) {
	if arrivals > negligible {
		p.arrived += arrivals
		p.waiting = append(p.waiting, cohort{amount: arrivals, arrived: from})
	}
	t := from
	for {
		p.settle(t, slots)
		next := math.Inf(1)
		if len(p.serving) > 0 {
			next = p.serving[0].finish
		}
		if len(p.waiting) > 0 {
			next = math.Min(next, p.waiting[0].arrived+p.giveUp)
		}
		if next > to {
			break
		}
		p.accrue(t, next)
		t = next
	}
	p.accrue(t, to)
}

// settle completes what finished by t, lets go of what waited too long and
// starts waiting requests in the free slots.
func (p *requestPool) settle(t, slots float64) {
	for len(p.serving) > 0 && p.serving[0].finish <= t {
		c := p.serving[0]
		p.leave(c.amount, c.finish-c.arrived)
		p.serving = p.serving[1:]
	}
	for len(p.waiting) > 0 && p.waiting[0].arrived+p.giveUp <= t {
		c := p.waiting[0]
		p.leave(c.amount, p.giveUp)
		p.gaveUp += c.amount
		p.waiting = p.waiting[1:]
	}
	free := slots - p.servingAmount()
	finish := math.Ceil((t+p.service)/finishGrid-1e-9) * finishGrid
	for free > negligible && len(p.waiting) > 0 {
		c := &p.waiting[0]
		n := math.Min(free, c.amount)
		free -= n
		p.startServing(cohort{amount: n, arrived: c.arrived, finish: finish})
		if c.amount -= n; c.amount <= negligible {
			p.waiting = p.waiting[1:]
		}
	}
}

// startServing appends a cohort, merging it with the last one when both
// finish together. A merged cohort keeps the amount-weighted mean arrival
// time, which keeps its latency sum exact.
func (p *requestPool) startServing(c cohort) {
	if n := len(p.serving); n > 0 && p.serving[n-1].finish == c.finish {
		last := &p.serving[n-1]
		total := last.amount + c.amount
		last.arrived = (last.arrived*last.amount + c.arrived*c.amount) / total
		last.amount = total
		return
	}
	p.serving = append(p.serving, c)
}

func (p *requestPool) leave(amount, seconds float64) {
	p.left += amount
	p.latencySum += amount * seconds
}

func (p *requestPool) accrue(from, to float64) {
	dt := to - from
	if dt <= 0 {
		return
	}
	busy := p.servingAmount()
	p.busySeconds += busy * dt
	p.inFlightSeconds += (busy + p.waitingAmount()) * dt
}

func (p *requestPool) servingAmount() float64 {
	s := 0.0
	for _, c := range p.serving {
		s += c.amount
	}
	return s
}

func (p *requestPool) waitingAmount() float64 {
	s := 0.0
	for _, c := range p.waiting {
		s += c.amount
	}
	return s
}
