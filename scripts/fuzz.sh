#!/usr/bin/env bash
# Runs the libFuzzer targets built by `make fuzz` (clang-14, ASan, UBSan), each for a number of
# executions, and prints one line per target: executions, coverage (edges, features), corpus size,
# peak memory, time. The seeds of fuzz/corpus/<name> are read, never written: inputs the fuzzer
# finds go to <build>/fuzz-out/corpus/<name>, crashes to <build>/fuzz-out/crashes/.
#
#   scripts/fuzz.sh <build folder> <executions per target> [target ...]   (no target: all)
#   e.g. scripts/fuzz.sh build-fuzz 1000000 safetensors idx
set -uo pipefail

build=${1:?usage: scripts/fuzz.sh <build folder> <executions per target> [target ...]}
runs=${2:?usage: scripts/fuzz.sh <build folder> <executions per target> [target ...]}
shift 2
root=$(cd "$(dirname "$0")/.." && pwd)
targets=("$@")
if [ ${#targets[@]} -eq 0 ] || [ "${targets[0]}" = all ]; then
  targets=()
  for d in "$root"/fuzz/corpus/*/; do targets+=("$(basename "$d")"); done
fi
out="$build/fuzz-out"
mkdir -p "$out/logs" "$out/crashes"
# Leaks are not what we hunt here (LibTorch keeps process-lifetime allocations); memory bounds
# are: a single allocation over 512 MB, or the process over 2 GB, is a failure.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export OMP_NUM_THREADS=1

failed=0
printf '%-16s %12s %8s %8s %8s %9s %8s  %s\n' target execs cov ft corpus peak_MB seconds result
for t in "${targets[@]}"; do
  bin="$build/fuzz_$t"
  if [ ! -x "$bin" ]; then echo "fuzz: $bin is missing (make fuzz builds it)" >&2; failed=1; continue; fi
  mkdir -p "$out/corpus/$t"
  log="$out/logs/$t.log"
  start=$(date +%s.%N)
  "$bin" -runs="$runs" -rss_limit_mb=2048 -malloc_limit_mb=512 -timeout=10 -print_final_stats=1 \
         -artifact_prefix="$out/crashes/$t-" "$out/corpus/$t" "$root/fuzz/corpus/$t" >"$log" 2>&1
  rc=$?
  secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  peak=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -1)
  last=$(grep -E '^#[0-9]+' "$log" | tail -1)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$last")
  result=ok
  if [ $rc -ne 0 ]; then
    result="FAILED (exit $rc, see $log; input in $out/crashes/)"
    failed=1
  fi
  printf '%-16s %12s %8s %8s %8s %9s %8.0f  %s\n' "$t" "${execs:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" \
         "${peak:-?}" "$secs" "$result"
done
exit $failed
