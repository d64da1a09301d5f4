package deploy

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// platform is one target of make dist, in each naming the artifacts use.
type platform struct {
	goarch  string
	rpmArch string
	machine elf.Machine
}

var platforms = []platform{
	{"amd64", "x86_64", elf.EM_X86_64},
	{"arm64", "aarch64", elf.EM_AARCH64},
}

// TestDist runs make dist into a temporary directory and checks every
// artifact a release carries: the archives' listings and binaries, that
// SHA256SUMS covers and verifies them all, the SBOMs, and the deb and rpm
// packages (files, owners, the conffile, the scripts), the deb unpacked
// into a throwaway root and its binary run there.
func TestDist(t *testing.T) {
	if testing.Short() {
		t.Skip("make dist builds two binaries and the release tools (about 3 min on a cold build cache): run without -short or make test-dist")
	}
	makeCmd := tool(t, "make", "make")
	tool(t, "sha256sum", "coreutils")
	dpkgDeb := tool(t, "dpkg-deb", "dpkg")
	rpm := optionalTool(t, "rpm", "rpm")

	dist := t.TempDir()
	start := time.Now()
	run(t, "..", makeCmd, "--no-print-directory", "dist", "DIST="+dist)
	t.Logf("make dist: %s", time.Since(start).Round(time.Second))

	unitFiles, err := filepath.Glob("systemd/*.service")
	if err != nil || len(unitFiles) == 0 {
		t.Fatalf("no systemd/*.service (%v)", err)
	}
	for i, u := range unitFiles {
		unitFiles[i] = filepath.Base(u)
	}

	var want []string
	for _, p := range platforms {
		p := p
		t.Run(p.goarch, func(t *testing.T) {
			bin := "replicator-linux-" + p.goarch
			checkELF(t, filepath.Join(dist, bin), p.machine)
			archive := glob1(t, dist, "replicator-*-linux-"+p.goarch+".tar.gz")
			sbom := glob1(t, dist, "replicator-*-linux-"+p.goarch+".cdx.json")
			deb := glob1(t, dist, "replicator_*_"+p.goarch+".deb")
			rpmFile := glob1(t, dist, "replicator-*."+p.rpmArch+".rpm")
			want = append(want, bin, archive, sbom, deb, rpmFile)

			checkArchive(t, filepath.Join(dist, archive), unitFiles, p.machine)
			checkSBOM(t, filepath.Join(dist, sbom))
			checkDeb(t, dpkgDeb, filepath.Join(dist, deb), p.goarch, unitFiles)
			if rpm != "" {
				checkRPM(t, rpm, filepath.Join(dist, rpmFile), p.rpmArch, unitFiles)
			}
		})
	}

	// SHA256SUMS covers every artifact, and they verify.
	sums, err := os.ReadFile(filepath.Join(dist, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, line := range strings.Split(strings.TrimSpace(string(sums)), "\n") {
		if _, name, ok := strings.Cut(line, "  "); ok {
			listed = append(listed, name)
		}
	}
	entries, err := os.ReadDir(dist)
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, e := range entries {
		if e.Name() != "SHA256SUMS" {
			files = append(files, e.Name())
		}
	}
	slices.Sort(listed)
	slices.Sort(want)
	if !slices.Equal(listed, files) || !slices.Equal(files, want) {
		t.Errorf("SHA256SUMS lists %q\ndist holds %q\nexpected %q", listed, files, want)
	}
	run(t, dist, "sha256sum", "--check", "--strict", "SHA256SUMS")
}

// optionalTool returns the path of a command that only part of a test
// needs, or "" (that part skipped, and said so) when it is missing outside
// CI; in CI it must be there, as for tool.
func optionalTool(t *testing.T, name, pkg string) string {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil && os.Getenv("REPLICATOR_E2E") != "1" {
		t.Logf("%s is missing (apt-get install -y %s): its checks are skipped", name, pkg)
		return ""
	}
	return tool(t, name, pkg)
}

// run runs a command in dir and returns its standard output; a failure
// fails the test with everything it printed.
func run(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	out, err := output(dir, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// output runs a command in dir and returns its standard output, or an
// error with everything it printed.
func output(dir, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s %s: %w\n%s%s", filepath.Base(name), strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

// glob1 returns the one file of dir that matches pattern.
func glob1(t *testing.T, dir, pattern string) string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, pattern))
	if err != nil || len(m) != 1 {
		t.Fatalf("%s in dist: %d files (%v), want one", pattern, len(m), err)
	}
	return filepath.Base(m[0])
}

// checkELF checks that a binary is a static executable for the machine.
func checkELF(t *testing.T, path string, machine elf.Machine) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Machine != machine {
		t.Errorf("%s: built for %s, want %s", path, f.Machine, machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s: dynamically linked (has an interpreter)", path)
		}
	}
}

// checkArchive lists a tar.gz: everything in one directory named as the
// archive, the binary executable and built for the machine.
func checkArchive(t *testing.T, path string, unitFiles []string, machine elf.Machine) {
	t.Helper()
	top := strings.TrimSuffix(filepath.Base(path), ".tar.gz")
	want := []string{top + "/", top + "/README.md", top + "/config.example.hcl", top + "/replicator", top + "/systemd/"}
	for _, u := range unitFiles {
		want = append(want, top+"/systemd/"+u)
	}
	for _, license := range []string{"LICENSE", "LICENSE.md", "LICENSE.txt", "COPYING"} {
		if _, err := os.Stat(filepath.Join("..", license)); err == nil {
			want = append(want, top+"/"+license)
		}
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	var got []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		got = append(got, h.Name)
		if h.Uid != 0 || h.Gid != 0 {
			t.Errorf("%s: %s owned by %d:%d, want 0:0", path, h.Name, h.Uid, h.Gid)
		}
		if h.Name == top+"/replicator" {
			if h.Mode&0o111 == 0 {
				t.Errorf("%s: the binary is not executable (%o)", path, h.Mode)
			}
			bin := filepath.Join(t.TempDir(), "replicator")
			out, err := os.Create(bin)
			if err != nil {
				t.Fatal(err)
			}
			_, err = io.Copy(out, tr)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				t.Fatal(err)
			}
			checkELF(t, bin, machine)
		}
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("%s lists\n%q\nwant\n%q", path, got, want)
	}
}

