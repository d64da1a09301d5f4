package ddl

import "testing"

func TestNewest(t *testing.T) {
	for _, tc := range []struct {
		name, got, want string
	}{
		{name: "unpartitioned reads FINAL", got: Newest("`a`.`events`", "id", "", "id >= 5"),
			want: "`a`.`events` FINAL"},
		{name: "partitioned picks per key and partition",
			got:  Newest("`a`.`events`", "author_id, created_at, id", "toYYYYMM(created_at)", "author_id >= 5"),
			want: "(SELECT * FROM `a`.`events` WHERE author_id >= 5 ORDER BY `_version` DESC, `_seq` DESC LIMIT 1 BY author_id, created_at, id, toYYYYMM(created_at))"},
		{name: "partitioned without a condition", got: Newest("`a`.`r`", "id", "region", ""),
			want: "(SELECT * FROM `a`.`r` ORDER BY `_version` DESC, `_seq` DESC LIMIT 1 BY id, region)"},
		{name: "count unpartitioned", got: CountNewest("`a`.`events`", "id", ""),
			want: "SELECT count(), countIf(`_deleted` = 0) FROM `a`.`events` FINAL"},
		{name: "count partitioned", got: CountNewest("`a`.`events`", "id", "toYYYYMM(created_at)"),
			want: "SELECT count(), countIf(`_deleted_latest` = 0) FROM (SELECT argMax(`_deleted`, (`_version`, `_seq`)) AS `_deleted_latest` " +
				"FROM `a`.`events` GROUP BY id, toYYYYMM(created_at))"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("got\n%s\nwant\n%s", tc.got, tc.want)
			}
		})
	}
}
