// Package kubeinstall installs what operators install into a real
// kube-apiserver (e2e/kube/kube.sh) carrying Knative Serving's and
// Eventing's CRDs: `kubectl apply -f knative/` and `helm install` of the
// chart, both ways it addresses the functions. The API server checks each
// object against the CRD's schema, so a field of the wrong type or shape is
// refused here as it would be on an operator's cluster; Knative's own Go
// validation of the same objects is e2e/packaging's part.
package kubeinstall

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"function/e2e/kube/kubetest"
)

func TestMain(m *testing.M) { os.Exit(kubetest.Main(m)) }

// namespace makes a namespace of its own for one test and deletes it
// afterwards (the controller manager empties and removes it).
func namespace(t *testing.T, c *kubetest.Cluster, prefix string) string {
	t.Helper()
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	ns := prefix + "-" + hex.EncodeToString(b)
	_, err := c.Kubectl("create", "namespace", ns)
	require.NoError(t, err)
	t.Cleanup(func() {
		if _, err := c.Kubectl("delete", "namespace", ns, "--wait=false"); err != nil {
			t.Logf("deleting namespace %s: %v", ns, err)
		}
	})
	return ns
}

// objects lists kind/name of every object of kinds in ns, sorted.
func objects(t *testing.T, c *kubetest.Cluster, ns string, kinds string) []string {
	t.Helper()
	out, err := c.Kubectl("get", kinds, "-n", ns, "-o", "name")
	require.NoError(t, err)
	names := strings.Fields(out)
	sort.Strings(names)
	return names
}

// visibilities maps each Knative Service in ns to its
// networking.knative.dev/visibility label as the API server stored it
// ("" for none: public).
func visibilities(t *testing.T, c *kubetest.Cluster, ns string) map[string]string {
	t.Helper()
	out, err := c.Kubectl("get", "ksvc", "-n", ns, "-o",
		`jsonpath={range .items[*]}{.metadata.name}={.metadata.labels.networking\.knative\.dev/visibility}{"\n"}{end}`)
	require.NoError(t, err)
	got := map[string]string{}
	for _, line := range strings.Fields(out) {
		name, label, _ := strings.Cut(line, "=")
		got[name] = label
	}
	return got
}

// The plain manifests, applied as the README tells operators: every object
// is accepted by the API server and stored, and the Knative Services are
// cluster-local (only the Broker calls them).
func TestKnativeManifestsAccepted(t *testing.T) {
	c := kubetest.Start(t)
	files, err := filepath.Glob(filepath.Join(c.Repo, "knative", "*.yaml"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	out, err := c.Kubectl("apply", "-f", filepath.Join(c.Repo, "knative"))
	require.NoError(t, err, out)
	t.Cleanup(func() {
		// --wait: a rerun right after must not find the namespace terminating.
		if out, err := c.Kubectl("delete", "-f", filepath.Join(c.Repo, "knative"), "--ignore-not-found", "--timeout=120s"); err != nil {
			t.Logf("deleting knative/: %v\n%s", err, out)
		}
	})
	require.Equal(t, []string{
		"broker.eventing.knative.dev/nvcf-autoscaler",
		"configmap/nvcf-autoscaler-config",
		"pingsource.sources.knative.dev/nvcf-autoscaler-tick",
		"service.serving.knative.dev/nvcf-autoscaler-dead-letters",
		"service.serving.knative.dev/nvcf-autoscaler-discovery",
		"service.serving.knative.dev/nvcf-autoscaler-scale",
		"sinkbinding.sources.knative.dev/nvcf-autoscaler-discovery-sink",
		"trigger.eventing.knative.dev/nvcf-autoscaler-activate",
		"trigger.eventing.knative.dev/nvcf-autoscaler-bucket",
		"trigger.eventing.knative.dev/nvcf-autoscaler-tick",
	}, objects(t, c, "nvcf-autoscaler", "brokers,configmaps,pingsources,ksvc,sinkbindings,triggers"))
	require.Equal(t, map[string]string{
		"nvcf-autoscaler-dead-letters": "cluster-local",
		"nvcf-autoscaler-discovery":    "cluster-local",
		"nvcf-autoscaler-scale":        "cluster-local",
	}, visibilities(t, c, "nvcf-autoscaler"))
}

// helm install for real, with the default values (the functions as Knative
// Services, cluster-local) and with externalFunctions (the functions
// elsewhere, by URL): the release is deployed and every object it rendered
// is stored; upgraded (with visibility=public: discovery and scale lose
// the cluster-local label) and uninstalled, it changes and goes.
func TestHelmInstall(t *testing.T) {
	c := kubetest.Start(t)
	chart := filepath.Join(c.Repo, "charts", "nvcf-autoscaler")
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"knative services", nil, []string{
			"broker.eventing.knative.dev/r-nvcf-autoscaler",
			"pingsource.sources.knative.dev/r-nvcf-autoscaler-tick",
			"service.serving.knative.dev/r-nvcf-autoscaler-dead-letters",
			"service.serving.knative.dev/r-nvcf-autoscaler-discovery",
			"service.serving.knative.dev/r-nvcf-autoscaler-scale",
			"sinkbinding.sources.knative.dev/r-nvcf-autoscaler-discovery-sink",
			"trigger.eventing.knative.dev/r-nvcf-autoscaler-activate",
			"trigger.eventing.knative.dev/r-nvcf-autoscaler-bucket",
			"trigger.eventing.knative.dev/r-nvcf-autoscaler-tick",
		}},
		{"external functions", []string{
			"--set", "externalFunctions.discoveryURL=http://127.0.0.1:18081/",
			"--set", "externalFunctions.scaleURL=http://127.0.0.1:18082/",
			"--set", "delivery.deadLetter.uri=http://127.0.0.1:18083/",
		}, []string{
			"broker.eventing.knative.dev/r-nvcf-autoscaler",
			"pingsource.sources.knative.dev/r-nvcf-autoscaler-tick",
			"sinkbinding.sources.knative.dev/r-nvcf-autoscaler-discovery-sink",
			"trigger.eventing.knative.dev/r-nvcf-autoscaler-activate",
			"trigger.eventing.knative.dev/r-nvcf-autoscaler-bucket",
			"trigger.eventing.knative.dev/r-nvcf-autoscaler-tick",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := namespace(t, c, "helm")
			out, err := c.HelmCmd(append([]string{"install", "r", chart, "-n", ns, "--wait=false"}, tc.args...)...)
			require.NoError(t, err, out)
			status, err := c.HelmCmd("status", "r", "-n", ns, "-o", "json")
			require.NoError(t, err)
			require.Contains(t, status, `"status":"deployed"`)
			require.Equal(t, tc.want, objects(t, c, ns, "brokers,pingsources,ksvc,sinkbindings,triggers"))
			if tc.args != nil {
				uri, err := c.Kubectl("get", "trigger", "r-nvcf-autoscaler-bucket", "-n", ns, "-o", "jsonpath={.spec.subscriber.uri}")
				require.NoError(t, err)
				require.Equal(t, "http://127.0.0.1:18082/", uri)
			} else {
				require.Equal(t, map[string]string{
					"r-nvcf-autoscaler-dead-letters": "cluster-local",
					"r-nvcf-autoscaler-discovery":    "cluster-local",
					"r-nvcf-autoscaler-scale":        "cluster-local",
				}, visibilities(t, c, ns))
			}

			// Upgrade as the README tells operators, then uninstall: the
			// new values reach the ConfigMap and the Services, and the
			// objects go with the release.
			out, err = c.HelmCmd("upgrade", "r", chart, "-n", ns, "--reuse-values", "--set", "buckets=64", "--set", "visibility=public", "--wait=false")
			require.NoError(t, err, out)
			buckets, err := c.Kubectl("get", "configmap", "r-nvcf-autoscaler-config", "-n", ns, "-o", "jsonpath={.data.BUCKETS}")
			require.NoError(t, err)
			require.Equal(t, "64", buckets)
			if tc.args == nil {
				require.Equal(t, map[string]string{
					"r-nvcf-autoscaler-dead-letters": "cluster-local",
					"r-nvcf-autoscaler-discovery":    "",
					"r-nvcf-autoscaler-scale":        "",
				}, visibilities(t, c, ns), "visibility=public serves discovery and scale through the ingress; dead letters stay inside")
			}
			out, err = c.HelmCmd("uninstall", "r", "-n", ns, "--wait")
			require.NoError(t, err, out)
			require.Empty(t, objects(t, c, ns, "brokers,pingsources,ksvc,sinkbindings,triggers,configmaps"))
		})
	}
}

