package telemetry

import (
	"encoding/json"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

const dashboardPath = "../../charts/nvcf-autoscaler/dashboards/nvcf-autoscaler.json"

// exprMetric finds metric names in PromQL: an identifier starting with one of
// our prefixes, not preceded by an identifier character, and followed by a
// selector, range, closing paren, space, comma or the end of the expression.
var exprMetric = regexp.MustCompile(`(?:^|[^a-zA-Z0-9_:])((?:nvcf_autoscaler_|process_|go_)[a-zA-Z0-9_:]*)(?:[{\[) ,]|$)`)

var descFQName = regexp.MustCompile(`fqName: "([^"]+)"`)

// touchAll creates one child of every vector field of m, so that Gather
// reports every registered metric family, whatever its label count.
func touchAll(t *testing.T, m *Metrics) {
	t.Helper()
	v := reflect.ValueOf(m).Elem()
	for i := 0; i < v.NumField(); i++ {
		f := v.Field(i)
		get := f.MethodByName("GetMetricWithLabelValues")
		if !get.IsValid() {
			continue
		}
		touched := false
		for n := 0; n <= 10 && !touched; n++ {
			args := make([]reflect.Value, n)
			for j := range args {
				args[j] = reflect.ValueOf("x")
			}
			out := get.Call(args)
			touched = out[1].IsNil()
		}
		if !touched {
			t.Fatalf("could not create a child of Metrics.%s", v.Type().Field(i).Name)
		}
	}
}

// registeredNames returns the sample names NewMetrics exposes (histograms
// and summaries with their _bucket/_sum/_count series) and the family names
// of the nvcf_autoscaler_* metrics.
func registeredNames(t *testing.T) (samples map[string]bool, ours []string) {
	t.Helper()
	m := NewMetrics()
	touchAll(t, m)
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	samples = map[string]bool{}
	for _, mf := range mfs {
		name := mf.GetName()
		samples[name] = true
		switch mf.GetType().String() {
		case "HISTOGRAM", "GAUGE_HISTOGRAM":
			samples[name+"_bucket"], samples[name+"_sum"], samples[name+"_count"] = true, true, true
		case "SUMMARY":
			samples[name+"_sum"], samples[name+"_count"] = true, true
		}
		if strings.HasPrefix(name, "nvcf_autoscaler_") {
			ours = append(ours, name)
		}
	}
	// Guard against a registered metric that Gather did not report (a
	// vector touchAll could not reach): every described name must be there.
	ch := make(chan *prometheus.Desc)
	go func() { m.Registry.Describe(ch); close(ch) }()
	for d := range ch {
		sm := descFQName.FindStringSubmatch(d.String())
		if sm == nil {
			t.Fatalf("cannot read the name of %s", d)
		}
		if strings.HasPrefix(sm[1], "nvcf_autoscaler_") && !samples[sm[1]] {
			t.Errorf("registered metric %s was not gathered", sm[1])
		}
	}
	sort.Strings(ours)
	return samples, ours
}

// walkPanels visits every panel, including the ones nested in rows.
func walkPanels(panels []any, visit func(map[string]any)) {
	for _, p := range panels {
		pm, ok := p.(map[string]any)
		if !ok {
			continue
		}
		visit(pm)
		if nested, ok := pm["panels"].([]any); ok {
			walkPanels(nested, visit)
		}
	}
}

// queries collects every PromQL string: target exprs anywhere in the
// dashboard and template variable queries.
func queries(v any, key string, out *[]string) {
	switch x := v.(type) {
	case map[string]any:
		for k, c := range x {
			queries(c, k, out)
		}
	case []any:
		for _, c := range x {
			queries(c, key, out)
		}
	case string:
		if key == "expr" || key == "query" || key == "definition" {
			*out = append(*out, x)
		}
	}
}

func TestDashboardMatchesMetrics(t *testing.T) {
	raw, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var dash map[string]any
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("dashboard is not valid JSON: %v", err)
	}
	if dash["uid"] != "nvcf-autoscaler" {
		t.Errorf("uid = %v, want nvcf-autoscaler", dash["uid"])
	}
	panels, _ := dash["panels"].([]any)
	if len(panels) == 0 {
		t.Fatal("dashboard has no panels")
	}

	ids := map[float64]string{}
	walkPanels(panels, func(p map[string]any) {
		id, ok := p["id"].(float64)
		if !ok {
			t.Errorf("panel %q has no numeric id", p["title"])
			return
		}
		if prev, dup := ids[id]; dup {
			t.Errorf("panel id %v used by %q and %q", id, prev, p["title"])
		}
		ids[id] = p["title"].(string)
	})

	samples, ours := registeredNames(t)
	var exprs []string
	queries(dash, "", &exprs)
	used := map[string]bool{}
	for _, e := range exprs {
		for _, sm := range exprMetric.FindAllStringSubmatch(e, -1) {
			name := sm[1]
			used[name] = true
			if !samples[name] {
				t.Errorf("query %q uses %s, which NewMetrics does not register", e, name)
			}
		}
	}
	for _, name := range ours {
		if !used[name] && !used[name+"_bucket"] && !used[name+"_sum"] && !used[name+"_count"] {
			t.Errorf("metric %s has no panel in %s", name, dashboardPath)
		}
	}
	if len(ours) == 0 {
		t.Error("NewMetrics registered no nvcf_autoscaler_* metric")
	}
}

// TestDashboardStatusMappings checks the function status panel names every
// status code telemetry.go defines.
func TestDashboardStatusMappings(t *testing.T) {
	raw, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
			FieldConfig struct {
				Defaults struct {
					Mappings []struct {
						Type    string                     `json:"type"`
						Options map[string]json.RawMessage `json:"options"`
					} `json:"mappings"`
				} `json:"defaults"`
			} `json:"fieldConfig"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatal(err)
	}
	codes := []int{StatusOK, StatusHeld, StatusTSDBError, StatusNotFound, StatusNotActive, StatusBeyondLimits, StatusRateLimited, StatusError}
	found := false
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 || !strings.Contains(p.Targets[0].Expr, "nvcf_autoscaler_function_status") {
			continue
		}
		found = true
		mapped := map[string]bool{}
		for _, mp := range p.FieldConfig.Defaults.Mappings {
			if mp.Type == "value" {
				for k := range mp.Options {
					mapped[k] = true
				}
			}
		}
		for _, c := range codes {
			if !mapped[StatusLabel(c)] {
				t.Errorf("panel %q has no value mapping for status %d", p.Title, c)
			}
		}
	}
	if !found {
		t.Error("no panel shows nvcf_autoscaler_function_status")
	}
}
