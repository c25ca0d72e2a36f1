package sim

import "github.com/prometheus/client_golang/prometheus"

// Metric names: the contract the autoscaler reads (see the reference's
// "The three metric sources").
const (
	// Worker threads (worker versions), one series per instance.
	MetricBusySeconds = "nvcf_worker_service_worker_thread_busy_seconds_total"
	MetricThreadCount = "nvcf_worker_service_worker_thread_count_total"
	// The invocation service (worker and BYOC versions): arrivals, and the
	// latency of requests that left (a summary: _sum and _count).
	MetricRequests       = "function_request_total"
	MetricRequestLatency = "function_request_latency"
	// The LLM API gateway (gateway functions), function level: requests
	// that left, and their durations (a summary: _sum and _count).
	MetricGatewayRequests = "llm_api_gateway_http_requests_total"
	MetricGatewayDuration = "llm_api_gateway_http_request_duration_seconds"
	// The control plane, per version of every kind.
	MetricInstancesCurrent = "nvcf_function_instances_current"
	MetricConcurrency      = "nvcf_function_concurrency"
	MetricInfo             = "nvcf_function_info"
)

// Each family carries its own environment label, as in NVCF: worker and
// request-counter series `environment` (prod|stage), control-plane series
// `environment` (production|staging), gateway and latency series `aws_env`
// (prd|stg).
var (
	versionLabels  = []string{"function_id", "function_version_id", "nca_id"}
	workerLabels   = append(append([]string{}, versionLabels...), "instance_id", "environment")
	requestLabels  = append(append([]string{}, versionLabels...), "environment")
	latencyLabels  = append(append([]string{}, versionLabels...), "aws_env")
	controlLabels  = append(append([]string{}, versionLabels...), "environment")
	gatewayLabels  = []string{"function_id", "aws_env"}
	busyDesc       = prometheus.NewDesc(MetricBusySeconds, "Busy seconds of a worker's threads.", workerLabels, nil)
	threadsDesc    = prometheus.NewDesc(MetricThreadCount, "Worker threads of one instance; one series per instance.", workerLabels, nil)
	requestDesc    = prometheus.NewDesc(MetricRequests, "Requests routed to the function version.", requestLabels, nil)
	latencyDesc    = prometheus.NewDesc(MetricRequestLatency, "Seconds requests spent in the system, waiting included, when they left.", latencyLabels, nil)
	gwRequestsDesc = prometheus.NewDesc(MetricGatewayRequests, "Requests the LLM API gateway answered for the function.", gatewayLabels, nil)
	gwDurationDesc = prometheus.NewDesc(MetricGatewayDuration, "Seconds the LLM API gateway's requests took, waiting included.", gatewayLabels, nil)
	instancesDesc  = prometheus.NewDesc(MetricInstancesCurrent, "Instances of the function version serving now.", controlLabels, nil)
	concDesc       = prometheus.NewDesc(MetricConcurrency, "Requests one instance of the function version serves at once.", controlLabels, nil)
	infoDesc       = prometheus.NewDesc(MetricInfo, "1 for every deployed function version: maps the version to its account.", controlLabels, nil)
)

// Describe implements prometheus.Collector.
func (dp *DataPlane) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{busyDesc, threadsDesc, requestDesc, latencyDesc, gwRequestsDesc, gwDurationDesc, instancesDesc, concDesc, infoDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: workers report only while they
// are active (a pending worker has not started its exporter; a terminating
// one has stopped serving); the control plane reports every version, at
// zero instances too; gateway and BYOC request series exist from a
// function's first request on.
func (dp *DataPlane) Collect(ch chan<- prometheus.Metric) {
	dp.mu.Lock()
	defer dp.mu.Unlock()
	env := dp.env
	for _, k := range dp.order {
		f := dp.functions[k]
		s := f.spec
		control := []string{s.FunctionID, s.FunctionVersionID, s.NcaID, env.ControlPlane}
		requests := []string{s.FunctionID, s.FunctionVersionID, s.NcaID, env.Worker}
		latency := []string{s.FunctionID, s.FunctionVersionID, s.NcaID, env.Gateway}
		concurrency := s.Concurrency
		switch s.Kind {
		case KindWorker:
			concurrency = s.ThreadsPerInstance
			for _, in := range f.instances {
				if !in.terminateAt.IsZero() || dp.now.Before(in.readyAt) {
					continue
				}
				ch <- prometheus.MustNewConstMetric(busyDesc, prometheus.CounterValue, in.busySeconds, s.FunctionID, s.FunctionVersionID, s.NcaID, in.id, env.Worker)
				ch <- prometheus.MustNewConstMetric(threadsDesc, prometheus.GaugeValue, float64(s.ThreadsPerInstance), s.FunctionID, s.FunctionVersionID, s.NcaID, in.id, env.Worker)
			}
			ch <- prometheus.MustNewConstMetric(requestDesc, prometheus.CounterValue, f.requests, requests...)
		case KindBYOC:
			// Like any labelled counter, the invocation service's series
			// appear with the version's first request.
			if f.pool.arrived > 0 {
				ch <- prometheus.MustNewConstMetric(requestDesc, prometheus.CounterValue, f.pool.arrived, requests...)
				ch <- prometheus.MustNewConstSummary(latencyDesc, uint64(f.pool.left), f.pool.latencySum, nil, latency...)
			}
		}
		ch <- prometheus.MustNewConstMetric(instancesDesc, prometheus.GaugeValue, float64(f.active(dp.now)), control...)
		ch <- prometheus.MustNewConstMetric(concDesc, prometheus.GaugeValue, float64(concurrency), control...)
		ch <- prometheus.MustNewConstMetric(infoDesc, prometheus.GaugeValue, 1, control...)
	}
	for _, fid := range dp.gatewayOrder {
		g := dp.gateways[fid]
		if g.pool.arrived == 0 {
			continue // the gateway's series appear with the function's first request
		}
		ch <- prometheus.MustNewConstMetric(gwRequestsDesc, prometheus.CounterValue, g.pool.left, fid, env.Gateway)
		ch <- prometheus.MustNewConstSummary(gwDurationDesc, uint64(g.pool.left), g.pool.latencySum, nil, fid, env.Gateway)
	}
}
