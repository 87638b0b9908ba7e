#!/usr/bin/env bash
# Run every Go fuzz target in the module for a short time each.
#
#   FUZZTIME=5s .ci/fuzz-short.sh        # default 5s per target
#   FUZZTIME=30s .ci/fuzz-short.sh ./proto/...   # only some packages
#
# Targets are discovered with `go test -list '^Fuzz'` per package, so a new
# FuzzXxx function is picked up without editing this script. The script
# runs every target even after one fails, then exits non-zero if any
# failed (or if listing a package failed). A failing input is written by
# Go under the package's testdata/fuzz/<Name>/ directory; commit it as a
# regression seed once the bug is fixed.
set -uo pipefail

FUZZTIME="${FUZZTIME:-5s}"
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1

if [ "$#" -eq 0 ]; then
	set -- ./...
fi

pkgs=$(go list -e "$@") || { echo "fuzz-short: go list $* failed" >&2; exit 1; }

failed=()
ran=0
for pkg in $pkgs; do
	# -list prints matching names, then "ok <pkg> <time>" (or "?" lines
	# for packages without tests); keep only the names.
	if ! out=$(go test -run='^$' -list '^Fuzz' "$pkg" 2>&1); then
		echo "fuzz-short: listing fuzz targets of $pkg failed:" >&2
		echo "$out" >&2
		failed+=("$pkg (list)")
		continue
	fi
	names=$(printf '%s\n' "$out" | grep -E '^Fuzz[A-Za-z0-9_]*$' || true)
	for name in $names; do
		echo "=== fuzz $pkg $name ($FUZZTIME)"
		ran=$((ran + 1))
		# The fuzzing engine sometimes stops a run with "context deadline
		# exceeded" and no failing input when the machine is loaded; that
		# is the engine, not the target, so such a run is tried once more.
		# A run with a failing input counts at once.
		if ! log=$(go test -run='^$' -fuzz="^${name}\$" -fuzztime="$FUZZTIME" "$pkg" 2>&1); then
			echo "$log"
			if grep -q 'context deadline exceeded' <<<"$log" && ! grep -q 'Failing input' <<<"$log"; then
				echo "fuzz-short: $name stopped by the engine's deadline; once more"
				if go test -run='^$' -fuzz="^${name}\$" -fuzztime="$FUZZTIME" "$pkg"; then
					continue
				fi
			fi
			failed+=("$pkg $name")
		else
			echo "$log" | tail -3
		fi
	done
done

echo "fuzz-short: ran $ran fuzz targets for $FUZZTIME each"
if [ "${#failed[@]}" -gt 0 ]; then
	echo "fuzz-short: FAILED:" >&2
	printf '  %s\n' "${failed[@]}" >&2
	exit 1
fi
