package verify

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/replicator/replicator/mapping"
	"github.com/replicator/replicator/replication"
)

// Repair is what verify --repair changed in one table.
type Repair struct {
	// Snapshot is the consistent point S of the repair's snapshot (of the
	// last batch); the rows written have version S − 1.
	Snapshot pglogrepl.LSN
	// Groups are the first sorting column's values whose rows were copied
	// again.
	Groups []string
	// Inserted, Replaced and Removed count keys that were missing, held
	// other values, or were live in ClickHouse only (now a tombstone);
	// Rewritten counts keys of those groups that were equal and were
	// written again.
	Inserted, Replaced, Removed, Rewritten uint64
	// Purged counts the stored rows at or above the purge bound that the
	// repair's mutation deleted (as counted just before it).
	Purged uint64
	// FirstKeys holds the first keys of each kind (inserted, replaced,
	// removed).
	FirstKeys map[string][]string
}

// repairBatch bounds the groups repaired in one snapshot.
const repairBatch = 1000

// mutationWait bounds the wait for a repair's mutation to finish.
const mutationWait = 10 * time.Minute

// repair copies the rows of groups (first sorting column values) again,
// under the live stream, so that ClickHouse holds exactly Postgres' rows of
// them. Per batch of groups, in this order:
//
//  1. B = Postgres' current WAL position.
//  2. A mutation deletes the batch's stored rows with version >= B − 1.
//     ClickHouse applies a mutation only to the rows stored before it was
//     submitted, and no change committed at or after the consistent point
//     S of a slot created after this can have been stored yet.
//  3. A temporary slot is created: S >= B. Its snapshot holds every
//     change committed below S, the stream every change from S on.
//  4. The batch's rows in the snapshot are written with version S − 1,
//     and a tombstone with version S − 1 for every key live in ClickHouse
//     that the snapshot does not hold.
//
// Rows left with a version below B − 1 <= S − 1 lose to the copy; the
// stream's rows of changes from S on, stored after the mutation, win over
// it. See docs/operating.md, "How repair cannot lose a change".
func (v *verifier) repair(ctx context.Context, groups []string) (*Repair, error) {
	if v.cfg.ClickHouse.Cluster != "" {
		return nil, fmt.Errorf("repair is not available on a ClickHouse cluster (clickhouse.cluster) yet: run `replicator resync --table %s`", v.t.Source)
	}
	rp := &Repair{FirstKeys: map[string][]string{}}
	groups = slices.Clone(groups)
	slices.Sort(groups)
	for len(groups) > 0 {
		n := min(len(groups), repairBatch)
		if err := v.repairGroups(ctx, groups[:n], rp); err != nil {
			return rp, fmt.Errorf("repair %s: %w", v.t.Source, err)
		}
		rp.Groups = append(rp.Groups, groups[:n]...)
		groups = groups[n:]
	}
	return rp, nil
}

func (v *verifier) repairGroups(ctx context.Context, groups []string, rp *Repair) error {
	chIn := v.key.chIn(groups, false)
	live := fmt.Sprintf("%s AND %s = 0", chIn, mapping.DeletedColumn)
	before, err := v.chRows(ctx, chIn, live, v.all())
	if err != nil {
		return err
	}
	bound, err := v.pg.CurrentWAL(ctx)
	if err != nil {
		return err
	}
	floor := uint64(bound) - 1
	purge := fmt.Sprintf("%s AND %s >= %d", chIn, mapping.VersionColumn, floor)
	counted, err := v.ch.Query(ctx, fmt.Sprintf("SELECT count() FROM %s WHERE %s", v.target(), purge))
	if err != nil {
		return err
	}
	rp.Purged += counted[0][0].(uint64)
	if err := v.ch.Exec(ctx, fmt.Sprintf("ALTER TABLE %s DELETE WHERE %s", v.target(), purge)); err != nil {
		return fmt.Errorf("delete the stored rows at or above %s: %w", pglogrepl.LSN(floor), err)
	}
	v.log.Info("repair: deleting the stored rows that could outrank the copy", "groups", len(groups), "version_from", floor)

	repl, err := replication.Connect(ctx, v.cfg.Postgres.DSN)
	if err != nil {
		return err
	}
	defer repl.Close(context.Background())
	lsn, name, err := repl.CreateTempSlot(ctx, repairSlot(v.cfg.Postgres.Slot))
	if err != nil {
		return err
	}
	if uint64(lsn) <= floor {
		return fmt.Errorf("the repair snapshot's consistent point %s is not above the purge bound %s", lsn, bound)
	}
	ps, err := v.pg.BeginSnapshot(ctx, name)
	if err != nil {
		return err
	}
	pgRows, err := v.pgRows(ctx, ps, v.key.pgIn(groups, false), v.all())
	ps.Close()
	if err != nil {
		return err
	}
	after, err := v.chRows(ctx, chIn, live, v.all())
	if err != nil {
		return err
	}
	version := uint64(lsn) - 1
	rows := make([][]any, 0, len(pgRows)+len(before))
	note := func(kind, key string) {
		if len(rp.FirstKeys[kind]) < firstKeys {
			rp.FirstKeys[kind] = append(rp.FirstKeys[kind], key)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(pgRows)) {
		pr := pgRows[k]
		row := v.t.NewRow()
		copy(row, pr)
		v.t.SetMeta(row, version, false, 0)
		rows = append(rows, row)
		switch cr, ok := before[k]; {
		case !ok:
			rp.Inserted++
			note("inserted", k)
		case !v.equalRows(pr, cr, v.all()):
			rp.Replaced++
			note("replaced", k)
		default:
			rp.Rewritten++
		}
	}
	maps.Copy(after, before)
	for _, k := range slices.Sorted(maps.Keys(after)) {
		if _, ok := pgRows[k]; ok {
			continue
		}
		cr := after[k]
		tomb := v.t.TombstoneOf(cr)
		for _, i := range v.t.Key {
			tomb[i] = cr[i]
		}
		for _, i := range v.t.PlacedColumns() {
			tomb[i] = cr[i]
		}
		v.t.SetMeta(tomb, version, true, 0)
		rows = append(rows, tomb)
		if _, ok := before[k]; ok {
			rp.Removed++
			note("removed", k)
		}
	}
	crashInRepair()
	if err := v.ch.InsertRows(ctx, v.t, rows); err != nil {
		return err
	}
	rp.Snapshot = lsn
	v.log.Info("repair: wrote the rows of the snapshot", "groups", len(groups), "rows", len(rows), "version", version)
	return v.waitMutations(ctx)
}

// waitMutations waits until ClickHouse finished every mutation of the
// target.
func (v *verifier) waitMutations(ctx context.Context) error {
	deadline := time.Now().Add(mutationWait)
	for {
		rows, err := v.ch.Query(ctx, "SELECT count() FROM system.mutations WHERE database = ? AND table = ? AND is_done = 0",
			v.ch.DB().Name, v.t.Target)
		if err != nil {
			return err
		}
		if rows[0][0].(uint64) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the mutation of %s did not finish within %s (see system.mutations)", v.t.Target, mutationWait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// repairSlot names the temporary slot of a repair.
func repairSlot(slot string) string {
	const suffix = "_repair"
	if len(slot)+len(suffix) > 63 {
		slot = slot[:63-len(suffix)]
	}
	return slot + suffix
}
