package test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestCommittedView polls the committed and the live views while one large
// transaction writes 150,000 events and 1,000 items among small ones, and
// the daemon is killed while it writes the large one: the live view shows
// the transaction in parts, the committed views only whole; after the
// writers stop, the committed view equals Postgres.
func TestCommittedView(t *testing.T) {
	e := newEnv(t, itemsConfig)
	e.exec(itemsDDL)
	e.insertEvents(1000)
	e.setup()
	d := e.start()
	ctx, cancel := context.WithCancel(context.Background())
	// Small transactions that never touch the large one's rows.
	var small atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			q := fmt.Sprintf(`BEGIN; INSERT INTO events (project_id, author_id, action, target_type) VALUES (%d, 7, 1, 'Small');
				INSERT INTO items VALUES (%d, 1, 'small') ON CONFLICT (id) DO UPDATE SET qty = items.qty + 1;
				DELETE FROM events WHERE target_type = 'Small' AND id %% 10 = %d; COMMIT`, i%100, 1_000_000+i%300, i%10)
			if _, err := e.pg.Exec(context.Background(), q); err == nil {
				small.Add(1)
			}
		}
	}()

	const bigEvents, bigItems = 150000, 1000
	db := "db_" + e.name
	var partialLive, badEvents, badItems atomic.Int64
	var seenBad sync.Map
	readerCtx, stopReader := context.WithCancel(context.Background())
	var rwg sync.WaitGroup
	rwg.Add(1)
	go func() {
		defer rwg.Done()
		for readerCtx.Err() == nil {
			var committed, live, items uint64
			if err := e.ch.QueryRow(context.Background(), fmt.Sprintf("SELECT countIf(action = 99) FROM %s.events_committed", db)).Scan(&committed); err == nil &&
				committed != 0 && committed != bigEvents {
				badEvents.Add(1)
				seenBad.Store(fmt.Sprintf("events %d", committed), true)
			}
			if err := e.ch.QueryRow(context.Background(), fmt.Sprintf("SELECT countIf(qty = 99) FROM %s.items_committed", db)).Scan(&items); err == nil &&
				items != 0 && items != bigItems {
				badItems.Add(1)
				seenBad.Store(fmt.Sprintf("items %d", items), true)
			}
			if err := e.ch.QueryRow(context.Background(), fmt.Sprintf("SELECT countIf(action = 99) FROM %s.events_live", db)).Scan(&live); err == nil &&
				live != 0 && live != bigEvents {
				partialLive.Add(1)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()

	time.Sleep(500 * time.Millisecond)
	e.exec(fmt.Sprintf(`BEGIN;
		INSERT INTO events (project_id, author_id, action, target_type) SELECT g %% 100, g %% 50 + 1, 99, 'Big' FROM generate_series(1, %d) g;
		INSERT INTO items SELECT g, 99, 'big' FROM generate_series(1, %d) g;
		COMMIT`, bigEvents, bigItems))
	// Kill the daemon while it writes the large transaction.
	deadline := time.Now().Add(convergeTimeout)
	for partialLive.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	d.kill()
	d = e.start()
	time.Sleep(time.Second)
	cancel()
	wg.Wait()
	txns := small.Load()
	e.converge("events through the live view", convergeTimeout)
	// The committed view equals Postgres once the checkpoint covers the
	// last transaction.
	want := e.expected()
	var got []row
	var err error
	for deadline := time.Now().Add(convergeTimeout); ; time.Sleep(200 * time.Millisecond) {
		if got, err = e.actualIn("events_committed"); err == nil && equal(want, got) || time.Now().After(deadline) {
			break
		}
	}
	if err != nil || !equal(want, got) {
		t.Errorf("committed view after %d transactions: %v %s", txns, err, diff(want, got))
	}
	stopReader()
	rwg.Wait()
	d.stop(t)
	if partialLive.Load() == 0 {
		t.Errorf("the live view never showed the large transaction in part: the test shows nothing")
	}
	if badEvents.Load() > 0 || badItems.Load() > 0 {
		var seen []string
		seenBad.Range(func(k, _ any) bool { seen = append(seen, k.(string)); return true })
		t.Errorf("the committed views showed part of the large transaction %d + %d times: %v", badEvents.Load(), badItems.Load(), seen)
	}
	t.Logf("live view showed the large transaction in part %d times; %d small transactions", partialLive.Load(), txns)
}
