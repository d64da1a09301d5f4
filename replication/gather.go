package replication

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// A walsender sends each message with its own send as it decodes it. Read
// as it comes, a stream costs the daemon a wake-up and a read per message:
// on a streamed 1,000,000-row transaction that was 190,000 wake-ups and
// most of the daemon's CPU, taken from the walsender on a shared machine.
// Sleeping before a read does not help: the network poller is woken by
// every segment that arrives, whether a reader waits or not.
//
// gatheringConn reads a TCP connection in batches instead. While data keeps
// coming it sets the socket's receive low-water mark (SO_RCVLOWAT) to
// gatherBytes, so that Linux wakes the poller only once that much is queued,
// and waits at most gatherWait for it; then it reads whatever has come. When
// a wait ends with nothing to read the stream is idle: it lowers the mark to
// one byte and waits for the next message as a plain read would, so an idle
// daemon does not wake every gatherWait. The cost is at most gatherWait of
// latency per read while data flows.
//
// The caller's deadlines (pgconn sets one to interrupt a read when its
// context ends) are kept apart from the waits: a read never waits past
// them, and reports their expiry as a timeout.
type gatheringConn struct {
	net.Conn
	raw syscall.RawConn

	buf        []byte
	start, end int // unread data in buf

	mu       sync.Mutex
	deadline time.Time // the caller's read deadline
	waitEnd  time.Time // the end of the gathering wait under way, if any

	gathering bool // the low-water mark is gatherBytes
}

const (
	gatherBytes = 64 << 10
	gatherWait  = time.Millisecond
	gatherBuf   = 256 << 10
)

// newGatheringConn wraps c if it is a TCP connection, whose low-water mark
// holds back wake-ups; any other connection is returned as it is.
func newGatheringConn(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	return &gatheringConn{Conn: c, raw: raw, buf: make([]byte, gatherBuf)}
}

func (c *gatheringConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if c.start == c.end {
		n, err := c.fill()
		if n == 0 {
			return 0, err
		}
		c.start, c.end = 0, n
	}
	n := copy(p, c.buf[c.start:c.end])
	c.start += n
	return n, nil
}

// fill reads into c.buf: at least one byte, or an error.
func (c *gatheringConn) fill() (int, error) {
	for {
		if !c.gathering {
			// Idle: wait for the next message.
			if err := c.setReadDeadline(time.Time{}); err != nil {
				return 0, err
			}
			n, err := c.Conn.Read(c.buf)
			if n > 0 {
				c.gather(true)
				return n, nil
			}
			return 0, err
		}
		// Data has been flowing: wait until gatherBytes are queued or
		// gatherWait has passed, then read what there is.
		if err := c.setReadDeadline(time.Now().Add(gatherWait)); err != nil {
			return 0, err
		}
		n, err := c.readWhenReady()
		if n > 0 || (err != nil && !errors.Is(err, os.ErrDeadlineExceeded)) {
			return n, err
		}
		if err := c.setReadDeadline(time.Time{}); err != nil {
			return 0, err
		}
		if n, err = c.readNow(); n > 0 || err != nil {
			return n, err
		}
		c.gather(false)
	}
}

// setReadDeadline sets the socket's read deadline to wait, or earlier to
// the caller's deadline; past the caller's deadline it returns the timeout.
// The lock orders it with SetDeadline, so that a deadline set while a read
// starts is not overwritten.
func (c *gatheringConn) setReadDeadline(wait time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.deadline
	if !d.IsZero() && !time.Now().Before(d) {
		return os.ErrDeadlineExceeded
	}
	c.waitEnd = wait
	return c.Conn.SetReadDeadline(earliest(d, wait))
}

// earliest returns the earlier of two deadlines, zero meaning none.
func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// readWhenReady waits until the poller reports the socket readable, then
// reads once. It does not read first: a read would return at once the few
// bytes already queued.
func (c *gatheringConn) readWhenReady() (int, error) {
	first := true
	var n int
	var rerr error
	err := c.raw.Read(func(fd uintptr) bool {
		if first {
			first = false
			return false
		}
		n, rerr = syscall.Read(int(fd), c.buf)
		return rerr != syscall.EAGAIN
	})
	return c.result(n, rerr, err)
}

// readNow reads what is queued without waiting: (0, nil) when nothing is.
func (c *gatheringConn) readNow() (int, error) {
	var n int
	var rerr error
	err := c.raw.Read(func(fd uintptr) bool {
		n, rerr = syscall.Read(int(fd), c.buf)
		return true
	})
	if rerr == syscall.EAGAIN {
		return 0, nil
	}
	return c.result(n, rerr, err)
}

// result maps a raw read to what a net.Conn returns: a failure is a
// *net.OpError, as pgconn and the daemon's retry rules expect of a lost
// connection.
func (c *gatheringConn) result(n int, rerr, err error) (int, error) {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return 0, err
	}
	if err == nil && rerr != nil {
		err = os.NewSyscallError("read", rerr)
	}
	if err != nil {
		return 0, &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

// gather sets the low-water mark for data flowing (on) or idle (off). A
// mark the kernel refuses leaves plain reads, which are correct, only
// slower.
func (c *gatheringConn) gather(on bool) {
	if c.gathering == on {
		return
	}
	mark := 1
	if on {
		mark = gatherBytes
	}
	var serr error
	if err := c.raw.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVLOWAT, mark)
	}); err != nil || serr != nil {
		return
	}
	c.gathering = on
}

// SetDeadline sets the caller's read deadline and the write deadline.
func (c *gatheringConn) SetDeadline(t time.Time) error {
	if err := c.Conn.SetWriteDeadline(t); err != nil {
		return err
	}
	return c.SetReadDeadline(t)
}

// SetReadDeadline sets the caller's read deadline. A gathering wait under
// way keeps its end: a later deadline, or none, must not let it wait for
// gatherBytes past it.
func (c *gatheringConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline = t
	return c.Conn.SetReadDeadline(earliest(t, c.waitEnd))
}
