package policy

import (
	"fmt"
	"math"
	"time"
)

// Backlog is a version's estimated queue: requests routed to it that no
// worker has served yet, kept by the caller in the version's scaling state
// and folded one settled window at a time.
//
// It is what tells a backlog drain from a stale cost. Both look alike in
// one cycle's numbers: the version is saturated and its workers are busier
// than the known demand (request rate x learned cost) explains. After a
// step sized from demand, the requests that queued during the climb keep
// the new workers 100 % busy until they are served, which is expected and
// needs no more instances; after the workload got heavier, the learned cost
// is too low and the version needs more. Conservation of requests separates
// them: every request served was either queued already or arrived since,
// so over a span of windows
//
//	served = busy seconds / cost <= backlog at the start + requests arrived
//
// and the backlog left is the difference. With a cost that is right, the
// estimate follows the real queue and reaches zero when saturation ends.
// With a cost that is too low, busy seconds / cost counts more requests
// served than really were, the estimate runs out while the version is
// still saturated, and that is the proof that the cost is stale.
type Backlog struct {
	// Requests is the estimated queue at UpdatedAt, >= 0.
	Requests float64
	// UpdatedAt is the end of the last window folded in; zero means no
	// estimate.
	UpdatedAt time.Time
	// Prior is the estimate that window was folded onto: the queue it
	// began serving. A window that drained the queue ends with less than
	// BacklogMinRequests left, yet its workers were saturated by the
	// queue all the same (see Serving).
	Prior float64
}

// Known reports whether the estimate can be used.
func (b Backlog) Known() bool {
	return !b.UpdatedAt.IsZero() && finite(b.Requests) && b.Requests >= 0
}

// Queued reports whether the estimate says requests are waiting: at least
// BacklogMinRequests of them, below which the edge effect of one window (a
// request counted on arrival in one window and busy in the next) is all
// the estimate can tell.
func (b Backlog) Queued() bool {
	return b.Known() && b.Requests >= BacklogMinRequests
}

// Serving reports whether the newest window served a queue: one is left
// (Queued), or the window began with one. It is what explains a window
// whose workers are busier than the demand: the window in which a queue
// drains is saturated by it to its end, while the estimate at its end
// already reads (nearly) empty. Reading that window as "queue gone, still
// saturated", the proof of a stale cost, doubled a version that had just
// been sized for its demand (a closed loop's 10x step ended at 16
// instances for a demand of 8 whenever the drain ended just before a
// window's end). A stale cost is still proved, one window later: by a
// saturated window that began with no queue.
func (b Backlog) Serving() bool {
	return b.Queued() || (b.Known() && finite(b.Prior) && b.Prior >= BacklogMinRequests)
}

// BacklogMinRequests is the smallest estimated queue that counts as one.
// A window's requests and busy seconds disagree by up to the requests in
// flight at its two edges, which for a version of a few instances is a few
// requests; a queue of that size drains within a request's length and
// says nothing about a stale cost.
const BacklogMinRequests = 3.0

// Fold adds one window's arrivals and service (the window ending at at:
// requests routed, busy seconds of all worker threads) to the estimate,
// using the learned cost to turn busy seconds into requests served. The
// queue cannot be negative: a window that served more than was queued and
// arrived leaves it empty, not owed. An unusable input (an unknown cost,
// NaN, ±Inf or negative numbers) drops the estimate, since a guess
// carried over would outlive the data that made it; a window not after
// UpdatedAt (replayed or out of order) leaves it as it was.
func (b Backlog) Fold(at time.Time, requests, busySeconds float64, c Cost) Backlog {
	if !b.UpdatedAt.IsZero() && !at.After(b.UpdatedAt) {
		return b
	}
	if !c.Known() || !finite(requests) || !finite(busySeconds) || requests < 0 || busySeconds < 0 {
		return Backlog{}
	}
	queued := 0.0
	if b.Known() {
		queued = b.Requests
	}
	return Backlog{Requests: math.Max(0, queued+requests-busySeconds/c.SecondsPerRequest), UpdatedAt: at, Prior: queued}
}

// Empty is the estimate after a window that shows no queue (steady
// requests, no saturation: the window a cost is learned from, whose
// requests were all served within it). It resets the estimate, so that
// the small errors each fold carries cannot add up over hours of traffic.
func (b Backlog) Empty(at time.Time) Backlog {
	if !b.UpdatedAt.IsZero() && !at.After(b.UpdatedAt) {
		return b
	}
	return Backlog{UpdatedAt: at}
}

// Observe folds one settled window into the estimate and reports whether
// the window may teach the cost (Cost.Learn). steady is the caller's test
// that the window can measure cost at all: not saturated, the same
// workers throughout, steady requests.
//
// Such a window empties the estimate: its requests were served within it.
// Except while a queue is estimated: then the workers spend the window
// serving requests that arrived before it, so busy seconds over requests
// would teach a cost too high, and the window is folded instead. But a
// real queue shrinks in a window with idle capacity, which a steady one
// has; an estimate that does not is not a queue but a cost that is too
// high (the requests got lighter), and holding on to it would keep the
// cost from ever being learned again. So the queue is dropped and the
// window teaches the cost.
func (b Backlog) Observe(at time.Time, requests, busySeconds float64, c Cost, steady bool) (Backlog, bool) {
	if steady && !b.Queued() {
		return b.Empty(at), true
	}
	folded := b.Fold(at, requests, busySeconds, c)
	if steady && !(folded.Known() && folded.Requests < b.Requests) {
		return b.Empty(at), true
	}
	return folded, false
}

// String reads "backlog=40 requests", "backlog=2 requests (40 as its
// window began)" when the window drained a queue, or "backlog unknown".
func (b Backlog) String() string {
	if !b.Known() {
		return "backlog unknown"
	}
	if !b.Queued() && b.Serving() {
		return fmt.Sprintf("backlog=%.0f requests (%.0f as its window began)", b.Requests, b.Prior)
	}
	return fmt.Sprintf("backlog=%.0f requests", b.Requests)
}
