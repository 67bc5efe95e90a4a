#!/usr/bin/env bash
# Builds the libFuzzer targets in Fuzz/ and runs each one for a bounded time on a scratch
# copy of its seed corpus, so a run never writes into the committed corpus.
#
#   scripts/fuzz.sh                      every target, FUZZ_SECONDS each (default 60)
#   scripts/fuzz.sh FuzzLinkFrame        only the targets named
#   FUZZ_SECONDS=300 scripts/fuzz.sh     longer runs
#
# Prints per target the executions, executions per second and coverage. Exits non-zero when
# a target crashes, leaks, times out or runs out of memory; the input that did it is saved
# under Fuzz/Findings/<target>/ (ignored by git) and its log beside it. Inputs under
# Fuzz/Regressions/<target>/ are replayed first: each is a bug found earlier, and it fails
# the run until the bug is fixed.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-60}"
# A crash must end the run at once: the Swift runtime's backtracer takes minutes under ASan.
export SWIFT_BACKTRACE=enable=no
swift="${SWIFT:-swift}"
scratch=.build-fuzz
findings=Fuzz/Findings
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(FuzzStompSession FuzzWebSocket FuzzLinkFrame FuzzLinkHandshake FuzzReplication)

# Release: the sanitizers already slow every execution down; an unoptimised build would cost
# another factor of several in executions per second for a build only a little faster.
build=("$swift" build -c release --package-path Fuzz --scratch-path "$scratch"
    -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library
    # gold crashes linking these executables (an internal error in its DWARF reader); lld works.
    -Xswiftc -Xclang-linker -Xswiftc -fuse-ld=lld)
start=$(date +%s)
"${build[@]}"
echo "fuzz build: $(($(date +%s) - start)) s"
bin="$("${build[@]}" --show-bin-path)"

# Inputs longer than this add time per execution, not coverage: a STOMP frame, an upgrade
# request with a few WebSocket frames, or a link batch all fit.
max_len() {
    case "$1" in
        FuzzLinkHandshake) echo 1024 ;;
        *) echo 4096 ;;
    esac
}

failed=()
summary=()
for target in "${targets[@]}"; do
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    mkdir -p "$work/corpus" "$findings/$target"
    cp Fuzz/Corpus/"$target"/* "$work/corpus/"
    options=(-rss_limit_mb=2048 -timeout=10 -max_len="$(max_len "$target")" -print_final_stats=1
        -artifact_prefix="$findings/$target/")
    [ -f "Fuzz/Dictionaries/$target.dict" ] && options+=(-dict="Fuzz/Dictionaries/$target.dict")
    log="$findings/$target/last-run.log"

    if compgen -G "Fuzz/Regressions/$target/*" >/dev/null; then
        echo "== $target: replaying Fuzz/Regressions/$target"
        # Three times each: a leak may show only once an input runs after another one.
        if ! "$bin/$target" "${options[@]}" -runs=3 Fuzz/Regressions/"$target"/* >"$log" 2>&1; then
            echo "!! $target: a regression input still fails (log: $log)"
            grep -E "ERROR|Fatal error|SUMMARY|Running:" "$log" | tail -5 || true
            failed+=("$target")
            continue
        fi
    fi

    echo "== $target: fuzzing for ${seconds}s"
    status=0
    "$bin/$target" "$work/corpus" "${options[@]}" -max_total_time="$seconds" >"$log" 2>&1 || status=$?
    executions="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")"
    rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")"
    coverage="$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1)"
    line="$target: ${executions:-?} executions, ${rate:-?} exec/s, ${coverage:-no coverage reported}"
    if [ "$status" -ne 0 ]; then
        line="$line, FAILED (exit $status; log: $log)"
        grep -E "ERROR|Fatal error|SUMMARY|Test unit written" "$log" | tail -5 || true
        failed+=("$target")
    fi
    echo "$line"
    summary+=("$line")
    rm -rf "$work"
    trap - EXIT
done

echo
echo "fuzz summary (${seconds}s per target):"
printf '  %s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
    echo "failed: ${failed[*]} (inputs and logs under $findings/)" >&2
    exit 1
fi
