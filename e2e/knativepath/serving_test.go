package knativepath

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"function/e2e/kube/kubetest"
)

// podAutoscaler is the part of a Revision's PodAutoscaler the test reads.
type podAutoscaler struct {
	Metadata struct {
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
	Spec struct {
		ContainerConcurrency int `json:"containerConcurrency"`
		ScaleTargetRef       struct {
			Name string `json:"name"`
		} `json:"scaleTargetRef"`
	} `json:"spec"`
}

// container is the Deployment's container of that name.
func container(t *testing.T, d kubetest.Deployment, name string) kubetest.Container {
	t.Helper()
	c, ok := d.Container(name)
	if !ok {
		t.Fatalf("no container %q in the Revision's Deployment", name)
	}
	return c
}

// getJSON reads one object into v.
func (c *cluster) getJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	require.NoError(t, json.Unmarshal([]byte(c.kube(t, append(args, "-o", "json")...)), v))
}

// servingWait bounds the waits for what Knative's controllers make of an
// object: seconds here, longer only when a failed step is retried with
// the rate limiter's back-off.
const servingWait = 2 * time.Minute

// eventually calls try every second until it returns nil, and fails the
// test with its last error once servingWait has passed.
func (c *cluster) eventually(t *testing.T, try func() error) {
	t.Helper()
	deadline := time.Now().Add(servingWait)
	for {
		err := try()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v after %s; Serving's logs: %s", err, servingWait, filepath.Join(c.knativeDir, "logs", "serving-controller.log"))
		}
		time.Sleep(time.Second)
	}
}

// latestDeployment waits until the Service's newest Revision has its
// Deployment and ok accepts it, and returns it with the Revision's name:
// the Revision changes while Eventing's SinkBinding patches the Service.
func (c *cluster) latestDeployment(t *testing.T, ns, svc string, ok func(kubetest.Deployment) bool) (kubetest.Deployment, string) {
	t.Helper()
	var d kubetest.Deployment
	var rev string
	c.eventually(t, func() error {
		var err error
		d, rev, err = kubetest.LatestDeployment(c.run, ns, svc)
		if err == nil && !ok(d) {
			err = fmt.Errorf("revision %s: its Deployment is not yet what the test waits for", rev)
		}
		if err != nil {
			return fmt.Errorf("Service %s/%s: %w", ns, svc, err)
		}
		return nil
	})
	return d, rev
}

// podAutoscaler waits for the Revision's PodAutoscaler and returns it.
// Serving's Revision reconciler makes it in the pass that made the
// Deployment, but after it (and after the image cache), so a test that
// has just seen the Deployment can find no PodAutoscaler yet: 13 to 605 ms
// apart (median 98 ms) over the 55 Revisions in a serving-controller.log.
func (c *cluster) podAutoscaler(t *testing.T, ns, rev string) podAutoscaler {
	t.Helper()
	var pa podAutoscaler
	c.eventually(t, func() error {
		out, err := c.run("-n", ns, "get", "podautoscaler", rev, "-o", "json")
		if err != nil {
			return fmt.Errorf("revision %s: no PodAutoscaler yet: %w", rev, err)
		}
		require.NoError(t, json.Unmarshal([]byte(out), &pa))
		return nil
	})
	return pa
}

