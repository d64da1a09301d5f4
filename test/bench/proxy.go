package main

import (
	"io"
	"net"
	"time"
)

// delayProxy forwards TCP connections to target and delays every chunk by
// delay in each direction: ClickHouse as a sidecar sees it on another
// machine (--ch-delay). It returns the address to dial.
func delayProxy(target string, delay time.Duration) (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				t, err := net.Dial("tcp", target)
				if err != nil {
					c.Close()
					return
				}
				go delayed(t.(*net.TCPConn), c, delay)
				delayed(c.(*net.TCPConn), t, delay)
			}()
		}
	}()
	return l.Addr().String(), nil
}

// delayed copies src to dst, each chunk delay after it was read, in order.
func delayed(dst *net.TCPConn, src io.Reader, delay time.Duration) {
	type chunk struct {
		due  time.Time
		data []byte
	}
	q := make(chan chunk, 4096)
	go func() {
		defer close(q)
		for {
			buf := make([]byte, 64<<10)
			n, err := src.Read(buf)
			if n > 0 {
				q <- chunk{time.Now().Add(delay), buf[:n]}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range q {
		time.Sleep(time.Until(c.due))
		if _, err := dst.Write(c.data); err != nil {
			for range q {
			}
			break
		}
	}
	dst.CloseWrite()
}