// checkSBOM reads a CycloneDX SBOM: it names the main module and the
// versions of go.mod for modules the binary is built from, and none of
// the release tools.
func checkSBOM(t *testing.T, path string) {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	type component struct {
		Name    string `json:"name"`
		Version string `json:"version"`
		Purl    string `json:"purl"`
	}
	var bom struct {
		BOMFormat   string `json:"bomFormat"`
		SpecVersion string `json:"specVersion"`
		Metadata    struct {
			Component component `json:"component"`
		} `json:"metadata"`
		Components []component `json:"components"`
	}
	if err := json.Unmarshal(src, &bom); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if bom.BOMFormat != "CycloneDX" || bom.SpecVersion == "" {
		t.Errorf("%s: bomFormat %q, specVersion %q", path, bom.BOMFormat, bom.SpecVersion)
	}
	if bom.Metadata.Component.Name != "github.com/replicator/replicator" || bom.Metadata.Component.Version == "" {
		t.Errorf("%s: main component %+v", path, bom.Metadata.Component)
	}
	gomod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	versions := map[string]string{}
	for _, c := range bom.Components {
		versions[c.Name] = c.Version
	}
	for _, mod := range []string{"github.com/jackc/pgx/v5", "github.com/ClickHouse/ch-go", "github.com/hashicorp/hcl/v2", "github.com/spf13/cobra"} {
		m := regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(mod) + ` (\S+)`).FindSubmatch(gomod)
		if m == nil {
			t.Errorf("go.mod requires no %s: update this test", mod)
			continue
		}
		if versions[mod] != string(m[1]) {
			t.Errorf("%s: %s at %q, go.mod has %s", path, mod, versions[mod], m[1])
		}
	}
	for _, tool := range []string{"github.com/goreleaser/nfpm/v2", "github.com/CycloneDX/cyclonedx-gomod"} {
		if _, ok := versions[tool]; ok {
			t.Errorf("%s: lists the release tool %s, which the binary does not contain", path, tool)
		}
	}
	if len(bom.Components) < 20 {
		t.Errorf("%s: only %d components", path, len(bom.Components))
	}
}