// The chart's Knative Services, as Knative Serving's own webhook and
// controller (e2e/kube/knative.sh) take them: admitted and defaulted by
// the webhook, reconciled into Configurations, Revisions, PodAutoscalers
// and the Deployments a cluster would run, with what the chart asked for
// reaching them (image by digest, role, config map, secrets as files,
// concurrency, scale bounds, probes); Eventing's SinkBinding giving
// discovery the Broker's address through a new Revision; an upgrade
// rolling a new Revision; a value only Serving's validation refuses,
// refused. Nothing here runs pods, so the Revisions never become Ready:
// the Deployments are what is checked.
func TestServingReconcilesTheChart(t *testing.T) {
	c := requireCluster(t)
	helm := helmPath(t, c.root)
	chart := filepath.Join(c.root, "charts/nvcf-autoscaler")
	ns := fmt.Sprintf("sv-%d", time.Now().UnixNano()%1_000_000)
	t.Cleanup(func() {
		if out, err := c.run("delete", "namespace", ns, "--wait=false"); err != nil {
			t.Logf("deleting namespace %s: %v\n%s", ns, err, out)
		}
	})
	const digest = "sha256:5e1f1c0d3c8d2f5a0b6e7a9c4d3b2a1f0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b"
	helmRun := func(args ...string) (string, error) {
		out, err := exec.Command(helm, append(args, "--kubeconfig", c.kubeconfig, "-n", ns)...).CombinedOutput()
		return string(out), err
	}
	// The dead-letter sink is off: the event display is a Knative Service,
	// which only a networking layer (not run here) makes addressable, and
	// the Broker is not Ready before its dead-letter sink is.
	out, err := helmRun("install", "sv", chart, "--create-namespace", "--wait=false",
		"--set", "image.digest="+digest, "--set", "delivery.deadLetter.enabled=false",
		"--set", "scale.containerConcurrency=6", "--set", "scale.minScale=2", "--set", "scale.maxScale=9")
	require.NoError(t, err, out)
	const image = "ghcr.io/example/nvcf-autoscaler@" + digest

	// Admitted through Serving's webhook: it records who created the
	// Service and defaults the container's name, which the CRD schema
	// does not do.
	for _, svc := range []string{"sv-nvcf-autoscaler-discovery", "sv-nvcf-autoscaler-scale"} {
		var ksvc struct {
			Metadata struct {
				Annotations map[string]string `json:"annotations"`
			} `json:"metadata"`
			Spec struct {
				Template struct {
					Spec struct {
						Containers []struct{ Name string } `json:"containers"`
					} `json:"spec"`
				} `json:"template"`
			} `json:"spec"`
		}
		c.getJSON(t, &ksvc, "-n", ns, "get", "ksvc", svc)
		require.NotEmpty(t, ksvc.Metadata.Annotations["serving.knative.dev/creator"], "%s not defaulted by Serving's webhook", svc)
		require.Equal(t, "user-container", ksvc.Spec.Template.Spec.Containers[0].Name, svc)
	}

	// Discovery gets the Broker's address from the SinkBinding: Eventing
	// patches the Service once the Broker is Ready, Serving rolls a new
	// Revision whose Deployment carries it.
	broker := strings.TrimSpace(c.kube(t, "-n", ns, "wait", "broker/sv-nvcf-autoscaler", "--for=condition=Ready", "--timeout=120s",
		"-o", "jsonpath={.status.address.url}"))
	require.NotEmpty(t, broker)
	disc, discRev := c.latestDeployment(t, ns, "sv-nvcf-autoscaler-discovery", func(d kubetest.Deployment) bool {
		user, ok := d.Container("user-container")
		return ok && user.EnvMap()["K_SINK"] != ""
	})
	user := container(t, disc, "user-container")
	require.Equal(t, broker, user.EnvMap()["K_SINK"], "discovery's K_SINK is the Broker's address")
	require.Equal(t, "discovery", user.EnvMap()["AUTOSCALER_ROLE"])
	require.Equal(t, image, user.Image)
	require.NotEqual(t, "sv-nvcf-autoscaler-discovery-00001", discRev, "the SinkBinding's patch rolls a Revision after the first")

	// Scale: what the chart asked for, in the Deployment and the
	// PodAutoscaler Serving made of it.
	scale, scaleRev := c.latestDeployment(t, ns, "sv-nvcf-autoscaler-scale", func(kubetest.Deployment) bool { return true })
	require.Equal(t, "Revision", scale.Metadata.OwnerReferences[0].Kind)
	require.Equal(t, scaleRev, scale.Metadata.OwnerReferences[0].Name)
	for _, d := range []kubetest.Deployment{disc, scale} {
		user := container(t, d, "user-container")
		require.Equal(t, image, user.Image, "the image by digest: Serving resolves no tag for it")
		// Every variable the chart or Knative sets: no secret among them
		// (they are files from the Secret's volume).
		for name := range user.EnvMap() {
			require.Contains(t, []string{"AUTOSCALER_ROLE", "GOMEMLIMIT", "PORT", "K_REVISION", "K_CONFIGURATION", "K_SERVICE",
				"K_SINK", "K_CE_OVERRIDES"}, name, "an environment variable the chart did not mean to set")
		}
		require.Equal(t, []string{"sv-nvcf-autoscaler-config"}, user.ConfigMaps())
		require.Len(t, user.VolumeMounts, 1)
		require.True(t, user.VolumeMounts[0].ReadOnly)
		require.Equal(t, "/var/run/secrets/nvcf-autoscaler", user.VolumeMounts[0].MountPath)
		require.Equal(t, "nvcf-autoscaler-secrets", d.SecretVolume(user.VolumeMounts[0].Name))
		require.NotNil(t, user.LivenessProbe)
		require.Equal(t, "/health/liveness", user.LivenessProbe.HTTPGet.Path)
		// The readiness probe moves to the queue proxy, which probes the
		// function for Knative.
		require.Contains(t, container(t, d, "queue-proxy").EnvMap()["SERVING_READINESS_PROBE"], `"path":"/health/readiness"`)
	}
	require.Equal(t, "scale", container(t, scale, "user-container").EnvMap()["AUTOSCALER_ROLE"])
	queue := container(t, scale, "queue-proxy").EnvMap()
	require.Equal(t, "6", queue["CONTAINER_CONCURRENCY"])
	require.Equal(t, "60", queue["REVISION_TIMEOUT_SECONDS"])
	pa := c.podAutoscaler(t, ns, scaleRev)
	require.Equal(t, 6, pa.Spec.ContainerConcurrency)
	require.Equal(t, scaleRev+"-deployment", pa.Spec.ScaleTargetRef.Name)
	require.Equal(t, "2", pa.Metadata.Annotations["autoscaling.knative.dev/min-scale"])
	require.Equal(t, "9", pa.Metadata.Annotations["autoscaling.knative.dev/max-scale"])

	// An upgrade rolls a new Revision of scale with the new value.
	out, err = helmRun("upgrade", "sv", chart, "--reuse-values", "--wait=false", "--set", "scale.containerConcurrency=4")
	require.NoError(t, err, out)
	upgraded, upgradedRev := c.latestDeployment(t, ns, "sv-nvcf-autoscaler-scale", func(d kubetest.Deployment) bool {
		queue, ok := d.Container("queue-proxy")
		return ok && queue.EnvMap()["CONTAINER_CONCURRENCY"] == "4"
	})
	require.NotEqual(t, scaleRev, upgradedRev)
	require.Equal(t, image, container(t, upgraded, "user-container").Image)

	// A concurrency past Serving's bound passes the CRD schema (and, with
	// the values schema skipped, helm): Serving's validation refuses it,
	// naming the field, and the stored Service keeps the last good value.
	out, err = helmRun("upgrade", "sv", chart, "--reuse-values", "--wait=false", "--skip-schema-validation",
		"--set", "scale.containerConcurrency=5000")
	require.Error(t, err)
	require.Contains(t, out, `admission webhook "validation.webhook.serving.knative.dev" denied the request`)
	require.Contains(t, out, "expected 0 <= 5000 <= 1000: spec.template.spec.containerConcurrency")
	require.Equal(t, "4", strings.TrimSpace(c.kube(t, "-n", ns, "get", "ksvc", "sv-nvcf-autoscaler-scale", "-o",
		"jsonpath={.spec.template.spec.containerConcurrency}")))
}

