package checkpoint

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/replicator/replicator/ddl"
	"github.com/replicator/replicator/postgres"
	"github.com/replicator/replicator/sink"
)

// Position is a replication position stored in ClickHouse.
//
// When Commit is true, LSN is the commit LSN of the last transaction whose
// changes are all stored: transactions with a commit LSN <= LSN are done.
// When Commit is false, LSN is a WAL position reached while idle, after every
// earlier transaction was stored: transactions with a commit LSN < LSN are done.
type Position struct {
	LSN    pglogrepl.LSN
	Commit bool
	// CommitTime is the commit time of the last applied transaction.
	CommitTime time.Time
	// Last is the newest transaction stored at or below the position; zero
	// when none is known (a position saved by setup, or by an earlier
	// version). A server that continues the position's history sends it
	// again, with the same xid, when streaming starts at its commit LSN.
	Last Transaction
	// History is the Postgres history the position belongs to.
	History History
	// Written is when the checkpoint was saved (set by Load only).
	Written time.Time
}

// Transaction names a committed transaction of the stream.
type Transaction struct {
	LSN pglogrepl.LSN // commit LSN
	Xid uint32
	// Time is the commit time in microseconds since 1970 (zero when an
	// earlier version saved the position). A server brought back to an
	// earlier state hands out the same xids again, and a transaction of
	// the same shape commits at the same LSN: only its time tells it from
	// the one stored.
	Time uint64
}

// CommitTime returns t, a transaction's commit time, as Transaction.Time.
func CommitTime(t time.Time) uint64 { return uint64(t.UnixMicro()) }

// History names a Postgres history: an LSN is a position only within one.
// SystemID and Timeline are the server's (IDENTIFY_SYSTEM); zero when an
// earlier version saved the position. Epoch orders histories: setup or a
// recovery that starts the replication over on a history that does not
// continue the previous one saves its positions in a higher epoch, and
// every reader takes the newest epoch's newest position.
type History struct {
	SystemID uint64
	Timeline uint32
	Epoch    uint32
}

// Known reports whether the history's identity was recorded.
func (h History) Known() bool { return h.SystemID != 0 }

// Done reports whether a transaction with the given commit LSN is already
// stored, and must be skipped when Postgres sends it again.
func (p Position) Done(commitLSN pglogrepl.LSN) bool {
	if p.Commit {
		return commitLSN <= p.LSN
	}
	return commitLSN < p.LSN
}

// Store reads and writes checkpoints of one slot.
type Store struct {
	client *sink.Client
	slot   string
	// history is what Save records: the history the session proved it
	// follows (SetHistory).
	history History
}

// SetHistory makes Save record h with every position from now on.
func (s *Store) SetHistory(h History) { s.history = h }

// NewStore returns a store for slot.
func NewStore(client *sink.Client, slot string) *Store {
	return &Store{client: client, slot: slot}
}

// Slot returns the slot whose checkpoints the store keeps.
func (s *Store) Slot() string { return s.slot }

// ErrNoCheckpoint marks the error of a command that needs the checkpoint
// a setup saves and finds none: running it again cannot help.
var ErrNoCheckpoint = errors.New("no checkpoint")

// Load returns the newest checkpoint; found is false when there is none.
func (s *Store) Load(ctx context.Context) (pos Position, found bool, err error) {
	rows, err := s.client.Query(ctx, fmt.Sprintf(
		"SELECT lsn, commit, commit_time, last_lsn, last_xid, system_id, timeline, epoch, last_time, written_at FROM %s "+
			"WHERE slot = ? ORDER BY epoch DESC, lsn DESC, commit DESC LIMIT 1",
		s.client.DB().Table(ddl.CheckpointTable)), s.slot)
	if err != nil {
		return Position{}, false, fmt.Errorf("load checkpoint of slot %s: %w", s.slot, err)
	}
	if len(rows) == 0 {
		return Position{}, false, nil
	}
	r := rows[0]
	return Position{
		LSN:        pglogrepl.LSN(r[0].(uint64)),
		Commit:     r[1].(uint8) == 1,
		CommitTime: r[2].(time.Time),
		Last:       Transaction{LSN: pglogrepl.LSN(r[3].(uint64)), Xid: r[4].(uint32), Time: r[8].(uint64)},
		History:    History{SystemID: r[5].(uint64), Timeline: r[6].(uint32), Epoch: r[7].(uint32)},
		Written:    r[9].(time.Time),
	}, true, nil
}

