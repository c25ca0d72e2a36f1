// Package packaging tests what operators install: the Helm chart rendered
// by the real helm CLI and the plain manifests under knative/, each object
// decoded strictly into its Go type (unknown fields fail) and checked by
// Knative's own defaulting and validation, as the admission webhooks would.
//
// It is a module of its own so that Knative's and Kubernetes' dependency
// tree stays out of the function's image.
package packaging

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	eventingv1 "knative.dev/eventing/pkg/apis/eventing/v1"
	"knative.dev/eventing/pkg/apis/feature"
	sourcesv1 "knative.dev/eventing/pkg/apis/sources/v1"
	netapi "knative.dev/networking/pkg/apis/networking"
	"knative.dev/pkg/apis"
	"knative.dev/serving/pkg/apis/serving"
	servingv1 "knative.dev/serving/pkg/apis/serving/v1"
	"sigs.k8s.io/yaml"
)

const (
	repo  = "../.."
	chart = repo + "/charts/nvcf-autoscaler"
)

// helm finds the CLI: $HELM, or the one install-helm.sh builds. Without it
// the test fails under CI=true or AUTOSCALER_REQUIRE_SERVERS=1 and skips
// otherwise, naming the command that provides it.
func helm(t *testing.T) string {
	t.Helper()
	if h := os.Getenv("HELM"); h != "" {
		return h
	}
	h, _ := filepath.Abs(repo + "/.cache/tools/bin/helm")
	if _, err := os.Stat(h); err == nil {
		return h
	}
	msg := "helm not found: run `make test` (or e2e/packaging/install-helm.sh)"
	if os.Getenv("CI") == "true" || os.Getenv("AUTOSCALER_REQUIRE_SERVERS") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

func run(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String() + errb.String(), fmt.Errorf("%s %s: %w\n%s", filepath.Base(name), strings.Join(args, " "), err, errb.String())
	}
	return out.String(), nil
}

// Secret values the full render receives the way operators are told to
// pass them: --set-file at install, never in a values file.
var secretValues = map[string]string{
	"cassandraPassword":      "cass-pw-7f3a9c1e",
	"cassandraAdminPassword": "cass-admin-pw-52be0d",
	"nvcfClientSecret":       "nvcf-client-secret-9e8d7c",
}

func fullValuesArgs(t *testing.T) []string {
	dir := t.TempDir()
	args := []string{"--values", "testdata/full-values.yaml"}
	for k, v := range secretValues {
		p := filepath.Join(dir, k)
		require.NoError(t, os.WriteFile(p, []byte(v), 0o600))
		args = append(args, "--set-file", "secrets."+k+"="+p)
	}
	return args
}

func render(t *testing.T, extra ...string) []byte {
	t.Helper()
	args := append([]string{"template", "autoscaler", chart, "--namespace", "nvcf-autoscaler"}, extra...)
	out, err := run(t, helm(t), args...)
	require.NoError(t, err)
	return []byte(out)
}

func TestHelmLint(t *testing.T) {
	h := helm(t)
	for name, args := range map[string][]string{
		"default values": nil,
		"full values":    fullValuesArgs(t),
	} {
		t.Run(name, func(t *testing.T) {
			out, err := run(t, h, append([]string{"lint", "--strict", chart}, args...)...)
			require.NoError(t, err, out)
			require.Contains(t, out, "1 chart(s) linted, 0 chart(s) failed")
		})
	}
}

func TestChartRendersValidObjects(t *testing.T) {
	for name, args := range map[string][]string{
		"default values": nil,
		"full values":    fullValuesArgs(t),
	} {
		t.Run(name, func(t *testing.T) {
			objs := decodeAll(t, render(t, args...))
			kinds := validateAll(t, objs)
			want := []string{"Broker", "ConfigMap", "PingSource", "Service", "ServiceAccount", "SinkBinding", "Trigger"}
			if name == "full values" {
				want = append(want, "Job", "Secret")
			}
			sort.Strings(want)
			require.Equal(t, want, kinds)
		})
	}
}

// externalArgs address the functions by URL, as for processes running
// outside Knative Serving.
var externalArgs = []string{
	"--set", "externalFunctions.discoveryURL=http://discovery.example:8080/",
	"--set", "externalFunctions.scaleURL=http://scale.example:8080/",
	"--set", "delivery.deadLetter.uri=http://dead-letters.example/",
}

