#!/usr/bin/env bash
# Builds the replicator image with podman, from scratch: the static
# binary, the CA bundle of this machine, /tmp (mode 1777) and an
# /etc/passwd and /etc/group for the non-root user 65532.
#
#   deploy/container/build.sh IMAGE:TAG [ldflags]
#
# REPLICATOR_BINARY names a static binary (CGO_ENABLED=0) to use instead
# of building one.
set -euo pipefail
image=${1:?usage: build.sh IMAGE:TAG [ldflags]}
ldflags=${2:-}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
export CONTAINERS_CONF=${CONTAINERS_CONF:-$here/containers.conf}
ca=/etc/ssl/certs/ca-certificates.crt
[[ -r $ca ]] || { echo "build.sh: $ca is missing: apt-get install -y ca-certificates" >&2; exit 1; }
command -v podman >/dev/null || { echo "build.sh: podman is missing: apt-get install -y podman runc" >&2; exit 1; }

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
fs=$ctx/rootfs
mkdir -p "$fs/usr/bin" "$fs/etc/ssl/certs" "$fs/etc/replicator" "$fs/tmp"
chmod 1777 "$fs/tmp"
if [[ -n ${REPLICATOR_BINARY:-} ]]; then
	install -m 0755 "$REPLICATOR_BINARY" "$fs/usr/bin/replicator"
else
	(cd "$root" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w $ldflags" -o "$fs/usr/bin/replicator" ./cmd/replicator)
fi
cp "$ca" "$fs/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/tmp:/sbin/nologin\n' >"$fs/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$fs/etc/group"
chmod 0644 "$fs/etc/passwd" "$fs/etc/group" "$fs/etc/ssl/certs/ca-certificates.crt"
version=${image##*:}
podman build --quiet -f "$here/Containerfile" --build-arg VERSION="$version" -t "$image" "$ctx"
