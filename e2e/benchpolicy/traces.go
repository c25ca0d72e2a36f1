package main

import (
	"math"
	"math/rand/v2"
)

// Trace is a load shape for one function version. Load is given as
// offered demand in busy instances (the instances it would keep 100 %
// busy); with the trace's cost per request and threads per instance that
// is a request rate the invocation plane counts.
type Trace struct {
	Name        string
	Description string
	Minutes     int
	// CostSeconds is the busy seconds one request takes on one thread.
	CostSeconds float64
	Threads     int
	// StepAt is the minute of a 10x step in load, -1 for none.
	StepAt int
	// New is a version deployed at the trace's start: no warm-up, so it
	// has served nothing before its first minute and learned nothing.
	New bool
	// demand is the offered load at a (fractional) minute.
	demand func(minute float64) float64
}

// demandAt is the load at second t of the measured span; the warm-up
// before it runs at the starting load.
func (tr Trace) demandAt(t int) float64 {
	if t < 0 {
		t = 0
	}
	return tr.demand(float64(t) / 60)
}

// Traces are the load shapes the benchmark replays. Each stresses one
// thing a policy can get wrong: reaction to a step, a short spike, a slow
// daily swing, the first burst after scale to zero, repeated ramps, a
// load that flips faster than a stabilization window (regularly, for an
// hour and then settles, and irregularly), and a steady ramp.
func Traces() []Trace {
	return []Trace{
		{
			Name: "step", Description: "2 busy instances, 10x to 20 at minute 30, back to 2 at minute 90",
			Minutes: 150, CostSeconds: 1, Threads: 1, StepAt: 30,
			demand: pulses(2, 20, [2]float64{30, 90}),
		},
		{
			Name: "spike", Description: "4 busy instances with 6x spikes of 5 minutes (minute 40) and 3 minutes (minute 100)",
			Minutes: 150, CostSeconds: 2, Threads: 1, StepAt: -1,
			demand: pulses(4, 24, [2]float64{40, 45}, [2]float64{100, 103}),
		},
		diurnal(),
		{
			Name: "idle-burst", Description: "idle for 60 minutes (scale to zero), 8 busy instances for 30, idle again",
			Minutes: 150, CostSeconds: 4, Threads: 1, StepAt: -1,
			demand: pulses(0, 8, [2]float64{60, 90}),
		},
		{
			Name: "sawtooth", Description: "ramps from 2 to 16 busy instances over 30 minutes, then drops, five times",
			Minutes: 150, CostSeconds: 1, Threads: 2, StepAt: -1,
			demand: func(m float64) float64 { return 2 + 14*math.Mod(m, 30)/30 },
		},
		{
			Name: "oscillating", Description: "flips between 4 and 12 busy instances every 6 minutes",
			Minutes: 144, CostSeconds: 1.5, Threads: 1, StepAt: -1,
			demand: func(m float64) float64 {
				if int(m/6)%2 == 1 {
					return 12
				}
				return 4
			},
		},
		{
			// The oscillating load for an hour, then settled low: what a
			// flap hold costs once the flipping has stopped.
			Name: "flap-settle", Description: "flips between 4 and 12 busy instances every 6 minutes for an hour, then stays at 4",
			Minutes: 144, CostSeconds: 1.5, Threads: 1, StepAt: -1,
			demand: func(m float64) float64 {
				if m < 60 && int(m/6)%2 == 1 {
					return 12
				}
				return 4
			},
		},
		irregular(),
		{
			Name: "ramp", Description: "grows steadily from 2 to 30 busy instances over 120 minutes, then holds",
			Minutes: 150, CostSeconds: 0.5, Threads: 4, StepAt: -1,
			demand: func(m float64) float64 { return 2 + 28*math.Min(m, 120)/120 },
		},
		{
			// A new deployment or a version rollout whose first real load
			// is a step: 3 minutes of 0.5 busy instances are 22 requests of
			// 4 s, fewer than a cost is learned from, before 10x.
			Name: "new-step", Description: "a new version: 0.5 busy instances for 3 minutes, 10x to 5 at minute 3, back to 0.5 at minute 33",
			Minutes: 60, CostSeconds: 4, Threads: 1, StepAt: 3, New: true,
			demand: pulses(0.5, 5, [2]float64{3, 33}),
		},
	}
}

// pulses is a load at base, and at high inside each [from, to) span of
// minutes.
func pulses(base, high float64, spans ...[2]float64) func(float64) float64 {
	return func(m float64) float64 {
		for _, sp := range spans {
			if m >= sp[0] && m < sp[1] {
				return high
			}
		}
		return base
	}
}

// diurnal is a day between 3 and 30 busy instances (trough at midnight),
// with minute-to-minute noise of up to ±10 % from a fixed seed so every
// run replays the same day.
func diurnal() Trace {
	const minutes = 24 * 60
	rng := rand.New(rand.NewPCG(13, 1))
	noise := make([]float64, minutes+1)
	for i := range noise {
		noise[i] = 1 + 0.2*(rng.Float64()-0.5)
	}
	return Trace{
		Name: "diurnal", Description: "a day from 3 to 30 busy instances and back, ±10 % noise per minute",
		Minutes: minutes, CostSeconds: 0.5, Threads: 4, StepAt: -1,
		demand: func(m float64) float64 {
			base := 3 + 27*(1-math.Cos(2*math.Pi*m/minutes))/2
			return base * noise[min(int(m), minutes)]
		},
	}
}

// irregular flips between 4 and 12 busy instances in phases of 3 to 9
// whole minutes drawn from a fixed seed: a flapping load whose low
// phases are not all alike, so a hold that learns their length from the
// ones it saw can be caught out by a longer one.
func irregular() Trace {
	const minutes = 144
	rng := rand.New(rand.NewPCG(17, 3))
	high := make([]bool, minutes+1)
	on := false
	for m := 0; m <= minutes; {
		for end := min(m+3+rng.IntN(7), minutes+1); m < end; m++ {
			high[m] = on
		}
		on = !on
	}
	return Trace{
		Name: "irregular", Description: "flips between 4 and 12 busy instances in phases of 3 to 9 minutes (fixed seed)",
		Minutes: minutes, CostSeconds: 1.5, Threads: 1, StepAt: -1,
		demand: func(m float64) float64 {
			if high[min(int(m), minutes)] {
				return 12
			}
			return 4
		},
	}
}
