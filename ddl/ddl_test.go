package ddl

import (
	"testing"

	"github.com/replicator/replicator/mapping"
)

func TestQuote(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{in: "events", want: "`events`"},
		{in: "", want: "``"},
		{in: "my table", want: "`my table`"},
		{in: "a.b", want: "`a.b`"},
		{in: "we`ird", want: "`we\\`ird`"},
		{in: `back\slash`, want: "`back\\\\slash`"},
		{in: "\\`", want: "`\\\\\\``"},
		{in: `say "hi"`, want: "`say \"hi\"`"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			if got := Quote(tc.in); got != tc.want {
				t.Errorf("Quote(%q) = %s, want %s", tc.in, got, tc.want)
			}
		})
	}
}

func TestDatabaseStatements(t *testing.T) {
	db := Database{Name: "analytics"}
	odd := Database{Name: "my`db"}
	for _, tc := range []struct {
		name string
		got  string
		want string
	}{
		{name: "Table", got: db.Table("events"), want: "`analytics`.`events`"},
		{name: "Table quotes both parts", got: odd.Table("ev`ents"), want: "`my\\`db`.`ev\\`ents`"},
		{name: "Create", got: db.Create(), want: "CREATE DATABASE IF NOT EXISTS `analytics`"},
		{name: "Create quotes", got: odd.Create(), want: "CREATE DATABASE IF NOT EXISTS `my\\`db`"},
		{name: "Insert", got: db.Insert("events", []string{"id", "note", "_version", "_deleted"}),
			want: "INSERT INTO `analytics`.`events` (`id`, `note`, `_version`, `_deleted`)"},
		{name: "Insert keeps order and quotes", got: db.Insert("events", []string{"z", "a`b", "m"}),
			want: "INSERT INTO `analytics`.`events` (`z`, `a\\`b`, `m`)"},
		{name: "Insert one column", got: db.Insert("t", []string{"x"}), want: "INSERT INTO `analytics`.`t` (`x`)"},
		{name: "Truncate", got: db.Truncate("events"), want: "TRUNCATE TABLE `analytics`.`events`"},
		{name: "Truncate quotes", got: odd.Truncate("e`v"), want: "TRUNCATE TABLE `my\\`db`.`e\\`v`"},
		{name: "DeleteCheckpoints", got: db.DeleteCheckpoints(),
			want: "ALTER TABLE `analytics`.`replicator_checkpoints` DELETE WHERE slot = ?"},
		{name: "DeleteCheckpoints quotes", got: odd.DeleteCheckpoints(),
			want: "ALTER TABLE `my\\`db`.`replicator_checkpoints` DELETE WHERE slot = ?"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("%s = %s, want %s", tc.name, tc.got, tc.want)
			}
		})
	}
}

func TestPartitionedViewPicksByVersionAndSeq(t *testing.T) {
	tbl, err := mapping.Resolve(mapping.TableSpec{Source: "public.regions", Target: "regions", OrderBy: []string{"id"}, PartitionBy: "region"},
		[]mapping.SourceColumn{{Name: "id", TypeOID: 20, Identity: true}, {Name: "region", TypeOID: 21, Identity: true}, {Name: "note", TypeOID: 25}},
		mapping.Caps{})
	if err != nil {
		t.Fatal(err)
	}
	got := Database{Name: "db"}.CreateView(tbl)
	want := "CREATE VIEW IF NOT EXISTS `db`.`regions_live` AS\n" +
		"SELECT `id`, `region`, `note`\nFROM\n(\n" +
		"    SELECT `id`,\n" +
		"           argMax(`region`, (`_version`, `_seq`)) AS `region`,\n" +
		"           argMax(`note`, (`_version`, `_seq`)) AS `note`,\n" +
		"           argMax(`_deleted`, (`_version`, `_seq`)) AS `_deleted_latest`\n" +
		"    FROM `db`.`regions`\n    GROUP BY `id`\n)\nWHERE `_deleted_latest` = 0\n"
	if got != want {
		t.Errorf("CreateView =\n%s\nwant\n%s", got, want)
	}
}
