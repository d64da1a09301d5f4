package test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/jackc/pgx/v5"

	"github.com/replicator/replicator/test/harness"
)

// TestTLS runs setup and the daemon against a Postgres with ssl = on and a
// ClickHouse's TLS native port, both verified against a CA made by
// openssl, with client certificates, and a ClickHouse password read from a
// file: the rows arrive, the connections are encrypted, the password never
// shows, and a certificate from another CA is refused with an error about
// the certificate.
func TestTLS(t *testing.T) {
	requireServers(t)
	ctx := context.Background()
	dir := t.TempDir()
	files, err := harness.MakeTLS(dir)
	if err != nil {
		t.Fatal(err)
	}
	opts := harness.Options{Dir: dir, TLS: files, Fast: true}
	pg, err := harness.StartPostgres(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	ch, err := harness.StartClickHouse(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	if _, err := pg.Psql(ctx, "postgres", eventsDDL); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(dir, "clickhouse.password")
	if err := os.WriteFile(secret, []byte("s3cret-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dsn := func(ca string) string {
		return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=verify-full&sslrootcert=%s&sslcert=%s&sslkey=%s",
			pg.Port, ca, files.ClientCert, files.ClientKey)
	}
	port, err := harness.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	config := func(name, pgCA, chCA string) string {
		path := filepath.Join(dir, name)
		cfg := fmt.Sprintf(`
postgres {
  dsn = %q
}
clickhouse {
  addr          = [%q]
  database      = "tls"
  username      = "secured"
  password_file = %q
  tls {
    ca_file   = %q
    cert_file = %q
    key_file  = %q
  }
}
batch {
  max_delay = "200ms"
}
monitor {
  listen = "127.0.0.1:%d"
}
table "public.events" {
  order_by = ["id"]
}
`, dsn(pgCA), ch.SecureAddr(), secret, chCA, files.ClientCert, files.ClientKey, port)
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	run := func(args ...string) (string, int) {
		cmd := exec.Command(binary, args...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); ok {
			return out.String(), ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return out.String(), 0
	}

	// Certificates of another CA: refused, naming what to check.
	if out, code := run("setup", "--config", config("wrong-ch.hcl", files.CA, files.OtherCA)); code == 0 ||
		!strings.Contains(out, "clickhouse TLS: the server's certificate is not trusted") {
		t.Errorf("setup with the wrong ClickHouse CA: exit %d\n%s", code, out)
	}
	if out, code := run("setup", "--config", config("wrong-pg.hcl", files.OtherCA, files.CA)); code == 0 ||
		!strings.Contains(out, "postgres TLS: the server's certificate is not trusted") {
		t.Errorf("setup with the wrong Postgres CA: exit %d\n%s", code, out)
	}

	good := config("good.hcl", files.CA, files.CA)
	if out, code := run("setup", "--config", good); code != 0 {
		t.Fatalf("setup over TLS: exit %d\n%s", code, out)
	}
	d := &daemon{done: make(chan struct{})}
	d.cmd = exec.Command(binary, "run", "--config", good)
	d.cmd.Stdout, d.cmd.Stderr = d, d
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.err = d.cmd.Wait(); close(d.done) }()
	defer func() {
		d.cmd.Process.Kill()
		<-d.done
		if t.Failed() {
			t.Logf("daemon log:\n%s", tail(d.Logs(), 3000))
		}
	}()

	conn, err := pgx.Connect(ctx, dsn(files.CA))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `INSERT INTO events (project_id, author_id, action, created_at, updated_at)
		SELECT g, g, 1, now(), now() FROM generate_series(1, 500) g`); err != nil {
		t.Fatal(err)
	}
	plain, err := clickhouse.Open(&clickhouse.Options{Addr: []string{ch.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	for deadline := time.Now().Add(convergeTimeout); ; time.Sleep(200 * time.Millisecond) {
		var n uint64
		plain.QueryRow(ctx, "SELECT count() FROM tls.events_live").Scan(&n)
		if n == 500 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d rows of 500 arrived over TLS", n)
		}
	}
	// The daemon's Postgres sessions (the stream, the watcher) are encrypted.
	var encrypted int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
		WHERE s.ssl AND a.application_name = 'replicator'`).Scan(&encrypted); err != nil || encrypted == 0 {
		t.Errorf("encrypted replicator sessions: %d (%v)", encrypted, err)
	}
	var plainSessions int
	conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
		WHERE NOT s.ssl AND a.application_name = 'replicator'`).Scan(&plainSessions)
	if plainSessions != 0 {
		t.Errorf("%d replicator sessions without TLS", plainSessions)
	}
	st, code := run("status", "--config", good)
	if code != 0 {
		t.Errorf("status over TLS: exit %d\n%s", code, st)
	}
	for _, text := range []string{d.Logs(), st} {
		if strings.Contains(text, "s3cret-pw") {
			t.Error("the ClickHouse password appears in the output")
		}
	}
}
