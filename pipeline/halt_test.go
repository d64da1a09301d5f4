package pipeline

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/replicator/replicator/checkpoint"
	"github.com/replicator/replicator/failure"
	"github.com/replicator/replicator/mapping"
	"github.com/replicator/replicator/replication"
)

func TestHaltReason(t *testing.T) {
	bad := &mapping.RowError{Table: "public.events", Column: "project_id", Key: "id=777", Err: errors.New("negative value -5 into UInt64")}
	for _, tc := range []struct {
		name   string
		err    error
		reason string
		halts  bool
	}{
		{"a value it cannot map", bad, "bad_data", true},
		{"wrapped, as a flush returns it", fmt.Errorf("flush: %w", bad), "bad_data", true},
		{"a configuration error exits", errors.New("no checkpoint for slot s: run `replicator setup` first"), "", false},
		{"a transient error is retried, not halted on", failure.Lost("postgres").Apply(errors.New("connection refused")), "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reason, halts := haltReason(tc.err)
			if reason != tc.reason || halts != tc.halts {
				t.Errorf("haltReason = %q, %v; want %q, %v", reason, halts, tc.reason, tc.halts)
			}
		})
	}
}

func TestLostServer(t *testing.T) {
	for reason, want := range map[string]string{
		"postgres_connection":   "postgres",
		"postgres_shutdown":     "postgres",
		"postgres_starting":     "postgres",
		"clickhouse_connection": "clickhouse",
		"clickhouse_network":    "clickhouse",
		"clickhouse_timeout":    "clickhouse",
		"clickhouse_shutdown":   "clickhouse",
		// The server answers: not a lost connection.
		"clickhouse_overloaded": "",
		"postgres_overloaded":   "",
		"postgres_in_recovery":  "",
		"replica_unavailable":   "",
		"quorum_not_met":        "",
		"zookeeper_unavailable": "",
	} {
		got, lost := lostServer(reason)
		if got != want || lost != (want != "") {
			t.Errorf("lostServer(%q) = %q, %v; want %q", reason, got, lost, want)
		}
	}
}

func TestHeartbeatTime(t *testing.T) {
	at := time.Date(2026, 12, 7, 12, 0, 0, 123456000, time.UTC)
	for _, tc := range []struct {
		name string
		m    replication.LogicalMessage
		want time.Time
	}{
		{"a heartbeat", replication.LogicalMessage{Prefix: heartbeatPrefix, Content: []byte(fmt.Sprint(at.UnixMicro()))}, at},
		{"an earlier version's heartbeat", replication.LogicalMessage{Prefix: heartbeatPrefix, Content: []byte("2026-12-07 12:00:00.123456+00")}, time.Time{}},
		{"another message", replication.LogicalMessage{Prefix: replication.ResyncPrefix, Content: []byte("1")}, time.Time{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := heartbeatTime(&tc.m); !got.Equal(tc.want) {
				t.Errorf("heartbeatTime = %s, want %s", got, tc.want)
			}
		})
	}
}

// TestPositionAsOf: what a durable position proves about the lag. A
// commit checkpoint proves its commit time; an idle one the newest
// heartbeat it covers; an idle one without a heartbeat proves nothing.
func TestPositionAsOf(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	p := newPosition(checkpoint.Position{LSN: 100, Commit: true, CommitTime: t0})
	if got := p.asOf(); !got.Equal(t0) {
		t.Fatalf("resumed from a commit: asOf %s, want %s", got, t0)
	}
	// Idle: keepalives move the position, no heartbeat.
	p.keepalive(200)
	pos, ok := p.idleCheckpoint(t0.Add(time.Minute), 0, time.Second)
	if !ok {
		t.Fatal("no idle checkpoint")
	}
	p.idleSaved(pos, t0.Add(time.Minute))
	if got := p.asOf(); !got.IsZero() {
		t.Errorf("idle without heartbeats: asOf %s, want unknown", got)
	}
	// A heartbeat emitted later moves it, also when a keepalive passed it.
	beat := t0.Add(2 * time.Minute)
	p.keepalive(400)
	if p.heartbeat(300, beat) {
		t.Error("a heartbeat below the keepalive's position moved the position")
	}
	pos, _ = p.idleCheckpoint(t0.Add(3*time.Minute), 0, time.Second)
	p.idleSaved(pos, t0.Add(3*time.Minute))
	if got := p.asOf(); !got.Equal(beat) {
		t.Errorf("idle with a heartbeat: asOf %s, want %s", got, beat)
	}
	// A transaction after it: its commit checkpoint proves its time.
	commit := t0.Add(4 * time.Minute)
	if err := p.begin(&replication.Begin{FinalLSN: 500, Xid: 7, CommitTime: commit}); err != nil {
		t.Fatal(err)
	}
	if p.heartbeat(450, t0.Add(5*time.Minute)) {
		t.Error("a heartbeat inside a transaction moved the position")
	}
	if _, err := p.commit(&replication.Commit{CommitLSN: 500, CommitTime: commit}); err != nil {
		t.Fatal(err)
	}
	p.checkpointed(p.take())
	if got := p.asOf(); !got.Equal(commit) {
		t.Errorf("after a commit checkpoint: asOf %s, want %s", got, commit)
	}
}
