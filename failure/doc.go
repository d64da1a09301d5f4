// Package failure is the one table of what the daemon does about a server
// error: retry with backoff (the server or a replica is unavailable for a
// while; the session restarts from the checkpoint and acknowledges nothing
// new meanwhile) or stop with what to change. It decides; it never retries,
// logs or talks to a server.
package failure
