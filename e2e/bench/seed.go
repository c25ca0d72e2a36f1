package main

import (
	"bytes"
	"context"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gocql/gocql"

	"function/e2e/nvcfsim"
	"function/shared/store"
)

// Seeding shape: what a fleet of busy GPU functions looks like to the
// TSDB. A quarter of the versions run two workers, the rest one; load is
// spread so that a cycle decides ups, downs and holds.
const (
	interval = 30 * time.Second
	history  = 11 * time.Minute // covers the 600 s lookbacks
	headroom = 15 * time.Minute // samples ahead of now keep the data live while cycles run
	batch    = 2000             // versions per import request
)

// One version in twenty is busy enough to scale up; the rest sit inside
// the policy's hold band. With their scaling state seeded as "already at
// the current count", a cycle writes only the busy ones: the steady state
// of a large fleet, where a few percent change per minute.
var utilizations = []float64{0.85, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5}

// workersOf is the instance count of version i: a quarter run two.
func workersOf(i int) int {
	if i%4 == 0 {
		return 2
	}
	return 1
}

// versionIDs returns deterministic UUID-shaped ids for version i of a run.
func versionIDs(label string, i int) (fid, vid string) {
	f := fnv.New32a()
	_, _ = f.Write([]byte(label))
	h := f.Sum32()
	fid = fmt.Sprintf("%08x-%04x-4%03x-8%03x-%012x", h, i>>16&0xffff, i>>4&0xfff, i&0xfff, uint64(i)*2654435761%(1<<48))
	vid = fmt.Sprintf("%08x-%04x-4%03x-9%03x-%012x", h^0x5bd1e995, i>>16&0xffff, i>>4&0xfff, i&0xfff, uint64(i)*40503%(1<<48))
	return fid, vid
}

// seed bulk-imports worker and request series for n versions into
// VictoriaMetrics (/api/v1/import, JSON lines) and registers the versions
// with the NVCF simulator. With mixed, a third of the versions are LLM
// gateway functions and a third control-plane (BYOC) versions, with the
// same instance counts and load expressed through their own series. With
// allBusy every version is busy enough to scale up.
func seed(ctx context.Context, vm string, sim *nvcfsim.Server, n int, label string, mixed, allBusy bool) error {
	now := time.Now()
	start, end := now.Add(-history).Truncate(interval), now.Add(headroom)
	var ts []byte
	var points []float64
	for t := start; !t.After(end); t = t.Add(interval) {
		ts = strconv.AppendInt(append(ts, ','), t.UnixMilli(), 10)
		points = append(points, t.Sub(start).Seconds())
	}
	ts = ts[1:]

	var body bytes.Buffer
	flush := func() error {
		if body.Len() == 0 {
			return nil
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, vm+"/api/v1/import", bytes.NewReader(body.Bytes()))
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("import: %d %s", resp.StatusCode, b)
		}
		body.Reset()
		return nil
	}
	series := func(name, fid, vid, instance string, value func(sec float64) float64) {
		// Gateway series carry function_id only.
		if vid == "" {
			fmt.Fprintf(&body, `{"metric":{"__name__":%q,"function_id":%q`, name, fid)
		} else {
			fmt.Fprintf(&body, `{"metric":{"__name__":%q,"function_id":%q,"function_version_id":%q,"nca_id":"nca-bench"`, name, fid, vid)
		}
		if instance != "" {
			fmt.Fprintf(&body, `,"instance_id":%q`, instance)
		}
		body.WriteString(`},"values":[`)
		for i, p := range points {
			if i > 0 {
				body.WriteByte(',')
			}
			body.WriteString(strconv.FormatFloat(value(p), 'f', -1, 64))
		}
		body.WriteString(`],"timestamps":[`)
		body.Write(ts)
		body.WriteString("]}\n")
	}
	for i := 0; i < n; i++ {
		fid, vid := versionIDs(label, i)
		u := utilizations[i%len(utilizations)]
		if allBusy {
			u = utilizations[0]
		}
		running := float64(workersOf(i))
		constant := func(v float64) func(float64) float64 { return func(float64) float64 { return v } }
		// In flight = utilization x instances at one request per instance.
		inFlight := func(s float64) float64 { return u * running * s }
		switch {
		case mixed && i%3 == 1: // LLM gateway: one function, one version
			series("llm_api_gateway_http_requests_total", fid, "", "", func(s float64) float64 { return 2 * s })
			series("llm_api_gateway_http_request_duration_seconds_sum", fid, "", "", inFlight)
			series("nvcf_function_instances_current", fid, vid, "", constant(running))
			series("nvcf_function_concurrency", fid, vid, "", constant(1))
			series("nvcf_function_info", fid, vid, "", constant(1))
		case mixed && i%3 == 2: // control plane (bring your own cluster)
			series("nvcf_function_instances_current", fid, vid, "", constant(running))
			series("nvcf_function_concurrency", fid, vid, "", constant(1))
			series("function_request_latency_sum", fid, vid, "", inFlight)
			series("function_request_total", fid, vid, "", func(s float64) float64 { return 2 * s })
		default:
			for w := 0; w < workersOf(i); w++ {
				inst := vid[:8] + "-w" + strconv.Itoa(w)
				series("nvcf_worker_service_worker_thread_busy_seconds_total", fid, vid, inst, func(s float64) float64 { return u * s })
				series("nvcf_worker_service_worker_thread_count_total", fid, vid, inst, constant(1))
			}
			series("function_request_total", fid, vid, "", func(s float64) float64 { return 2 * s })
		}
		sim.Register(nvcfsim.FunctionVersion{FunctionID: fid, VersionID: vid, NcaID: "nca-bench", Status: nvcfsim.StatusActive,
			Specs: []nvcfsim.DeploymentSpec{{GPU: "L40S", MinInstances: 0, MaxInstances: 50}}})
		if (i+1)%batch == 0 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	// The import is visible to queries once VM has flushed it.
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, vm+"/internal/force_flush", nil)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}
	return nil
}