// packaged are the files and directories both packages install, with
// owner and mode.
func packaged(unitFiles []string) map[string]string {
	files := map[string]string{
		"/usr/bin/replicator":                          "root root 755",
		"/etc/replicator":                              "root root 755",
		"/etc/replicator/replicator.hcl":               "root root 644",
		"/var/lib/replicator":                          "replicator replicator 700",
		"/usr/share/doc/replicator/README.md":          "root root 644",
		"/usr/share/doc/replicator/config.example.hcl": "root root 644",
	}
	for _, u := range unitFiles {
		files["/usr/lib/systemd/system/"+u] = "root root 644"
	}
	return files
}

const conffile = "/etc/replicator/replicator.hcl"

// checkDeb reads a deb's control fields, conffiles, scripts and listing,
// then unpacks it into a throwaway root: the units start a binary that is
// there, the configuration is the example, and on this machine's
// architecture the binary runs and validates that configuration.
func checkDeb(t *testing.T, dpkgDeb, path, goarch string, unitFiles []string) {
	t.Helper()
	info := run(t, ".", dpkgDeb, "--info", path)
	for _, want := range []string{"Package: replicator\n", "Architecture: " + goarch + "\n", "Pre-Depends: passwd\n"} {
		if !strings.Contains(info, want) {
			t.Errorf("%s: dpkg-deb --info lacks %q:\n%s", path, want, info)
		}
	}
	version := run(t, ".", dpkgDeb, "--field", path, "Version")
	if !strings.HasPrefix(filepath.Base(path), "replicator_"+strings.TrimSpace(version)+"_") {
		t.Errorf("%s: version %q is not the file's", path, version)
	}
	if got, err := output(".", dpkgDeb, "--info", path, "conffiles"); err != nil || strings.TrimSpace(got) != conffile {
		t.Errorf("%s: conffiles %q, want %s (%v)", path, got, conffile, err)
	}
	preinst := run(t, ".", dpkgDeb, "--info", path, "preinst")
	if !strings.Contains(preinst, "useradd --system") {
		t.Errorf("%s: preinst does not make the user:\n%s", path, preinst)
	}
	run(t, ".", dpkgDeb, "--info", path, "postinst")

	// ./usr/bin/replicator as "root root 755".
	got := map[string]string{}
	line := regexp.MustCompile(`^([-dl])([-rwxsStT]{9}) (\S+)/(\S+) +\d+ \S+ \S+ \.(/\S*?)/?$`)
	for _, l := range strings.Split(strings.TrimSpace(run(t, ".", dpkgDeb, "--contents", path)), "\n") {
		m := line.FindStringSubmatch(l)
		if m == nil {
			t.Errorf("%s: unexpected dpkg-deb --contents line %q", path, l)
			continue
		}
		got[m[5]] = fmt.Sprintf("%s %s %o", m[3], m[4], permBits(m[2]))
	}
	checkPackaged(t, path, got, unitFiles)

	root := t.TempDir()
	run(t, ".", dpkgDeb, "-x", path, root)
	checkRoot(t, root, unitFiles, goarch)
}

