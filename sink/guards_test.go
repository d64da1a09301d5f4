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