// Save writes a checkpoint in the store's history (SetHistory). It returns
// only after ClickHouse acknowledged the INSERT; callers must have stored
// every change it covers before.
func (s *Store) Save(ctx context.Context, pos Position) error {
	var commit uint8
	if pos.Commit {
		commit = 1
	}
	ct := pos.CommitTime
	if ct.IsZero() {
		ct = time.Unix(0, 0)
	}
	h := s.history
	err := s.client.Insert(ctx, s.client.DB().Insert(ddl.CheckpointTable, []string{"slot", "lsn", "commit", "commit_time", "written_at",
		"last_lsn", "last_xid", "system_id", "timeline", "epoch", "last_time"}),
		[]any{s.slot, uint64(pos.LSN), commit, ct.UTC(), time.Now().UTC(), uint64(pos.Last.LSN), pos.Last.Xid, h.SystemID, h.Timeline, h.Epoch, pos.Last.Time})
	if err != nil {
		return fmt.Errorf("save checkpoint %s of slot %s: %w", pos.LSN, s.slot, err)
	}
	return nil
}

// Delete removes every checkpoint of the slot (used when a slot is
// recreated). It waits until the deletion, a ClickHouse mutation, is visible.
func (s *Store) Delete(ctx context.Context) error {
	return s.mutate(ctx, "delete checkpoints of slot "+s.slot, ddl.CheckpointTable, "lsn", s.client.DB().DeleteCheckpoints(),
		[]any{s.slot}, func() (bool, error) {
			_, found, err := s.Load(ctx)
			return !found, err
		})
}

// mutate runs stmt, a mutation of the replicator's own table (an ALTER
// TABLE ... DELETE) with args, and waits until done reports it visible.
//
// On a cluster every INSERT waits for a quorum of replicas, and ClickHouse
// does not mutate the part of a table's newest quorum INSERT while it is
// the newest (it keeps that part for sequentially consistent reads): a
// mutation covering it would wait for the table's next INSERT. So mutate
// writes one after the mutation, a fence row of no slot (unique, a column
// made unique so that the INSERT is not deduplicated), which becomes the
// newest part instead. Every reader of these tables selects one slot, and
// a slot name is never empty, so the fence is never read.
func (s *Store) mutate(ctx context.Context, what, table, unique, stmt string, args []any, done func() (bool, error)) error {
	if err := s.client.Exec(ctx, stmt, args...); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if s.client.DB().Cluster != "" {
		fence := []any{"", uint64(time.Now().UnixNano())}
		if err := s.client.Insert(ctx, s.client.DB().Insert(table, []string{"slot", unique}), fence); err != nil {
			return fmt.Errorf("%s: write the fence row after the mutation: %w", what, err)
		}
	}
	return waitMutation(ctx, what, done)
}