// checkRPM reads an rpm's header, files with owners and modes, config
// files and scripts.
func checkRPM(t *testing.T, rpm, path, arch string, unitFiles []string) {
	t.Helper()
	head := run(t, ".", rpm, "-qp", "--qf", "%{NAME} %{ARCH} %{VERSION}-%{RELEASE}", path)
	if !strings.HasPrefix(head, "replicator "+arch+" ") || !strings.HasPrefix(filepath.Base(path), "replicator-"+strings.TrimPrefix(head, "replicator "+arch+" ")+".") {
		t.Errorf("%s: header %q", path, head)
	}
	listed := strings.Fields(run(t, ".", rpm, "-qlp", path))
	got := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(run(t, ".", rpm, "-qp", "--qf", "[%{FILENAMES} %{FILEUSERNAME} %{FILEGROUPNAME} %{FILEMODES:octal}\n]", path)), "\n") {
		f := strings.Fields(l)
		if len(f) != 4 {
			t.Fatalf("%s: file line %q", path, l)
		}
		var mode uint32
		fmt.Sscanf(f[3], "%o", &mode)
		got[f[0]] = fmt.Sprintf("%s %s %o", f[1], f[2], mode&0o777)
	}
	if len(listed) != len(got) {
		t.Errorf("%s: rpm -qlp lists %d files, the header %d", path, len(listed), len(got))
	}
	checkPackaged(t, path, got, unitFiles)
	if c := strings.TrimSpace(run(t, ".", rpm, "-qp", "--configfiles", path)); c != conffile {
		t.Errorf("%s: config files %q, want %s", path, c, conffile)
	}
	if flags := run(t, ".", rpm, "-qp", "--qf", "[%{FILENAMES} %{FILEFLAGS:fflags}\n]", path); !strings.Contains(flags, conffile+" cn") {
		t.Errorf("%s: %s is not %%config(noreplace):\n%s", path, conffile, flags)
	}
	scripts := run(t, ".", rpm, "-qp", "--scripts", path)
	for _, want := range []string{"preinstall scriptlet", "useradd --system", "postinstall scriptlet", "preuninstall scriptlet", "postuninstall scriptlet"} {
		if !strings.Contains(scripts, want) {
			t.Errorf("%s: scripts lack %q", path, want)
		}
	}
}

// checkPackaged compares a package's files (path -> "owner group mode",
// implicit parent directories left out) with what it must install.
func checkPackaged(t *testing.T, path string, got map[string]string, unitFiles []string) {
	t.Helper()
	for file, want := range packaged(unitFiles) {
		if got[file] != want {
			t.Errorf("%s: %s is %q, want %q", path, file, got[file], want)
		}
	}
	for file := range got {
		if _, ok := packaged(unitFiles)[file]; !ok && !isParent(file, packaged(unitFiles)) {
			t.Errorf("%s: installs %s, which it should not", path, file)
		}
	}
}

// isParent reports whether dir is a parent directory of a packaged file.
func isParent(dir string, files map[string]string) bool {
	for f := range files {
		if strings.HasPrefix(f, dir+"/") {
			return true
		}
	}
	return false
}

// permBits turns "rwxr-xr-x" into 0755.
func permBits(s string) uint32 {
	var m uint32
	for i, c := range s {
		if c != '-' && c != 'S' && c != 'T' {
			m |= 1 << (8 - i)
		}
	}
	return m
}

// checkRoot looks at a deb unpacked into root.
func checkRoot(t *testing.T, root string, unitFiles []string, goarch string) {
	t.Helper()
	example, err := os.ReadFile("../config.example.hcl")
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(root, conffile)
	if got, err := os.ReadFile(cfg); err != nil || !bytes.Equal(got, example) {
		t.Errorf("%s is not config.example.hcl (%v)", conffile, err)
	}
	// Every command a unit runs by absolute path is in the package or the
	// base system.
	execLine := regexp.MustCompile(`(?m)^Exec\w+=[-@:+!]*(/\S+)`)
	for _, u := range unitFiles {
		src, err := os.ReadFile(filepath.Join(root, "usr/lib/systemd/system", u))
		if err != nil {
			t.Error(err)
			continue
		}
		for _, m := range execLine.FindAllSubmatch(src, -1) {
			cmd := string(m[1])
			if !strings.Contains(cmd, "replicator") {
				continue
			}
			if _, err := os.Stat(filepath.Join(root, cmd)); err != nil {
				t.Errorf("%s runs %s, which the package does not install", u, cmd)
			}
		}
	}
	if goarch != runtime.GOARCH {
		return
	}
	bin := filepath.Join(root, "usr/bin/replicator")
	if out := run(t, ".", bin, "version"); !strings.HasPrefix(out, "replicator ") {
		t.Errorf("replicator version: %q", out)
	}
	run(t, ".", bin, "validate", "--config", cfg)
}

