package failure

import (
	"errors"
	"fmt"

	"github.com/ClickHouse/ch-go/proto"
)

// Action is what the daemon does about an error.
type Action uint8

const (
	// Stop ends the daemon with the error, which says what to change. It
	// is the action of every code the tables do not list.
	Stop Action = iota
	// Retry ends the session; the next one starts from the checkpoint in
	// ClickHouse after a backoff. Nothing new is acknowledged meanwhile.
	Retry
)

func (a Action) String() string {
	if a == Retry {
		return "retry"
	}
	return "stop"
}

// Rule is a row of the table: the action for a server's error code, the
// reason it is labelled with in logs and metrics, and for a stop what to
// change.
type Rule struct {
	Action Action
	Reason string
	Fix    string
}

// clickhouse holds the ClickHouse error codes (the server's exception
// codes, as ch-go names them) the daemon meets.
var clickhouse = map[proto.Error]Rule{
	// The server is busy or a query outlived its deadline.
	proto.ErrTimeoutExceeded:            {Retry, "clickhouse_timeout", ""},
	proto.ErrSocketTimeout:              {Retry, "clickhouse_timeout", ""},
	proto.ErrNetworkError:               {Retry, "clickhouse_network", ""},
	proto.ErrAttemptToReadAfterEOF:      {Retry, "clickhouse_network", ""}, // a node of a cluster ended a connection
	proto.ErrQueryWasCancelled:          {Retry, "clickhouse_shutdown", ""},
	proto.ErrAborted:                    {Retry, "clickhouse_shutdown", ""},
	proto.ErrTooManySimultaneousQueries: {Retry, "clickhouse_overloaded", ""},
	proto.ErrNoFreeConnection:           {Retry, "clickhouse_overloaded", ""},
	proto.ErrTooManyParts:               {Retry, "clickhouse_overloaded", ""},
	proto.ErrMemoryLimitExceeded:        {Retry, "clickhouse_overloaded", ""},
	// A replica, shard or ZooKeeper of a cluster down or catching up.
	// READONLY is also a user without write rights: sink.Open asks the
	// server for the session's readonly setting and stops on it, so a
	// READONLY met later is a replica that lost its ZooKeeper session
	// ("Replica is not active right now").
	proto.ErrReadonly:                          {Retry, "replica_unavailable", ""},
	proto.ErrTableIsReadOnly:                   {Retry, "replica_unavailable", ""},
	proto.ErrNoZookeeper:                       {Retry, "zookeeper_unavailable", ""},
	proto.ErrKeeperException:                   {Retry, "zookeeper_unavailable", ""},
	proto.ErrUnexpectedZookeeperError:          {Retry, "zookeeper_unavailable", ""},
	proto.ErrAllConnectionTriesFailed:          {Retry, "replica_unavailable", ""},
	proto.ErrTooFewLiveReplicas:                {Retry, "quorum_not_met", ""},
	proto.ErrUnsatisfiedQuorumForPreviousWrite: {Retry, "quorum_not_met", ""},
	proto.ErrReplicaIsNotInQuorum:              {Retry, "quorum_not_met", ""},
	proto.ErrUnknownStatusOfInsert:             {Retry, "quorum_not_met", ""},
	proto.ErrAllReplicasAreStale:               {Retry, "replica_unavailable", ""},
	proto.ErrAllReplicasLost:                   {Retry, "replica_unavailable", ""},
	proto.ErrNoReplicaHasPart:                  {Retry, "replica_unavailable", ""},
	// The server could not read a part or a block: it would fail again.
	proto.ErrCannotReadAllData: {Stop, "clickhouse_damaged",
		"the server could not read all of a part or a block: its log names it; check system.parts and detach a damaged part"},
	proto.ErrUnexpectedEndOfFile: {Stop, "clickhouse_damaged",
		"the server met the end of a file or block too early: its log names it; check system.parts and detach a damaged part"},
	// Configuration: retrying cannot help.
	proto.ErrAuthenticationFailed: {Stop, "clickhouse_auth", "authentication failed: check clickhouse.username and clickhouse.password"},
	proto.ErrUnknownUser:          {Stop, "clickhouse_auth", "authentication failed: check clickhouse.username and clickhouse.password"},
	proto.ErrWrongPassword:        {Stop, "clickhouse_auth", "authentication failed: check clickhouse.username and clickhouse.password"},
	proto.ErrRequiredPassword:     {Stop, "clickhouse_auth", "authentication failed: check clickhouse.username and clickhouse.password"},
	proto.ErrIPAddressNotAllowed: {Stop, "clickhouse_auth",
		"allow the daemon's address in the user's <networks> on the ClickHouse server"},
	proto.ErrAccessDenied: {Stop, "clickhouse_privilege",
		"grant the clickhouse.username user SELECT, INSERT, ALTER, CREATE and DROP on clickhouse.database"},
	proto.ErrDatabaseAccessDenied: {Stop, "clickhouse_privilege",
		"allow the clickhouse.username user clickhouse.database (<allow_databases> in users.xml, or GRANT)"},
	proto.ErrReadonlySetting: {Stop, "clickhouse_privilege",
		"the user's profile sets readonly: give the clickhouse.username user a profile with readonly = 0"},
	proto.ErrSettingConstraintViolation: {Stop, "clickhouse_setting",
		"the user's settings profile constrains a setting the daemon sets; lift the constraint in the profile"},
	proto.ErrTableSizeExceedsMaxDropSizeLimit: {Stop, "clickhouse_setting",
		"the server refuses to drop or truncate a table larger than max_table_size_to_drop (50 GB by default): set " +
			"max_table_size_to_drop = 0 in the server's configuration, or create the file flags/force_drop_table in its data " +
			"directory once (ClickHouse 23.12 and later take the override from the replicator per query)"},
	proto.ErrUnknownDatabase: {Stop, "clickhouse_missing",
		"run `replicator setup` to create clickhouse.database and its tables"},
	proto.ErrUnknownTable: {Stop, "clickhouse_missing",
		"run `replicator setup` to create the missing table"},
}