// With externalFunctions the Triggers deliver to the URLs, the SinkBinding
// binds Deployments of discovery, and no Knative Service is rendered, so
// the chart installs on a cluster without Knative Serving.
func TestExternalFunctionsAddressedByURL(t *testing.T) {
	objs := decodeAll(t, render(t, externalArgs...))
	kinds := validateAll(t, objs)
	require.Equal(t, []string{"Broker", "ConfigMap", "PingSource", "ServiceAccount", "SinkBinding", "Trigger"}, kinds)
	subscribers := map[string]string{}
	for _, o := range objs {
		switch v := o.obj.(type) {
		case *eventingv1.Trigger:
			require.Nil(t, v.Spec.Subscriber.Ref, "Trigger %s still refers to a Service", o.name)
			subscribers[o.name] = v.Spec.Subscriber.URI.String()
			require.Equal(t, "http://dead-letters.example/", v.Spec.Delivery.DeadLetterSink.URI.String())
		case *sourcesv1.SinkBinding:
			require.Equal(t, "Deployment", v.Spec.Subject.Kind)
			require.Equal(t, map[string]string{
				"app.kubernetes.io/instance":  "autoscaler",
				"app.kubernetes.io/component": "discovery",
			}, v.Spec.Subject.Selector.MatchLabels)
		}
	}
	require.Equal(t, map[string]string{
		"autoscaler-nvcf-autoscaler-tick":     "http://discovery.example:8080/",
		"autoscaler-nvcf-autoscaler-bucket":   "http://scale.example:8080/",
		"autoscaler-nvcf-autoscaler-activate": "http://scale.example:8080/",
	}, subscribers)
}

// Each function gets GOMEMLIMIT at 90 % of its memory limit, so a large
// cycle's garbage makes the GC work harder instead of the container die.
func TestGoMemLimitFollowsTheMemoryLimit(t *testing.T) {
	want := map[string]string{"autoscaler-nvcf-autoscaler-discovery": "691MiB", "autoscaler-nvcf-autoscaler-scale": "921MiB"}
	for _, o := range decodeAll(t, render(t, "--set", "scale.resources.limits.memory=1Gi")) {
		svc, ok := o.obj.(*servingv1.Service)
		if !ok || want[svc.Name] == "" {
			continue
		}
		got := ""
		for _, e := range svc.Spec.Template.Spec.Containers[0].Env {
			if e.Name == "GOMEMLIMIT" {
				got = e.Value
			}
		}
		require.Equal(t, want[svc.Name], got, svc.Name)
		delete(want, svc.Name)
	}
	require.Empty(t, want, "services not rendered")
}

