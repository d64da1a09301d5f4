package compact

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pglogrepl"

	"github.com/replicator/replicator/checkpoint"
	"github.com/replicator/replicator/config"
	"github.com/replicator/replicator/ddl"
	"github.com/replicator/replicator/mapping"
	"github.com/replicator/replicator/sink"
)

// Options select what Run compacts and how long it waits.
type Options struct {
	// Table, when set, is the one configured source table to compact.
	Table string
	// Wait bounds the wait for ClickHouse to apply a compaction's
	// mutation (default 10 minutes); one still running then is reported
	// pending, and the next compaction takes its table over.
	Wait time.Duration
}

// Report is what a compaction did to one table.
type Report struct {
	Table, Target string
	// Skipped says why the table was not compacted; empty when it was.
	Skipped string
	// Bound is the checkpoint: only rows at versions below Bound − 1 are
	// removed.
	Bound pglogrepl.LSN
	// Places is the number of places (keys) whose rows were removed, and
	// Rows the number of rows removed.
	Places, Rows uint64
	// Pending is set when the mutation was still running after
	// Options.Wait.
	Pending bool
}

// Line renders the report as one line for the command's output.
func (r Report) Line() string {
	switch {
	case r.Skipped != "":
		return fmt.Sprintf("%s: SKIPPED (%s)", r.Table, r.Skipped)
	case r.Pending:
		return fmt.Sprintf("%s: PENDING %d rows of %d deleted keys below %s are being removed by ClickHouse (a mutation)",
			r.Table, r.Rows, r.Places, r.Bound)
	case r.Rows == 0:
		return fmt.Sprintf("%s: OK no deleted key below %s", r.Table, r.Bound)
	}
	return fmt.Sprintf("%s: COMPACTED %d rows of %d deleted keys below %s", r.Table, r.Rows, r.Places, r.Bound)
}

// Run compacts the configured tables (or opt.Table) of cfg once.
func Run(ctx context.Context, cfg config.Config, opt Options, log hclog.Logger) ([]Report, error) {
	if opt.Wait <= 0 {
		opt.Wait = 10 * time.Minute
	}
	client, err := sink.Open(ctx, cfg.ClickHouse)
	if err != nil {
		return nil, err
	}
	defer client.Close()
	if err := client.CheckWritable(); err != nil {
		return nil, err
	}
	c := &compactor{ch: client, db: client.DB(), store: checkpoint.NewStore(client, cfg.Postgres.Slot), slot: cfg.Postgres.Slot,
		opt: opt, log: log}
	if err := c.dropLeftovers(ctx); err != nil {
		return nil, err
	}
	// One table's failure does not keep the others from compaction.
	var reports []Report
	var errs []error
	for _, tc := range cfg.Tables {
		if opt.Table != "" && opt.Table != tc.Name {
			continue
		}
		r, err := c.table(ctx, tc)
		if err != nil {
			if ctx.Err() != nil {
				return reports, err
			}
			errs = append(errs, fmt.Errorf("compact %s: %w", tc.Name, err))
			continue
		}
		reports = append(reports, r)
	}
	return reports, errors.Join(errs...)
}

type compactor struct {
	ch    *sink.Client
	db    ddl.Database
	store *checkpoint.Store
	slot  string
	opt   Options
	log   hclog.Logger
}

