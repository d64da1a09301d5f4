#!/bin/sh
# Prints the version of the deb and rpm packages built from the commit
# checked out in the current directory: one that dpkg and rpm sort in the
# order of the commits and releases (v-prefixed tags, as `git describe`
# finds them).
#
#   at the tag v1.2.0              1.2.0
#   at the tag v1.3.0-rc.1         1.3.0~rc.1     (before 1.3.0)
#   3 commits after v1.2.0         1.2.0+git20261207164800.3.ea7317d
#                                  (after 1.2.0, before 1.2.1)
#   no tag yet                     0.0.0~git20261207164800.ea7317d
#                                  (before any release)
#
# The timestamp is the commit's (UTC), so a later commit sorts later;
# .dirty is appended when the work tree has uncommitted changes.
set -eu

hash=$(git rev-parse --short=7 HEAD)
when=$(TZ=UTC git log -1 --format=%cd --date=format-local:%Y%m%d%H%M%S HEAD)
dirty=
git update-index -q --refresh >/dev/null 2>&1 || true
git diff-index --quiet HEAD -- || dirty=.dirty

if tag=$(git describe --tags --abbrev=0 --match 'v[0-9]*' 2>/dev/null); then
	# A pre-release (v1.3.0-rc.1) sorts before its release: 1.3.0~rc.1.
	base=$(printf '%s\n' "${tag#v}" | sed 's/-/~/; s/-/./g')
	n=$(git rev-list --count "$tag..HEAD")
	if [ "$n" -eq 0 ] && [ -z "$dirty" ]; then
		echo "$base"
	else
		echo "$base+git$when.$n.$hash$dirty"
	fi
else
	echo "0.0.0~git$when.$hash$dirty"
fi
