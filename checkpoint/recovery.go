package checkpoint

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/replicator/replicator/ddl"
)

// Recovery is the state of a recovery: every configured table copied
// again, into a new table swapped in when its copy is complete, from the
// snapshot of a new slot, whose positions start history epoch Epoch.
type Recovery struct {
	Epoch uint32
	// Reason says why (a history.Break's reason, or "requested").
	Reason string
	// Load is the new slot's consistent point; zero until it is made.
	Load    pglogrepl.LSN
	Started time.Time
	// Tables and TablesDone count the tables and those swapped in.
	Tables, TablesDone int
	Finished           bool
}

// Pending reports whether the recovery is under way for a checkpoint of
// history epoch epoch: it starts a later epoch and has not finished.
func (r Recovery) Pending(epoch uint32) bool { return !r.Finished && r.Epoch > epoch }

// SaveRecovery records the state of a recovery. It returns only after
// ClickHouse acknowledged it.
func (s *Store) SaveRecovery(ctx context.Context, r Recovery) error {
	var finished uint8
	if r.Finished {
		finished = 1
	}
	err := s.client.Insert(ctx, s.client.DB().Insert(ddl.RecoveryTable,
		[]string{"slot", "epoch", "reason", "load_lsn", "started", "tables", "tables_done", "finished", "updated"}),
		[]any{s.slot, r.Epoch, r.Reason, uint64(r.Load), r.Started.UTC(), uint32(r.Tables), uint32(r.TablesDone), finished,
			uint64(time.Now().UnixNano())})
	if err != nil {
		return fmt.Errorf("save the state of the recovery of slot %s: %w", s.slot, err)
	}
	return nil
}

// LoadRecovery returns the newest recovery of the slot; found is false
// when there was none.
func (s *Store) LoadRecovery(ctx context.Context) (r Recovery, found bool, err error) {
	rows, err := s.client.Query(ctx, fmt.Sprintf(
		"SELECT epoch, reason, load_lsn, started, tables, tables_done, finished FROM %s WHERE slot = ? "+
			"ORDER BY epoch DESC, updated DESC LIMIT 1", s.client.DB().Table(ddl.RecoveryTable)), s.slot)
	if err != nil {
		return Recovery{}, false, fmt.Errorf("load the recovery state of slot %s: %w", s.slot, err)
	}
	if len(rows) == 0 {
		return Recovery{}, false, nil
	}
	x := rows[0]
	return Recovery{Epoch: x[0].(uint32), Reason: x[1].(string), Load: pglogrepl.LSN(x[2].(uint64)), Started: x[3].(time.Time),
		Tables: int(x[4].(uint32)), TablesDone: int(x[5].(uint32)), Finished: x[6].(uint8) == 1}, true, nil
}
