// Package replication reads a Postgres logical replication slot.
//
// Decoder is a pure decoder of the pgoutput protocol (versions 1 and 2).
// Conn runs replication commands (create and drop slots) and reads the
// slot's row and the server settings through package postgres. Stream
// receives the slot's messages, hands them to a Handler and sends standby
// status updates. On PostgreSQL 14 and later it asks for in-progress
// transactions (protocol version 2): Spool keeps each streamed
// transaction's messages, in memory or in a spill file, until its commit,
// when Stream hands them to the Handler as one transaction, or its abort,
// which discards them. Stream acknowledges only the position its Handler
// reports as durable, and while the Handler is busy with one message (a
// flush that must land first) it repeats the last acknowledged position
// every second, so that wal_sender_timeout does not end the connection;
// it never decides on its own that data is stored, and it never writes to
// ClickHouse.
package replication
