package replication

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection, the reading end
// wrapped in a gatheringConn.
func tcpPair(t *testing.T) (*gatheringConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer := <-accepted
	if peer == nil {
		t.Fatal("accept failed")
	}
	g, ok := newGatheringConn(c).(*gatheringConn)
	if !ok {
		t.Fatal("a TCP connection is not wrapped")
	}
	t.Cleanup(func() { g.Close(); peer.Close() })
	return g, peer
}

// TestGatheringConnDeliversEverything: many small writes, as a walsender
// sends, arrive whole and in order, through idle and gathering reads and
// reads smaller than what is buffered.
func TestGatheringConnDeliversEverything(t *testing.T) {
	g, peer := tcpPair(t)
	var want bytes.Buffer
	done := make(chan error, 1)
	go func() {
		for i := 0; i < 20000; i++ {
			msg := bytes.Repeat([]byte{byte(i)}, 1+i%300)
			want.Write(msg)
			if _, err := peer.Write(msg); err != nil {
				done <- err
				return
			}
			if i%5000 == 0 {
				time.Sleep(20 * time.Millisecond) // idle in between
			}
		}
		done <- peer.Close()
	}()
	var got bytes.Buffer
	p := make([]byte, 7000)
	for {
		n, err := g.Read(p)
		got.Write(p[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatalf("read %d bytes, not the %d written", got.Len(), want.Len())
	}
}

// TestGatheringConnSmallMessage: a lone small message, below the low-water
// mark, is read within a few gather waits, in both states.
func TestGatheringConnSmallMessage(t *testing.T) {
	g, peer := tcpPair(t)
	p := make([]byte, 100)
	for i := 0; i < 3; i++ {
		// The first read finds the conn idle, the next ones gathering.
		start := time.Now()
		go peer.Write([]byte("hello"))
		n, err := g.Read(p)
		if err != nil || string(p[:n]) != "hello" {
			t.Fatalf("read %q, %v", p[:n], err)
		}
		if i == 0 && !g.gathering {
			t.Fatal("a read that found data did not start gathering")
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("a small message took %v", d)
		}
	}
}

// TestGatheringConnDeadline: a deadline set while a read waits, as pgconn
// sets one when a context ends, interrupts it with a timeout, idle or
// gathering; a cleared deadline lets reads go on.
func TestGatheringConnDeadline(t *testing.T) {
	g, peer := tcpPair(t)
	p := make([]byte, 100)
	for _, gathering := range []bool{false, true} {
		g.gather(gathering)
		time.AfterFunc(50*time.Millisecond, func() { g.SetDeadline(time.Now()) })
		start := time.Now()
		_, err := g.Read(p)
		var ne net.Error
		if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("gathering %v: read returned %v, not a timeout", gathering, err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("gathering %v: the deadline interrupted the read after %v", gathering, d)
		}
		// An expired deadline fails the next read at once.
		if _, err := g.Read(p); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("gathering %v: read past the deadline returned %v", gathering, err)
		}
		if err := g.SetDeadline(time.Time{}); err != nil {
			t.Fatal(err)
		}
		go peer.Write([]byte("x"))
		if n, err := g.Read(p); err != nil || string(p[:n]) != "x" {
			t.Fatalf("gathering %v: read after the deadline was cleared: %q, %v", gathering, p[:n], err)
		}
	}
	// A read deadline in the future is honoured too.
	g.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
	if _, err := g.Read(p); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past a read deadline returned %v", err)
	}
}

// TestGatheringConnOnlyTCP: a connection other than TCP is not wrapped.
func TestGatheringConnOnlyTCP(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if _, ok := newGatheringConn(a).(*gatheringConn); ok {
		t.Fatal("a pipe was wrapped")
	}
}

// TestGatheringConnDeadlineDuringWait: a deadline cleared or moved later
// while a gathering wait is under way, as another goroutine may do, does
// not make the wait last until gatherBytes arrive: a small message is still
// read.
func TestGatheringConnDeadlineDuringWait(t *testing.T) {
	g, peer := tcpPair(t)
	p := make([]byte, 100)
	for i := 0; i < 20; i++ {
		g.gather(true)
		stop := make(chan struct{})
		go func() {
			for {
				select {
				case <-stop:
					return
				default:
					g.SetReadDeadline(time.Time{})
					g.SetDeadline(time.Now().Add(time.Hour))
				}
			}
		}()
		time.AfterFunc(5*time.Millisecond, func() { peer.Write([]byte("small")) })
		done := make(chan error, 1)
		go func() {
			n, err := g.Read(p)
			if err == nil && string(p[:n]) != "small" {
				err = fmt.Errorf("read %q", p[:n])
			}
			done <- err
		}()
		select {
		case err := <-done:
			close(stop)
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(2 * time.Second):
			close(stop)
			t.Fatal("a small message was not read: the wait lost its end to a deadline set meanwhile")
		}
		g.SetDeadline(time.Time{})
	}
}

// TestGatheringConnReset: a connection reset by the peer is a *net.OpError,
// which the daemon's retry rules take for a lost connection.
func TestGatheringConnReset(t *testing.T) {
	for _, gathering := range []bool{false, true} {
		g, peer := tcpPair(t)
		g.gather(gathering)
		peer.(*net.TCPConn).SetLinger(0)
		peer.Write([]byte("x"))
		peer.Close()
		p := make([]byte, 100)
		var err error
		for i := 0; i < 3 && err == nil; i++ {
			_, err = g.Read(p)
		}
		var op *net.OpError
		if err == io.EOF || !errors.As(err, &op) {
			t.Fatalf("gathering %v: read after a reset returned %T %v, not a *net.OpError", gathering, err, err)
		}
	}
}
