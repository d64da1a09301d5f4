package config_test

import (
	"fmt"
	"testing"

	"github.com/replicator/replicator/config"
)

func TestProbe(t *testing.T) {
	for _, src := range []string{
		`postgres { dsn = "x" slott = "x" }`,
		`mysql {}`,
		`batch { max_rows = "many" }`,
		`batch { max_delay = "soon" }`,
		`postgres { slott = "x" } batch { max_delay = "soon" }`,
		`postgres { dsn = env("NOPE") }`,
		`table "events" { order_by = ["id"] }`,
		`table "public.events" { }`,
		`table "public.events" { order_by = ["id"]
column "a" {}
column "a" {}
}`,
		`postgres { dsn = "postgres://u@h/db" }`,
		`{{{`,
	} {
		_, err := config.Parse("t.hcl", []byte(src), func(string) string { return "" })
		fmt.Printf("%s\n => %v\n\n", src, err)
	}
}
