package kncli

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"function/e2e/harness"
	"function/e2e/kube/kubetest"
)

// TestMain stops a control plane kubetest.Start started (never here in
// practice: the deploy test first requires Knative, which runs on one).
func TestMain(m *testing.M) { os.Exit(kubetest.Main(m)) }

// `kn func deploy` of the root func.yaml, by the real CLI onto Knative
// Serving's own webhook and controller (e2e/kube/knative.sh): the Service
// it makes is admitted, and the Deployment Serving makes of it runs the
// one function with every role, its settings from the config map, its
// secrets as files, cluster-local and never at zero. Nothing here runs
// pods, so the Service never becomes Ready and func would wait for it
// (120 s, then an error): the test stops func once the Deployment is
// there. The image is given by digest, so func neither builds nor pushes
// and Serving resolves nothing from a registry (none is reachable here).
func TestFuncDeployOntoServing(t *testing.T) {
	if testing.Short() {
		t.Skip("kn func deploy test skipped in -short mode; run `make test`")
	}
	root, err := harness.RepoRoot()
	require.NoError(t, err)
	kubetest.RequireKnative(t)
	c := kubetest.Start(t)
	funcBin := requireFuncCLI(t, root)

	// A copy of the sources: func deploy writes the image and namespace
	// back into func.yaml.
	dir := t.TempDir()
	require.NoError(t, copySources(root, dir))
	ns := fmt.Sprintf("fd-%d", time.Now().UnixNano()%1_000_000)
	out, err := c.Kubectl("create", "namespace", ns)
	require.NoError(t, err, out)
	t.Cleanup(func() {
		if out, err := c.Kubectl("delete", "namespace", ns, "--wait=false"); err != nil {
			t.Logf("deleting namespace %s: %v\n%s", ns, err, out)
		}
	})
	const image = "localhost:5000/kncli/nvcf-autoscaler@sha256:7d5a1f3c9e2b4d6a8c0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f0a1b2c"
	env := append(funcEnv(t), "KUBECONFIG="+c.Env["KUBECONFIG"])

	// func.yaml names the namespace to deploy to. func v0.44.0 given
	// another one with --namespace moves the function: it undeploys from
	// the old namespace and exits 0 having deployed nothing. So the copy
	// names the test's namespace, as an operator deploying elsewhere
	// would edit it.
	yamlPath := filepath.Join(dir, "func.yaml")
	spec, err := os.ReadFile(yamlPath)
	require.NoError(t, err)
	require.Contains(t, string(spec), "\n  namespace: nvcf-autoscaler\n")
	require.NoError(t, os.WriteFile(yamlPath, []byte(strings.Replace(string(spec), "\n  namespace: nvcf-autoscaler\n", "\n  namespace: "+ns+"\n", 1)), 0o644))

	// The README's steps: the Secret from files, knative/10-config.yaml.
	secretDir := t.TempDir()
	for _, name := range []string{"cassandra-password", "tsdb-token", "nvcf-client-secret"} {
		require.NoError(t, os.WriteFile(filepath.Join(secretDir, name), []byte("not-a-real-"+name), 0o600))
	}
	out, err = c.Kubectl("-n", ns, "create", "secret", "generic", "nvcf-autoscaler-secrets",
		"--from-file=cassandra-password="+filepath.Join(secretDir, "cassandra-password"),
		"--from-file=tsdb-token="+filepath.Join(secretDir, "tsdb-token"),
		"--from-file=nvcf-client-secret="+filepath.Join(secretDir, "nvcf-client-secret"))
	require.NoError(t, err, out)
	config, err := os.ReadFile(filepath.Join(root, "knative", "10-config.yaml"))
	require.NoError(t, err)
	require.Contains(t, string(config), "  namespace: nvcf-autoscaler\n")
	out, err = c.KubectlStdin([]byte(strings.Replace(string(config), "  namespace: nvcf-autoscaler\n", "  namespace: "+ns+"\n", 1)), "apply", "-f", "-")
	require.NoError(t, err, out)

	logPath := filepath.Join(t.TempDir(), "deploy.log")
	logFile, err := os.Create(logPath)
	require.NoError(t, err)
	defer logFile.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, funcBin, "deploy", "--path", dir, "--image", image, "--build=false", "--push=false", "--verbose")
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})

	// The Deployment of the Service's newest Revision, once Serving made it.
	var d kubetest.Deployment
	var rev string
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(time.Second) {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("func deploy ended before Serving made the Deployment (%v); its output:\n%s", err, tailFile(t, logPath, 40))
		default:
		}
		if d, rev, err = kubetest.LatestDeployment(c.Kubectl, ns, "nvcf-autoscaler"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no Deployment for func deploy's Service after 2 minutes (%v); func's output:\n%s", err, tailFile(t, logPath, 40))
		}
	}
	t.Logf("func deploy's Service: revision %s", rev)

	// What func.yaml asks, as the Knative Service func made and Serving
	// admitted.
	out, err = c.Kubectl("-n", ns, "get", "ksvc", "nvcf-autoscaler", "-o",
		`jsonpath={.metadata.labels.networking\.knative\.dev/visibility} {.spec.template.metadata.annotations.autoscaling\.knative\.dev/min-scale} {.metadata.annotations.serving\.knative\.dev/creator}`)
	require.NoError(t, err, out)
	fields := strings.Fields(out)
	require.Len(t, fields, 3, "visibility label, min-scale annotation and Serving's creator annotation: %q", out)
	require.Equal(t, "cluster-local", fields[0])
	require.Equal(t, "1", fields[1], "the autoscaler never at zero")

	// And the Deployment Serving made of it.
	require.Equal(t, "nvcf-autoscaler", d.Metadata.Labels["serving.knative.dev/service"])
	user, ok := d.Container("user-container")
	require.True(t, ok, "no user-container in the Revision's Deployment")
	require.Equal(t, image, user.Image)
	require.Equal(t, []string{"nvcf-autoscaler-config"}, user.ConfigMaps())
	require.Len(t, user.VolumeMounts, 1)
	require.Equal(t, "/var/run/secrets/nvcf-autoscaler", user.VolumeMounts[0].MountPath)
	require.Equal(t, "nvcf-autoscaler-secrets", d.SecretVolume(user.VolumeMounts[0].Name))
}

// tailFile is the last n lines of the file at path.
func tailFile(t *testing.T, path string, n int) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	return tailOf(string(b), n)
}