// The full render wires every switch through: the schema Job with the
// admin password file, mTLS files, the overrides file, gRPC and dry-run.
func TestFullValuesReachTheProcess(t *testing.T) {
	objs := decodeAll(t, render(t, fullValuesArgs(t)...))
	cfg := configData(t, objs)
	for k, v := range map[string]string{
		"CASSANDRA_ENSURE_SCHEMA":       "false",
		"CASSANDRA_PASSWORD_FILE":       "/var/run/secrets/nvcf-autoscaler/cassandra-password",
		"TSDB_CERT_FILE":                "/var/run/secrets/nvcf-autoscaler-tsdb-tls/tls.crt",
		"CASSANDRA_TLS":                 "true",
		"CASSANDRA_TLS_CA_FILE":         "/var/run/secrets/nvcf-autoscaler-cassandra-tls/ca.crt",
		"CASSANDRA_TLS_KEY_FILE":        "/var/run/secrets/nvcf-autoscaler-cassandra-tls/tls.key",
		"CASSANDRA_TLS_VERIFY_HOST":     "true",
		"NVCF_GRPC_CA_FILE":             "/var/run/secrets/nvcf-autoscaler-nvcf-tls/ca.crt",
		"NVCF_GRPC_CERT_FILE":           "/var/run/secrets/nvcf-autoscaler-nvcf-tls/tls.crt",
		"NVCF_OAUTH_CA_FILE":            "/var/run/secrets/nvcf-autoscaler-nvcf-oauth-tls/ca.crt",
		"NVCF_OAUTH_KEY_FILE":           "/var/run/secrets/nvcf-autoscaler-nvcf-oauth-tls/tls.key",
		"POLICY_OVERRIDES_FILE":         "/etc/nvcf-autoscaler/policy/overrides.json",
		"NVCF_TRANSPORT":                "grpc",
		"NVCF_OAUTH_CLIENT_SECRET_FILE": "/var/run/secrets/nvcf-autoscaler/nvcf-client-secret",
		"NVCF_DRY_RUN":                  "true",
		"BUCKETS":                       "256",
		"METRICS_ADDRESS":               ":9100",
		// Numbers from a values file are floats to helm; large ones must
		// still reach the process as integers, not 4.194304e+06.
		"TSDB_MAX_SELECTOR_BYTES": "4194304",
		"TSDB_ENVIRONMENT":        "staging",
		"TSDB_IGNORE_ENV":         "false",
		"KEEP_ALIVE":              "fixed",
		"KEEP_ALIVE_PERCENTILE":   "98",
		"PREWARM_PERCENTILE":      "10",
	} {
		require.Equal(t, v, cfg[k], k)
	}
	var job *batchv1.Job
	for _, o := range objs {
		if j, ok := o.obj.(*batchv1.Job); ok {
			job = j
		}
	}
	require.NotNil(t, job)
	script := strings.Join(job.Spec.Template.Spec.Containers[0].Args, "\n")
	require.Contains(t, script, "-u \"cassandra_admin\"")
	require.Contains(t, script, "cat /secrets/cassandra-admin-password")
	var schema string
	for _, o := range objs {
		if cm, ok := o.obj.(*corev1.ConfigMap); ok && strings.HasSuffix(cm.Name, "-schema") {
			schema = cm.Data["schema.cql"]
		}
	}
	require.Contains(t, schema, "CREATE KEYSPACE IF NOT EXISTS nvcf_autoscaler_prod WITH replication = {'class': 'NetworkTopologyStrategy', 'dc1': 3};")
	require.Contains(t, schema, "CREATE TABLE IF NOT EXISTS nvcf_autoscaler_prod.locks")
	require.NotContains(t, schema, "KEYSPACE.")
}

// The HTTP API's and the token endpoint's TLS material reach the process
// as files of the Secrets named in values, each mounted where its settings
// point, in both Services; none is mounted for a transport that does not
// use it.
func TestNVCFHTTPSMaterialMountedFromSecrets(t *testing.T) {
	objs := decodeAll(t, render(t, "--set", "nvcf.apiTLS.secret=nvcf-api-tls", "--set", "nvcf.apiTLS.clientCert=true",
		"--set", "nvcf.oauth.tls.secret=idp-ca"))
	cfg := configData(t, objs)
	wantFiles := map[string]string{
		"NVCF_API_CA_FILE":   "nvcf-api-tls/ca.crt",
		"NVCF_API_CERT_FILE": "nvcf-api-tls/tls.crt",
		"NVCF_API_KEY_FILE":  "nvcf-api-tls/tls.key",
		"NVCF_OAUTH_CA_FILE": "idp-ca/ca.crt",
	}
	services := 0
	for _, o := range objs {
		svc, ok := o.obj.(*servingv1.Service)
		if !ok || !(strings.HasSuffix(svc.Name, "-discovery") || strings.HasSuffix(svc.Name, "-scale")) {
			continue // the dead-letter event display
		}
		services++
		spec := svc.Spec.Template.Spec
		mounted := map[string]string{} // mount path -> Secret
		for _, m := range spec.Containers[0].VolumeMounts {
			for _, v := range spec.Volumes {
				if v.Name == m.Name && v.Secret != nil {
					require.True(t, m.ReadOnly, "%s mounts %s writable", svc.Name, m.Name)
					mounted[m.MountPath] = v.Secret.SecretName
				}
			}
		}
		for key, want := range wantFiles {
			file := cfg[key]
			require.NotEmpty(t, file, key)
			require.Equal(t, want, mounted[filepath.Dir(file)]+"/"+filepath.Base(file), "%s: %s=%s is not a file of the Secret", svc.Name, key, file)
		}
	}
	require.Equal(t, 2, services)
	_, absent := cfg["NVCF_OAUTH_CERT_FILE"]
	require.False(t, absent, "no client certificate unless nvcf.oauth.tls.clientCert")

	grpc := configData(t, decodeAll(t, render(t, "--set", "nvcf.transport=grpc", "--set", "nvcf.grpcAddr=nvcf:443", "--set", "nvcf.apiTLS.secret=nvcf-api-tls")))
	_, absent = grpc["NVCF_API_CA_FILE"]
	require.False(t, absent, "the HTTP API's CA is not set for the gRPC transport")
}

