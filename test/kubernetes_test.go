package test

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/replicator/replicator/deploy"
)

// TestKubernetesDeployment plays deploy/kubernetes/replicator.yaml with
// `podman kube play` against the test servers: the image of
// deploy/container, its init container running `setup`, then `run` as user
// 65532 on a read-only root with the ConfigMap mounted as a directory, the
// Secret's files and the spill emptyDir, until ClickHouse matches Postgres
// and /readyz is ready; `podman kube down` stops it cleanly. What podman
// does differently from a cluster is changed in a copy, and only that:
// the image's name, the host's network instead of a pod network (so no
// containerPort, and probes by number), the test's configuration in the
// ConfigMap (the manifest's spill_dir kept), the Secret created as a
// podman secret with `data`, `optional: false` on its volume (podman 4.3
// dereferences it), and the pod's restartPolicy OnFailure (under Always,
// podman 4.3 starts a finished init container again). Without podman it
// skips and says so.
func TestKubernetesDeployment(t *testing.T) {
	requireServers(t)
	podman, conf := needPodman(t, "the Kubernetes manifest is not played here")
	_, run := podmanCommands(podman, conf)
	image := buildImage(t, podman, conf)

	e := newEnv(t, "")
	e.exec("INSERT INTO events (author_id, action, target_type, fingerprint) SELECT g, 1, 'Issue', '\\x02' FROM generate_series(1, 400) g")
	src, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	suffix := strconv.FormatInt(time.Now().UnixNano(), 36)
	objs, err := deploy.Manifests("../deploy/kubernetes/replicator.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var docs [][]byte
	var secret *corev1.Secret
	var deployment *appsv1.Deployment
	for _, obj := range objs {
		switch o := obj.(type) {
		case *corev1.Secret:
			secret = o
			continue
		case *corev1.ConfigMap:
			hcl := o.Data["replicator.hcl"]
			const spill = `spill_dir = "/var/lib/replicator/spill"`
			if !strings.Contains(hcl, spill) {
				t.Fatalf("the ConfigMap's configuration lacks %s", spill)
			}
			o.Name += "-" + suffix
			o.Data["replicator.hcl"] = string(src) + "\nstream {\n  " + spill + "\n}\n"
		case *appsv1.Deployment:
			deployment = o
			o.Name += "-" + suffix
			spec := &o.Spec.Template.Spec
			spec.HostNetwork = true
			spec.RestartPolicy = corev1.RestartPolicyOnFailure
			for i := range spec.Volumes {
				v := &spec.Volumes[i]
				switch {
				case v.ConfigMap != nil:
					v.ConfigMap.Name += "-" + suffix
				case v.Secret != nil:
					v.Secret.SecretName += "-" + suffix
					v.Secret.Optional = new(bool)
				}
			}
			port, err := strconv.Atoi(e.monitor[strings.LastIndex(e.monitor, ":")+1:])
			if err != nil {
				t.Fatal(err)
			}
			for _, cs := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
				for i := range cs {
					c := &cs[i]
					c.Image = image
					c.Ports = nil
					for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe} {
						if p != nil && p.HTTPGet != nil {
							p.HTTPGet.Port = intstr.FromInt(port)
						}
					}
				}
			}
		}
		b, err := yaml.Marshal(obj)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, b)
	}
	if secret == nil || deployment == nil {
		t.Fatal("replicator.yaml lacks its Secret or Deployment")
	}

	// The Secret, as podman reads it: a podman secret holding the
	// Kubernetes object with base64 data.
	secret.Name += "-" + suffix
	secret.Data = map[string][]byte{}
	for k, v := range secret.StringData {
		secret.Data[k] = []byte(v)
	}
	secret.StringData = nil
	sb, err := yaml.Marshal(secret)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	secretFile, manifest := filepath.Join(dir, "secret.yaml"), filepath.Join(dir, "replicator.yaml")
	if err := os.WriteFile(secretFile, sb, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(manifest, bytes.Join(docs, []byte("\n---\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := run("secret", "create", secret.Name, secretFile); err != nil {
		t.Fatalf("podman secret create: %v\n%s", err, out)
	}
	t.Cleanup(func() { run("secret", "rm", secret.Name) })

	pod := deployment.Name + "-pod-0"
	t.Cleanup(func() {
		if t.Failed() {
			for _, c := range []string{"setup", "replicator"} {
				out, _ := run("logs", pod+"-"+c)
				t.Logf("%s log:\n%s", c, tail(out, 3000))
			}
		}
		run("kube", "down", manifest)
	})
	// kube play returns once the init container (setup, the copy) has
	// succeeded and the daemon's container started.
	if out, err := run("kube", "play", manifest); err != nil {
		t.Fatalf("podman kube play: %v\n%s", err, out)
	}
	out, err := run("inspect", pod+"-replicator", "--format", "{{.Config.User}} {{.HostConfig.ReadonlyRootfs}}")
	if err != nil || strings.TrimSpace(out) != "65532:65532 true" {
		t.Errorf("the daemon's container: user and read-only root %q (%v), want 65532:65532 true", out, err)
	}
	waitReady(t, e.monitor)
	e.exec("UPDATE events SET action = 5 WHERE id % 3 = 0")
	e.exec("DELETE FROM events WHERE id % 13 = 0")
	e.exec("INSERT INTO events (author_id, action) SELECT g, 6 FROM generate_series(1, 80) g")
	e.converge("the Deployment's daemon", time.Minute)

	// A stop (SIGTERM) flushes, checkpoints and exits 0.
	if out, err := run("pod", "stop", "--time", "30", pod); err != nil {
		t.Fatalf("podman pod stop: %v\n%s", err, out)
	}
	out, err = run("inspect", pod+"-replicator", "--format", "{{.State.ExitCode}}")
	if err != nil || strings.TrimSpace(out) != "0" {
		t.Errorf("the daemon's exit code after a stop: %q (%v), want 0", out, err)
	}
	if logs, err := run("logs", pod+"-replicator"); !strings.Contains(logs, "replicator: stopped: ") {
		t.Errorf("no clean stop in the daemon's log (%v):\n%s", err, tail(logs, 2000))
	}
}
