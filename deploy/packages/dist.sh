#!/usr/bin/env bash
# Builds the release artifacts for each platform given (os/arch, linux
# only) into $DIST, from the repository root; `make dist` runs it:
#
#   replicator-linux-ARCH                      the static binary
#   replicator-VERSION-linux-ARCH.tar.gz       it in replicator-VERSION-linux-ARCH/
#                                              with README.md, LICENSE (if any),
#                                              config.example.hcl and systemd/*.service
#   replicator_PKG_VERSION-1_ARCH.deb          binary in /usr/bin, the units, the
#   replicator-PKG_VERSION-1.ARCH.rpm          replicator user, /etc/replicator
#                                              (deploy/packages/nfpm.yaml)
#   replicator-VERSION-linux-ARCH.cdx.json     CycloneDX SBOM of the binary
#   SHA256SUMS                                 over all of the above
#
# Environment (make sets it): GO, DIST, VERSION (git describe), PKG_VERSION
# (version.sh), LDFLAGS, NFPM and CYCLONEDX (the tools' binaries).
set -euo pipefail
: "${GO:=go}" "${DIST:?}" "${VERSION:?}" "${PKG_VERSION:?}" "${NFPM:?}" "${CYCLONEDX:?}"
LDFLAGS=${LDFLAGS:-}
[[ $# -gt 0 ]] || { echo "usage: dist.sh os/arch..." >&2; exit 2; }

# DIST is emptied first: only if it holds nothing but earlier artifacts.
if [[ -d $DIST ]]; then
	for f in "$DIST"/* "$DIST"/.[!.]*; do
		[[ -e $f ]] || continue
		case ${f##*/} in
		replicator[-_]* | SHA256SUMS) ;;
		*) echo "dist.sh: $DIST holds $f, which is no release artifact: not emptying it" >&2; exit 1 ;;
		esac
	done
	rm -rf "$DIST"
fi
mkdir -p "$DIST"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The units as packaged: the binary where the packages and the archive's
# instructions put it, /usr/bin.
mkdir "$work/systemd"
units=(deploy/systemd/*.service)
[[ -e ${units[0]} ]] || { echo "dist.sh: no deploy/systemd/*.service" >&2; exit 1; }
for unit in "${units[@]}"; do
	sed 's|/usr/local/bin/replicator|/usr/bin/replicator|g' "$unit" >"$work/systemd/${unit##*/}"
done

# Archives carry the commit's time, not the build's: the same commit
# gives the same listing.
epoch=$(git log -1 --format=%ct HEAD 2>/dev/null || date +%s)

for platform in "$@"; do
	os=${platform%/*} arch=${platform#*/}
	[[ $os == linux ]] || { echo "dist.sh: $platform: only linux is packaged" >&2; exit 1; }
	bin=$DIST/replicator-$os-$arch
	CGO_ENABLED=0 GOOS=$os GOARCH=$arch "$GO" build -trimpath -ldflags "-s -w $LDFLAGS" -o "$bin" ./cmd/replicator

	name=replicator-$VERSION-$os-$arch
	tree=$work/$name
	mkdir -p "$tree/systemd"
	install -m 0755 "$bin" "$tree/replicator"
	install -m 0644 README.md config.example.hcl "$tree/"
	for license in LICENSE LICENSE.md LICENSE.txt COPYING; do
		if [[ -f $license ]]; then install -m 0644 "$license" "$tree/"; fi
	done
	install -m 0644 "$work"/systemd/*.service "$tree/systemd/"
	tar -C "$work" --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" -cf - "$name" |
		gzip -n -9 >"$DIST/$name.tar.gz"

	for packager in deb rpm; do
		GOARCH=$arch BINARY=$bin UNITS=$work/systemd PKG_VERSION=$PKG_VERSION SOURCE_DATE_EPOCH=$epoch \
			"$NFPM" package --config deploy/packages/nfpm.yaml --packager "$packager" --target "$DIST/" >/dev/null
	done

	"$CYCLONEDX" bin -json -std -version "$VERSION" -output "$DIST/$name.cdx.json" "$bin"
done

(cd "$DIST" && find . -maxdepth 1 -type f ! -name SHA256SUMS -printf '%P\n' | LC_ALL=C sort | xargs sha256sum >SHA256SUMS)
