package main

import (
	"strings"
	"testing"
)

func TestSpreadOf(t *testing.T) {
	for _, c := range []struct {
		name string
		xs   []float64
		want spread
	}{
		{"one run", []float64{0.85}, spread{med: 0.85, min: 0.85, max: 0.85, n: 1}},
		{"odd", []float64{0.91, 0.80, 0.85}, spread{med: 0.85, min: 0.80, max: 0.91, n: 3}},
		{"even", []float64{4, 1, 3, 2}, spread{med: 2.5, min: 1, max: 4, n: 4}},
		{"two", []float64{2, 1}, spread{med: 1.5, min: 1, max: 2, n: 2}},
		{"odd with repeats", []float64{5, 1, 5, 1, 5}, spread{med: 5, min: 1, max: 5, n: 5}},
		{"none", nil, spread{}},
	} {
		if got := spreadOf(c.xs); got != c.want {
			t.Errorf("%s: spreadOf(%v) = %+v, want %+v", c.name, c.xs, got, c.want)
		}
	}
}

func TestSpreadOfKeepsInput(t *testing.T) {
	xs := []float64{3, 1, 2}
	spreadOf(xs)
	if xs[0] != 3 || xs[1] != 1 || xs[2] != 2 {
		t.Errorf("spreadOf reordered its input: %v", xs)
	}
}

func TestOver(t *testing.T) {
	type run struct{ repl, source float64 }
	runs := []run{{90, 100}, {80, 100}, {85, 100}}
	got := over(runs, func(r run) float64 { return r.repl / r.source })
	if got.med != 0.85 || got.min != 0.8 || got.max != 0.9 || got.n != 3 {
		t.Errorf("over = %+v, want median 0.85, range 0.8–0.9 of 3", got)
	}
}

func TestSpreadText(t *testing.T) {
	if got, want := spreadOf([]float64{0.85}).text("%.2f"), "0.85"; got != want {
		t.Errorf("one run: %q, want %q", got, want)
	}
	if got, want := spreadOf([]float64{0.91, 0.8, 0.85}).text("%.2f"), "0.85 (0.80–0.91, 3 runs)"; got != want {
		t.Errorf("three runs: %q, want %q", got, want)
	}
	if got, want := spreadOf([]float64{0.12, 0.1}).textWith(millis), "110ms (100ms–120ms, 2 runs)"; got != want {
		t.Errorf("two lags: %q, want %q", got, want)
	}
}

func TestRowsVerdict(t *testing.T) {
	if got, want := rowsVerdict([]rowCheck{{5, 5}}), "rows in ClickHouse 5 = Postgres 5"; got != want {
		t.Errorf("one run: %q, want %q", got, want)
	}
	if got, want := rowsVerdict([]rowCheck{{5, 5}, {5, 5}, {5, 5}}), "rows in ClickHouse 5 = Postgres 5 in each of 3 runs"; got != want {
		t.Errorf("three runs: %q, want %q", got, want)
	}
	got := rowsVerdict([]rowCheck{{5, 5}, {4, 5}, {5, 5}})
	if !strings.Contains(got, "run 2: rows in ClickHouse 4, Postgres 5: MISMATCH") || strings.Contains(got, "run 1") {
		t.Errorf("a mismatch in run 2: %q", got)
	}
	if got := rowsVerdict([]rowCheck{{4, 5}}); got != "rows in ClickHouse 4, Postgres 5: MISMATCH" {
		t.Errorf("a mismatch in the only run: %q", got)
	}
}
