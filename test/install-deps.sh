#!/usr/bin/env bash
# Installs from Debian's packages what the tests and the demo need and is
# missing: PostgreSQL 15 (server, pgbench, psql, pg_recvlogical) and
# ClickHouse (server and client), openssl for the TLS test's CA and
# promtool (prometheus) for the alert rules' test, rpm for the release
# packages' test, and ZooKeeper (with a Java runtime) for ClickHouse
# clusters. Prints nothing when all is present.
# The servers are not started here; test/harness starts private ones.
set -euo pipefail

# file -> package that provides it
declare -A need=(
	[/usr/lib/postgresql/15/bin/postgres]=postgresql-15
	[/usr/lib/postgresql/15/bin/initdb]=postgresql-15
	[/usr/lib/postgresql/15/bin/pgbench]=postgresql-15
	[/usr/lib/postgresql/15/bin/psql]=postgresql-client-15
	[/usr/lib/postgresql/15/bin/pg_recvlogical]=postgresql-client-15
	[/usr/sbin/clickhouse-server]=clickhouse-server
	[/usr/bin/clickhouse-client]=clickhouse-client
	[/usr/bin/openssl]=openssl
	[/usr/bin/promtool]=prometheus
	[/usr/bin/rpm]=rpm
	[/usr/share/java/zookeeper.jar]=zookeeper
	[/usr/bin/java]=default-jre-headless
)

missing=()
for file in "${!need[@]}"; do
	if [[ ! -e $file ]]; then
		missing+=("${need[$file]}")
	fi
done
[[ ${#missing[@]} -eq 0 ]] && exit 0
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)

sudo=()
if [[ $(id -u) -ne 0 ]]; then
	if ! command -v sudo >/dev/null; then
		echo "install-deps: need root or sudo to install: ${missing[*]}" >&2
		exit 1
	fi
	sudo=(sudo)
fi

echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2

for file in "${!need[@]}"; do
	if [[ ! -e $file ]]; then
		echo "install-deps: $file still missing after installing ${need[$file]}" >&2
		exit 1
	fi
done
