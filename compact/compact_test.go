package compact

import (
	"reflect"
	"testing"
)

// TestMutationSettings: a replicated target's mutations wait for every
// replica, and pass a subquery where the server would refuse it; a server
// without mutations_sync (18.16) cannot compact one.
func TestMutationSettings(t *testing.T) {
	for _, tc := range []struct {
		have map[string]bool
		want map[string]any
	}{
		{map[string]bool{}, nil},
		{map[string]bool{"mutations_sync": true}, map[string]any{"mutations_sync": 2}},
		{map[string]bool{"mutations_sync": true, "allow_nondeterministic_mutations": true},
			map[string]any{"mutations_sync": 2, "allow_nondeterministic_mutations": 1}},
	} {
		if got := mutationSettings(tc.have); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("mutationSettings(%v) = %v, want %v", tc.have, got, tc.want)
		}
	}
}
