package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// SlotSyncVersion is the first PostgreSQL version whose standbys keep
// copies of the primary's failover logical slots (sync_replication_slots).
const SlotSyncVersion = 17

// StandbyOptions configure a standby made by StartStandby.
type StandbyOptions struct {
	// SyncSlots makes the standby keep copies of the primary's failover
	// logical slots (PostgreSQL 17 and later): the primary gets a physical
	// slot for the standby (PhysicalSlot) and names it in
	// synchronized_standby_slots, so that no logical walsender sends a
	// change the standby has not received; the standby uses that slot
	// (primary_slot_name), runs with hot_standby_feedback and
	// sync_replication_slots on, and names a database in
	// primary_conninfo.
	SyncSlots bool
}

// StartStandby makes a physical streaming standby of p in a new directory
// and starts it on a free port; it returns when the standby streams from
// p. With Debian's PostgreSQL the standby is a pg_basebackup -R of the
// running primary. The npm builds have no client tools: there p is
// stopped (fast shutdown), its data directory copied without the slots'
// state, and p started again, so connections to p are cut once. The
// standby's settings go into its postgresql.auto.conf, which is read last.
//
// The standby runs until Stop, Kill or Close; Restart starts it again as a
// standby. PhysicalSlot names its physical slot on p (with SyncSlots).
func (p *Postgres) StartStandby(ctx context.Context, opt StandbyOptions) (*Postgres, error) {
	if p.opt.TLS != nil {
		return nil, errors.New("postgres: StartStandby does not support a primary with TLS")
	}
	if opt.SyncSlots && p.Major < SlotSyncVersion {
		return nil, fmt.Errorf("postgres: slot synchronization needs PostgreSQL %d or later; the primary runs %s", SlotSyncVersion, p.Version)
	}
	began := time.Now()
	s := &Postgres{Host: p.Host, opt: p.opt, bin: p.bin, cred: p.cred, Version: p.Version, Major: p.Major, upstream: p}
	dir, err := newDir(p.opt, "replicator-pgs-")
	if err != nil {
		return nil, err
	}
	s.Dir = dir
	if len(s.sockDir()) > 90 {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("postgres: socket directory path too long for a Unix socket: %s", s.sockDir())
	}
	if s.Port, err = FreePort(); err != nil {
		return nil, err
	}
	if err := os.Mkdir(s.sockDir(), 0o700); err != nil {
		return nil, err
	}
	app := fmt.Sprintf("standby_%d", s.Port)
	conninfo := fmt.Sprintf("host=%s port=%d user=postgres application_name=%s", p.Host, p.Port, app)
	if opt.SyncSlots {
		// The slot sync worker connects to a database of the primary.
		conninfo += " dbname=postgres"
		s.PhysicalSlot = app
		if _, err := p.Psql(ctx, "postgres", fmt.Sprintf(
			"SELECT pg_create_physical_replication_slot('%s', true)", s.PhysicalSlot)); err != nil {
			return nil, fmt.Errorf("postgres: physical slot for the standby: %w", err)
		}
	}

	if basebackup := filepath.Join(p.bin, "pg_basebackup"); fileExists(basebackup) {
		if s.cred != nil {
			if err := chownTree(s.Dir, s.cred); err != nil {
				return nil, err
			}
		}
		cmd := s.command(ctx, "pg_basebackup", "-D", s.dataDir(), "-d", conninfo, "-R",
			"-X", "stream", "-c", "fast", "--no-sync")
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("postgres: pg_basebackup: %w\n%s", err, strings.TrimSpace(string(out)))
		}
	} else {
		if err := p.Stop(); err != nil {
			return nil, fmt.Errorf("postgres: stop the primary to copy it: %w", err)
		}
		cerr := copyTree(p.dataDir(), s.dataDir(), p.cred, skipRuntimeFiles)
		if err := p.start(ctx); err != nil {
			return nil, fmt.Errorf("postgres: start the primary again after copying it: %w", err)
		}
		if cerr != nil {
			return nil, fmt.Errorf("postgres: copy the primary's data directory: %w", cerr)
		}
		if err := writeFile(filepath.Join(s.dataDir(), "standby.signal"), "", s.cred); err != nil {
			return nil, err
		}
	}

	settings := [][2]string{
		{"unix_socket_directories", s.sockDir()},
		{"hot_standby", "on"},
		{"primary_conninfo", conninfo},
	}
	if p.Major >= SlotSyncVersion {
		// A copy of the primary's settings must not make the promoted
		// standby's walsenders wait for a standby it does not have.
		settings = append(settings, [2]string{"synchronized_standby_slots", ""})
	}
	if opt.SyncSlots {
		settings = append(settings, [][2]string{
			{"primary_slot_name", s.PhysicalSlot},
			{"hot_standby_feedback", "on"},
			{"sync_replication_slots", "on"},
		}...)
	}
	if err := s.appendAutoConf("standby of "+p.DSN("postgres"), settings); err != nil {
		return nil, err
	}
	if s.cred != nil {
		if err := chownTree(s.Dir, s.cred); err != nil {
			return nil, err
		}
	}
	if err := s.start(ctx); err != nil {
		return nil, err
	}
	if err := s.waitStreaming(ctx, app); err != nil {
		s.Close()
		return nil, err
	}
	if opt.SyncSlots {
		// Set on the primary only now, so that the standby's copy of the
		// primary's settings does not have it.
		if _, err := p.Psql(ctx, "postgres", fmt.Sprintf(
			"ALTER SYSTEM SET synchronized_standby_slots = '%s'", s.PhysicalSlot)); err != nil {
			s.Close()
			return nil, err
		}
		if _, err := p.Psql(ctx, "postgres", "SELECT pg_reload_conf()"); err != nil {
			s.Close()
			return nil, err
		}
		if err := p.waitSetting(ctx, "synchronized_standby_slots", s.PhysicalSlot); err != nil {
			s.Close()
			return nil, err
		}
	}
	p.opt.logf("postgres standby of port %d streaming on %s:%d in %s (dir %s, slot sync %v)",
		p.Port, s.Host, s.Port, time.Since(began).Round(time.Millisecond), s.Dir, opt.SyncSlots)
	return s, nil
}

