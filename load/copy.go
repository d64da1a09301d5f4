package load

import (
	"context"

	"github.com/jackc/pglogrepl"

	"github.com/replicator/replicator/mapping"
	"github.com/replicator/replicator/postgres"
	"github.com/replicator/replicator/sink"
)

// copyTable copies a table's rows inside the exported snapshot, with the
// slot's consistent point as version.
func copyTable(ctx context.Context, pg *postgres.Conn, snapshot string, t *mapping.Table, idx int, w *sink.Writer,
	version pglogrepl.LSN, maxRows int) (int, error) {
	snap, err := pg.BeginSnapshot(ctx, snapshot)
	if err != nil {
		return 0, err
	}
	defer snap.Close()
	cols := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		cols[i] = c.Name
	}
	n := len(t.Columns)
	count := 0
	err = snap.Rows(ctx, t.Source, cols, "", func(vals []mapping.Value) error {
		row := make([]any, n+2)
		if _, err := t.Row(vals, row, nil); err != nil {
			return mapping.NewRowError(t, vals, version, err)
		}
		row[n], row[n+1] = uint64(version), uint8(0)
		w.Put(idx, t.KeyString(row), row)
		count++
		if w.Rows() >= maxRows {
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
