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

// ScenarioFunction is one function version of a scenario file.
type ScenarioFunction struct {
	FunctionID        string `json:"functionId"`
	FunctionVersionID string `json:"functionVersionId"`
	NcaID             string `json:"ncaId"`
	// Kind is "worker" (the default), "gateway" or "byoc". The versions of
	// one gateway function share the gateway's load: theirs is summed.
	Kind             Kind     `json:"kind,omitempty"`
	MinInstances     int      `json:"minInstances"`
	MaxInstances     int      `json:"maxInstances"`
	InitialInstances int      `json:"initialInstances"`
	ServiceTime      Duration `json:"serviceTime"`
	// Threads per instance, worker versions only.
	Threads int `json:"threads,omitempty"`
	// Concurrency is the requests one instance serves at once, gateway and
	// BYOC versions only (NVCF's maxRequestConcurrency, 1..16384; 1 when
	// omitted).
	Concurrency int      `json:"concurrency,omitempty"`
	Load        LoadSpec `json:"load"`
}

// Spec turns the scenario function into a data-plane spec.
func (f ScenarioFunction) Spec() (FunctionSpec, error) {
	lf, err := f.Load.Func()
	if err != nil {
		return FunctionSpec{}, err
	}
	return FunctionSpec{FunctionID: f.FunctionID, FunctionVersionID: f.FunctionVersionID, NcaID: f.NcaID, Kind: f.Kind,
		ServiceTime: f.ServiceTime.D(), ThreadsPerInstance: f.Threads, Concurrency: f.Concurrency,
		InitialInstances: f.InitialInstances, Load: lf}, nil
}

// check validates one function's fields on their own.
func (f ScenarioFunction) check() error {
	if f.FunctionID == "" || f.FunctionVersionID == "" {
		return fmt.Errorf("functionId and functionVersionId are required")
	}
	if f.MaxInstances < f.MinInstances || f.MaxInstances < 1 {
		return fmt.Errorf("want 1 <= maxInstances and minInstances <= maxInstances")
	}
	switch f.Kind {
	case "", KindWorker:
		if f.Concurrency != 0 {
			return fmt.Errorf("concurrency applies to gateway and byoc functions; worker functions have threads")
		}
	case KindGateway, KindBYOC:
		if f.Threads != 0 {
			return fmt.Errorf("threads applies to worker functions; %s functions have concurrency", f.Kind)
		}
		if f.Concurrency < 0 || f.Concurrency > 16384 {
			return fmt.Errorf("concurrency %d: want 1..16384", f.Concurrency)
		}
	default:
		return fmt.Errorf("kind %q: want worker, gateway or byoc", f.Kind)
	}
	if _, err := f.Load.Func(); err != nil {
		return err
	}
	return nil
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
	versions := map[string]bool{}
	gateway := map[string]bool{} // function id -> behind the gateway
	for i, f := range s.Functions {
		if err := f.check(); err != nil {
			return s, fmt.Errorf("scenario %q: function %d (%s/%s): %w", s.Name, i, f.FunctionID, f.FunctionVersionID, err)
		}
		k := key(f.FunctionID, f.FunctionVersionID)
		if versions[k] {
			return s, fmt.Errorf("scenario %q: function %d: version %s given twice", s.Name, i, k)
		}
		versions[k] = true
		// The gateway fronts a whole function: all of its versions or none.
		isGateway := f.Kind == KindGateway
		if was, seen := gateway[f.FunctionID]; seen && was != isGateway {
			return s, fmt.Errorf("scenario %q: function %d: %s mixes gateway and other kinds; a function is behind the gateway with all its versions or none", s.Name, i, f.FunctionID)
		}
		gateway[f.FunctionID] = isGateway
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
		spec, err := f.Spec()
		if err != nil {
			return nil, fmt.Errorf("%s/%s: %w", f.FunctionID, f.FunctionVersionID, err)
		}
		out[i] = spec
	}
	return out, nil
}
