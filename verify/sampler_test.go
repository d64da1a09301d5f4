package verify

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"
)

// fakeTable is a rangeChecker over sorted keys; bad keys differ.
type fakeTable struct {
	keys     []string
	bad      map[string]bool
	compared map[string]int
}

func (f *fakeTable) check(_ context.Context, from *string, rows int) (*string, uint64, uint64, error) {
	i := 0
	if from != nil {
		i, _ = slices.BinarySearch(f.keys, *from)
	}
	j := min(i+rows, len(f.keys))
	var to *string
	if j < len(f.keys) {
		to = &f.keys[j]
	}
	var diffs uint64
	for _, k := range f.keys[i:j] {
		f.compared[k]++
		if f.bad[k] {
			diffs++
		}
	}
	return to, uint64(j - i), diffs, nil
}

func newFakeTable(n int, bad ...int) *fakeTable {
	f := &fakeTable{bad: map[string]bool{}, compared: map[string]int{}}
	for i := range n {
		f.keys = append(f.keys, fmt.Sprintf("k%04d", i))
	}
	for _, b := range bad {
		f.bad[f.keys[b]] = true
	}
	return f
}

func noSleep(context.Context, time.Duration) error { return nil }

// TestSampleRotates checks that passes go on where the previous one
// stopped, stop at the table's end, and cover every key once per cycle.
func TestSampleRotates(t *testing.T) {
	f := newFakeTable(100, 35, 95)
	r := &rotation{}
	for _, want := range []struct {
		rows, diffs uint64
		ranges      int
		wrapped     bool
		from        string
	}{
		{30, 0, 3, false, "k0030"},
		{30, 1, 3, false, "k0060"},
		{30, 0, 3, false, "k0090"},
		{10, 1, 1, true, ""}, // the end: the next pass starts over
		{30, 0, 3, false, "k0030"},
	} {
		res, err := sample(context.Background(), f, r, 25, 10, 1000, noSleep)
		if err != nil {
			t.Fatal(err)
		}
		from := ""
		if r.from != nil {
			from = *r.from
		}
		got := struct {
			rows, diffs uint64
			ranges      int
			wrapped     bool
			from        string
		}{res.rows, res.differences, res.ranges, res.wrapped, from}
		if got != want {
			t.Fatalf("pass: got %+v, want %+v", got, want)
		}
	}
	if r.cycles != 1 {
		t.Errorf("cycles = %d, want 1", r.cycles)
	}
	// The gauge keeps the complete cycle's 2 differences while the next
	// cycle has found none yet.
	if r.differences() != 2 {
		t.Errorf("differences = %d, want 2", r.differences())
	}
	for _, k := range f.keys {
		if want := 1 + btoi(k < "k0030"); f.compared[k] != want {
			t.Fatalf("key %s compared %d times, want %d", k, f.compared[k], want)
		}
	}
}

// TestRotationDifferences checks that a difference stays visible until a
// whole cycle no longer finds it.
func TestRotationDifferences(t *testing.T) {
	r := &rotation{}
	k := "k"
	for i, step := range []struct {
		to    *string
		diffs uint64
		want  uint64
	}{
		{&k, 1, 1},  // found
		{nil, 0, 1}, // cycle complete: 1
		{&k, 0, 1},  // repaired, but the cycle is not complete
		{nil, 0, 0}, // a whole cycle without it
		{&k, 3, 3},  // more in the current cycle than in the last
	} {
		r.advance(step.to, step.diffs)
		if got := r.differences(); got != step.want {
			t.Fatalf("step %d: differences = %d, want %d", i, got, step.want)
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestSampleSmallTable checks that a table smaller than the sample is
// compared once per pass, not twice.
func TestSampleSmallTable(t *testing.T) {
	f := newFakeTable(7)
	r := &rotation{}
	res, err := sample(context.Background(), f, r, 100, 10, 1000, noSleep)
	if err != nil {
		t.Fatal(err)
	}
	if res.rows != 7 || res.ranges != 1 || !res.wrapped || f.compared["k0003"] != 1 {
		t.Fatalf("got %+v, compared %v", res, f.compared)
	}
}

// TestSampleRate checks the waits that bound the rate: rows/rate after
// each range, less the time the range took.
func TestSampleRate(t *testing.T) {
	f := newFakeTable(50)
	var waits []time.Duration
	sleep := func(_ context.Context, d time.Duration) error { waits = append(waits, d); return nil }
	if _, err := sample(context.Background(), f, &rotation{}, 50, 20, 100, sleep); err != nil {
		t.Fatal(err)
	}
	if len(waits) != 3 {
		t.Fatalf("waits %v, want 3", waits)
	}
	var total time.Duration
	for _, w := range waits {
		total += w
	}
	// 50 rows at 100 rows/s: 500ms, less the (tiny) time the fake took.
	if total > 500*time.Millisecond || total < 400*time.Millisecond {
		t.Errorf("waited %s in all, want about 500ms", total)
	}
}

func TestPace(t *testing.T) {
	for _, tc := range []struct {
		rows  uint64
		rate  int
		spent time.Duration
		want  time.Duration
	}{
		{1000, 10000, 0, 100 * time.Millisecond},
		{1000, 10000, 30 * time.Millisecond, 70 * time.Millisecond},
		{1000, 10000, time.Second, 0},
		{0, 10000, 0, 0},
		{5, 0, 0, 5 * time.Second}, // a rate below 1 counts as 1
	} {
		t.Run(fmt.Sprintf("%d_rows_at_%d", tc.rows, tc.rate), func(t *testing.T) {
			if got := pace(tc.rows, tc.rate, tc.spent); got != tc.want {
				t.Errorf("pace = %s, want %s", got, tc.want)
			}
		})
	}
}

// TestSampleStops checks that a cancelled wait ends the pass.
func TestSampleStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res, err := sample(ctx, newFakeTable(100), &rotation{}, 100, 10, 10, sleepCtx)
	if err == nil || res.ranges != 1 {
		t.Fatalf("got %+v, %v; want one range and the context's error", res, err)
	}
}

func TestRanges(t *testing.T) {
	b := []string{"10", "20"}
	got := fmt.Sprint(ranges(b))
	if want := "[[-inf, 10) [10, 20) [20, +inf)]"; got != want {
		t.Errorf("ranges = %s, want %s", got, want)
	}
	if got := fmt.Sprint(ranges(nil)); got != "[[-inf, +inf)]" {
		t.Errorf("ranges(nil) = %s", got)
	}
}

func TestFirstKeyLiterals(t *testing.T) {
	text := firstKey{pg: `"name" COLLATE "C"`, ch: "`name`"}
	num := firstKey{pg: `"id"`, ch: "`id`", numeric: true}
	for _, tc := range []struct{ got, want string }{
		{text.pgIn([]string{`it's`, `a\b`}, false), `"name" COLLATE "C" IN ('it''s','a\b')`},
		{text.chIn([]string{`it's`, `a\b`}, true), "`name` NOT IN ('it\\'s','a\\\\b')"},
		{num.chIn([]string{"1", "20"}, false), "`id` IN (1,20)"},
		{num.pgRange(keyRange{to: ptr("5")}), `"id" < '5'`},
		{num.chRange(keyRange{from: ptr("5"), to: ptr("9")}), "`id` >= 5 AND `id` < 9"},
		{num.chRange(keyRange{}), "1 = 1"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %s, want %s", tc.got, tc.want)
		}
	}
}

func ptr(s string) *string { return &s }
