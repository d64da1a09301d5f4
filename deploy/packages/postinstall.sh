#!/bin/sh
# Runs after the deb or rpm package's files are in place. Makes sure the
# state directory belongs to the replicator user (also one left from an
# earlier install) and has systemd read the units. A first install neither
# enables nor starts the service: edit /etc/replicator/replicator.hcl,
# then `systemctl enable --now replicator`. An upgrade (deb: configure
# with the old version; rpm: 2 packages installed) restarts the daemon if
# it runs: SIGTERM flushes and checkpoints, the new binary resumes there.
set -e

install -d -o replicator -g replicator -m 0700 /var/lib/replicator

upgrade=
case "${1:-}" in
configure) [ -z "${2:-}" ] || upgrade=1 ;;
[0-9]*) [ "$1" -lt 2 ] || upgrade=1 ;;
esac

if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
	if [ -n "$upgrade" ]; then
		systemctl try-restart replicator.service >/dev/null 2>&1 || true
	fi
fi