// knativeManifests decodes every object of knative/.
func knativeManifests(t *testing.T) []object {
	t.Helper()
	files, err := filepath.Glob(repo + "/knative/*.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	var objs []object
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		objs = append(objs, decodeAll(t, b)...)
	}
	return objs
}

func TestKnativeManifestsValidate(t *testing.T) {
	kinds := validateAll(t, knativeManifests(t))
	require.Equal(t, []string{"Broker", "ConfigMap", "Namespace", "PingSource", "Service", "SinkBinding", "Trigger"}, kinds)
}

// visibility is a Knative Service's reach as Serving reads it: its Route
// carries the Service's labels, and the visibility label set to
// cluster-local gives the Route the cluster's domain only, which no
// ingress outside the cluster serves; any other Service is public.
func visibility(svc *servingv1.Service) string {
	if svc.Labels[netapi.VisibilityLabelKey] == serving.VisibilityClusterLocal {
		return "cluster-local"
	}
	return "public"
}

// Only the Broker calls discovery and scale: in knative/ and in the chart by
// default, every Knative Service is cluster-local, so nobody outside the
// cluster can post bucket or activation events. visibility=public serves
// discovery and scale through the ingress too (for curl from outside);
// the dead-letter display stays inside.
func TestServicesAreClusterLocalUnlessMadePublic(t *testing.T) {
	domains := func(objs []object) map[string]string {
		out := map[string]string{}
		for _, o := range objs {
			if svc, ok := o.obj.(*servingv1.Service); ok {
				out[svc.Name] = visibility(svc)
			}
		}
		return out
	}
	const local, public = "cluster-local", "public"
	require.Equal(t, map[string]string{
		"nvcf-autoscaler-discovery": local, "nvcf-autoscaler-scale": local, "nvcf-autoscaler-dead-letters": local,
	}, domains(knativeManifests(t)), "knative/")
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"default values": {nil, local},
		"full values":    {fullValuesArgs(t), local},
		"public":         {[]string{"--set", "visibility=public"}, public},
	} {
		t.Run(name, func(t *testing.T) {
			objs := decodeAll(t, render(t, tc.args...))
			validateAll(t, objs)
			want := map[string]string{"autoscaler-nvcf-autoscaler-discovery": tc.want, "autoscaler-nvcf-autoscaler-scale": tc.want}
			got := domains(objs)
			if _, displayed := got["autoscaler-nvcf-autoscaler-dead-letters"]; displayed {
				want["autoscaler-nvcf-autoscaler-dead-letters"] = local
			}
			require.Equal(t, want, got)
		})
	}
}

// The settings whose default depends on the policy mode (the guards the
// reference lacks, and keep-alive: learned in target mode, the fixed
// timeout in nvcf mode) are left out of the ConfigMap unless set, so that
// `policy.mode: nvcf` alone replays the reference; set, they reach the
// process as written.
func TestModeDefaultsAreLeftToTheProcess(t *testing.T) {
	modal := []string{"KEEP_ALIVE", "SCALE_DOWN_STABILIZATION", "SCALE_DOWN_FLAP_WINDOW", "MAX_SCALE_UP_RATE", "MAX_SCALE_DOWN_RATE"}
	for _, mode := range []string{"target", "nvcf"} {
		cfg := configData(t, decodeAll(t, render(t, "--set", "policy.mode="+mode)))
		require.Equal(t, mode, cfg["POLICY_MODE"])
		for _, k := range modal {
			require.NotContains(t, cfg, k, "%s rendered in %s mode although unset", k, mode)
		}
	}
	cfg := configData(t, decodeAll(t, render(t, "--set", "policy.mode=nvcf", "--set", "policy.keepAlive=learned")))
	require.Equal(t, "learned", cfg["KEEP_ALIVE"])
	cfg = configData(t, decodeAll(t, render(t, "--set", "policy.scaleDownFlapWindow=0s")))
	require.Equal(t, "0s", cfg["SCALE_DOWN_FLAP_WINDOW"], "set, even to off, it reaches the process")
}

