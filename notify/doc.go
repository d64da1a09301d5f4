// Package notify tells the service manager what state the daemon is in,
// with the sd_notify protocol: a datagram such as "READY=1" to the Unix
// socket named by $NOTIFY_SOCKET. systemd sets that variable for a unit of
// Type=notify; without it every call does nothing, so the daemon behaves
// the same under Kubernetes, a shell or a test.
//
// notify only reports; it never decides when the daemon is ready (package
// pipeline calls Ready once the stream is up) and never starts a
// goroutine.
package notify
