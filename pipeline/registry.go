package pipeline

import (
	"context"
	"fmt"

	"github.com/replicator/replicator/config"
	"github.com/replicator/replicator/mapping"
	"github.com/replicator/replicator/replication"
	"github.com/replicator/replicator/sink"
)

// registry knows the configured tables: it binds each Relation message of
// the stream to its table by relation id, resolves the mapping from the
// columns the message carries, and checks it against the ClickHouse target.
type registry struct {
	caps    mapping.Caps
	index   map[string]int // source name -> table index
	specs   []mapping.TableSpec
	tables  []*mapping.Table
	targets []sink.Schema
	rels    map[uint32]int // relation id -> table index, -1 for unconfigured
}

// loadRegistry reads the ClickHouse target of every configured table.
func loadRegistry(ctx context.Context, tables []config.Table, client *sink.Client) (*registry, error) {
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
	return newRegistry(tables, targets, client.Caps()), nil
}

func newRegistry(tables []config.Table, targets []sink.Schema, caps mapping.Caps) *registry {
	r := &registry{caps: caps, index: map[string]int{}, targets: targets, rels: map[uint32]int{}}
	for i, tc := range tables {
		r.index[tc.Name] = i
		r.specs = append(r.specs, tc.Spec())
		// Until the Relation message arrives, the table is known by its spec only.
		r.tables = append(r.tables, &mapping.Table{Source: tc.Name, Target: tc.Target, OrderBy: tc.OrderBy, PartitionBy: tc.PartitionBy})
	}
	return r
}

// bind records a Relation message. It returns the index and new mapping of
// a configured table, or -1 for a relation the replicator does not copy.
func (r *registry) bind(rel *replication.Relation) (int, *mapping.Table, error) {
	idx, ok := r.index[rel.QualifiedName()]
	if !ok {
		r.rels[rel.ID] = -1
		return -1, nil, nil
	}
	t, err := mapping.Resolve(r.specs[idx], rel.Columns, r.caps)
	if err != nil {
		return 0, nil, fmt.Errorf("schema of %s changed: %w", rel.QualifiedName(), err)
	}
	if err := r.targets[idx].Check(t); err != nil {
		return 0, nil, fmt.Errorf("schema of %s changed: %w; alter the ClickHouse table to match, then restart", rel.QualifiedName(), err)
	}
	if err := t.CheckIdentity(); err != nil {
		return 0, nil, err
	}
	r.tables[idx] = t
	r.rels[rel.ID] = idx
	return idx, t, nil
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
