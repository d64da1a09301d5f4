// Package replication reads a Postgres logical replication slot.
//
// Decoder is a pure decoder of the pgoutput protocol (version 1). Conn runs
// replication commands (create and drop slots) and reads the slot's row and
// the server settings through package postgres. Stream receives the slot's messages, hands them to a Handler
// and sends standby status updates. Stream acknowledges only the position its
// Handler reports as durable; it never decides on its own that data is
// stored, and it never writes to ClickHouse.
package replication
