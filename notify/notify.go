package notify

import (
	"fmt"
	"net"
	"os"
	"strings"
)

// Socket is the environment variable that names the service manager's
// socket.
const Socket = "NOTIFY_SOCKET"

// Send sends state (newline-separated "KEY=value" assignments) to the
// socket named by $NOTIFY_SOCKET. It reports false, nil when the variable
// is unset: no service manager listens.
func Send(state string) (bool, error) {
	addr := os.Getenv(Socket)
	if addr == "" {
		return false, nil
	}
	// "@name" is a socket in the abstract namespace.
	if strings.HasPrefix(addr, "@") {
		addr = "\x00" + addr[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return false, fmt.Errorf("notify %s: %w", os.Getenv(Socket), err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return false, fmt.Errorf("notify %s: %w", os.Getenv(Socket), err)
	}
	return true, nil
}

// Ready says that the daemon does its job (systemd then reports the unit
// started), with a status line for `systemctl status`.
func Ready(status string) (bool, error) {
	return Send("READY=1\nSTATUS=" + oneLine(status))
}

// Status updates the status line alone.
func Status(status string) (bool, error) {
	return Send("STATUS=" + oneLine(status))
}

// Stopping says that the daemon has begun to shut down.
func Stopping() (bool, error) {
	return Send("STOPPING=1\nSTATUS=stopping")
}

func oneLine(s string) string {
	return strings.ReplaceAll(s, "\n", " ")
}
