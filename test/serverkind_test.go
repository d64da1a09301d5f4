package test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/replicator/replicator/config"
	"github.com/replicator/replicator/ddl"
	"github.com/replicator/replicator/mapping"
	"github.com/replicator/replicator/sink"
)

// TestServerProbe: what sink.Open and CreateDatabase probe on the live
// server (ClickHouse 18.16) is what the 18.16-ordinary family of the
// golden files (sink/golden_test.go) says: none of the settings the
// replicator sets or reads, no table comments, not Cloud, and an Ordinary
// database once setup made it (none before). The statements rendered for
// it are then the RENAME swap, without SYNC or ON CLUSTER (the golden
// file shows them whole). The server refuses ADD COLUMN IF NOT EXISTS (a
// syntax error): the ADD COLUMN rendered for it has none, and runs.
func TestServerProbe(t *testing.T) {
	requireServers(t)
	ctx := context.Background()
	client, err := sink.Open(ctx, config.ClickHouse{Addr: []string{chServer.Addr()}, Database: "db_server_probe"})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if s := client.Server(); s.Engine != "" {
		t.Fatalf("engine of a database not made yet: %q", s.Engine)
	}
	if err := client.CreateDatabase(ctx); err != nil {
		t.Fatal(err)
	}
	s := client.Server()
	// Of the settings probed, 18.16 has those of the guards and limits
	// every family has (sink's golden families: classic), at a default
	// profile's values.
	throw := []string{"result_overflow_mode", "read_overflow_mode", "group_by_overflow_mode", "sort_overflow_mode", "set_overflow_mode",
		"join_overflow_mode", "distinct_overflow_mode", "transfer_overflow_mode", "timeout_overflow_mode"}
	if len(s.Settings) != 29 {
		t.Errorf("probed %d settings, want the 29 every family has: %v", len(s.Settings), s.Settings)
	}
	for k, v := range s.Settings {
		if want := map[bool]string{true: "throw", false: "0"}[slices.Contains(throw, k)]; v != want {
			t.Errorf("probed %s = %s, want %s", k, v, want)
		}
	}
	if s.Version != [2]int{18, 16} || s.Engine != ddl.EngineOrdinary || s.Comments || s.Cloud() || s.Readonly != "0" {
		t.Errorf("probed %+v, want the 18.16-ordinary family: version 18.16, Ordinary, no comments, not Cloud", s)
	}
	db := client.DB()
	if db.Exchanges() || db.Drop("t") != "DROP TABLE IF EXISTS `db_server_probe`.`t`" {
		t.Errorf("an Ordinary database renders %q, exchanges %v", db.Drop("t"), db.Exchanges())
	}
	// 18.16 has no ADD COLUMN IF NOT EXISTS: the daemon does not send it.
	if err := client.Exec(ctx, "CREATE TABLE IF NOT EXISTS `db_server_probe`.`t` (id UInt64) ENGINE = MergeTree ORDER BY id"); err != nil {
		t.Fatal(err)
	}
	if err := client.Exec(ctx, "ALTER TABLE `db_server_probe`.`t` ADD COLUMN IF NOT EXISTS `c` String"); err == nil {
		t.Errorf("the server takes ADD COLUMN IF NOT EXISTS: ddl.Database.AddColumn may use it")
	}
	add := db.AddColumn("t", mapping.Column{Name: "c", Type: mapping.Type{Kind: mapping.KindString}}, "", "id")
	for _, stmt := range add {
		if err := client.Exec(ctx, stmt); err != nil {
			t.Errorf("%s: %v", stmt, err)
		}
	}
	if err := client.Exec(ctx, "DROP DATABASE `db_server_probe`"); err != nil {
		t.Error(err)
	}
}

// TestEngineDeletesRefusedOn1816: the modern table, opt-in, needs 23.2;
// setup on 18.16 says so and creates nothing.
func TestEngineDeletesRefusedOn1816(t *testing.T) {
	e := newEnv(t, "")
	e.setConfig(`order_by = ["id"]
  column "id"`, `order_by = ["id"]
  engine_is_deleted = true
  column "id"`)
	out, errs, code := e.cli("setup", "--config", e.config)
	if code == 0 || !strings.Contains(errs, "engine_is_deleted) need ClickHouse 23.2 or later; the server is 18.16") {
		t.Fatalf("setup with engine_is_deleted on 18.16: exit %d\n%s\n%s", code, out, errs)
	}
}
