package status

import (
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/replicator/replicator/checkpoint"
)

func TestBytesAfter(t *testing.T) {
	for _, tc := range []struct {
		name     string
		cur, lsn pglogrepl.LSN
		want     uint64
	}{
		{name: "ahead", cur: 0x16B4000, lsn: 0x16B3748, want: 0x8B8},
		{name: "equal", cur: 0x16B4000, lsn: 0x16B4000, want: 0},
		{name: "behind", cur: 0x16B3748, lsn: 0x16B4000, want: 0},
		{name: "from zero", cur: 100, lsn: 0, want: 100},
		{name: "both zero", cur: 0, lsn: 0, want: 0},
		{name: "max", cur: pglogrepl.LSN(^uint64(0)), lsn: 0, want: ^uint64(0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := bytesAfter(tc.cur, tc.lsn); got != tc.want {
				t.Errorf("bytesAfter(%s, %s) = %v, want %v", tc.cur, tc.lsn, got, tc.want)
			}
		})
	}
}

func TestActiveLag(t *testing.T) {
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	fresh := ago(time.Second)
	stale := ago(progressFresh + time.Second)
	for _, tc := range []struct {
		name     string
		p        checkpoint.Progress
		found    bool
		lagBytes uint64
		pos      checkpoint.Position
		want     time.Duration
	}{
		{name: "fresh, all stored", p: checkpoint.Progress{Updated: fresh}, found: true,
			lagBytes: 100, pos: checkpoint.Position{CommitTime: ago(time.Hour)}, want: 0},
		{name: "fresh, unstored 3s ago", p: checkpoint.Progress{Updated: fresh, OldestUnstored: ago(3 * time.Second)}, found: true,
			lagBytes: 100, pos: checkpoint.Position{CommitTime: ago(time.Hour)}, want: 3 * time.Second},
		{name: "fresh, unstored 3s ago, no lag bytes", p: checkpoint.Progress{Updated: fresh, OldestUnstored: ago(3 * time.Second)}, found: true,
			want: 3 * time.Second},
		{name: "fresh, updated just now", p: checkpoint.Progress{Updated: now, OldestUnstored: ago(time.Minute)}, found: true,
			want: time.Minute},
		{name: "fresh, unstored in the future", p: checkpoint.Progress{Updated: fresh, OldestUnstored: now.Add(5 * time.Second)}, found: true,
			lagBytes: 100, pos: checkpoint.Position{CommitTime: ago(time.Hour)}, want: 0},
		{name: "just under fresh", p: checkpoint.Progress{Updated: ago(progressFresh - time.Millisecond)}, found: true,
			lagBytes: 100, pos: checkpoint.Position{CommitTime: ago(5 * time.Second)}, want: 0},
		{name: "exactly progressFresh old is stale", p: checkpoint.Progress{Updated: ago(progressFresh)}, found: true,
			lagBytes: 100, pos: checkpoint.Position{CommitTime: ago(5 * time.Second)}, want: 5 * time.Second},
		{name: "stale, wal pending", p: checkpoint.Progress{Updated: stale, OldestUnstored: ago(time.Second)}, found: true,
			lagBytes: 100, pos: checkpoint.Position{CommitTime: ago(5 * time.Second)}, want: 5 * time.Second},
		{name: "stale, nothing pending", p: checkpoint.Progress{Updated: stale, OldestUnstored: ago(time.Second)}, found: true,
			lagBytes: 0, pos: checkpoint.Position{CommitTime: ago(5 * time.Second)}, want: 0},
		{name: "stale, commit in the future", p: checkpoint.Progress{Updated: stale}, found: true,
			lagBytes: 100, pos: checkpoint.Position{CommitTime: now.Add(5 * time.Second)}, want: 0},
		{name: "fresh but not found", p: checkpoint.Progress{Updated: fresh, OldestUnstored: ago(3 * time.Second)}, found: false,
			lagBytes: 100, pos: checkpoint.Position{CommitTime: ago(5 * time.Second)}, want: 5 * time.Second},
		{name: "not found, wal pending", lagBytes: 100, pos: checkpoint.Position{CommitTime: ago(5 * time.Second)}, want: 5 * time.Second},
		{name: "not found, nothing pending", lagBytes: 0, pos: checkpoint.Position{CommitTime: ago(5 * time.Second)}, want: 0},
		{name: "not found, zero commit time", lagBytes: 100, pos: checkpoint.Position{}, want: 0},
		{name: "not found, epoch commit time", lagBytes: 100, pos: checkpoint.Position{CommitTime: time.Unix(0, 0).UTC()}, want: 0},
		{name: "not found, epoch commit time local", lagBytes: 100, pos: checkpoint.Position{CommitTime: time.Unix(0, 0)}, want: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := activeLag(now, tc.p, tc.found, tc.lagBytes, tc.pos)
			if got != tc.want {
				t.Errorf("activeLag = %v, want %v", got, tc.want)
			}
			if got < 0 {
				t.Errorf("activeLag = %v, want >= 0", got)
			}
		})
	}
}

func TestIdleLag(t *testing.T) {
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name  string
		pos   checkpoint.Position
		want  time.Duration
		bound bool
	}{
		{name: "last stored commit bounds the lag", pos: checkpoint.Position{CommitTime: now.Add(-time.Hour)}, want: time.Hour, bound: true},
		{name: "commit time ahead of the clock", pos: checkpoint.Position{CommitTime: now.Add(time.Second)}, want: 0, bound: true},
		{name: "no commit time", pos: checkpoint.Position{}, want: 0, bound: false},
		{name: "epoch commit time", pos: checkpoint.Position{CommitTime: time.Unix(0, 0)}, want: 0, bound: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, bound := idleLag(now, tc.pos); got != tc.want || bound != tc.bound {
				t.Errorf("idleLag = %v, %v; want %v, %v", got, bound, tc.want, tc.bound)
			}
		})
	}
}