// TestPackageVersion runs deploy/packages/version.sh along a history of
// commits and tags: each version has the expected form, and dpkg (and rpm,
// where installed) sort them in the order of the history.
func TestPackageVersion(t *testing.T) {
	dpkg := tool(t, "dpkg", "dpkg")
	git := tool(t, "git", "git")
	script, err := filepath.Abs("packages/version.sh")
	if err != nil {
		t.Fatal(err)
	}
	repo := t.TempDir()
	when := time.Date(2026, 12, 7, 16, 46, 13, 0, time.UTC)
	gitIn := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(git, args...)
		cmd.Dir = repo
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=r", "GIT_AUTHOR_EMAIL=r@example.com", "GIT_COMMITTER_NAME=r",
			"GIT_COMMITTER_EMAIL=r@example.com", "GIT_AUTHOR_DATE="+when.Format(time.RFC3339), "GIT_COMMITTER_DATE="+when.Format(time.RFC3339))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	commit := func() string {
		t.Helper()
		when = when.Add(time.Hour)
		if err := os.WriteFile(filepath.Join(repo, "f"), []byte(when.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		gitIn("add", "f")
		gitIn("commit", "-q", "-m", "c")
		return gitIn("rev-parse", "--short=7", "HEAD")
	}
	stamp := func() string { return when.Format("20060102150405") }
	gitIn("init", "-q")

	// In the order a repository goes through them, each sorting after the last.
	var want, got []string
	step := func(v string) {
		t.Helper()
		want = append(want, v)
		got = append(got, strings.TrimSpace(run(t, repo, script)))
	}
	h := commit()
	step("0.0.0~git" + stamp() + "." + h)
	gitIn("tag", "unrelated") // only v-prefixed tags are versions
	h = commit()
	step("0.0.0~git" + stamp() + "." + h)
	if err := os.WriteFile(filepath.Join(repo, "f"), []byte("edited"), 0o644); err != nil {
		t.Fatal(err)
	}
	step("0.0.0~git" + stamp() + "." + h + ".dirty")
	gitIn("checkout", "-q", "f")
	gitIn("tag", "v0.1.0-rc.1")
	step("0.1.0~rc.1")
	h = commit()
	step("0.1.0~rc.1+git" + stamp() + ".1." + h)
	gitIn("tag", "-a", "-m", "release", "v0.1.0")
	step("0.1.0")
	commit()
	h = commit()
	step("0.1.0+git" + stamp() + ".2." + h)
	commit()
	gitIn("tag", "v0.1.1")
	step("0.1.1")
	commit()
	gitIn("tag", "v1.0.0-beta-2")
	step("1.0.0~beta.2")

	if !slices.Equal(got, want) {
		t.Errorf("versions\n%q\nwant\n%q", got, want)
	}
	rpm, _ := exec.LookPath("rpm")
	for i := 1; i < len(got); i++ {
		if _, err := output(".", dpkg, "--compare-versions", got[i-1]+"-1", "lt", got[i]+"-1"); err != nil {
			t.Errorf("dpkg does not sort %s before %s", got[i-1], got[i])
		}
		if rpm == "" {
			continue
		}
		cmp := run(t, ".", rpm, "--eval", fmt.Sprintf("%%{lua: print(rpm.vercmp('%s-1', '%s-1'))}", got[i-1], got[i]))
		if strings.TrimSpace(cmp) != "-1" {
			t.Errorf("rpm does not sort %s before %s (%s)", got[i-1], got[i], strings.TrimSpace(cmp))
		}
	}
}
