package deploy

import (
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/replicator/replicator/config"
)

// manifests decodes every document of every file in kubernetes/ strictly
// against the Kubernetes API types.
func manifests(t *testing.T) []runtime.Object {
	t.Helper()
	files, err := filepath.Glob("kubernetes/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	var objs []runtime.Object
	for _, file := range files {
		o, err := Manifests(file)
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, o...)
	}
	return objs
}

// TestKubernetesManifestsDecodeStrictly proves the strict decoder refuses
// what a typo makes, then decodes the shipped manifests.
func TestKubernetesManifestsDecodeStrictly(t *testing.T) {
	decoder := Decoder()
	for name, doc := range map[string]string{
		"unknown field":   "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replica: 1}\n",
		"duplicate field": "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replicas: 1, replicas: 2}\n",
		"wrong type":      "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replicas: one}\n",
		"unknown kind":    "apiVersion: apps/v1\nkind: Deploymnet\nmetadata: {name: x}\n",
	} {
		if _, _, err := decoder.Decode([]byte(doc), nil, nil); err == nil {
			t.Errorf("%s: decoded without an error", name)
		}
	}
	if objs := manifests(t); len(objs) == 0 {
		t.Fatal("no objects")
	}
}

// TestKubernetesRecipe checks what the review found broken in the
// earlier example: the replicator's pod is not the database's and no
// Service selects it (so neither its probes nor its restarts can take
// Postgres out of service), setup runs before run and retries, images
// are pinned, the containers run as non-root on a read-only root, the
// spill directory of the configuration is a writable volume, and the
// configuration in the ConfigMap is one the daemon accepts.
func TestKubernetesRecipe(t *testing.T) {
	objs := manifests(t)
	var services []*corev1.Service
	configMaps := map[string]*corev1.ConfigMap{}
	type workload struct {
		name string
		tmpl corev1.PodTemplateSpec
	}
	var workloads []workload
	for _, obj := range objs {
		switch o := obj.(type) {
		case *corev1.Service:
			services = append(services, o)
		case *corev1.ConfigMap:
			configMaps[o.Name] = o
		case *appsv1.Deployment:
			workloads = append(workloads, workload{"Deployment " + o.Name, o.Spec.Template})
			if isReplicator(o.Spec.Template.Spec) {
				if o.Spec.Replicas == nil || *o.Spec.Replicas != 1 || o.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
					t.Errorf("Deployment %s: one replica with strategy Recreate, so that two daemons never share the slot", o.Name)
				}
			}
		case *appsv1.StatefulSet:
			workloads = append(workloads, workload{"StatefulSet " + o.Name, o.Spec.Template})
		case *batchv1.Job:
			workloads = append(workloads, workload{"Job " + o.Name, o.Spec.Template})
		}
	}
	found := false
	for _, w := range workloads {
		spec := w.tmpl.Spec
		all := append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...)
		for _, c := range all {
			if tag := imageTag(c.Image); tag == "" || tag == "latest" {
				t.Errorf("%s: container %s: image %q is not pinned to a tag", w.name, c.Name, c.Image)
			}
		}
		if !isReplicator(spec) {
			continue
		}
		found = true
		for _, c := range all {
			if strings.HasPrefix(path.Base(c.Image), "postgres") {
				t.Errorf("%s: Postgres shares the replicator's pod: the pod is Ready only when the replicator is", w.name)
			}
		}
		for _, s := range services {
			if len(s.Spec.Selector) > 0 && labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(w.tmpl.Labels)) {
				t.Errorf("Service %s selects the replicator's pod (%s)", s.Name, w.name)
			}
		}
		if spec.SecurityContext == nil || spec.SecurityContext.RunAsNonRoot == nil || !*spec.SecurityContext.RunAsNonRoot {
			t.Errorf("%s: the pod must set runAsNonRoot", w.name)
		}
		volumes := map[string]corev1.Volume{}
		for _, v := range spec.Volumes {
			volumes[v.Name] = v
		}
		var setup, run *corev1.Container
		for i, c := range spec.InitContainers {
			if len(c.Args) > 0 && c.Args[0] == "setup" {
				setup = &spec.InitContainers[i]
				if c.RestartPolicy != nil {
					t.Errorf("%s: setup must be a plain init container, finished before run starts", w.name)
				}
			}
		}
		for i, c := range spec.Containers {
			if len(c.Args) > 0 && c.Args[0] == "run" {
				run = &spec.Containers[i]
			}
		}
		if setup == nil || run == nil {
			t.Fatalf("%s: want setup as an init container and run as a container", w.name)
		}
		if run.Name != "replicator" || portByName(*run, "monitor") == "" {
			t.Errorf("%s: the daemon's container must be named replicator with a port named monitor, "+
				"which prometheus/prometheus-kubernetes.yml scrapes", w.name)
		}
		if run.LivenessProbe == nil || run.LivenessProbe.HTTPGet == nil || run.LivenessProbe.HTTPGet.Path != "/healthz" {
			t.Errorf("%s: run's liveness probe must be /healthz, which does not depend on the servers", w.name)
		}
		for _, c := range []*corev1.Container{setup, run} {
			sc := c.SecurityContext
			if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
				sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				t.Errorf("%s: container %s: want readOnlyRootFilesystem and no privilege escalation", w.name, c.Name)
			}
			if c.Resources.Limits.Memory().IsZero() {
				t.Errorf("%s: container %s: no memory limit", w.name, c.Name)
			}
		}
		// The configuration run reads: from a mounted ConfigMap directory.
		cfgPath := argAfter(run.Args, "--config")
		mount, rel := mountOf(*run, cfgPath)
		if mount == nil || mount.SubPath != "" || volumes[mount.Name].ConfigMap == nil {
			t.Fatalf("%s: --config %s is not in a ConfigMap mounted as a directory", w.name, cfgPath)
		}
		cm := configMaps[volumes[mount.Name].ConfigMap.Name]
		if cm == nil || cm.Data[rel] == "" {
			t.Fatalf("%s: ConfigMap %s has no %s", w.name, volumes[mount.Name].ConfigMap.Name, rel)
		}
		cfg := parseConfig(t, cm.Data[rel])
		spill, _ := mountOf(*run, cfg.Stream.SpillDir)
		if spill == nil || spill.ReadOnly || volumes[spill.Name].EmptyDir == nil && volumes[spill.Name].PersistentVolumeClaim == nil {
			t.Errorf("%s: stream.spill_dir %s is not on a writable volume", w.name, cfg.Stream.SpillDir)
		} else if want := volumes[spill.Name].EmptyDir; want != nil && (want.SizeLimit == nil || uint64(want.SizeLimit.Value()) < cfg.Stream.SpillLimit) {
			t.Errorf("%s: the spill volume is smaller than stream.spill_limit", w.name)
		}
		port := monitorPort(t, cfg.Monitor.Listen)
		if host := strings.TrimSuffix(cfg.Monitor.Listen, ":"+port); host != "0.0.0.0" && host != "" {
			t.Errorf("monitor.listen %s: the kubelet cannot probe a loopback address", cfg.Monitor.Listen)
		}
		if p := run.LivenessProbe.HTTPGet.Port; p.String() != port && portByName(*run, p.String()) != port {
			t.Errorf("%s: the liveness probe's port %s is not monitor.listen's %s", w.name, p.String(), port)
		}
	}
	if !found {
		t.Fatal("no workload runs the replicator")
	}
}

