// Package mapping turns Postgres tuples into ClickHouse rows.
//
// It resolves each configured table into typed target columns (from the
// configuration and default rules per Postgres type), converts text-format
// values (NULL to the type's default unless the column is nullable, bytea
// fingerprints to xxHash64, timestamps to UTC), builds tombstones for deletes,
// and describes a value it cannot map with a RowError that names table,
// column, key and LSN. For the initial copy it fills a Block, column by
// column, from binary COPY rows, mapping every value exactly as the text
// path maps the value's text output. It is pure: it never performs I/O, and
// it never decides versions or checkpoints.
package mapping