// table compacts one table.
func (c *compactor) table(ctx context.Context, tc config.Table) (Report, error) {
	r := Report{Table: tc.Name, Target: tc.Target}
	if tc.Mode == mapping.ModeHistory {
		r.Skipped = "a history table keeps every change"
		return r, nil
	}
	schema, err := c.ch.Schema(ctx, tc.Target)
	if err != nil {
		return r, err
	}
	if !schema.Exists() {
		r.Skipped = "its target " + tc.Target + " does not exist: run `replicator setup`"
		return r, nil
	}
	if err := c.store.Sync(ctx); err != nil {
		return r, err
	}
	pos, found, err := c.store.Load(ctx)
	if err != nil {
		return r, err
	}
	if !found {
		r.Skipped = "slot " + c.slot + " has no checkpoint: run `replicator setup`"
		return r, nil
	}
	r.Bound = pos.LSN
	epoch := pos.History.Epoch
	rec, found, err := c.store.LoadRecovery(ctx)
	if err != nil {
		return r, err
	}
	if found && rec.Pending(epoch) {
		r.Skipped = "a recovery is under way; compact after it"
		return r, nil
	}
	chunks, err := c.store.LoadChunks(ctx)
	if err != nil {
		return r, err
	}
	if own := chunks[tc.Name]; checkpoint.Into(own, tc.Target) && checkpoint.Horizon(own) == 0 {
		r.Skipped = "its copy is under way: run `replicator setup` to complete it"
		return r, nil
	}

	// The rows to remove: every row below the bound of each place whose
	// newest row is a tombstone below the bound. Versions below the bound
	// are final: the stream writes only transactions the checkpoint does
	// not cover (at versions of at least the bound), a copy writes at the
	// version below its snapshot, taken after the checkpoint, and a
	// recovery (a history whose positions may be lower) writes a new
	// table, with the guard below keeping the mutations off it.
	bound := uint64(pos.LSN)
	name := c.tableName()
	key := ddl.KeyText(schema.SortingKey, schema.PartitionKey)
	if err := c.ch.Exec(ctx, c.db.CreateCompactionTable(name)); err != nil {
		return r, fmt.Errorf("create %s: %w", name, err)
	}
	fillSettings, mutationSettings, why, err := c.replicas(ctx, c.db.Storage(tc.Target), name)
	if err == nil && why != "" {
		err = errors.New(why)
	}
	if err != nil {
		return r, c.dropAfter(ctx, name, err)
	}
	fill := c.db.FindCompaction(name, tc.Target, key, bound)
	// Every replica of the target reads the rows to remove from its own
	// node's copy of the table: the INSERT returns once every one has it.
	if err := c.ch.ExecWith(ctx, fillSettings, fill); err != nil {
		return r, c.dropAfter(ctx, name, fmt.Errorf("find the deleted keys of %s below %s: %w", tc.Target, pos.LSN, err))
	}
	counts, err := c.ch.Query(ctx, fmt.Sprintf("SELECT count(), uniqExact(key) FROM %s", c.db.Table(name)))
	if err != nil {
		return r, c.dropAfter(ctx, name, err)
	}
	r.Rows, r.Places = counts[0][0].(uint64), counts[0][1].(uint64)
	if r.Rows == 0 {
		return r, c.dropAfter(ctx, name, nil)
	}
	// Neither a recovery nor a setup that starts over has begun when
	// ClickHouse mutates a part: their tables' versions may be lower than
	// the bound.
	guard := c.db.CompactionGuard(c.slot, epoch, bound)
	c.log.Info("removing the rows of deleted keys", "table", tc.Name, "rows", r.Rows, "keys", r.Places, "below", pos.LSN.String())
	// ClickHouse applies a mutation part by part, and readers see each
	// part as it is done. The rows that are not tombstones go first, while
	// each key's tombstone, its newest row, still hides them; the
	// tombstones go once no other row of their keys is left.
	for _, step := range []struct{ what, cond string }{
		{"the rows of deleted keys", "_deleted = 0"},
		{"the tombstones of deleted keys", "1"},
	} {
		if err := c.ch.ExecWith(ctx, mutationSettings, c.db.Compact(tc.Target, key, name, step.cond+" AND "+guard)); err != nil {
			// (The table stays: a mutation submitted on some node may read
			// it. A later compaction drops it when none does.)
			return r, fmt.Errorf("remove %s from %s: %w", step.what, tc.Target, err)
		}
		done, err := c.waitMutations(ctx, name, c.opt.Wait)
		if err != nil {
			return r, err
		}
		if !done {
			r.Pending = true
			return r, nil
		}
		left, err := c.ch.Query(ctx, fmt.Sprintf("SELECT count() FROM %s WHERE (%s, _version) GLOBAL IN (SELECT key, version FROM %s) AND %s",
			c.db.Table(tc.Target), key, c.db.Table(name), step.cond))
		if err != nil {
			return r, err
		}
		if n := left[0][0].(uint64); n > 0 {
			// The guard stopped the mutation: a recovery or setup began.
			return r, c.dropAfter(ctx, name, fmt.Errorf("%d of %s to remove from %s are still there: "+
				"a recovery or a setup began during the compaction; compact again after it", n, step.what, tc.Target))
		}
	}
	return r, c.dropAfter(ctx, name, nil)
}