// waitMutation waits, at most a minute, until done reports that a
// ClickHouse mutation (what) is visible.
func waitMutation(ctx context.Context, what string, done func() (bool, error)) error {
	for deadline := time.Now().Add(time.Minute); ; {
		ok, err := done()
		if err != nil || ok {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: the mutation did not finish within a minute", what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Progress is the daemon's latest report.
type Progress struct {
	Updated time.Time
	// OldestUnstored is the commit time of the oldest transaction received
	// but not yet stored; zero when everything received is stored.
	OldestUnstored time.Time
	// Halt is set when the report is a halt (SaveHalt).
	Halt *Halt
}

// Halt is the record of a daemon that stays stopped on an error a restart
// cannot fix (see pipeline): `replicator status` shows it until a daemon
// streams again.
type Halt struct {
	Reason string
	Error  string
	Since  time.Time
}

// SaveHalt records that the daemon stopped for h. A later progress report
// (SaveProgress, from a daemon that streams again) supersedes it.
func (s *Store) SaveHalt(ctx context.Context, h Halt) error {
	err := s.client.Insert(ctx, s.client.DB().Insert(ddl.ProgressTable, []string{"slot", "updated_us", "oldest_unstored_us", "halt_reason", "halt_error"}),
		[]any{s.slot, uint64(h.Since.UnixMicro()), uint64(0), h.Reason, h.Error})
	if err != nil {
		return fmt.Errorf("record the halt of slot %s: %w", s.slot, err)
	}
	return nil
}

// SaveProgress records the oldest unstored commit time (zero: none).
func (s *Store) SaveProgress(ctx context.Context, oldestUnstored time.Time) error {
	var us uint64
	if !oldestUnstored.IsZero() {
		us = uint64(oldestUnstored.UnixMicro())
	}
	err := s.client.Insert(ctx, s.client.DB().Insert(ddl.ProgressTable, []string{"slot", "updated_us", "oldest_unstored_us"}),
		[]any{s.slot, uint64(time.Now().UnixMicro()), us})
	if err != nil {
		return fmt.Errorf("save progress of slot %s: %w", s.slot, err)
	}
	return nil
}

// LoadProgress returns the newest progress report; found is false when none.
// A table an earlier version made (a daemon not yet upgraded) has no halts.
func (s *Store) LoadProgress(ctx context.Context) (p Progress, found bool, err error) {
	have, err := s.client.Schema(ctx, ddl.ProgressTable)
	if err != nil {
		return Progress{}, false, fmt.Errorf("load progress of slot %s: %w", s.slot, err)
	}
	halt := "halt_reason, halt_error"
	if !slices.Contains(have.Names, "halt_reason") {
		halt = "'', ''"
	}
	rows, err := s.client.Query(ctx, fmt.Sprintf(
		"SELECT updated_us, oldest_unstored_us, %s FROM %s WHERE slot = ? ORDER BY updated_us DESC LIMIT 1",
		halt, s.client.DB().Table(ddl.ProgressTable)), s.slot)
	if err != nil {
		return Progress{}, false, fmt.Errorf("load progress of slot %s: %w", s.slot, err)
	}
	if len(rows) == 0 {
		return Progress{}, false, nil
	}
	p.Updated = time.UnixMicro(int64(rows[0][0].(uint64)))
	if us := rows[0][1].(uint64); us > 0 {
		p.OldestUnstored = time.UnixMicro(int64(us))
	}
	if reason := rows[0][2].(string); reason != "" {
		p.Halt = &Halt{Reason: reason, Error: rows[0][3].(string), Since: p.Updated}
	}
	return p, true, nil
}

// Truncation is the position of a TRUNCATE of a source table: the commit
// LSN of its transaction and its WAL position in it. Every change of the
// table below it is gone from ClickHouse.
type Truncation struct {
	Version, Seq uint64
}

// Covers reports whether the change at (version, seq) precedes the
// truncation: a replay must not write it.
func (t Truncation) Covers(version, seq uint64) bool {
	return version < t.Version || version == t.Version && seq < t.Seq
}

// SaveTruncation records a truncation of the source table before the
// target is emptied. It returns only after ClickHouse acknowledged it.
func (s *Store) SaveTruncation(ctx context.Context, source string, tr Truncation) error {
	err := s.client.Insert(ctx, s.client.DB().Insert(ddl.TruncationTable, []string{"slot", "source", "version", "seq", "written_at"}),
		[]any{s.slot, source, tr.Version, tr.Seq, time.Now().UTC()})
	if err != nil {
		return fmt.Errorf("save truncation of %s at %s: %w", source, pglogrepl.LSN(tr.Version), err)
	}
	return nil
}

// LoadTruncations returns the newest truncation of each source table.
func (s *Store) LoadTruncations(ctx context.Context) (map[string]Truncation, error) {
	rows, err := s.client.Query(ctx, fmt.Sprintf(
		"SELECT source, argMax(version, (version, seq)), argMax(seq, (version, seq)) FROM %s WHERE slot = ? GROUP BY source",
		s.client.DB().Table(ddl.TruncationTable)), s.slot)
	if err != nil {
		return nil, fmt.Errorf("load truncations of slot %s: %w", s.slot, err)
	}
	out := make(map[string]Truncation, len(rows))
	for _, r := range rows {
		out[r[0].(string)] = Truncation{Version: r[1].(uint64), Seq: r[2].(uint64)}
	}
	return out, nil
}

// DeleteTruncations removes the truncations of the slot (when the slot is
// recreated and every table copied again). It waits until the deletion, a
// ClickHouse mutation, is visible: a truncation of the former slot's
// history left behind would cover the new one's changes below it.
func (s *Store) DeleteTruncations(ctx context.Context) error {
	return s.mutate(ctx, "delete truncations of slot "+s.slot, ddl.TruncationTable, "version", s.client.DB().DeleteTruncations(),
		[]any{s.slot}, func() (bool, error) {
			left, err := s.LoadTruncations(ctx)
			return len(left) == 0, err
		})
}

// SaveColumns records the columns of the newest Relation message of a
// source table that rows were written with.
func (s *Store) SaveColumns(ctx context.Context, source string, columns []string) error {
	err := s.client.Insert(ctx, s.client.DB().Insert(ddl.ColumnTable, []string{"slot", "source", "columns", "updated"}),
		[]any{s.slot, source, columns, uint64(time.Now().UnixNano())})
	if err != nil {
		return fmt.Errorf("save the columns of %s: %w", source, err)
	}
	return nil
}

// LoadColumns returns the recorded columns of each source table.
func (s *Store) LoadColumns(ctx context.Context) (map[string][]string, error) {
	rows, err := s.client.Query(ctx, fmt.Sprintf("SELECT source, argMax(columns, updated) FROM %s WHERE slot = ? GROUP BY source",
		s.client.DB().Table(ddl.ColumnTable)), s.slot)
	if err != nil {
		return nil, fmt.Errorf("load the columns of slot %s: %w", s.slot, err)
	}
	out := make(map[string][]string, len(rows))
	for _, r := range rows {
		out[r[0].(string)] = r[1].([]string)
	}
	return out, nil
}

// SaveStorage records the storage of a source table that its ClickHouse
// rows agree with (see postgres.Storage): that of a copy's snapshot, or
// of the catalog once the daemon found no value in doubt. It returns only
// after ClickHouse acknowledged the INSERT.
func (s *Store) SaveStorage(ctx context.Context, source string, st postgres.Storage) error {
	doc, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("save the storage of %s: %w", source, err)
	}
	err = s.client.Insert(ctx, s.client.DB().Insert(ddl.StorageTable, []string{"slot", "source", "storage", "updated"}),
		[]any{s.slot, source, string(doc), uint64(time.Now().UnixNano())})
	if err != nil {
		return fmt.Errorf("save the storage of %s: %w", source, err)
	}
	return nil
}

// LoadStorage returns the recorded storage of each source table; a table
// without a record (set up by an earlier version) is absent.
func (s *Store) LoadStorage(ctx context.Context) (map[string]postgres.Storage, error) {
	rows, err := s.client.Query(ctx, fmt.Sprintf("SELECT source, argMax(storage, updated) FROM %s WHERE slot = ? GROUP BY source",
		s.client.DB().Table(ddl.StorageTable)), s.slot)
	if err != nil {
		return nil, fmt.Errorf("load the storage records of slot %s: %w", s.slot, err)
	}
	out := make(map[string]postgres.Storage, len(rows))
	for _, r := range rows {
		var st postgres.Storage
		if err := json.Unmarshal([]byte(r[1].(string)), &st); err != nil {
			return nil, fmt.Errorf("load the storage record of %s: %w", r[0].(string), err)
		}
		out[r[0].(string)] = st
	}
	return out, nil
}

// Sync makes the reads that follow see every write to the replicator's own
// tables acknowledged before it, on a cluster whose nodes replicate them
// (sink.Client.SyncReplica): a stale checkpoint would stop the daemon as
// "behind the slot", a missed truncation would write rows it emptied back,
// a missed copy state would hold or copy again.
func (s *Store) Sync(ctx context.Context) error {
	for _, t := range []string{ddl.CheckpointTable, ddl.TruncationTable, ddl.ChunkTable, ddl.ColumnTable, ddl.StorageTable, ddl.RecoveryTable} {
		if err := s.client.SyncReplica(ctx, t); err != nil {
			return err
		}
	}
	return nil
}

// EnsureTables creates the replicator's own tables in ClickHouse, and
// brings those an earlier version made up to date.
func EnsureTables(ctx context.Context, client *sink.Client) error {
	db := client.DB()
	for _, stmt := range db.CreateOwnTables() {
		if err := client.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("create the replicator's tables: %w", err)
		}
	}
	cps, err := client.Schema(ctx, ddl.CheckpointTable)
	if err != nil {
		return err
	}
	if !slices.Contains(cps.Names, "epoch") {
		if err := client.Exec(ctx, db.AddCheckpointEpoch()); err != nil {
			if now, serr := client.Schema(ctx, ddl.CheckpointTable); serr != nil || !slices.Contains(now.Names, "epoch") {
				return fmt.Errorf("add column epoch to %s: %w", ddl.CheckpointTable, err)
			}
		}
	}
	for _, t := range []struct {
		name  string
		added [][2]string
		add   func(name, definition string) string
	}{
		{ddl.CheckpointTable, ddl.CheckpointColumnsAdded, db.AddCheckpointColumn},
		{ddl.ProgressTable, ddl.ProgressColumnsAdded, db.AddProgressColumn},
		{ddl.ChunkTable, ddl.ChunkColumnsAdded, db.AddChunkColumn},
	} {
		if err := addColumns(ctx, client, t.name, t.added, t.add); err != nil {
			return err
		}
	}
	return nil
}

// addColumns adds to table the columns of added (name, definition) that
// an earlier version made it without, with the statements add returns.
func addColumns(ctx context.Context, client *sink.Client, table string, added [][2]string,
	add func(name, definition string) string) error {
	have, err := client.Schema(ctx, table)
	if err != nil {
		return err
	}
	for _, col := range added {
		if !slices.Contains(have.Names, col[0]) {
			if err := client.Exec(ctx, add(col[0], col[1])); err != nil {
				// Another process (a status, a setup) that connected at the
				// same moment may have added it.
				if now, serr := client.Schema(ctx, table); serr == nil && slices.Contains(now.Names, col[0]) {
					continue
				}
				return fmt.Errorf("add column %s to %s: %w", col[0], table, err)
			}
		}
	}
	return nil
}
