package sink

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// guards are the settings that a user's settings profile may change and
// that would break a guarantee of the replicator, each with the value its
// sessions pin it to on a server that has it (a setting the server lacks
// is never sent: ClickHouse 18.16 has none of them).
var guards = []struct {
	name  string
	value int // (an int: servers before settings sent as strings take no other type)
	why   string
}{
	{"async_insert", 0, "an INSERT must have stored its rows when it returns: a checkpoint follows it"},
	{"wait_for_async_insert", 1, "an INSERT must have stored its rows when it returns: a checkpoint follows it"},
	{"final", 0, "the lookups of earlier images and verify read every version of a key"},
	{"optimize_move_to_prewhere_if_final", 0, "a filter of a FINAL read must apply to the merged rows"},
	{"do_not_merge_across_partitions_select_final", 0,
		"FINAL must fold the versions of a key across partitions (a row whose change moved it to another partition)"},
	{"skip_unavailable_shards", 0, "a read through a Distributed table must read every shard"},
	{"extremes", 0, "a result must hold only the rows the query selects"},
	{"limit", 0, "a result must hold every row the query selects (a profile's limit cuts every SELECT short)"},
	{"distributed_group_by_no_merge", 0, "an aggregate read through a Distributed table must be one result, not one per shard"},
	{"aggregate_functions_null_for_empty", 0, "an aggregate over no rows must be a number (max(_version) of an empty table is 0)"},
	{"offset", 0, "a result must hold every row the query selects (a profile's offset skips its first rows)"},
	{"empty_result_for_aggregation_by_empty_set", 0, "an aggregate over no rows must return its row (a count of 0)"},
}

// cutShort are the limits of a query that a settings profile may set with
// an overflow mode that cuts the result short instead of failing ("break",
// or "any" for GROUP BY): a lookup of earlier images, a key set of an IN,
// a GROUP BY of verify or compact would then be taken for the whole
// answer. Where the profile sets such a mode, the replicator's sessions
// lift its limits (0: none); under "throw" a limit stays and fails a query
// that exceeds it, with the setting's name. (The modes themselves are
// strings, which ClickHouse before 19.11 takes over the native protocol
// only as numbers: the limits are what can be pinned everywhere.)
var cutShort = []struct {
	mode   string
	limits []string
}{
	{"result_overflow_mode", []string{"max_result_rows", "max_result_bytes"}},
	{"read_overflow_mode", []string{"max_rows_to_read", "max_bytes_to_read"}},
	{"read_overflow_mode_leaf", []string{"max_rows_to_read_leaf", "max_bytes_to_read_leaf"}},
	{"group_by_overflow_mode", []string{"max_rows_to_group_by"}},
	{"sort_overflow_mode", []string{"max_rows_to_sort", "max_bytes_to_sort"}},
	{"set_overflow_mode", []string{"max_rows_in_set", "max_bytes_in_set"}},
	{"join_overflow_mode", []string{"max_rows_in_join", "max_bytes_in_join"}},
	{"distinct_overflow_mode", []string{"max_rows_in_distinct", "max_bytes_in_distinct"}},
	{"transfer_overflow_mode", []string{"max_rows_to_transfer", "max_bytes_to_transfer"}},
	{"timeout_overflow_mode", []string{"max_execution_time"}},
}

// guardedNames returns the names of every setting pins reads.
func guardedNames() []string {
	var names []string
	for _, g := range guards {
		names = append(names, g.name)
	}
	for _, c := range cutShort {
		names = append(append(names, c.mode), c.limits...)
	}
	return names
}

// pins returns the session settings that pin the guards the server has,
// and lift the limits of cutShort that its profile lets cut a result short
// (server: their names and the values of the user's profile). A session
// whose profile sets readonly = 1 may change no setting: there each guard
// the profile changed is an error naming the setting, and none is pinned.
func pins(server map[string]string, readonly string) (clickhouse.Settings, error) {
	out := clickhouse.Settings{}
	var wrong []string
	for _, g := range guards {
		have, ok := server[g.name]
		switch {
		case !ok:
		case readonly == "1" && have != strconv.Itoa(g.value):
			wrong = append(wrong, fmt.Sprintf("%s = %s (the replicator needs %d: %s)", g.name, have, g.value, g.why))
		case readonly != "1":
			out[g.name] = g.value
		}
	}
	for _, c := range cutShort {
		if mode, ok := server[c.mode]; !ok || mode == "throw" {
			continue
		}
		for _, limit := range c.limits {
			switch have, ok := server[limit]; {
			case !ok || have == "0":
			case readonly == "1":
				wrong = append(wrong, fmt.Sprintf("%s = %s with %s = %s (the replicator needs the limit lifted, or %s = 'throw': "+
					"a result cut short would be taken for the whole)", limit, have, c.mode, server[c.mode], c.mode))
			default:
				out[limit] = 0
			}
		}
	}
	if len(wrong) > 0 {
		return nil, fmt.Errorf("its settings profile sets %s, and readonly = 1 lets the replicator change no setting: "+
			"give it a profile without them, or with readonly = 2", strings.Join(wrong, "; "))
	}
	return out, nil
}
