package load

import (
	"context"
	"fmt"
	"strings"

	"github.com/hashicorp/go-hclog"

	"github.com/replicator/replicator/checkpoint"
	"github.com/replicator/replicator/config"
	"github.com/replicator/replicator/mapping"
	"github.com/replicator/replicator/postgres"
	"github.com/replicator/replicator/replication"
	"github.com/replicator/replicator/sink"
)

// servers are the connections a setup or a resync works over: ClickHouse,
// Postgres over SQL (its settings checked), and a replication connection.
type servers struct {
	ch   *sink.Client
	pg   *postgres.Conn
	repl *replication.Conn
	// publication is the configured publication, whose options decide
	// which columns the stream sends (see postgres.Conn.Columns).
	publication string
}

// openServers connects to both servers and checks Postgres' settings.
func openServers(ctx context.Context, cfg config.Config, log hclog.Logger) (_ *servers, err error) {
	s := &servers{publication: cfg.Postgres.Publication}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if s.ch, err = sink.Open(ctx, cfg.ClickHouse); err != nil {
		return nil, err
	}
	if err := s.ch.CheckWritable(); err != nil {
		return nil, err
	}
	if !s.ch.Caps().DateTime64 {
		log.Warn("ClickHouse has no DateTime64 (needs >= 20.1): timestamps are stored as DateTime('UTC') and lose sub-second precision",
			"version", s.ch.Version())
	}
	if s.pg, err = postgres.Connect(ctx, cfg.Postgres.DSN); err != nil {
		return nil, err
	}
	if err := s.pg.CheckServer(ctx); err != nil {
		return nil, err
	}
	if s.repl, err = replication.Connect(ctx, cfg.Postgres.DSN); err != nil {
		return nil, err
	}
	return s, nil
}

// Close closes the connections that are open.
func (s *servers) Close() {
	if s.repl != nil {
		s.repl.Close(context.Background())
	}
	s.pg.Close()
	if s.ch != nil {
		s.ch.Close()
	}
}

// resolve returns the mapping of a configured table as it is in Postgres
// now, its replica identity checked.
func (s *servers) resolve(ctx context.Context, tc config.Table) (*mapping.Table, error) {
	cols, err := s.pg.Columns(ctx, tc.Name, s.publication)
	if err != nil {
		return nil, err
	}
	t, err := mapping.Resolve(tc.Spec(), cols, s.ch.Caps())
	if err != nil {
		// A configured column may be one the stream does not send.
		if unsent, uerr := s.pg.UnsentGenerated(ctx, tc.Name, s.publication); uerr == nil && len(unsent) > 0 {
			return nil, fmt.Errorf("%w (generated columns that the stream does not send are not replicated: %s)",
				err, strings.Join(unsent, "; "))
		}
		return nil, err
	}
	if err := t.CheckIdentity(); err != nil {
		return nil, err
	}
	if err := s.ch.DB().CheckStorage(t); err != nil {
		return nil, err
	}
	return t, nil
}

// resolveAll resolves every configured table (see resolve), before
// anything is changed.
func (s *servers) resolveAll(ctx context.Context, cfg config.Config) ([]*mapping.Table, error) {
	tables := make([]*mapping.Table, 0, len(cfg.Tables))
	for _, tc := range cfg.Tables {
		t, err := s.resolve(ctx, tc)
		if err != nil {
			return nil, err
		}
		tables = append(tables, t)
	}
	return tables, nil
}

// errNoCheckpoint is the error of a command that needs the checkpoint a
// setup saves.
func errNoCheckpoint(cfg config.Config) error {
	return fmt.Errorf("%w for slot %s in ClickHouse database %s: run `replicator setup`, which copies every table",
		checkpoint.ErrNoCheckpoint, cfg.Postgres.Slot, cfg.ClickHouse.Database)
}
