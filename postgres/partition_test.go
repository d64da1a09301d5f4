package postgres

import "testing"

func TestConstantDefault(t *testing.T) {
	for expr, want := range map[string]bool{
		"42":                       true,
		"'abc'::text":              true,
		"'a(b'::character varying": true,
		"'2020-01-01'::date":       true,
		"now()":                    false,
		"nextval('s'::regclass)":   false,
		"(random() * 10)":          false,
		"'it''s'::text":            true,
	} {
		if got := constant(expr); got != want {
			t.Errorf("constant(%q) = %v, want %v", expr, got, want)
		}
	}
}
