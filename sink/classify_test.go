package sink

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/replicator/replicator/failure"
)

// TestClassify: server exceptions take their action from failure's table,
// connection errors are retried, and a retried error keeps its chain.
func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    error
		reason string // "" when it stops
		says   string
	}{
		{"replica not active", &clickhouse.Exception{Code: 164, Message: "Replica is not active right now"}, "replica_unavailable", "Replica is not active"},
		{"quorum of the previous write", &clickhouse.Exception{Code: 286, Message: "Quorum for previous write has not been satisfied yet"}, "quorum_not_met", "Quorum"},
		{"zookeeper session", fmt.Errorf("insert: %w", &clickhouse.Exception{Code: 999, Message: "Session expired"}), "zookeeper_unavailable", "Session expired"},
		{"eof", fmt.Errorf("read: %w", io.EOF), "clickhouse_connection", "EOF"},
		{"authentication", &clickhouse.Exception{Code: 516, Message: "Authentication failed"}, "", "clickhouse.password"},
		{"readonly setting", &clickhouse.Exception{Code: 472, Message: "Cannot modify 'x' setting in readonly mode"}, "", "readonly = 0"},
		{"syntax", &clickhouse.Exception{Code: 62, Message: "Syntax error"}, "", "Syntax error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := classify(tc.err)
			reason, retry := failure.Retryable(got)
			if reason != tc.reason || retry != (tc.reason != "") || IsRetryable(got) != retry {
				t.Errorf("classify(%v) = %v: reason %q, retry %v, want %q", tc.err, got, reason, retry, tc.reason)
			}
			if !errors.Is(got, tc.err) && !strings.Contains(got.Error(), tc.err.Error()) {
				t.Errorf("classify(%v) = %v lost the error", tc.err, got)
			}
			if !strings.Contains(got.Error(), tc.says) {
				t.Errorf("classify(%v) = %v, want it to say %q", tc.err, got, tc.says)
			}
		})
	}
}
