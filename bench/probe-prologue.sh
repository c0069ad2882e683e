# Sourced by the bench/probe-*.sh scripts of a device call (bash): cd to the repository root,
# $OUT (default /tmp/<script name>) made, a fresh kernel cache and tuning database for the
# call, stamp() for progress lines with the seconds since the start, and the build's commit.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${OUT:-/tmp/$(basename "$0" .sh)}; mkdir -p "$OUT"
T0=$(date +%s)
stamp() { echo "== [$(( $(date +%s) - T0 ))s] $*"; }
export SPATTN_CACHE_DIR=/tmp/spk-$T0 SPATTN_DB=/tmp/spattn-tune-$T0.db
echo "== build $(cat build/COMMIT 2>/dev/null)"