// knative/'s plain manifests, applied as the README has operators apply
// them, through Serving's own webhook and controller: a copy in a
// namespace of the test's own (the files name nvcf-autoscaler, which
// e2e/kubeinstall uses) with the image given by digest (no registry is
// reachable to resolve the files' tag). Both Services are admitted, and
// each Deployment Serving makes runs its role with the config map, the
// Secret as read-only files and nothing else in its environment, with
// min-scale 1 and the files' max-scale and concurrency on its
// PodAutoscaler.
func TestServingReconcilesTheManifests(t *testing.T) {
	c := requireCluster(t)
	ns := fmt.Sprintf("mf-%d", time.Now().UnixNano()%1_000_000)
	c.kube(t, "create", "namespace", ns)
	t.Cleanup(func() {
		if out, err := c.run("delete", "namespace", ns, "--wait=false"); err != nil {
			t.Logf("deleting namespace %s: %v\n%s", ns, err, out)
		}
	})
	const image = "ghcr.io/example/nvcf-autoscaler@sha256:0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"
	files, err := filepath.Glob(filepath.Join(c.root, "knative", "*.yaml"))
	require.NoError(t, err)
	var docs []string
	for _, f := range files {
		if filepath.Base(f) == "00-namespace.yaml" {
			continue
		}
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		doc := strings.ReplaceAll(string(b), "  namespace: nvcf-autoscaler\n", "  namespace: "+ns+"\n")
		docs = append(docs, strings.ReplaceAll(doc, "ghcr.io/example/nvcf-autoscaler:latest", image))
	}
	apply := exec.Command(c.kubectl, "--kubeconfig", c.kubeconfig, "apply", "-f", "-")
	apply.Stdin = strings.NewReader(strings.Join(docs, "\n---\n"))
	out, err := apply.CombinedOutput()
	require.NoError(t, err, "%s", out)

	for _, tc := range []struct {
		svc, role, maxScale string
		concurrency         int
	}{
		{"nvcf-autoscaler-discovery", "discovery", "1", 1},
		{"nvcf-autoscaler-scale", "scale", "20", 8},
	} {
		d, rev := c.latestDeployment(t, ns, tc.svc, func(kubetest.Deployment) bool { return true })
		user := container(t, d, "user-container")
		require.Equal(t, image, user.Image, tc.svc)
		require.Equal(t, tc.role, user.EnvMap()["AUTOSCALER_ROLE"], tc.svc)
		for name := range user.EnvMap() {
			require.Contains(t, []string{"AUTOSCALER_ROLE", "GOMEMLIMIT", "PORT", "K_REVISION", "K_CONFIGURATION", "K_SERVICE"},
				name, "%s: an environment variable the manifests did not mean to set", tc.svc)
		}
		require.Equal(t, []string{"nvcf-autoscaler-config"}, user.ConfigMaps(), tc.svc)
		require.Len(t, user.VolumeMounts, 1, tc.svc)
		require.True(t, user.VolumeMounts[0].ReadOnly, tc.svc)
		require.Equal(t, "nvcf-autoscaler-secrets", d.SecretVolume(user.VolumeMounts[0].Name), tc.svc)
		pa := c.podAutoscaler(t, ns, rev)
		require.Equal(t, "1", pa.Metadata.Annotations["autoscaling.knative.dev/min-scale"], tc.svc)
		require.Equal(t, tc.maxScale, pa.Metadata.Annotations["autoscaling.knative.dev/max-scale"], tc.svc)
		require.Equal(t, tc.concurrency, pa.Spec.ContainerConcurrency, tc.svc)
	}
}
