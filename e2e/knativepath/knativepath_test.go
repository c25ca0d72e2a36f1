// Package knativepath runs the autoscaler's event path on real Knative
// Eventing (e2e/kube/knative.sh on e2e/kube/kube.sh's control plane): the
// chart installed with helm, Knative's own PingSource adapter ticking into
// its Broker, its Trigger filter delivering to discovery, discovery's
// bucket events going back through the Broker to scale, and scale writing
// its decision to the NVCF simulator. No stand-in is on that path: the
// functions are the real binaries, run in the node's network namespace
// where the Triggers (the chart's externalFunctions URLs) reach them.
// And the chart's Knative Services as Serving's own webhook and controller
// take them (serving_test.go).
package knativepath

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"function/e2e/harness"
	"function/e2e/nvcfsim"
	"function/e2e/sim"
	"function/e2e/world"
	"function/shared/events"
	"function/shared/testenv"
)

// period is the PingSource schedule: Knative's adapter parses cron with
// optional seconds (six fields, "*/20 * * * * *"), which the chart's
// schema allows, so the test need not wait a minute per cycle. 20 s, not
// less: a bucket must be decided within a period (BUCKET_DEADLINE), and
// the retries after a crash (1, 2, 4 s apart) must fit in it.
const period = 20 * time.Second

// Ports in the node: the functions and the dead-letter sink's forward.
const (
	scalePort     = 31080
	discoveryPort = 31081
	deadPort      = 31082
)

