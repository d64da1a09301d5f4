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
}

// pins returns the session settings that pin the guards the server has
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
	if len(wrong) > 0 {
		return nil, fmt.Errorf("its settings profile sets %s, and readonly = 1 lets the replicator change no setting: "+
			"give it a profile without them, or with readonly = 2", strings.Join(wrong, "; "))
	}
	return out, nil
}
