package sink

import (
	"strings"
	"testing"
)

// TestPins: a guard is pinned where the server has it, never sent where it
// lacks it (ClickHouse 18.16), and a readonly = 1 session, which may set
// nothing, is refused only when its profile changed a guard.
func TestPins(t *testing.T) {
	modern := map[string]string{"async_insert": "0", "wait_for_async_insert": "1", "final": "0",
		"optimize_move_to_prewhere_if_final": "0", "do_not_merge_across_partitions_select_final": "0"}
	for _, tc := range []struct {
		name     string
		server   map[string]string
		readonly string
		want     map[string]int
		err      string
	}{
		{name: "18.16 has none", server: map[string]string{}, readonly: "0", want: map[string]int{}},
		{name: "current server", server: modern, readonly: "0", want: map[string]int{"async_insert": 0, "wait_for_async_insert": 1,
			"final": 0, "optimize_move_to_prewhere_if_final": 0, "do_not_merge_across_partitions_select_final": 0}},
		{name: "a profile with async inserts", server: map[string]string{"async_insert": "1", "wait_for_async_insert": "0"}, readonly: "2",
			want: map[string]int{"async_insert": 0, "wait_for_async_insert": 1}},
		{name: "readonly, profile as it should be", server: modern, readonly: "1", want: map[string]int{}},
		{name: "readonly, profile sets final", server: map[string]string{"final": "1"}, readonly: "1",
			err: "final = 1 (the replicator needs 0"},
		{name: "limits that fail a query stay", server: map[string]string{"max_result_rows": "10", "result_overflow_mode": "throw",
			"max_execution_time": "5", "timeout_overflow_mode": "throw"}, readonly: "0", want: map[string]int{}},
		{name: "limits that cut a result short are lifted", server: map[string]string{"max_result_rows": "10", "max_result_bytes": "0",
			"result_overflow_mode": "break", "max_rows_to_group_by": "5", "group_by_overflow_mode": "any",
			"max_rows_in_set": "7", "set_overflow_mode": "break", "max_execution_time": "1", "timeout_overflow_mode": "break",
			"skip_unavailable_shards": "1"}, readonly: "2",
			want: map[string]int{"max_result_rows": 0, "max_rows_to_group_by": 0, "max_rows_in_set": 0, "max_execution_time": 0,
				"skip_unavailable_shards": 0}},
		{name: "readonly, a limit that cuts short", server: map[string]string{"max_rows_to_read": "100", "read_overflow_mode": "break"},
			readonly: "1", err: "max_rows_to_read = 100 with read_overflow_mode = break"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := pins(tc.server, tc.readonly)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one saying %q", err, tc.err)
				}
				return
			}
			if err != nil || len(got) != len(tc.want) {
				t.Fatalf("pins = %v, %v; want %v", got, err, tc.want)
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("%s = %v, want %d", k, got[k], v)
				}
			}
		})
	}
}
