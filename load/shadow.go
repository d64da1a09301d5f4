package load

import (
	"context"
	"fmt"

	"github.com/replicator/replicator/ddl"
	"github.com/replicator/replicator/mapping"
	"github.com/replicator/replicator/sink"
)

// newShadow makes the shadow of t (ddl.ShadowName), the new, empty table
// that a copy of t fills before it takes the target's place (an earlier
// one, of a copy that did not finish, is dropped first), and returns the
// table the copy writes. On a cluster its local tables are replicated
// under a ZooKeeper path of their own (ddl.Database.CreateShadow).
func newShadow(ctx context.Context, client *sink.Client, t *mapping.Table) (*mapping.Table, error) {
	db := client.DB()
	shadow := *t
	shadow.Target = ddl.ShadowName(t.Target)
	token, err := client.ShadowToken(ctx, t)
	if err != nil {
		return nil, fmt.Errorf("make ClickHouse table %s for the new copy of %s: %w", shadow.Target, t.Source, err)
	}
	stmts := append(db.DropTarget(shadow.Target), db.CreateShadow(t, token)...)
	if err := execAll(ctx, client, stmts); err != nil {
		return nil, fmt.Errorf("make ClickHouse table %s for the new copy of %s: %w", shadow.Target, t.Source, err)
	}
	return &shadow, nil
}

// dropTarget drops the target-shaped table name if it exists, and on a
// cluster its local tables.
func dropTarget(ctx context.Context, client *sink.Client, name string) error {
	if err := execAll(ctx, client, client.DB().DropTarget(name)); err != nil {
		return fmt.Errorf("drop ClickHouse table %s: %w", name, err)
	}
	return nil
}

// execAll runs stmts in order, up to the first error.
func execAll(ctx context.Context, client *sink.Client, stmts []string) error {
	for _, stmt := range stmts {
		if err := client.Exec(ctx, stmt); err != nil {
			return err
		}
	}
	return nil
}
