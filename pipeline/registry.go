package pipeline

import (
	"context"
	"errors"
	"fmt"
	"github.com/jackc/pglogrepl"

	"github.com/replicator/replicator/checkpoint"
	"github.com/replicator/replicator/config"
	"github.com/replicator/replicator/mapping"
	"github.com/replicator/replicator/replication"
	"github.com/replicator/replicator/sink"
)

// registry knows the configured tables: it binds each Relation message of
// the stream to its table by relation id, resolves the mapping from the
// columns the message carries, checks it against the ClickHouse target,
// and keeps each table's newest truncation.
type registry struct {
	caps    mapping.Caps
	index   map[string]int // source name -> table index
	specs   []mapping.TableSpec
	tables  []*mapping.Table
	targets []sink.Schema
	rels    map[uint32]int                // relation id -> table index, -1 for unconfigured
	pending map[int]*replication.Relation // table index -> Relation not yet resolved
	cuts    map[int]checkpoint.Truncation // table index -> newest truncation
	// horizons holds, per table index, the position below which changes
	// write only their tombstones (see checkpoint.Horizon).
	horizons map[int]pglogrepl.LSN
}

// loadRegistry reads the ClickHouse target of every configured table and
// the truncations that a replay must respect.
func loadRegistry(ctx context.Context, tables []config.Table, client *sink.Client, store *checkpoint.Store) (*registry, error) {
	targets := make([]sink.Schema, len(tables))
	for i, tc := range tables {
		schema, err := client.Schema(ctx, tc.Target)
		if err != nil {
			return nil, fmt.Errorf("read ClickHouse table %s: %w", tc.Target, err)
		}
		if !schema.Exists() {
			return nil, fmt.Errorf("ClickHouse table %s.%s does not exist: run `replicator setup`", client.DB().Name, tc.Target)
		}
		targets[i] = schema
	}
	r := newRegistry(tables, targets, client.Caps())
	cuts, err := store.LoadTruncations(ctx)
	if err != nil {
		return nil, err
	}
	for source, tr := range cuts {
		if idx, ok := r.index[source]; ok {
			r.cuts[idx] = tr
		}
	}
	chunks, err := store.LoadChunks(ctx)
	if err != nil {
		return nil, err
	}
	for source, cs := range chunks {
		if idx, ok := r.index[source]; ok {
			r.horizons[idx] = checkpoint.Horizon(cs)
		}
	}
	return r, nil
}

func newRegistry(tables []config.Table, targets []sink.Schema, caps mapping.Caps) *registry {
	r := &registry{caps: caps, index: map[string]int{}, targets: targets, rels: map[uint32]int{},
		pending: map[int]*replication.Relation{}, cuts: map[int]checkpoint.Truncation{},
		horizons: map[int]pglogrepl.LSN{}}
	for i, tc := range tables {
		r.index[tc.Name] = i
		r.specs = append(r.specs, tc.Spec())
		// Until the Relation message arrives, the table is known by its spec only.
		r.tables = append(r.tables, &mapping.Table{Source: tc.Name, Target: tc.Target, OrderBy: tc.OrderBy, PartitionBy: tc.PartitionBy})
	}
	return r
}

// bind records a Relation message. Its mapping is resolved and checked
// only when a change that is written needs it (table): a Relation sent in
// a transaction the checkpoint covers may describe a schema the target no
// longer has.
func (r *registry) bind(rel *replication.Relation) {
	idx, ok := r.index[rel.QualifiedName()]
	if !ok {
		r.rels[rel.ID] = -1
		return
	}
	r.rels[rel.ID] = idx
	r.pending[idx] = rel
}

// lookup returns the table index of a relation (-1: not configured); an
// error when no Relation message announced it.
func (r *registry) lookup(relID uint32) (int, error) {
	idx, ok := r.rels[relID]
	if !ok {
		return 0, fmt.Errorf("change of relation %d before its Relation message", relID)
	}
	return idx, nil
}

// table returns the index and mapping of the relation of a change that is
// written (-1: not configured), first resolving and checking a Relation
// message received since the last call; fresh reports that it did.
func (r *registry) table(relID uint32) (idx int, t *mapping.Table, fresh bool, err error) {
	idx, err = r.lookup(relID)
	if err != nil || idx < 0 {
		return idx, nil, false, err
	}
	rel, ok := r.pending[idx]
	if !ok {
		return idx, r.tables[idx], false, nil
	}
	t, err = mapping.Resolve(r.specs[idx], rel.Columns, r.caps)
	if err != nil {
		return 0, nil, false, fmt.Errorf("schema of %s changed: %w", rel.QualifiedName(), err)
	}
	if err := r.targets[idx].Check(t); errors.Is(err, sink.ErrNoSeq) {
		return 0, nil, false, err
	} else if err != nil {
		return 0, nil, false, fmt.Errorf("schema of %s changed: %w; alter the ClickHouse table to match, then restart", rel.QualifiedName(), err)
	}
	if err := t.CheckIdentity(); err != nil {
		return 0, nil, false, err
	}
	r.tables[idx] = t
	delete(r.pending, idx)
	return idx, t, true, nil
}