func TestEventsTravelRealKnative(t *testing.T) {
	c := requireCluster(t)
	cassandra := testenv.RequireCassandra(t)[0]
	root := c.root
	logDir := filepath.Join(root, ".cache", "knativepath")
	require.NoError(t, os.RemoveAll(logDir))
	require.NoError(t, os.MkdirAll(logDir, 0o755))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// A VictoriaMetrics of the test's own scraping the simulator: the
	// stack's scrapes one fixed address, which the closed loop holds
	// exclusively; this test runs beside the others.
	simMetrics, err := harness.FreeAddr()
	require.NoError(t, err)
	tsdb, err := harness.StartVM(ctx, filepath.Join(logDir, "vm"), simMetrics)
	require.NoError(t, err)
	t.Cleanup(tsdb.Stop)
	vm := tsdb.URL
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("function logs: %s; Knative's: .cache/knative/logs", logDir)
		}
	})
	bin, err := harness.Build(root)
	require.NoError(t, err)

	// The simulator and its data plane: one function at one instance
	// under three times what it serves, so the decision is a scale-up.
	fn := sim.ScenarioFunction{FunctionID: "kp-fn", FunctionVersionID: "kp-fn-v1", NcaID: "nca-kp", MinInstances: 1, MaxInstances: 4,
		InitialInstances: 1, ServiceTime: sim.Duration(time.Second), Threads: 1, Load: sim.LoadSpec{Kind: "constant", Rate: 3}}
	o := world.Options{Root: root, LogDir: logDir, Cassandra: cassandra, TSDBURL: vm, Keyspace: testenv.Keyspace(t, "kp"),
		SimAddr: simMetrics, Period: period, External: true,
		Lifecycle: sim.Options{ProvisioningDelay: 2 * time.Second, TerminationDelay: time.Second}}
	w, err := world.Start(ctx, o, fn)
	require.NoError(t, err)
	t.Cleanup(w.Stop)

	// What the functions reach from the node, through kube.sh's forwarder:
	// the stack, the simulator; and the dead-letter sink Knative reaches.
	simHost := strings.TrimPrefix(w.NVCF.HTTPURL(), "http://")
	dead := startDeadLetters(t)
	// Each at the same address in the node as on the host, so the
	// functions' settings read as the closed loop's do; the stack's
	// Cassandra is carried by kube.sh's own forwarder when on its port.
	specs := []string{"in:" + strings.TrimPrefix(vm, "http://") + "=" + strings.TrimPrefix(vm, "http://"),
		"in:" + simHost + "=" + simHost, fmt.Sprintf("in:%s:%d=%s", c.nodeIP, deadPort, dead.addr)}
	if !c.listensInNode(t, cassandra) {
		specs = append(specs, "in:"+cassandra+"="+cassandra)
	}
	c.forward(t, "kp", specs...)
	env := world.BaseEnv(o)
	env["NVCF_API_URL"] = w.NVCF.HTTPURL()
	env["LOG_LEVEL"] = "debug"

	startScale := func() *harness.Process {
		e := copyEnv(env)
		e["AUTOSCALER_ROLE"] = "scale"
		e["NODE_ID"] = "scale-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		return c.startInNode(t, bin, "scale", scalePort, e, logDir)
	}
	scale := startScale()

	// The chart, for real: Broker, PingSource, SinkBinding and Triggers,
	// admitted by Knative's webhook and reconciled by its controllers.
	ns := fmt.Sprintf("kp-%d", time.Now().Unix()%100000)
	helm := helmPath(t, root)
	out, err := exec.Command(helm, "install", "kp", filepath.Join(root, "charts/nvcf-autoscaler"), "--kubeconfig", c.kubeconfig,
		"-n", ns, "--create-namespace",
		"--set", "schedule=*/20 * * * * *", // seconds first: Knative's adapter takes six fields
		"--set", "externalFunctions.discoveryURL=http://"+c.nodeIP+":"+strconv.Itoa(discoveryPort)+"/",
		"--set", "externalFunctions.scaleURL="+scale.URL(),
		"--set", fmt.Sprintf("delivery.deadLetter.uri=http://%s:%d/", c.nodeIP, deadPort),
		// 1, 2 and 4 s between attempts: the in-memory channel's
		// synchronous fan-out holds discovery's send open meanwhile (an
		// attempt lasts until the bucket's deadline)
		"--set", "delivery.backoffDelay=PT1S").CombinedOutput()
	require.NoError(t, err, "helm install:\n%s", out)
	t.Cleanup(func() {
		_, _ = c.run("delete", "namespace", ns, "--wait=false")
	})
	c.kube(t, "-n", ns, "wait", "--for=condition=Ready", "--timeout=180s",
		"brokers.eventing.knative.dev,triggers.eventing.knative.dev,pingsources.sources.knative.dev,sinkbindings.sources.knative.dev", "--all")
	sink := c.kube(t, "-n", ns, "get", "sinkbindings.sources.knative.dev", "-o", "jsonpath={.items[0].status.sinkUri}")
	require.Contains(t, sink, "broker-ingress.knative-eventing.svc.cluster.local/"+ns+"/", "the SinkBinding resolves the Broker's address")
	pingSource := c.kube(t, "-n", ns, "get", "pingsources.sources.knative.dev", "-o", "jsonpath={.items[0].metadata.name}")
	tickSource := "/apis/v1/namespaces/" + ns + "/pingsources/" + pingSource
	bucketTimeout := c.kube(t, "-n", ns, "get", "triggers.eventing.knative.dev", "-o",
		`jsonpath={range .items[?(@.spec.filter.attributes.type=="`+events.TypeBucket+`")]}{.spec.delivery.timeout}{end}`)
	require.Equal(t, "PT60S", bucketTimeout, "the bucket Trigger's delivery timeout outlasts the bucket deadline")

	e := copyEnv(env)
	e["AUTOSCALER_ROLE"] = "discovery"
	e["NODE_ID"] = "discovery-kp"
	e["K_SINK"] = sink // as the SinkBinding reports it, unchanged
	discovery := c.startInNode(t, bin, "discovery", discoveryPort, e, logDir)

	// 1. A decision written to the simulator for an event that came
	// PingSource -> Broker -> Trigger -> discovery -> Broker -> Trigger -> scale.
	var wr nvcfsim.Write
	require.NoError(t, world.WaitFor(4*time.Minute, func() bool {
		for _, x := range w.NVCF.Writes() {
			if x.VersionID == fn.FunctionVersionID && x.Outcome != nvcfsim.OutcomeFault && x.Requested > 1 {
				wr = x
				return true
			}
		}
		return false
	}), "no scale-up written to the simulator; logs in %s", logDir)
	path := tracePath(t, discovery.LogPath, scale.LogPath, fn.FunctionVersionID, wr.Requested, tickSource)
	t.Logf("RESULT path: tick %s (source %s, Broker arrival %s) -> discovery cycle %s -> bucket %s (Broker arrival %s) -> scale decision desired=%d -> NVCF write %d at %s",
		path.tickID, tickSource, path.tickArrival, path.cycle, path.bucketID, path.bucketArrival, wr.Requested, wr.Applied, wr.Time.Format(time.RFC3339Nano))

	// 2. Scale crashes mid-cycle. On this Broker (MTChannelBasedBroker over
	// the in-memory channel, whose fan-out is synchronous) the ingress holds
	// discovery's send while the dispatcher retries the Trigger's delivery
	// (1, 2, 4 s apart): scale, back on the same address within that,
	// gets the bucket from a retry, and discovery's single send succeeds.
	// Scale comes back only once Knative's filter has failed to reach it:
	// restarted on a timer instead, it could be up before the next cycle's
	// buckets are sent, and nothing would be retried.
	scale.Kill()
	killedAt := time.Now()
	require.NoError(t, world.WaitFor(3*period, func() bool {
		return len(filterRefusals(t, c.knativeDir, scalePort, killedAt, time.Now())) > 0
	}), "the Broker filter logged no refused delivery to the killed scale; logs in %s and .cache/knative/logs", logDir)
	restartedAt := time.Now()
	scale = startScale()
	readyAt := time.Now()
	tick := waitTick(t, discovery.LogPath, killedAt)
	var decided logLine
	require.NoError(t, world.WaitFor(3*period, func() bool {
		for _, l := range logLines(t, scale.LogPath, "bucket decided") {
			if ms, err := strconv.ParseInt(l.str("cycle"), 10, 64); err == nil && time.UnixMilli(ms).After(killedAt) {
				decided = l
				return true
			}
		}
		return false
	}), "no bucket decided by the restarted scale; logs in %s", logDir)
	bucketID, cycle := decided.str("event_id"), decided.str("cycle")
	got := matching(logLines(t, scale.LogPath, "event received"), "event_id", bucketID)
	require.NotEmpty(t, got)
	arrival, err := time.Parse(time.RFC3339Nano, got[0].str("knative_arrival_time"))
	require.NoError(t, err, "the bucket carries the Broker's arrival time")
	received, err := time.Parse(time.RFC3339Nano, got[0].str("time"))
	require.NoError(t, err)
	// Knative's own account: its filter failed to reach scale between the
	// bucket's arrival and scale's receipt, so a retry delivered it.
	refused := filterRefusals(t, c.knativeDir, scalePort, arrival, received)
	require.NotEmpty(t, refused, "the Broker filter logged no failed delivery to scale between the bucket's arrival (%s) and its receipt (%s)",
		arrival.Format(time.RFC3339Nano), received.Format(time.RFC3339Nano))
	// Discovery sent it once: no resend of its own brought it through, and
	// no copy went to the dead-letter sink. Both are settled only when
	// discovery's send returns, which the in-memory channel's synchronous
	// fan-out holds until scale has answered (or the dead letter was
	// delivered): read at once, after scale's line, the logs can lack a
	// failure on its way (a local run: scale decided at 07:52:01.401,
	// discovery ended that cycle at .408). Discovery logs the end of a
	// cycle after every send's outcome; wait for it, within the bucket
	// deadline (a period after the tick, which is past) plus the 5 s its
	// last attempt waits beyond it, a back-off of at most 2 s and a margin.
	require.NoError(t, world.WaitFor(period+10*time.Second, func() bool {
		return len(matching(logLines(t, discovery.LogPath, "discovery cycle done"), "cycle", cycle)) > 0
	}), "discovery did not end cycle %s", cycle)
	for _, l := range logLines(t, discovery.LogPath, "bucket event not delivered") {
		require.NotEqual(t, cycle, l.str("cycle"), "discovery had to resend cycle %s's bucket: %v", cycle, l)
	}
	for _, d := range dead.letters() {
		require.NotEqual(t, bucketID, d.ID, "the retried bucket must not also be dead-lettered")
	}
	t.Logf("RESULT retry: scale killed at %s; tick %s; bucket %s reached the Broker at %s, the filter's deliveries to scale failed %d time(s) (%s), scale restarted at %s (ready %s) and received it at %s",
		killedAt.Format(time.RFC3339Nano), tick.str("event_id"), bucketID, arrival.Format(time.RFC3339Nano), len(refused),
		strings.Join(refused, ", "), restartedAt.Format(time.RFC3339Nano), readyAt.Format(time.RFC3339Nano), received.Format(time.RFC3339Nano))

	// 3. Scale stays down past the retries (1+2+4 s): the bucket goes to the
	// chart's dead-letter sink, which names the address delivery failed on.
	scale.Kill()
	downAt := time.Now()
	var dl deadLetter
	require.NoError(t, world.WaitFor(3*period, func() bool {
		for _, d := range dead.letters() {
			var ms int64
			if _, err := fmt.Sscanf(d.ID, "cycle-%d-bucket-", &ms); err == nil && time.UnixMilli(ms).After(downAt) {
				dl = d
				return true
			}
		}
		return false
	}), "no bucket of a cycle after %s reached the dead-letter sink; got %+v", downAt.Format(time.RFC3339Nano), dead.letters())
	require.Equal(t, events.TypeBucket, dl.Type)
	require.Contains(t, dl.ErrorDest, c.nodeIP+":"+strconv.Itoa(scalePort), "the dead letter names the subscriber it failed on")
	t.Logf("RESULT dead letter: bucket %s type %s, knativeerrordest %s, knativeerrorcode %q", dl.ID, dl.Type, dl.ErrorDest, dl.ErrorCode)
}