func isReplicator(spec corev1.PodSpec) bool {
	for _, c := range append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...) {
		if strings.Contains(path.Base(c.Image), "replicator") {
			return true
		}
	}
	return false
}

// imageTag is the tag of an image reference ("" for none); a digest
// counts as pinned.
func imageTag(image string) string {
	if _, digest, ok := strings.Cut(image, "@"); ok {
		return digest
	}
	name := path.Base(image)
	if _, tag, ok := strings.Cut(name, ":"); ok {
		return tag
	}
	return ""
}

func argAfter(args []string, flag string) string {
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v
		}
	}
	return ""
}

// mountOf returns the mount that holds file and file's path inside it.
func mountOf(c corev1.Container, file string) (*corev1.VolumeMount, string) {
	for i, m := range c.VolumeMounts {
		if rel, err := filepath.Rel(m.MountPath, file); err == nil && !strings.HasPrefix(rel, "..") {
			return &c.VolumeMounts[i], rel
		}
	}
	return nil, ""
}

func portByName(c corev1.Container, name string) string {
	for _, p := range c.Ports {
		if p.Name == name {
			return strconv.Itoa(int(p.ContainerPort))
		}
	}
	return ""
}

// parseConfig parses the ConfigMap's configuration with the daemon's own
// parser, its secret files replaced by placeholders.
func parseConfig(t *testing.T, src string) config.Config {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"clickhouse-password", "pgpass"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("placeholder\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	src = strings.ReplaceAll(src, "/etc/replicator/secret/", dir+"/")
	cfg, err := config.Parse("replicator.hcl", []byte(src), func(string) string { return "" })
	if err != nil {
		t.Fatalf("the ConfigMap's configuration: %v", err)
	}
	return cfg
}

func monitorPort(t *testing.T, listen string) string {
	t.Helper()
	i := strings.LastIndex(listen, ":")
	if i < 0 {
		t.Fatalf("monitor.listen %q has no port", listen)
	}
	return listen[i+1:]
}