// The schema turns bad values away before anything is rendered, with a
// message naming the value.
func TestSchemaRejectsBadValues(t *testing.T) {
	h := helm(t)
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"negative bucket count", []string{"--set", "buckets=-1"}, "at '/buckets': minimum: got -1, want 1"},
		{"too many buckets", []string{"--set", "buckets=70000"}, "at '/buckets': maximum"},
		{"missing TSDB URL", []string{"--set", "tsdb.url="}, "at '/tsdb/url': minLength: got 0, want 1"},
		{"TSDB URL without scheme", []string{"--set", "tsdb.url=vm:8428"}, "at '/tsdb/url'"},
		{"unknown key", []string{"--set", "tsdb.urll=http://x"}, "additional properties 'urll' not allowed"},
		{"unknown policy mode", []string{"--set", "policy.mode=fast"}, "at '/policy/mode'"},
		{"unknown keep-alive", []string{"--set", "policy.keepAlive=smart"}, "at '/policy/keepAlive'"},
		{"flap window not a duration", []string{"--set", "policy.scaleDownFlapWindow=20"}, "at '/policy/scaleDownFlapWindow'"},
		{"threshold over 100", []string{"--set", "policy.scaleUpThreshold=120"}, "at '/policy/scaleUpThreshold'"},
		{"bad duration", []string{"--set", "discovery.period=one minute"}, "at '/discovery/period'"},
		{"bad keyspace", []string{"--set", "cassandra.keyspace=Prod-KS"}, "at '/cassandra/keyspace'"},
		{"no Cassandra hosts", []string{"--set", "cassandra.hosts=null"}, "at '/cassandra': missing property 'hosts'"},
		{"bad cron", []string{"--set", "schedule=every minute"}, "at '/schedule'"},
		// Knative's PingSource validation refuses @every (seen on the real webhook)
		{"@every cron", []string{"--set", "schedule=@every 10s"}, "at '/schedule'"},
		{"grpc without address", []string{"--set", "nvcf.transport=grpc"}, "at '/nvcf/grpcAddr': minLength: got 0, want 1"},
		{"mtls without secret", []string{"--set", "tsdb.auth=mtls"}, "at '/tsdb/tlsSecret': minLength: got 0, want 1"},
		{"cassandra client certificate without secret", []string{"--set", "cassandra.tls.enabled=true", "--set", "cassandra.tls.clientCert=true"}, "at '/cassandra/tls/secret': minLength: got 0, want 1"},
		{"nvcf client certificate without secret", []string{"--set", "nvcf.grpcTLS.clientCert=true"}, "at '/nvcf/grpcTLS/secret': minLength: got 0, want 1"},
		{"NVCF API client certificate without secret", []string{"--set", "nvcf.apiTLS.clientCert=true"}, "at '/nvcf/apiTLS/secret': minLength: got 0, want 1"},
		{"token endpoint client certificate without secret", []string{"--set", "nvcf.oauth.tls.clientCert=true"}, "at '/nvcf/oauth/tls/secret': minLength: got 0, want 1"},
		{"NVCF API CA for a plain http URL", []string{"--set", "nvcf.apiTLS.secret=ca", "--set", "nvcf.apiURL=http://nvcf:8080"}, "at '/nvcf/apiURL': 'http://nvcf:8080' does not match pattern '^https://'"},
		{"token endpoint CA for a plain http URL", []string{"--set", "nvcf.oauth.tls.secret=ca", "--set", "nvcf.oauth.tokenURL=http://idp/token"}, "at '/nvcf/oauth/tokenURL': 'http://idp/token' does not match pattern '^https://'"},
		{"unknown visibility", []string{"--set", "visibility=private"}, "at '/visibility'"},
		{"bad consistency", []string{"--set", "cassandra.consistency=MOST"}, "at '/cassandra/consistency'"},
		{"override with unknown field", []string{"--set", "policy.overrides.functions.f1.minimum=2"}, "additional properties 'minimum' not allowed"},
		{"secret needed but not given", []string{"--set", "secrets.existingSecret="}, "set secrets.existingSecret or secrets.create=true"},
		{"external function URL without scheme", []string{"--set", "externalFunctions.scaleURL=scale:8080"}, "at '/externalFunctions/scaleURL'"},
		{"one external function of two", []string{"--set", "externalFunctions.discoveryURL=http://d:8080"}, "externalFunctions: set both discoveryURL and scaleURL, or neither"},
		{"event display without Knative Services", externalArgs[:4], "set delivery.deadLetter.uri, or delivery.deadLetter.enabled=false"},
		{"created secret without its value", []string{"--set", "secrets.existingSecret=", "--set", "secrets.create=true"}, "nvcf.auth=oauth2: give secrets.nvcfClientSecret"},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, err := run(t, h, append([]string{"template", "x", chart}, c.args...)...)
			require.Error(t, err, "rendered although %v is bad:\n%s", c.args, out)
			require.Contains(t, err.Error(), c.want)
		})
	}
}

