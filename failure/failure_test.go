package failure

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/ClickHouse/ch-go/proto"
)

// The expected action of every code the daemon meets, written out apart
// from the table, so that a changed or added row needs a changed test.
var wantClickHouse = []struct {
	code   proto.Error
	action Action
	reason string
}{
	{proto.ErrTimeoutExceeded, Retry, "clickhouse_timeout"},
	{proto.ErrSocketTimeout, Retry, "clickhouse_timeout"},
	{proto.ErrNetworkError, Retry, "clickhouse_network"},
	{proto.ErrAttemptToReadAfterEOF, Retry, "clickhouse_network"},
	{proto.ErrCannotReadAllData, Stop, "clickhouse_damaged"},
	{proto.ErrUnexpectedEndOfFile, Stop, "clickhouse_damaged"},
	{proto.ErrQueryWasCancelled, Retry, "clickhouse_shutdown"},
	{proto.ErrAborted, Retry, "clickhouse_shutdown"},
	{proto.ErrTooManySimultaneousQueries, Retry, "clickhouse_overloaded"},
	{proto.ErrNoFreeConnection, Retry, "clickhouse_overloaded"},
	{proto.ErrTooManyParts, Retry, "clickhouse_overloaded"},
	{proto.ErrMemoryLimitExceeded, Retry, "clickhouse_overloaded"},
	{proto.ErrReadonly, Retry, "replica_unavailable"}, // "Replica is not active right now"
	{proto.ErrTableIsReadOnly, Retry, "replica_unavailable"},
	{proto.ErrNoZookeeper, Retry, "zookeeper_unavailable"},
	{proto.ErrKeeperException, Retry, "zookeeper_unavailable"},
	{proto.ErrUnexpectedZookeeperError, Retry, "zookeeper_unavailable"},
	{proto.ErrAllConnectionTriesFailed, Retry, "replica_unavailable"},
	{proto.ErrTooFewLiveReplicas, Retry, "quorum_not_met"},
	{proto.ErrUnsatisfiedQuorumForPreviousWrite, Retry, "quorum_not_met"},
	{proto.ErrReplicaIsNotInQuorum, Retry, "quorum_not_met"},
	{proto.ErrUnknownStatusOfInsert, Retry, "quorum_not_met"},
	{proto.ErrAllReplicasAreStale, Retry, "replica_unavailable"},
	{proto.ErrAllReplicasLost, Retry, "replica_unavailable"},
	{proto.ErrNoReplicaHasPart, Retry, "replica_unavailable"},
	{proto.ErrAuthenticationFailed, Stop, "clickhouse_auth"},
	{proto.ErrUnknownUser, Stop, "clickhouse_auth"},
	{proto.ErrWrongPassword, Stop, "clickhouse_auth"},
	{proto.ErrRequiredPassword, Stop, "clickhouse_auth"},
	{proto.ErrIPAddressNotAllowed, Stop, "clickhouse_auth"},
	{proto.ErrAccessDenied, Stop, "clickhouse_privilege"},
	{proto.ErrDatabaseAccessDenied, Stop, "clickhouse_privilege"},
	{proto.ErrReadonlySetting, Stop, "clickhouse_privilege"},
	{proto.ErrSettingConstraintViolation, Stop, "clickhouse_setting"},
	{proto.ErrTableSizeExceedsMaxDropSizeLimit, Stop, "clickhouse_setting"},
	{proto.ErrUnknownDatabase, Stop, "clickhouse_missing"},
	{proto.ErrUnknownTable, Stop, "clickhouse_missing"},
	// Not listed: stop.
	{proto.ErrSyntaxError, Stop, "clickhouse_other"},
	{proto.ErrTypeMismatch, Stop, "clickhouse_other"},
}

var wantPostgres = []struct {
	state  string
	action Action
	reason string
}{
	{"57P01", Retry, "postgres_shutdown"},
	{"57P02", Retry, "postgres_shutdown"},
	{"57P03", Retry, "postgres_starting"},
	{"08000", Retry, "postgres_connection"},
	{"08003", Retry, "postgres_connection"},
	{"08006", Retry, "postgres_connection"},
	{"08001", Retry, "postgres_connection"},
	{"08004", Retry, "postgres_connection"},
	{"53300", Retry, "postgres_overloaded"},
	{"53200", Retry, "postgres_overloaded"},
	{"40P01", Retry, "postgres_conflict"},
	{"40001", Retry, "postgres_conflict"},
	{"55006", Stop, "object_in_use"},
	{"28P01", Stop, "postgres_auth"},
	{"28000", Stop, "postgres_auth"},
	{"3D000", Stop, "postgres_missing"},
	{"42501", Stop, "postgres_privilege"},
	{"42704", Stop, "postgres_missing"},
	{"55000", Stop, "postgres_state"},
	{"53400", Stop, "postgres_setting"},
	// Not listed: stop.
	{"42P01", Stop, "postgres_other"},
	{"22P02", Stop, "postgres_other"},
}

func TestClickHouseCodes(t *testing.T) {
	seen := map[proto.Error]bool{}
	for _, tc := range wantClickHouse {
		seen[tc.code] = true
		t.Run(fmt.Sprintf("%d %s", tc.code, tc.code), func(t *testing.T) {
			r := ClickHouse(int32(tc.code))
			if r.Action != tc.action || r.Reason != tc.reason {
				t.Errorf("ClickHouse(%d) = %v %s, want %v %s", tc.code, r.Action, r.Reason, tc.action, tc.reason)
			}
			if r.Action == Stop && r.Reason != "clickhouse_other" && r.Fix == "" {
				t.Errorf("ClickHouse(%d) stops without saying what to change", tc.code)
			}
		})
	}
	for code := range clickhouse {
		if !seen[code] {
			t.Errorf("code %d (%s) has a row but no expectation here", code, code)
		}
	}
}

func TestPostgresCodes(t *testing.T) {
	seen := map[string]bool{}
	for _, tc := range wantPostgres {
		seen[tc.state] = true
		t.Run(tc.state, func(t *testing.T) {
			if r := Postgres(tc.state); r.Action != tc.action || r.Reason != tc.reason {
				t.Errorf("Postgres(%s) = %v %s, want %v %s", tc.state, r.Action, r.Reason, tc.action, tc.reason)
			}
		})
	}
	for state := range postgres {
		if !seen[state] {
			t.Errorf("SQLSTATE %s has a row but no expectation here", state)
		}
	}
}

func TestApply(t *testing.T) {
	base := errors.New("code: 164, message: Replica is not active right now")
	err := fmt.Errorf("save progress: %w", ClickHouse(164).Apply(base))
	if reason, ok := Retryable(err); !ok || reason != "replica_unavailable" {
		t.Errorf("Retryable(%v) = %q, %v", err, reason, ok)
	}
	if !errors.Is(err, base) || err.Error() != "save progress: "+base.Error() {
		t.Errorf("a transient error changed its chain or text: %v", err)
	}
	stop := ClickHouse(int32(proto.ErrAuthenticationFailed)).Apply(base)
	if _, ok := Retryable(stop); ok || !strings.Contains(stop.Error(), "clickhouse.username") || !errors.Is(stop, base) {
		t.Errorf("a stop = %v", stop)
	}
	if _, ok := Retryable(Postgres("42P01").Apply(base)); ok {
		t.Error("an unlisted code is retried")
	}
}