// postgres holds the SQLSTATEs the daemon meets on its replication and SQL
// connections.
var postgres = map[string]Rule{
	// The server shuts down, restarts, is still starting, or has no
	// connection slot free; the connection broke.
	"57P01": {Retry, "postgres_shutdown", ""},   // admin_shutdown (also a terminated walsender)
	"57P02": {Retry, "postgres_shutdown", ""},   // crash_shutdown
	"57P03": {Retry, "postgres_starting", ""},   // cannot_connect_now
	"08000": {Retry, "postgres_connection", ""}, // connection_exception
	"08003": {Retry, "postgres_connection", ""}, // connection_does_not_exist
	"08006": {Retry, "postgres_connection", ""}, // connection_failure
	"08001": {Retry, "postgres_connection", ""}, // sqlclient_unable_to_establish_sqlconnection
	"08004": {Retry, "postgres_connection", ""}, // sqlserver_rejected_establishment_of_sqlconnection
	"53300": {Retry, "postgres_overloaded", ""}, // too_many_connections
	"53200": {Retry, "postgres_overloaded", ""}, // out_of_memory
	"40P01": {Retry, "postgres_conflict", ""},   // deadlock_detected
	"40001": {Retry, "postgres_conflict", ""},   // serialization_failure (a query canceled on a standby)
	// An object in use by another process. For the slot, postgres.Describe
	// returns a *SlotInUseError, which pipeline waits for a while (a
	// walsender that has not yet noticed its client is gone) before it
	// stops.
	"55006": {Stop, "object_in_use", ""}, // object_in_use
	// Configuration: retrying cannot help.
	"28P01": {Stop, "postgres_auth", "check the user and password in postgres.dsn"}, // invalid_password
	"28000": {Stop, "postgres_auth", "allow the daemon's user and address in pg_hba.conf for replication " +
		"and for the database in postgres.dsn"}, // invalid_authorization_specification
	"3D000": {Stop, "postgres_missing", "check the database in postgres.dsn"}, // invalid_catalog_name
	"42501": {Stop, "postgres_privilege", ""},                                 // insufficient_privilege: REPLICATION, SELECT on a table
	"42704": {Stop, "postgres_missing", ""},                                   // undefined_object: the slot or the publication
	"55000": {Stop, "postgres_state", ""},                                     // object_not_in_prerequisite_state: wal_level, an invalidated slot
	"53400": {Stop, "postgres_setting", "raise max_replication_slots or max_wal_senders in postgresql.conf " +
		"and restart Postgres"}, // configuration_limit_exceeded
}

// ClickHouse returns the rule for a ClickHouse exception code; a code the
// table does not list stops the daemon.
func ClickHouse(code int32) Rule {
	if r, ok := clickhouse[proto.Error(code)]; ok {
		return r
	}
	return Rule{Action: Stop, Reason: "clickhouse_other"}
}

// Postgres returns the rule for a SQLSTATE; a code the table does not
// list stops the daemon.
func Postgres(sqlstate string) Rule {
	if r, ok := postgres[sqlstate]; ok {
		return r
	}
	return Rule{Action: Stop, Reason: "postgres_other"}
}

// Lost is the rule for an error below the servers' protocols: a refused,
// reset or timed-out connection, an unexpected EOF.
func Lost(server string) Rule { return Rule{Action: Retry, Reason: server + "_connection"} }

// Transient is an error to retry, labelled with its rule's reason.
type Transient struct {
	Reason string
	Err    error
}

func (e *Transient) Error() string { return e.Err.Error() }
func (e *Transient) Unwrap() error { return e.Err }

// Apply returns err marked for r's action: a *Transient for Retry, err
// prefixed with what to change for a Stop that names it.
func (r Rule) Apply(err error) error {
	switch {
	case r.Action == Retry:
		return &Transient{Reason: r.Reason, Err: err}
	case r.Fix != "":
		return fmt.Errorf("%w (%s)", err, r.Fix)
	}
	return err
}

// Retryable reports whether err is to be retried, and why.
func Retryable(err error) (reason string, ok bool) {
	var t *Transient
	if errors.As(err, &t) {
		return t.Reason, true
	}
	return "", false
}
