package main

import (
	"context"
	"errors"

	"github.com/replicator/replicator/checkpoint"
	"github.com/replicator/replicator/config"
	"github.com/replicator/replicator/failure"
	"github.com/replicator/replicator/history"
	"github.com/replicator/replicator/mapping"
	"github.com/replicator/replicator/postgres"
	"github.com/replicator/replicator/sink"
)

// exitCode is the status the process exits with. The README's "Exit
// codes" section documents each; scripts, probes and systemd's
// RestartPreventExitStatus= depend on them, so a code never changes
// meaning.
type exitCode int

const (
	// exitOK: the command did what it was asked; verify found the tables
	// equal; status found the replication healthy.
	exitOK exitCode = 0
	// exitFailed: verify found differences, status found the replication
	// unhealthy, or a command failed for a reason the others do not name.
	exitFailed exitCode = 1
	// exitUsage: a usage error (an unknown command or flag, a stray
	// argument, a missing --config) or a configuration error.
	exitUsage exitCode = 2
	// exitUnavailable: the command could not check or act because a
	// server could not be reached or answered with a transient error
	// (status and verify: any error that prevented the check).
	exitUnavailable exitCode = 3
	// exitPermanent: `run` stopped on a condition a restart does not fix:
	// a lost or missing slot, no checkpoint, a history that does not
	// continue (postgres.recovery = "manual"), a value it cannot map
	// where it does not halt on it. systemd's RestartPreventExitStatus=
	// names it.
	exitPermanent exitCode = 4
)

// codedError is an error with the exit code it ends the process with.
type codedError struct {
	code exitCode
	err  error
}

func (e *codedError) Error() string { return e.err.Error() }
func (e *codedError) Unwrap() error { return e.err }

// withCode returns err marked to end the process with code; nil stays nil.
func withCode(code exitCode, err error) error {
	if err == nil {
		return nil
	}
	return &codedError{code: code, err: err}
}

// usageError is a usage error with a message.
func usageError(msg string) error { return withCode(exitUsage, errors.New(msg)) }

// codeOf returns the exit code of an error a command returned. An error
// without a code comes from the command-line parser: a usage error.
func codeOf(err error) exitCode {
	var ce *codedError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ce):
		return ce.code
	}
	return exitUsage
}

// classify returns the exit code of an error of a command that acts on
// the servers (setup, resync, teardown): a configuration error is 2, an
// unreachable or transiently failing server 3, anything else 1.
func classify(err error) exitCode {
	var cfgErr *config.Error
	switch {
	case errors.As(err, &cfgErr):
		return exitUsage
	case unavailable(err):
		return exitUnavailable
	}
	return exitFailed
}

// unavailable reports whether err says a server could not be reached or
// failed for a while: trying again later may succeed.
func unavailable(err error) bool {
	_, retry := failure.Retryable(err)
	return retry || postgres.IsRetryable(err) || sink.IsRetryable(err) || errors.Is(err, context.DeadlineExceeded)
}

// runCode returns the exit code of the error `run` stopped on: exitPermanent
// for the conditions a restart does not fix, exitFailed for the others
// (e.g. the monitor address in use, a slot in use by another process).
func runCode(err error) exitCode {
	var rowErr *mapping.RowError
	var colErr *mapping.ColumnError
	switch {
	case errors.As(err, &rowErr), errors.As(err, &colErr),
		errors.Is(err, postgres.ErrSlotLost), errors.Is(err, postgres.ErrSlotMissing),
		errors.Is(err, checkpoint.ErrNoCheckpoint), errors.Is(err, history.ErrBreak):
		return exitPermanent
	}
	return exitFailed
}
