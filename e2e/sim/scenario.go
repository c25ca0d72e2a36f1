package sim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"time"
)

// Duration is a time.Duration that reads "30s"-style JSON strings.
type Duration time.Duration

// UnmarshalJSON accepts Go duration strings.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration: want a string such as \"30s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: %w", s, err)
	}
	*d = Duration(v)
	return nil
}

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// LoadSpec is an offered-load profile in requests per second.
//
//	constant: rate
//	step:     base until at, then to
//	ramp:     from at start, linearly to `to` at end
//	spike:    base, with peak during [at, at+for)
//	diurnal:  mean + amplitude*sin(2*pi*t/period)
//	idle:     0
//	phases:   the phases in order, each lasting its `for`; the last one holds
type LoadSpec struct {
	Kind      string     `json:"kind"`
	Rate      float64    `json:"rate,omitempty"`
	Base      float64    `json:"base,omitempty"`
	To        float64    `json:"to,omitempty"`
	From      float64    `json:"from,omitempty"`
	Peak      float64    `json:"peak,omitempty"`
	Mean      float64    `json:"mean,omitempty"`
	Amplitude float64    `json:"amplitude,omitempty"`
	At        Duration   `json:"at,omitempty"`
	Start     Duration   `json:"start,omitempty"`
	End       Duration   `json:"end,omitempty"`
	For       Duration   `json:"for,omitempty"`
	Period    Duration   `json:"period,omitempty"`
	Phases    []LoadSpec `json:"phases,omitempty"`
}

// Func compiles the profile, checking its parameters.
func (l LoadSpec) Func() (LoadFunc, error) {
	switch l.Kind {
	case "constant":
		r := l.Rate
		return func(time.Duration) float64 { return r }, nil
	case "idle":
		return func(time.Duration) float64 { return 0 }, nil
	case "step":
		return func(t time.Duration) float64 {
			if t < l.At.D() {
				return l.Base
			}
			return l.To
		}, nil
	case "ramp":
		if l.End.D() <= l.Start.D() {
			return nil, fmt.Errorf("ramp: end %s must be after start %s", l.End.D(), l.Start.D())
		}
		return func(t time.Duration) float64 {
			switch {
			case t <= l.Start.D():
				return l.From
			case t >= l.End.D():
				return l.To
			}
			f := float64(t-l.Start.D()) / float64(l.End.D()-l.Start.D())
			return l.From + f*(l.To-l.From)
		}, nil
	case "spike":
		return func(t time.Duration) float64 {
			if t >= l.At.D() && t < l.At.D()+l.For.D() {
				return l.Peak
			}
			return l.Base
		}, nil
	case "diurnal":
		if l.Period.D() <= 0 {
			return nil, fmt.Errorf("diurnal: period must be positive")
		}
		return func(t time.Duration) float64 {
			return math.Max(0, l.Mean+l.Amplitude*math.Sin(2*math.Pi*float64(t)/float64(l.Period.D())))
		}, nil
	case "phases":
		if len(l.Phases) == 0 {
			return nil, fmt.Errorf("phases: none given")
		}
		fs := make([]LoadFunc, len(l.Phases))
		for i, p := range l.Phases {
			f, err := p.Func()
			if err != nil {
				return nil, fmt.Errorf("phase %d: %w", i, err)
			}
			fs[i] = f
		}
		return func(t time.Duration) float64 {
			var begin time.Duration
			for i, p := range l.Phases {
				if i == len(l.Phases)-1 || t < begin+p.For.D() {
					return fs[i](t - begin)
				}
				begin += p.For.D()
			}
			return 0
		}, nil
	}
	return nil, fmt.Errorf("load kind %q: want constant, step, ramp, spike, diurnal, idle or phases", l.Kind)
}

// ScenarioFunction is one function of a scenario file.
type ScenarioFunction struct {
	FunctionID        string   `json:"functionId"`
	FunctionVersionID string   `json:"functionVersionId"`
	NcaID             string   `json:"ncaId"`
	MinInstances      int      `json:"minInstances"`
	MaxInstances      int      `json:"maxInstances"`
	InitialInstances  int      `json:"initialInstances"`
	ServiceTime       Duration `json:"serviceTime"`
	Threads           int      `json:"threads"`
	Load              LoadSpec `json:"load"`
}

// Fault is a scheduled failure: tsdb_down, nvcf_429, nvcf_503,
// cassandra_restart, discovery_kill.
type Fault struct {
	At    Duration `json:"at"`
	Kind  string   `json:"kind"`
	For   Duration `json:"for,omitempty"`
	Count int      `json:"count,omitempty"`
}

// Scenario is a scripted run: functions with their load and a fault schedule.
type Scenario struct {
	Name      string             `json:"name"`
	Duration  Duration           `json:"duration"`
	Functions []ScenarioFunction `json:"functions"`
	Faults    []Fault            `json:"faults,omitempty"`
}

// LoadScenario reads and checks a scenario file strictly.
func LoadScenario(path string) (Scenario, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Scenario{}, err
	}
	return ParseScenario(b)
}

// ParseScenario decodes a scenario, rejecting unknown fields.
func ParseScenario(b []byte) (Scenario, error) {
	var s Scenario
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return s, fmt.Errorf("scenario: %w", err)
	}
	if len(s.Functions) == 0 {
		return s, fmt.Errorf("scenario %q: no functions", s.Name)
	}
	for i, f := range s.Functions {
		if f.FunctionID == "" || f.FunctionVersionID == "" {
			return s, fmt.Errorf("scenario %q: function %d: functionId and functionVersionId are required", s.Name, i)
		}
		if f.MaxInstances < f.MinInstances || f.MaxInstances < 1 {
			return s, fmt.Errorf("scenario %q: %s: want 1 <= maxInstances and minInstances <= maxInstances", s.Name, f.FunctionID)
		}
		if _, err := f.Load.Func(); err != nil {
			return s, fmt.Errorf("scenario %q: %s: %w", s.Name, f.FunctionID, err)
		}
	}
	for i, ft := range s.Faults {
		switch ft.Kind {
		case "tsdb_down", "nvcf_429", "nvcf_503", "cassandra_restart", "discovery_kill":
		default:
			return s, fmt.Errorf("scenario %q: fault %d: kind %q unknown", s.Name, i, ft.Kind)
		}
	}
	return s, nil
}

// Specs turns the scenario's functions into data-plane specs.
func (s Scenario) Specs() ([]FunctionSpec, error) {
	out := make([]FunctionSpec, len(s.Functions))
	for i, f := range s.Functions {
		lf, err := f.Load.Func()
		if err != nil {
			return nil, err
		}
		out[i] = FunctionSpec{FunctionID: f.FunctionID, FunctionVersionID: f.FunctionVersionID, NcaID: f.NcaID,
			ServiceTime: f.ServiceTime.D(), ThreadsPerInstance: f.Threads, InitialInstances: f.InitialInstances, Load: lf}
	}
	return out, nil
}
