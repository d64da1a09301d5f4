package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/replicator/replicator/failure"
	"github.com/replicator/replicator/mapping"
	"github.com/replicator/replicator/postgres"
	"github.com/replicator/replicator/sink"
)

func TestRetryable(t *testing.T) {
	pgLost := failure.Lost("postgres").Apply(fmt.Errorf("%w: unexpected EOF", postgres.ErrConnection))
	chDown := failure.Lost("clickhouse").Apply(fmt.Errorf("%w: connection refused", sink.ErrUnavailable))
	inUse := &postgres.SlotInUseError{Slot: "s1", PID: "4242"}
	for _, tc := range []struct {
		name   string
		err    error
		lostAt time.Duration // how long ago the connection was lost; 0: never
		inUse  time.Duration // how long ago the slot was first found in use; 0: never
		want   bool
	}{
		{name: "postgres connection", err: pgLost, want: true},
		{name: "postgres connection wrapped", err: fmt.Errorf("start replication: %w", pgLost), want: true},
		{name: "postgres described eof", err: postgres.Describe(fmt.Errorf("read: %w", io.EOF), "", ""), want: true},
		{name: "clickhouse unavailable", err: chDown, want: true},
		{name: "clickhouse unavailable wrapped", err: fmt.Errorf("flush: %w", chDown), lostAt: time.Hour, want: true},
		{name: "slot in use at first start, just found", err: inUse, inUse: time.Millisecond, want: true},
		{name: "slot in use at first start, 9s", err: inUse, inUse: 9 * time.Second, want: true},
		{name: "slot in use at first start, 11s: another daemon", err: inUse, inUse: 11 * time.Second, want: false},
		{name: "slot in use 5s after loss", err: inUse, lostAt: 5 * time.Second, want: true},
		{name: "slot in use wrapped 5s after loss", err: fmt.Errorf("start: %w", inUse), lostAt: 5 * time.Second, want: true},
		{name: "slot in use 29s after loss", err: inUse, lostAt: 29 * time.Second, want: true},
		{name: "slot in use 40s after loss", err: inUse, lostAt: 40 * time.Second, inUse: 20 * time.Second, want: false},
		{name: "slot missing", err: fmt.Errorf("slot s1: %w", postgres.ErrSlotMissing), lostAt: 5 * time.Second, want: false},
		{name: "slot lost", err: postgres.LostSlotError("s1"), lostAt: 5 * time.Second, want: false},
		{name: "mapping error", err: fmt.Errorf("apply: %w", &mapping.RowError{Table: "public.events", Err: errors.New("bad")}), want: false},
		{name: "plain", err: errors.New("boom"), want: false},
		{name: "plain after loss", err: errors.New("boom"), lostAt: 5 * time.Second, want: false},
		{name: "context canceled", err: context.Canceled, want: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var lostAt, inUseSince time.Time
			if tc.lostAt != 0 {
				lostAt = time.Now().Add(-tc.lostAt)
			}
			if tc.inUse != 0 {
				inUseSince = time.Now().Add(-tc.inUse)
			}
			if got := retryable(tc.err, lostAt, inUseSince); got != tc.want {
				t.Errorf("retryable(%v, lost %v ago, in use for %v) = %v, want %v", tc.err, tc.lostAt, tc.inUse, got, tc.want)
			}
		})
	}
}

func TestErrorKind(t *testing.T) {
	rowErr := &mapping.RowError{Table: "public.events", Column: "note", Key: "id=1", LSN: 0x16B3748, Err: errors.New("bad")}
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{name: "mapping", err: fmt.Errorf("apply: %w", rowErr), want: "mapping"},
		{name: "mapping bare", err: rowErr, want: "mapping"},
		{name: "mapping of an unavailable write", err: &mapping.RowError{Err: sink.ErrUnavailable}, want: "mapping"},
		{name: "clickhouse", err: fmt.Errorf("flush: %w", fmt.Errorf("%w: EOF", sink.ErrUnavailable)), want: "clickhouse"},
		{name: "postgres", err: fmt.Errorf("receive: %w", fmt.Errorf("%w: EOF", postgres.ErrConnection)), want: "postgres"},
		{name: "slot in use", err: &postgres.SlotInUseError{Slot: "s1"}, want: "other"},
		{name: "other", err: errors.New("boom"), want: "other"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := errorKind(tc.err); got != tc.want {
				t.Errorf("errorKind(%v) = %q, want %q", tc.err, got, tc.want)
			}
		})
	}
}