// skipRuntimeFiles leaves out what belongs to a running server or to the
// replication slots of the copied cluster (the directories stay, empty).
func skipRuntimeFiles(rel string) bool {
	switch rel {
	case "postmaster.pid", "postmaster.opts":
		return true
	}
	return strings.HasPrefix(rel, "pg_replslot"+string(filepath.Separator))
}

// appendAutoConf appends settings to postgresql.auto.conf, which the server
// reads after postgresql.conf.
func (p *Postgres) appendAutoConf(why string, settings [][2]string) error {
	var conf strings.Builder
	fmt.Fprintf(&conf, "\n# Added by the test harness: %s.\n", why)
	for _, kv := range settings {
		fmt.Fprintf(&conf, "%s = '%s'\n", kv[0], strings.ReplaceAll(kv[1], "'", "''"))
	}
	f, err := os.OpenFile(filepath.Join(p.dataDir(), "postgresql.auto.conf"), os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(conf.String()); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// waitStreaming waits until the primary shows the standby streaming and
// the standby has replayed WAL.
func (s *Postgres) waitStreaming(ctx context.Context, app string) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	var last error
	for {
		state, err := s.upstream.Psql(ctx, "postgres", fmt.Sprintf(
			"SELECT state FROM pg_stat_replication WHERE application_name = '%s'", app))
		if err == nil && state == "streaming" {
			var replayed string
			replayed, err = s.Psql(ctx, "postgres", "SELECT pg_is_in_recovery() AND pg_last_wal_replay_lsn() IS NOT NULL")
			if err == nil && replayed == "t" {
				return nil
			}
		}
		if err != nil {
			last = err
		} else {
			last = fmt.Errorf("replication state %q", state)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("postgres: standby on port %d not streaming (%v; last: %v); %s:\n%s",
				s.Port, ctx.Err(), last, s.logFile(), tailFile(s.logFile(), 2000))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitSetting waits until the server shows a setting's new value.
func (p *Postgres) waitSetting(ctx context.Context, name, want string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		got, err := p.Psql(ctx, "postgres", "SHOW "+name)
		if err == nil && got == want {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("postgres: %s = %q (%v), want %q", name, got, err, want)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// CatchUp waits until the standby has replayed the primary's WAL up to the
// primary's current position.
func (s *Postgres) CatchUp(ctx context.Context) error {
	if s.upstream == nil {
		return errors.New("postgres: CatchUp on a server that is not a standby")
	}
	// The insert position: with synchronous_commit off a commit may not
	// be written yet, but the WAL writer flushes it soon.
	target, err := s.upstream.Psql(ctx, "postgres", "SELECT pg_current_wal_insert_lsn()")
	if err != nil {
		return fmt.Errorf("postgres: primary's WAL position: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	for {
		ok, err := s.Psql(ctx, "postgres", fmt.Sprintf("SELECT pg_last_wal_replay_lsn() >= '%s'", target))
		if err == nil && ok == "t" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("postgres: standby on port %d did not replay up to %s (%v, last: %q %v)", s.Port, target, ctx.Err(), ok, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// StopReplication stops the standby server (fast shutdown), so that it
// misses the primary's later commits; Restart starts it again as a standby
// and FailOver promotes it as it is.
func (s *Postgres) StopReplication() error {
	if s.upstream == nil {
		return errors.New("postgres: StopReplication on a server that is not a standby")
	}
	return s.Stop()
}

// FailOver makes standby the primary at primary's address, as a failover
// does: the primary's host dies (SIGKILL to its whole process group, so
// every backend goes at once), the standby is promoted where it runs
// (timeline + 1) and waits until it accepts writes, then it moves to the
// primary's port (a fast shutdown and a start there): the address of
// primary — primary.DSN, and every DSN taken from it before — now reaches
// the promoted server, which never served that address as a standby.
//
// Afterwards standby.Port == primary.Port; standby is a primary (Restart
// keeps it on that port) and primary is down for good (its Stop does
// nothing, its Restart is an error). Close both to clean up.
func FailOver(ctx context.Context, primary, standby *Postgres) error {
	if standby.upstream != primary {
		return errors.New("postgres: FailOver: the standby does not stream from this primary")
	}
	began := time.Now()
	if err := primary.crash(); err != nil {
		return err
	}
	standby.mu.Lock()
	running := standby.proc != nil && !standby.proc.exited()
	standby.mu.Unlock()
	if !running {
		// A standby whose replication was stopped.
		if err := standby.start(ctx); err != nil {
			return fmt.Errorf("postgres: start the standby to promote it: %w", err)
		}
	}
	if out, err := standby.Psql(ctx, "postgres", "SELECT pg_promote(true, 60)"); err != nil || out != "t" {
		return fmt.Errorf("postgres: pg_promote() = %q, %v; %s:\n%s", out, err, standby.logFile(), tailFile(standby.logFile(), 2000))
	}
	if err := standby.waitWritable(ctx); err != nil {
		return err
	}
	if err := standby.Stop(); err != nil {
		return fmt.Errorf("postgres: stop the promoted standby to move it: %w", err)
	}
	standby.Port = primary.Port
	standby.upstream = nil
	if err := standby.start(ctx); err != nil {
		return fmt.Errorf("postgres: start the promoted standby on the primary's port %d: %w", primary.Port, err)
	}
	if err := standby.waitWritable(ctx); err != nil {
		return err
	}
	primary.opt.logf("postgres failed over to %s (dir %s) on %s:%d in %s", standby.Version, standby.Dir, standby.Host,
		standby.Port, time.Since(began).Round(time.Millisecond))
	return nil
}

// FailOverServingStandby is FailOver in the other order: the primary dies,
// the standby moves to the primary's port still as a standby, serves that
// address read-only for the given time (clients that reconnect meanwhile
// reach a server in recovery, whose synced slots cannot be used yet), and
// only then is promoted.
func FailOverServingStandby(ctx context.Context, primary, standby *Postgres, serve time.Duration) error {
	if standby.upstream != primary {
		return errors.New("postgres: FailOver: the standby does not stream from this primary")
	}
	began := time.Now()
	if err := primary.crash(); err != nil {
		return err
	}
	if err := standby.Stop(); err != nil {
		return fmt.Errorf("postgres: stop the standby to move it: %w", err)
	}
	standby.Port = primary.Port
	standby.upstream = nil
	if err := standby.start(ctx); err != nil {
		return fmt.Errorf("postgres: start the standby on the primary's port %d: %w", primary.Port, err)
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(serve):
	}
	if out, err := standby.Psql(ctx, "postgres", "SELECT pg_promote(true, 60)"); err != nil || out != "t" {
		return fmt.Errorf("postgres: pg_promote() = %q, %v; %s:\n%s", out, err, standby.logFile(), tailFile(standby.logFile(), 2000))
	}
	if err := standby.waitWritable(ctx); err != nil {
		return err
	}
	primary.opt.logf("postgres failed over to %s (dir %s) on %s:%d in %s, a standby there for %s first", standby.Version, standby.Dir,
		standby.Host, standby.Port, time.Since(began).Round(time.Millisecond), serve)
	return nil
}

// crash kills the server's whole process group with SIGKILL, as when its
// host dies, and marks it gone: Restart fails from then on.
func (p *Postgres) crash() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.proc == nil || p.proc.exited() {
		p.gone = true
		return nil
	}
	if err := syscall.Kill(-p.proc.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("postgres: kill -9 process group %d: %w", p.proc.cmd.Process.Pid, err)
	}
	select {
	case <-p.proc.done:
	case <-time.After(30 * time.Second):
		return fmt.Errorf("postgres: pid %d outlived SIGKILL", p.proc.cmd.Process.Pid)
	}
	p.gone = true
	return nil
}

// waitWritable waits until the server is out of recovery and commits a
// write.
func (p *Postgres) waitWritable(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	for {
		err := func() error {
			conn, err := pgx.Connect(ctx, p.DSN("postgres"))
			if err != nil {
				return err
			}
			defer conn.Close(ctx)
			_, err = conn.Exec(ctx, "CREATE TEMP TABLE harness_writable (x int)")
			return err
		}()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("postgres: port %d does not accept writes (%v, last: %v); %s:\n%s", p.Port, ctx.Err(), err,
				p.logFile(), tailFile(p.logFile(), 2000))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Timeline returns the server's current timeline (1 for a new cluster, +1
// at each promotion): of the WAL it writes, or on a standby of its last
// restart point.
func (p *Postgres) Timeline(ctx context.Context) (int, error) {
	q := "SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int"
	if rec, err := p.Psql(ctx, "postgres", "SELECT pg_is_in_recovery()"); err != nil {
		return 0, err
	} else if rec == "t" {
		q = "SELECT timeline_id FROM pg_control_checkpoint()"
	}
	out, err := p.Psql(ctx, "postgres", q)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(out)
}

// SystemIdentifier returns the cluster's system identifier, which a
// standby shares with its primary.
func (p *Postgres) SystemIdentifier(ctx context.Context) (string, error) {
	return p.Psql(ctx, "postgres", "SELECT system_identifier FROM pg_control_system()")
}

// CopyDataDir stops the server (fast shutdown, so the copy is consistent),
// copies its data directory into a new directory under p.Dir (Close
// removes it), starts the server again, and returns the copy's path for
// PutBackDataDir. Connections to the server are cut once.
func (p *Postgres) CopyDataDir(ctx context.Context) (string, error) {
	if err := p.Stop(); err != nil {
		return "", err
	}
	dst, err := os.MkdirTemp(p.Dir, "data-copy-")
	if err != nil {
		return "", err
	}
	cerr := copyTree(p.dataDir(), filepath.Join(dst, "data"), p.cred, func(rel string) bool {
		return rel == "postmaster.pid" || rel == "postmaster.opts"
	})
	if err := p.start(ctx); err != nil {
		return "", err
	}
	if cerr != nil {
		return "", cerr
	}
	p.opt.logf("postgres on port %d: data directory copied to %s", p.Port, dst)
	return dst, nil
}

// PutBackDataDir stops the server, replaces its data directory by a copy
// that CopyDataDir made (which stays, for another put-back) and starts it:
// the same system and timeline, its WAL position and slots back as they
// were in the copy.
func (p *Postgres) PutBackDataDir(ctx context.Context, copy string) error {
	src := filepath.Join(copy, "data")
	if !fileExists(filepath.Join(src, "PG_VERSION")) {
		return fmt.Errorf("postgres: %s is not a copy made by CopyDataDir", copy)
	}
	if err := p.Stop(); err != nil {
		return err
	}
	if err := os.RemoveAll(p.dataDir()); err != nil {
		return err
	}
	if err := copyTree(src, p.dataDir(), p.cred, func(string) bool { return false }); err != nil {
		return err
	}
	if err := p.start(ctx); err != nil {
		return err
	}
	p.opt.logf("postgres on port %d: data directory put back from %s", p.Port, copy)
	return nil
}

// copyTree copies the directory tree src to dst (which must not exist),
// keeping modes and symbolic links, leaving out the paths (relative to src)
// for which skip is true, and giving the copy to cred's user when set.
func copyTree(src, dst string, cred *syscall.Credential, skip func(rel string) bool) error {
	return filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		if rel != "." && skip(rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			if err := os.Mkdir(target, info.Mode().Perm()); err != nil {
				return err
			}
		case info.Mode()&os.ModeSymlink != 0:
			link, err := os.Readlink(path)
			if err != nil {
				return err
			}
			if err := os.Symlink(link, target); err != nil {
				return err
			}
		case info.Mode().IsRegular():
			if err := copyFile(path, target, info.Mode().Perm()); err != nil {
				return err
			}
		default:
			return nil // sockets and the like
		}
		if cred != nil {
			return os.Lchown(target, int(cred.Uid), int(cred.Gid))
		}
		return nil
	})
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// writeFile writes a file owned by cred's user when set.
func writeFile(path, content string, cred *syscall.Credential) error {
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		return err
	}
	if cred != nil {
		return os.Chown(path, int(cred.Uid), int(cred.Gid))
	}
	return nil
}

// LogTail returns about the last n bytes of the server's log, for test
// failures.
func (p *Postgres) LogTail(n int64) string { return tailFile(p.logFile(), n) }

// WaitSlotSynced waits until a slot-syncing standby (StandbyOptions.
// SyncSlots) holds a permanent synced copy of the primary's failover slot
// whose confirmed position has reached the primary slot's position at
// the call. The standby makes its copy permanent only once the primary's
// slot has moved past the WAL and catalog rows the standby reserved, which
// takes a consumer of the slot and a running-transactions record: this
// logs one on the primary (pg_log_standby_snapshot) at each poll.
func (s *Postgres) WaitSlotSynced(ctx context.Context, slot string) error {
	if s.upstream == nil || s.PhysicalSlot == "" {
		return errors.New("postgres: WaitSlotSynced on a server that is not a slot-syncing standby")
	}
	want, err := s.upstream.Psql(ctx, "postgres", fmt.Sprintf(
		"SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '%s' AND failover", slot))
	if err != nil {
		return err
	}
	if want == "" {
		return fmt.Errorf("postgres: the primary has no failover slot %s", slot)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	q := fmt.Sprintf(`SELECT synced AND NOT temporary AND confirmed_flush_lsn >= '%s'
		FROM pg_replication_slots WHERE slot_name = '%s'`, want, slot)
	for {
		got, err := s.Psql(ctx, "postgres", q)
		if err == nil && got == "t" {
			return nil
		}
		_, serr := s.upstream.Psql(ctx, "postgres", "SELECT pg_log_standby_snapshot()")
		select {
		case <-ctx.Done():
			return fmt.Errorf("postgres: standby on port %d has no synced slot %s at %s (%v, last: %q %v, %v); %s:\n%s",
				s.Port, slot, want, ctx.Err(), got, err, serr, s.logFile(), tailFile(s.logFile(), 2000))
		case <-time.After(200 * time.Millisecond):
		}
	}
}
