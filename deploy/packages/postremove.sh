#!/bin/sh
# Runs after the deb or rpm package's files are removed or replaced: lets
# systemd forget units that are gone. /etc/replicator (deb: until purge),
# /var/lib/replicator and the replicator user stay.
set -e

if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