// waitTick waits for the first tick discovery received after since.
func waitTick(t *testing.T, discoveryLog string, since time.Time) logLine {
	t.Helper()
	var found logLine
	require.NoError(t, world.WaitFor(2*period, func() bool {
		for _, l := range matching(logLines(t, discoveryLog, "event received"), "event_type", "dev.knative.sources.ping") {
			if at, err := time.Parse(time.RFC3339Nano, l.str("time")); err == nil && at.After(since) {
				found = l
				return true
			}
		}
		return false
	}), "discovery received no tick after %s", since.Format(time.RFC3339Nano))
	return found
}

// filterRefusals returns the times Knative's Broker filter logged a
// delivery to the subscriber on port that was refused, between from and to.
func filterRefusals(t *testing.T, knativeDir string, port int, from, to time.Time) []string {
	t.Helper()
	var out []string
	for _, l := range logLines(t, filepath.Join(knativeDir, "logs", "mt-broker-filter.log"), "failed to send event") {
		at, err := time.Parse(time.RFC3339Nano, l.str("ts"))
		if err != nil || at.Before(from) || at.After(to) {
			continue
		}
		if e := l.str("error"); strings.Contains(e, ":"+strconv.Itoa(port)+"/") && strings.Contains(e, "connection refused") {
			out = append(out, at.Format("15:04:05.000"))
		}
	}
	return out
}