// refusedBy asserts err is the API server refusing a field of the wrong
// type, with one of the messages it can give: the CRD schema's, or, when
// Eventing's webhook is registered (e2e/kube/knative.sh), the mutating
// webhook's, which decodes the object before the schema is checked.
func refusedBy(t *testing.T, err error, schemaMsg, webhookMsg string) {
	t.Helper()
	require.Error(t, err)
	switch {
	case strings.Contains(err.Error(), schemaMsg):
		t.Log("refused by the CRD schema")
	case strings.Contains(err.Error(), `admission webhook "webhook.eventing.knative.dev" denied the request`) &&
		strings.Contains(err.Error(), webhookMsg):
		t.Log("refused by Eventing's webhook")
	default:
		t.Fatalf("not refused for the field's type: %v", err)
	}
}

// The API server, not only our values schema, turns away objects of the
// wrong shape, with its own message naming the field: the CRD schemas
// are what an operator's cluster enforces even without Knative's webhooks.
func TestServerRefusesBadObjects(t *testing.T) {
	c := kubetest.Start(t)
	ns := namespace(t, c, "refuse")

	t.Run("PingSource schedule as a number", func(t *testing.T) {
		_, err := c.KubectlStdin([]byte(`apiVersion: sources.knative.dev/v1
kind: PingSource
metadata:
  name: numeric-schedule
spec:
  schedule: 5
  sink:
    uri: http://127.0.0.1:18081/
`), "create", "-n", ns, "-f", "-")
		refusedBy(t, err,
			`The PingSource "numeric-schedule" is invalid: spec.schedule: Invalid value: "integer": spec.schedule in body must be of type string`,
			`cannot unmarshal number into Go struct field PingSourceSpec.spec.schedule of type string`)
		_, err = c.Kubectl("get", "pingsource", "numeric-schedule", "-n", ns)
		require.Error(t, err, "the refused PingSource was stored")
	})

	t.Run("chart value past the values schema", func(t *testing.T) {
		// The values schema refuses retry=three before anything renders;
		// skipping it shows the API server refuses the rendered Broker and
		// Triggers too.
		chart := filepath.Join(c.Repo, "charts", "nvcf-autoscaler")
		_, err := c.HelmCmd("install", "bad", chart, "-n", ns, "--wait=false", "--skip-schema-validation",
			"--set-string", "delivery.retry=three")
		refusedBy(t, err,
			`spec.delivery.retry: Invalid value: "string": spec.delivery.retry in body must be of type integer`,
			`cannot unmarshal string into Go struct field DeliverySpec.spec.delivery.retry of type int32`)
		_, err = c.Kubectl("get", "broker", "bad-nvcf-autoscaler", "-n", ns)
		require.Error(t, err, "the Broker with a string retry was stored")
	})
}