// Secrets given at install live in the Secret only: not in the ConfigMaps,
// not in the Services' env, not in NOTES.
func TestSecretsOnlyInSecrets(t *testing.T) {
	full := fullValuesArgs(t)
	for _, o := range decodeAll(t, render(t, full...)) {
		if _, ok := o.obj.(*corev1.Secret); ok {
			continue
		}
		for k, v := range secretValues {
			require.NotContains(t, string(o.raw), v, "secret %s appears in %s %s", k, o.kind, o.name)
		}
	}
	notes := renderNotes(t, full...)
	require.Contains(t, notes, "Secrets are read as files from Secret autoscaler-nvcf-autoscaler-secrets")
	for k, v := range secretValues {
		require.NotContains(t, notes, v, "secret %s in NOTES", k)
	}
}

// renderNotes renders NOTES.txt, which `helm template` leaves out and
// `helm install --dry-run` renders only with a cluster: a copy of the chart
// carries it as a named template inside an ordinary YAML template.
func renderNotes(t *testing.T, args ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "nvcf-autoscaler")
	require.NoError(t, os.CopyFS(dir, os.DirFS(chart)))
	notes, err := os.ReadFile(filepath.Join(dir, "templates/NOTES.txt"))
	require.NoError(t, err)
	require.NoError(t, os.Remove(filepath.Join(dir, "templates/NOTES.txt")))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "templates/_notes.tpl"),
		[]byte(`{{- define "test.notes" -}}`+string(notes)+`{{- end -}}`), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "templates/notes.yaml"),
		[]byte("notes: |\n  {{- include \"test.notes\" . | nindent 2 }}\n"), 0o644))
	out, err := run(t, helm(t), append([]string{"template", "autoscaler", dir, "--namespace", "nvcf-autoscaler", "--show-only", "templates/notes.yaml"}, args...)...)
	require.NoError(t, err)
	var doc struct{ Notes string }
	require.NoError(t, yaml.Unmarshal([]byte(out), &doc))
	return doc.Notes
}

func TestNotes(t *testing.T) {
	notes := renderNotes(t)
	for _, want := range []string{
		"kubectl -n nvcf-autoscaler get ksvc autoscaler-nvcf-autoscaler-discovery autoscaler-nvcf-autoscaler-scale",
		"Self-metrics are served on :9095/metrics",
		"ConfigMap autoscaler-nvcf-autoscaler-dashboard",
		"create it yourself before the pods can start",
	} {
		require.Contains(t, notes, want)
	}
	require.Contains(t, renderNotes(t, "--set", "nvcf.dryRun=true"), "DRY RUN: nothing is written to NVCF")
}

// Every setting the chart writes is one the README's configuration table
// documents (and so, by the root readme test, one the code reads).
func TestConfigKeysAreDocumented(t *testing.T) {
	readme, err := os.ReadFile(repo + "/README.md")
	require.NoError(t, err)
	for _, args := range [][]string{nil, fullValuesArgs(t)} {
		for k := range configData(t, decodeAll(t, render(t, args...))) {
			require.Contains(t, string(readme), "| `"+k+"` |", "chart sets %s, which the README does not document", k)
		}
	}
}

type object struct {
	kind, name string
	raw        []byte
	obj        any
}

// decodeAll splits a YAML stream and decodes each document strictly into
// the Go type of its kind; an unknown kind or field fails the test.
func decodeAll(t *testing.T, stream []byte) []object {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(stream)))
	var out []object
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		var tm struct {
			metav1.TypeMeta `json:",inline"`
			Metadata        metav1.ObjectMeta `json:"metadata"`
		}
		require.NoError(t, yaml.Unmarshal(doc, &tm))
		obj := newObject(tm.APIVersion, tm.Kind)
		require.NotNil(t, obj, "unexpected %s %s in\n%s", tm.APIVersion, tm.Kind, doc)
		require.NoError(t, yaml.UnmarshalStrict(doc, obj), "%s %s does not decode strictly", tm.Kind, tm.Metadata.Name)
		out = append(out, object{kind: tm.Kind, name: tm.Metadata.Name, raw: doc, obj: obj})
	}
	return out
}

