package load

import (
	"context"

	"github.com/jackc/pglogrepl"

	"github.com/replicator/replicator/config"
	"github.com/replicator/replicator/mapping"
	"github.com/replicator/replicator/postgres"
	"github.com/replicator/replicator/sink"
)

// copyTable copies a table's rows inside the exported snapshot with the
// given version (the slot's consistent point − 1) and _seq 0.
func copyTable(ctx context.Context, pg *postgres.Conn, snapshot string, t *mapping.Table, idx int, w *sink.Writer,
	version pglogrepl.LSN, b config.Batch) (int, error) {
	snap, err := pg.BeginSnapshot(ctx, snapshot)
	if err != nil {
		return 0, err
	}
	defer snap.Close()
	cols := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		cols[i] = c.Name
	}
	count := 0
	err = snap.Rows(ctx, t.Source, cols, "", func(vals []mapping.Value) error {
		row := t.NewRow()
		if _, err := t.Row(vals, row, nil); err != nil {
			return mapping.NewRowError(t, vals, version, err)
		}
		t.SetMeta(row, uint64(version), false, 0)
		w.Put(idx, t.KeyString(row), row, nil)
		count++
		if rows, bytes, _ := w.Size(); rows >= b.MaxRows || uint64(bytes) >= b.MaxBytes {
			return w.Flush(ctx)
		}
		return nil
	})
	if err != nil {
		return count, err
	}
	if err := w.Flush(ctx); err != nil {
		return count, err
	}
	return count, snap.Commit(ctx)
}
