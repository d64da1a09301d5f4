#!/bin/sh
# Runs before the deb or rpm package's files are removed: on a removal
# (deb: "remove", rpm: 0 packages left), not on an upgrade, stops and
# disables the units. The slot and publication stay in Postgres: see
# `replicator teardown` (docs/upgrades.md) before removing for good.
set -e

case "$1" in
remove | 0)
	if [ -d /run/systemd/system ]; then
		for unit in /usr/lib/systemd/system/replicator*.service; do
			[ -e "$unit" ] || continue
			systemctl disable --now "$(basename "$unit")" >/dev/null 2>&1 || true
		done
	fi
	;;
esac
