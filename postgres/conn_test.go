package postgres

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"
)

// TestConnectToAServerGoingDownIsRetryable connects to a listener that
// drops each connection, as a Postgres shutting down or starting up does:
// the error is a connection error, which the daemon retries.
func TestConnectToAServerGoingDownIsRetryable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = Connect(ctx, fmt.Sprintf("postgres://u@%s/db?sslmode=disable", ln.Addr()))
	if err == nil || !IsRetryable(err) {
		t.Errorf("Connect = %v, want a retryable connection error", err)
	}
	ln.Close()
	_, err = Connect(ctx, fmt.Sprintf("postgres://u@%s/db?sslmode=disable", ln.Addr()))
	if err == nil || !IsRetryable(err) {
		t.Errorf("Connect to a closed port = %v, want a retryable connection error", err)
	}
}
