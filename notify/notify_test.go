package notify

import (
	"net"
	"path/filepath"
	"testing"
	"time"
)

// listen opens a datagram socket as systemd does and points
// $NOTIFY_SOCKET at it.
func listen(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func receive(t *testing.T, conn *net.UnixConn) string {
	t.Helper()
	buf := make([]byte, 4096)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

func TestSend(t *testing.T) {
	for _, tc := range []struct {
		name, listen, env string
	}{
		{"path", filepath.Join(t.TempDir(), "notify"), ""},
		{"abstract", "\x00replicator-notify-test", "@replicator-notify-test"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := listen(t, tc.listen)
			env := tc.env
			if env == "" {
				env = tc.listen
			}
			t.Setenv(Socket, env)
			for _, step := range []struct {
				send func() (bool, error)
				want string
			}{
				{func() (bool, error) { return Ready("replicating\nfrom 0/16B3748") }, "READY=1\nSTATUS=replicating from 0/16B3748"},
				{func() (bool, error) { return Status("reconnecting") }, "STATUS=reconnecting"},
				{Stopping, "STOPPING=1\nSTATUS=stopping"},
			} {
				sent, err := step.send()
				if err != nil || !sent {
					t.Fatalf("sent %v, %v", sent, err)
				}
				if got := receive(t, conn); got != step.want {
					t.Errorf("received %q, want %q", got, step.want)
				}
			}
		})
	}
}

func TestSendWithoutManager(t *testing.T) {
	t.Setenv(Socket, "")
	if sent, err := Ready("x"); sent || err != nil {
		t.Errorf("without NOTIFY_SOCKET: sent %v, %v", sent, err)
	}
	t.Setenv(Socket, filepath.Join(t.TempDir(), "absent"))
	if sent, err := Ready("x"); sent || err == nil {
		t.Errorf("to a missing socket: sent %v, %v", sent, err)
	}
}