// pathEvidence is one event's trail through the functions' logs.
type pathEvidence struct {
	tickID, tickArrival, cycle, bucketID, bucketArrival string
}

// tracePath ties the decision that asked for desired back to the tick that
// caused it, through the functions' own log lines: scale's decision (its
// bucket event id and cycle), the bucket as scale received it (from the
// Broker: knativearrivaltime set), discovery's cycle of that number, and
// the tick that started it as discovery received it (from the PingSource
// through the Broker).
func tracePath(t *testing.T, discoveryLog, scaleLog, versionID string, desired int, tickSource string) pathEvidence {
	t.Helper()
	var dec logLine
	// The write precedes its log line by a moment.
	require.NoError(t, world.WaitFor(10*time.Second, func() bool {
		for _, l := range logLines(t, scaleLog, "decision") {
			if l.str("function_version_id") == versionID && l.str("desired") == strconv.Itoa(desired) && l.str("action") == "written" {
				dec = l
				return true
			}
		}
		return false
	}), "no decision line for %s desired=%d in %s", versionID, desired, scaleLog)
	p := pathEvidence{bucketID: dec.str("event_id"), cycle: dec.str("cycle")}
	require.NotEmpty(t, p.bucketID, "the decision line names its bucket event: %v", dec)

	recv := matching(logLines(t, scaleLog, "event received"), "event_id", p.bucketID)
	require.NotEmpty(t, recv, "scale logged no receipt of bucket %s", p.bucketID)
	require.Equal(t, events.TypeBucket, recv[0].str("event_type"))
	require.Equal(t, events.Source+"/discovery", recv[0].str("event_source"))
	p.bucketArrival = recv[0].str("knative_arrival_time")
	require.NotEmpty(t, p.bucketArrival, "the bucket came through the Broker's ingress (knativearrivaltime)")

	// Discovery logs its cycle done only once every bucket send has
	// returned, and over the in-memory channel a send returns when scale
	// has answered: scale's decision line can come first (a CI run read
	// discovery's log in between and found no cycle). Wait for it, within
	// the bucket deadline that bounds every send.
	var cyc []logLine
	require.NoError(t, world.WaitFor(period, func() bool {
		cyc = matching(logLines(t, discoveryLog, "discovery cycle done"), "cycle", p.cycle)
		return len(cyc) > 0
	}), "discovery ran no cycle %s", p.cycle)
	p.tickID = cyc[0].str("event_id")
	ticks := matching(logLines(t, discoveryLog, "event received"), "event_id", p.tickID)
	require.NotEmpty(t, ticks, "discovery logged no receipt of tick %s", p.tickID)
	require.Equal(t, "dev.knative.sources.ping", ticks[0].str("event_type"))
	require.Equal(t, tickSource, ticks[0].str("event_source"), "the tick is the chart's PingSource's")
	p.tickArrival = ticks[0].str("knative_arrival_time")
	require.NotEmpty(t, p.tickArrival, "the tick came through the Broker's ingress (knativearrivaltime)")
	return p
}

func matching(lines []logLine, key, value string) []logLine {
	var out []logLine
	for _, l := range lines {
		if l.str(key) == value {
			out = append(out, l)
		}
	}
	return out
}

func copyEnv(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// helmPath is $HELM, or the helm e2e/packaging/install-helm.sh installs.
func helmPath(t *testing.T, root string) string {
	t.Helper()
	if h := os.Getenv("HELM"); h != "" {
		return h
	}
	out, err := exec.Command(filepath.Join(root, "e2e/packaging/install-helm.sh")).Output()
	require.NoError(t, err, "install helm")
	return strings.TrimSpace(string(out))
}