// replicas decides, for a target whose storage (name) is replicated, the
// per-query settings that keep its replicas from removing a tombstone
// before the other rows of its key: the rows to remove are written with a
// quorum of every replica of the compaction table rows, and each mutation
// returns once every replica of the target applied it (mutations_sync =
// 2). A server without mutations_sync (18.16) cannot wait for the
// replicas of a mutation: it returns why compaction cannot run.
func (c *compactor) replicas(ctx context.Context, storage, rows string) (fill, mutation map[string]any, why string, err error) {
	engine, err := c.ch.Query(ctx, "SELECT engine FROM system.tables WHERE database = ? AND name = ?", c.db.Name, storage)
	if err != nil {
		return nil, nil, "", err
	}
	if len(engine) == 0 || !strings.HasPrefix(engine[0][0].(string), "Replicated") && !strings.HasPrefix(engine[0][0].(string), "Shared") {
		return nil, nil, "", nil
	}
	have := map[string]bool{}
	for name := range c.ch.Server().Settings {
		have[name] = true
	}
	if mutation = mutationSettings(have); mutation == nil {
		return nil, nil, fmt.Sprintf("its target is replicated (%s), and compaction needs the setting mutations_sync, which "+
			"ClickHouse %s lacks, to wait for every replica to apply a mutation: upgrade ClickHouse", engine[0][0], c.ch.Version()), nil
	}
	total, err := c.ch.Query(ctx, "SELECT total_replicas FROM system.replicas WHERE database = ? AND table = ?", c.db.Name, rows)
	if err != nil {
		return nil, nil, "", err
	}
	if len(total) > 0 && total[0][0].(uint8) > 1 {
		fill = map[string]any{"insert_quorum": int(total[0][0].(uint8))}
	}
	return fill, mutation, "", nil
}

// mutationSettings returns the per-query settings of a compaction's
// mutations of a replicated target, given the settings the server has; nil
// when it cannot wait for every replica. A replicated table refuses a
// mutation with a subquery unless allow_nondeterministic_mutations: each
// replica would read it again. Here the subquery reads a table that no
// one changes while the mutation runs (the rows to remove, written to
// every replica first) and the guard, which only turns false once.
func mutationSettings(have map[string]bool) map[string]any {
	if !have["mutations_sync"] {
		return nil
	}
	out := map[string]any{"mutations_sync": 2}
	if have["allow_nondeterministic_mutations"] {
		out["allow_nondeterministic_mutations"] = 1
	}
	return out
}

// tableName names a new compaction table of the slot: its creation time
// in the name lets dropLeftovers tell old ones.
func (c *compactor) tableName() string {
	return fmt.Sprintf("%s%s_%d", ddl.CompactionPrefix, c.slot, time.Now().UnixNano())
}

// leftoverAge is the age from which a compaction table no mutation needs
// is dropped by a later compaction: a compaction still filling its table,
// or about to submit its mutation, is younger.
const leftoverAge = time.Hour

// dropLeftovers drops the compaction tables of the slot that compactions
// killed or timed out left, once no unfinished mutation reads them: a
// mutation whose table is gone would fail at every part, for ever.
func (c *compactor) dropLeftovers(ctx context.Context) error {
	prefix := ddl.CompactionPrefix + c.slot + "_"
	rows, err := c.ch.Query(ctx, "SELECT name FROM system.tables WHERE database = ? AND startsWith(name, ?)", c.db.Name, prefix)
	if err != nil {
		return err
	}
	for _, row := range rows {
		name := row[0].(string)
		made, err := strconv.ParseInt(strings.TrimPrefix(name, prefix), 10, 64)
		if err != nil || time.Since(time.Unix(0, made)) < leftoverAge {
			continue
		}
		done, err := c.waitMutations(ctx, name, 0)
		if err != nil {
			return err
		}
		if done {
			if err := c.drop(ctx, name); err != nil {
				return err
			}
		}
	}
	return nil
}

// waitMutations waits at most wait until no unfinished mutation reads the
// compaction table name, on any node of a cluster; it reports whether
// none does.
func (c *compactor) waitMutations(ctx context.Context, name string, wait time.Duration) (bool, error) {
	from := "system.mutations"
	if c.db.Cluster != "" {
		from = "cluster(" + literal(c.db.Cluster) + ", system.mutations)"
	}
	q := fmt.Sprintf("SELECT count() FROM %s WHERE database = ? AND is_done = 0 AND position(command, ?) > 0", from)
	deadline := time.Now().Add(wait)
	for {
		rows, err := c.ch.Query(ctx, q, c.db.Name, name)
		if err != nil {
			return false, fmt.Errorf("read the state of the mutations: %w", err)
		}
		if rows[0][0].(uint64) == 0 {
			return true, nil
		}
		if time.Now().After(deadline) {
			return false, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// dropAfter drops the compaction table name, which no mutation reads, and
// returns err (or the drop's error).
func (c *compactor) dropAfter(ctx context.Context, name string, err error) error {
	if derr := c.drop(ctx, name); err == nil {
		return derr
	}
	return err
}

func (c *compactor) drop(ctx context.Context, name string) error {
	if err := c.ch.Exec(ctx, c.db.Drop(name)); err != nil {
		return fmt.Errorf("drop %s: %w", name, err)
	}
	return nil
}

func literal(s string) string { return ddl.Literal(s, mapping.Type{Kind: mapping.KindString}) }
