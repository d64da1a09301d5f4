package harness

import (
	"context"
	"net"
	"testing"
)

// TestZooKeeperSessionRefused: a server that listens (and would answer a
// four-letter word) but closes a session's connection is not ready.
func TestZooKeeperSessionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 64)
			n, _ := conn.Read(buf)
			if string(buf[:n]) == "ruok" {
				conn.Write([]byte("imok"))
			}
			conn.Close()
		}
	}()
	z := &ZooKeeper{Port: ln.Addr().(*net.TCPAddr).Port}
	if err := z.session(context.Background()); err == nil {
		t.Fatal("a server that closes the handshake was taken for ready")
	}
}