// seedState writes each version's scaling state as if an earlier cycle had
// already requested its current instance count, so the measured cycles see
// the steady state instead of a first install (that is the cold cycle of
// a run without seeded state; see the README).
func seedState(ctx context.Context, cassandra, keyspace, label string, n int) error {
	st, err := openStore(ctx, cassandra, keyspace)
	if err != nil {
		return err
	}
	defer st.Close()
	cycle := time.Now().Add(-10 * time.Minute).UnixMilli()
	return inParallel(n, func(i int) error {
		fid, vid := versionIDs(label, i)
		key := store.VersionKey{FunctionID: fid, FunctionVersionID: vid}
		// Settle the version's last write claim as its own record
		// would: a record under no claim leaves that claim looking
		// unsettled, and the version held, until its lease ends
		// (FUNCTION_LOCK_TTL), so a reset between -change-all
		// cycles would skip the versions written last cycle.
		prev, err := st.ReadState(ctx, key)
		if err == nil {
			err = st.RecordWriteTarget(ctx, key, prev.Claim.Owner, workersOf(i), -1, cycle, "ok", 24*time.Hour)
		}
		return err
	})
}

// openStore opens keyspace on the Cassandra at cassandra, creating it
// and its tables when missing, with the functions' default settings.
func openStore(ctx context.Context, cassandra, keyspace string) (*store.Store, error) {
	cfg := store.DefaultConfig()
	cfg.Hosts = []string{cassandra}
	cfg.Keyspace = keyspace
	return store.Open(ctx, cfg)
}

// inParallel calls do for 0 to n-1, 32 at a time (enough requests in
// flight to keep one Cassandra busy), and returns one of the errors.
func inParallel(n int, do func(i int) error) error {
	work := make(chan int)
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if err := do(i); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

// dropKeyspace drops a run's keyspace: every keyspace left behind costs
// the shared Cassandra heap, and a 100k run's is large.
func dropKeyspace(cassandra, keyspace string) {
	c := gocql.NewCluster(cassandra)
	c.Timeout = time.Minute // dropping a keyspace flushes its tables
	s, err := c.CreateSession()
	if err == nil {
		defer s.Close()
		err = s.Query(`DROP KEYSPACE IF EXISTS ` + keyspace).Exec()
	}
	if err != nil {
		fmt.Printf("   keyspace %s not dropped: %v\n", keyspace, err)
	}
}

// settle waits until VictoriaMetrics has merged what was just imported: a
// bulk import of hundreds of thousands of series keeps both cores busy with
// background merges for a while, which a TSDB fed by steady scrapes does not.
func settle(ctx context.Context, vm string, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	quiet := 0
	for time.Since(start) < timeout {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, vm+"/metrics", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return time.Since(start), err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		busy := false
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "vm_active_merges") || strings.HasPrefix(line, "vm_pending_rows") {
				if f := strings.Fields(line); len(f) == 2 && f[1] != "0" {
					busy = true
				}
			}
		}
		if busy {
			quiet = 0
		} else if quiet++; quiet >= 5 {
			return time.Since(start), nil
		}
		select {
		case <-ctx.Done():
			return time.Since(start), ctx.Err()
		case <-time.After(time.Second):
		}
	}
	return time.Since(start), fmt.Errorf("VictoriaMetrics still merging after %s", timeout)
}
