#!/bin/sh
# Runs before the deb or rpm package's files are unpacked: makes the
# system user replicator (and its group) that the systemd units run as
# and that owns /var/lib/replicator in the package. Made before unpacking
# so that dpkg and rpm give that directory to the user by name. Kept on
# removal: files it owns may remain.
set -e

if ! getent group replicator >/dev/null; then
	groupadd --system replicator
fi
if ! getent passwd replicator >/dev/null; then
	nologin=/usr/sbin/nologin
	[ -x "$nologin" ] || nologin=/sbin/nologin
	useradd --system --gid replicator --home-dir /var/lib/replicator --no-create-home \
		--shell "$nologin" --comment "replicator daemon" replicator
fi