func stripComments(doc []byte) []byte {
	var b bytes.Buffer
	for _, l := range bytes.Split(doc, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(l), []byte("#")) {
			b.Write(l)
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}

func newObject(apiVersion, kind string) any {
	switch apiVersion + "/" + kind {
	case "v1/ConfigMap":
		return &corev1.ConfigMap{}
	case "v1/Secret":
		return &corev1.Secret{}
	case "v1/ServiceAccount":
		return &corev1.ServiceAccount{}
	case "v1/Namespace":
		return &corev1.Namespace{}
	case "batch/v1/Job":
		return &batchv1.Job{}
	case "serving.knative.dev/v1/Service":
		return &servingv1.Service{}
	case "eventing.knative.dev/v1/Broker":
		return &eventingv1.Broker{}
	case "eventing.knative.dev/v1/Trigger":
		return &eventingv1.Trigger{}
	case "sources.knative.dev/v1/PingSource":
		return &sourcesv1.PingSource{}
	case "sources.knative.dev/v1/SinkBinding":
		return &sourcesv1.SinkBinding{}
	}
	return nil
}

type knativeObject interface {
	apis.Defaultable
	apis.Validatable
}

// validateAll runs what the admission webhooks run on create: defaulting,
// then validation; it also holds every container to the security defaults.
// It returns the kinds seen, sorted and unique.
func validateAll(t *testing.T, objs []object) []string {
	t.Helper()
	seen := map[string]bool{}
	names := map[string]bool{}
	for _, o := range objs {
		seen[o.kind] = true
		for _, msg := range validation.IsDNS1123Subdomain(o.name) {
			t.Errorf("%s %q: %s", o.kind, o.name, msg)
		}
		key := o.kind + "/" + o.name
		require.False(t, names[key], "%s rendered twice", key)
		names[key] = true

		if k, ok := o.obj.(knativeObject); ok {
			// The webhooks run with the feature flags' defaults unless the
			// cluster's config-features says otherwise.
			ctx := feature.ToContext(apis.WithinCreate(context.Background()), feature.FromContextOrDefaults(context.Background()))
			k.SetDefaults(ctx)
			if err := k.Validate(ctx); err != nil {
				t.Errorf("%s %s fails Knative validation: %v", o.kind, o.name, err)
			}
		}
		var pod *corev1.PodSpec
		switch v := o.obj.(type) {
		case *servingv1.Service:
			pod = &v.Spec.Template.Spec.PodSpec
		case *batchv1.Job:
			pod = &v.Spec.Template.Spec
		}
		if pod != nil {
			checkContainers(t, o, pod)
		}
	}
	kinds := make([]string, 0, len(seen))
	for k := range seen {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	return kinds
}

var dropAll = regexp.MustCompile(`^ALL$`)

func checkContainers(t *testing.T, o object, pod *corev1.PodSpec) {
	t.Helper()
	for _, c := range pod.Containers {
		where := fmt.Sprintf("%s %s container %q", o.kind, o.name, c.Image)
		sc := c.SecurityContext
		if sc == nil {
			t.Errorf("%s: no securityContext", where)
			continue
		}
		if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
			t.Errorf("%s: may run as root", where)
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("%s: allows privilege escalation", where)
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("%s: writable root filesystem", where)
		}
		if sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || !dropAll.MatchString(string(sc.Capabilities.Drop[0])) {
			t.Errorf("%s: capabilities not dropped", where)
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
			t.Errorf("%s: no cpu request or memory limit", where)
		}
		for _, e := range c.Env {
			if strings.Contains(strings.ToUpper(e.Name), "PASSWORD") || strings.Contains(strings.ToUpper(e.Name), "SECRET") || strings.Contains(strings.ToUpper(e.Name), "TOKEN") {
				if !strings.HasSuffix(e.Name, "_FILE") {
					t.Errorf("%s: secret-looking env %s; secrets are files", where, e.Name)
				}
			}
		}
	}
}

func configData(t *testing.T, objs []object) map[string]string {
	t.Helper()
	for _, o := range objs {
		if cm, ok := o.obj.(*corev1.ConfigMap); ok && strings.HasSuffix(cm.Name, "-config") {
			return cm.Data
		}
	}
	t.Fatal("no -config ConfigMap rendered")
	return nil
}
