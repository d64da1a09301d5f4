package test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"archive/tar"
)

// TestContainerImage builds the image of deploy/container with podman
// (what `make image` does) and runs it as docs/deploying.md and
// Kubernetes run it: a read-only root, user 65532, the host's network. It checks that
// the image has CA certificates and a world-writable /tmp, that
// `replicator version` runs, that `run` refuses a spill directory it
// cannot write with the key and the fix, and that `run` with podman's
// tmpfs /tmp streams changes into ClickHouse, reports ready on /readyz
// and stops cleanly on SIGTERM. Without podman it skips and says so.
func TestContainerImage(t *testing.T) {
	requireServers(t)
	podman, conf := needPodman(t, "the image is not built here")
	pod, run := podmanCommands(podman, conf)

	image := buildImage(t, podman, conf)

	// Its files: CA certificates, /tmp for everyone, the binary.
	name := strings.ReplaceAll(strings.TrimPrefix(image, "localhost/"), ":", "-")
	if out, err := run("create", "--name", name, image); err != nil {
		t.Fatalf("podman create: %v\n%s", err, out)
	}
	files := map[string]*tar.Header{}
	export := pod(context.Background(), "export", name)
	var tarball bytes.Buffer
	export.Stdout = &tarball
	if err := export.Run(); err != nil {
		t.Fatalf("podman export: %v", err)
	}
	run("rm", name)
	for tr := tar.NewReader(&tarball); ; {
		h, err := tr.Next()
		if err != nil {
			break
		}
		files[strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/")] = h
	}
	for path, want := range map[string]func(*tar.Header) bool{
		"etc/ssl/certs/ca-certificates.crt": func(h *tar.Header) bool { return h.Size > 1000 },
		"tmp":                               func(h *tar.Header) bool { return h.Typeflag == tar.TypeDir && h.Mode&0o1777 == 0o1777 },
		"usr/bin/replicator":                func(h *tar.Header) bool { return h.Mode&0o111 != 0 },
		"etc/passwd":                        func(h *tar.Header) bool { return h.Size > 0 },
	} {
		if h := files[path]; h == nil || !want(h) {
			t.Errorf("the image lacks /%s as it should be (%+v)", path, h)
		}
	}

	base := []string{"run", "--rm", "--read-only", "--user", "65532:65532", "--network", "host"}
	out, err := run(append(base, image, "version")...)
	if err != nil || !strings.HasPrefix(out, "replicator ") {
		t.Fatalf("replicator version: %v\n%s", err, out)
	}

	e := newEnv(t, "")
	e.exec("INSERT INTO events (author_id, action, target_type, fingerprint) SELECT g, 1, 'Issue', '\\x01' FROM generate_series(1, 500) g")
	e.setup()
	mount := []string{"-v", e.config + ":/etc/replicator/replicator.hcl:ro"}

	// A root that is read-only all through, /tmp too: the spill check
	// refuses to start, naming the key.
	out, err = run(append(append(append(base, "--read-only-tmpfs=false"), mount...), image)...)
	if err == nil || !strings.Contains(out, "stream.spill_dir: /tmp/replicator-spill is not a writable directory") {
		t.Fatalf("run on a read-only /tmp: %v, want the stream.spill_dir error:\n%s", err, out)
	}

	// podman's --read-only keeps a tmpfs on /tmp: the daemon streams.
	cname := name + "-run"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	daemon := pod(ctx, append(append(append(base, "--name", cname), mount...), image)...)
	var logs bytes.Buffer
	daemon.Stdout, daemon.Stderr = &logs, &logs
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var waitErr error
	go func() { waitErr = daemon.Wait(); close(done) }()
	t.Cleanup(func() {
		run("rm", "--force", cname)
		cancel()
		<-done
		if t.Failed() {
			t.Logf("container log:\n%s", tail(logs.String(), 4000))
		}
	})
	waitReady(t, e.monitor)
	e.exec("UPDATE events SET action = 2 WHERE id % 7 = 0")
	e.exec("DELETE FROM events WHERE id % 11 = 0")
	e.exec("INSERT INTO events (author_id, action) SELECT g, 3 FROM generate_series(1, 100) g")
	e.converge("the daemon in the container", time.Minute)

	if out, err := run("stop", "--time", "30", cname); err != nil {
		t.Fatalf("podman stop: %v\n%s", err, out)
	}
	select {
	case <-done:
		if waitErr != nil {
			t.Fatalf("the daemon did not stop cleanly on SIGTERM: %v", waitErr)
		}
	case <-time.After(time.Minute):
		t.Fatal("the container did not end after podman stop")
	}
	if !strings.Contains(logs.String(), "stopped") {
		t.Errorf("no final checkpoint in the log")
	}
}

// needPodman returns podman and the containers.conf to use with it, or
// skips t, saying why, where podman or runc is missing.
func needPodman(t *testing.T, what string) (podman, conf string) {
	t.Helper()
	podman, err := exec.LookPath("podman")
	if err != nil {
		t.Skipf("podman is missing, so %s (apt-get install -y podman runc)", what)
	}
	conf = os.Getenv("CONTAINERS_CONF")
	if conf == "" {
		if _, err := exec.LookPath("runc"); err != nil {
			t.Skipf("runc is missing, which deploy/container/containers.conf names, so %s (apt-get install -y runc)", what)
		}
		conf, _ = filepath.Abs("../deploy/container/containers.conf")
	}
	return podman, conf
}

// podmanCommands returns a command maker for podman with conf, and a
// runner that runs one to completion (within two minutes) and returns its
// output.
func podmanCommands(podman, conf string) (func(context.Context, ...string) *exec.Cmd, func(...string) (string, error)) {
	pod := func(ctx context.Context, args ...string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, podman, args...)
		cmd.Env = append(os.Environ(), "CONTAINERS_CONF="+conf)
		return cmd
	}
	run := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		out, err := pod(ctx, args...).CombinedOutput()
		return string(out), err
	}
	return pod, run
}

var static struct {
	once sync.Once
	path string
	err  error
}

// staticBinary builds the replicator without cgo, as make dist does, for
// an image without a C library; once per test binary.
func staticBinary(t *testing.T) string {
	t.Helper()
	static.once.Do(func() {
		// Beside the test's binary, in the directory TestMain removes.
		static.path = filepath.Join(filepath.Dir(binary), "replicator-static")
		build := exec.Command("go", "build", "-o", static.path, "../cmd/replicator")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			static.err = fmt.Errorf("static build: %v\n%s", err, out)
		}
	})
	if static.err != nil {
		t.Fatal(static.err)
	}
	return static.path
}

// buildImage builds the image of deploy/container from a static binary,
// as `make image` does, under a name of its own that t's cleanup removes.
func buildImage(t *testing.T, podman, conf string) string {
	t.Helper()
	_, run := podmanCommands(podman, conf)
	static := staticBinary(t)
	image := fmt.Sprintf("localhost/replicator-e2e:%d", time.Now().UnixNano())
	sh := exec.Command("../deploy/container/build.sh", image)
	sh.Env = append(os.Environ(), "REPLICATOR_BINARY="+static, "CONTAINERS_CONF="+conf)
	if out, err := sh.CombinedOutput(); err != nil {
		t.Fatalf("build.sh: %v\n%s", err, out)
	}
	t.Cleanup(func() { run("rmi", "--force", image) })
	return image
}

// waitReady waits up to a minute until the daemon's /readyz at addr
// answers 200: it streams.
func waitReady(t *testing.T, addr string) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		if resp, err := http.Get("http://" + addr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz at %s did not report ready within a minute", addr)
		}
	}
}
