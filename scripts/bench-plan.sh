#!/usr/bin/env bash
# Measures the real binary on the issue-2 benchmark: validate + offline plan
# of a generated plan with 1,000 nodes in 5 phases (30,000 step instances).
# Prints wall time and peak RSS of each command (GNU time).
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
RUNBOOK_BENCH_PLAN="$tmp/big.hcl" go test -count=1 -run TestWriteGeneratedPlan ./engine/ >/dev/null
measure() {
  local label=$1; shift
  /usr/bin/time -f "$label: %e s wall, %M KB peak RSS" "$@" >/dev/null 2>"$tmp/time" || { cat "$tmp/time"; exit 1; }
  tail -1 "$tmp/time"
}
for i in 1 2 3; do
  measure "validate" bin/runbook validate "$tmp/big.hcl"
  measure "plan --offline -o text" bin/runbook plan --offline "$tmp/big.hcl"
  measure "plan --offline -o json" bin/runbook plan --offline -o json "$tmp/big.hcl"
done
