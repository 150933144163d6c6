#!/usr/bin/env bash
# Kill-and-resume harness for `mulki train`.
#
# 1. Runs a tiny 3-task run (the generated image folders and tiny CLIP of mulki-host/tests/common,
#    preset mulki, 4 steps per task, a checkpoint every step) once without interruption: the
#    reference.
# 2. Kills runs with SIGKILL after a random delay (0 to the duration of a whole run: the reference's,
#    or the shortest fresh run seen to finish before its kill, so kills land in start-up, steps,
#    checkpoint writes, rotations and task ends) until --kills kills have landed.
#    Each killed run is resumed; a resume is itself killed again at random (at most 3 kills in a
#    row) or let finish.
# 3. Resumes a copy of the reference's checkpoint at task 2, step 2 once per in-save crash point
#    (MULKI_CRASH_AT: after-file-0..3, before-manifest, after-manifest, before-rename, after-rename),
#    which aborts the process in the save of step 3, then resumes that run to the end.
#
# After every kill or abort it checks that the process died by that signal (bash status 137 for
# SIGKILL, 134 for the abort) and that the newest checkpoint verifies and loads (`mulki inspect`:
# manifest, every file's size and SHA-256, the state header) with no checkpoint skipped as damaged.
# Every resumed run must end with the reference's accuracy matrix and metrics (metrics.json without
# its timing and memory fields, accuracy.csv) and the same final weights (SHA-256 of the last
# checkpoint's model.safetensors). Prints
#   kills: N, crash points: M, all resumed runs identical: yes|no
# and exits non-zero on any failure.
#
# Usage: scripts/kill-harness.sh [--kills N] [--seed S] [--bin PATH] [--setup DIR] [--work DIR] [--keep]
#   --kills N    SIGKILLs to land (default 50)
#   --seed S     seed of bash's $RANDOM for the delays (default: from the clock; printed)
#   --bin PATH   the mulki binary (default target/release/mulki, built with
#                `cargo build --release -p mulki-host --no-default-features` when missing)
#   --setup DIR  an existing set-up (run.toml, model/, task*/, reference/), e.g. from CI; by default
#                it is written into the work folder by the ignored test `write_harness_setup`
#   --work DIR   scratch folder (default: a new one under $TMPDIR, removed after a clean pass)
#   --keep       keep the work folder
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
kills_wanted=50
seed=$(( $(date +%s) % 32768 ))
bin=""
setup=""
work=""
keep=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --kills) kills_wanted="$2"; shift 2 ;;
        --seed) seed="$2"; shift 2 ;;
        --bin) bin="$2"; shift 2 ;;
        --setup) setup="$2"; shift 2 ;;
        --work) work="$2"; shift 2 ;;
        --keep) keep=1; shift ;;
        -h|--help) sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "kill-harness: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
RANDOM=$seed
ulimit -c 0 # the aborts must not write core files

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
t_start=$(now_ms)

if [[ -z "$work" ]]; then
    work=$(mktemp -d "${TMPDIR:-/tmp}/mulki-kill-harness.XXXXXX")
fi
mkdir -p "$work"

if [[ -z "$bin" ]]; then
    bin="${CARGO_TARGET_DIR:-$root/target}/release/mulki"
    if [[ ! -x "$bin" ]]; then
        echo "building $bin"
        (cd "$root" && cargo build --release -p mulki-host --no-default-features) || exit 1
    fi
fi
[[ -x "$bin" ]] || { echo "kill-harness: no mulki binary at $bin" >&2; exit 1; }

if [[ -z "$setup" ]]; then
    setup="$work/setup"
    echo "writing the set-up into $setup"
    (cd "$root" && MULKI_HARNESS_DIR="$setup" cargo test -q -p mulki-host --test kill_harness \
        -- --ignored --exact write_harness_setup >/dev/null) || exit 1
fi
cfg="$setup/run.toml"
[[ -f "$cfg" ]] || { echo "kill-harness: $cfg missing" >&2; exit 1; }

failures=()
fail() {
    failures+=("$1")
    echo "FAIL: $1"
}

child=""
cleanup() { [[ -n "$child" ]] && kill -9 "$child" 2>/dev/null; }
trap cleanup EXIT

# `mulki train` into run dir $1; extra environment in the rest of the arguments.
train() {
    local run="$1"
    shift
    env "$@" "$bin" train --config "$cfg" --output "$run" --quiet
}

# Strips what differs between two identical runs (timings, memory) from metrics.json.
metrics() { grep -v -E '"(wall_seconds|peak_memory_bytes|device_memory_bytes)"' "$1/metrics.json"; }

# The newest checkpoint of run $1 as `mulki inspect` finds and verifies it; "" when none is
# committed yet. Fails when inspect fails while a checkpoint exists, or skips one as damaged.
in_save=0
before_first=0
check_after_kill() {
    local run="$1" what="$2" out err
    if compgen -G "$run/task-*/*.tmp" >/dev/null || compgen -G "$run/task-*/*.old" >/dev/null ||
        compgen -G "$run/task-*/*.del" >/dev/null; then
        in_save=$((in_save + 1))
    fi
    if ! compgen -G "$run/task-*/step-[0-9][0-9][0-9][0-9][0-9][0-9]" >/dev/null; then
        before_first=$((before_first + 1))
        return 0
    fi
    if ! out=$("$bin" inspect "$run" 2>"$run.inspect-err"); then
        fail "$what: mulki inspect $run failed: $(cat "$run.inspect-err")"
        return 1
    fi
    err=$(cat "$run.inspect-err")
    if grep -q "skipping damaged" <<<"$err"; then
        fail "$what: a committed checkpoint of $run is damaged: $err"
        return 1
    fi
    if ! grep -q "^checkpoint " <<<"$out"; then
        fail "$what: mulki inspect $run printed no checkpoint"
        return 1
    fi
    rm -f "$run.inspect-err"
}

# The final model's SHA-256 (newest checkpoint, verified by inspect first).
final_sha() {
    local dir
    dir=$("$bin" inspect "$1" 2>/dev/null | sed -n 's/^checkpoint //p')
    [[ -n "$dir" ]] && sha256sum "$dir/model.safetensors" | cut -d' ' -f1
}

identical=1
compare() {
    local run="$1" what="$2" sha
    sha=$(final_sha "$run")
    if [[ "$sha" != "$ref_sha" ]]; then
        fail "$what: final weights differ (sha256 ${sha:-none} vs $ref_sha)"
        identical=0
    fi
    if ! cmp -s "$run/accuracy.csv" "$ref/accuracy.csv" || ! diff -q <(metrics "$run") <(metrics "$ref") >/dev/null; then
        fail "$what: accuracy matrix or metrics differ from the reference"
        identical=0
    fi
}

# --- reference -------------------------------------------------------------------------------
ref="$work/reference"
rm -rf "$ref"
t0=$(now_ms)
if ! train "$ref"; then
    echo "kill-harness: the reference run failed" >&2
    exit 1
fi
ref_ms=$(( $(now_ms) - t0 ))
ref_sha=$(final_sha "$ref")
[[ -n "$ref_sha" ]] || { echo "kill-harness: the reference run left no checkpoint" >&2; exit 1; }
echo "seed $seed; reference run: ${ref_ms} ms, final model sha256 $ref_sha"

# --- random SIGKILLs --------------------------------------------------------------------------
span_ms=$ref_ms # kill delays are drawn from [0, span_ms): a whole run's duration
kills=0
chains=0
early=0
resumes=0
while [[ $kills -lt $kills_wanted && ${#failures[@]} -lt 5 ]]; do
    chains=$((chains + 1))
    run="$work/chain-$chains"
    rm -rf "$run"
    in_row=0
    while true; do
        # The first run is always killed; a resume is killed again with probability 1/2, at most
        # three kills in a row, else let finish.
        if [[ $in_row -eq 0 || ($in_row -lt 3 && $((RANDOM % 2)) -eq 0) ]]; then
            delay=$(( (RANDOM * 32768 + RANDOM) % span_ms ))
            t0=$(now_ms)
            # A simple command, so that $! is mulki itself (not a subshell that would die alone).
            "$bin" train --config "$cfg" --output "$run" --quiet &
            child=$!
            sleep "$(printf '%d.%03d' $((delay / 1000)) $((delay % 1000)))"
            kill -9 "$child" 2>/dev/null
            wait "$child" 2>/dev/null
            rc=$?
            child=""
            if [[ $rc -eq 137 ]]; then
                kills=$((kills + 1))
                in_row=$((in_row + 1))
                check_after_kill "$run" "chain $chains, kill at +${delay} ms"
                resumes=$((resumes + 1))
                continue
            elif [[ $rc -eq 0 ]]; then
                early=$((early + 1)) # finished before the kill: the chain is complete
                # A whole run took less than the span: draw later delays below its duration.
                elapsed=$(( $(now_ms) - t0 ))
                if [[ $in_row -eq 0 && $elapsed -lt $span_ms && $elapsed -gt 0 ]]; then
                    span_ms=$elapsed
                fi
                break
            else
                fail "chain $chains: train exited with $rc instead of dying by SIGKILL (137)"
                break
            fi
        else
            if ! train "$run"; then
                fail "chain $chains: the resume failed"
                break
            fi
            break
        fi
    done
    compare "$run" "chain $chains"
    [[ ${#failures[@]} -eq 0 ]] && rm -rf "$run"
done

# --- crash points -----------------------------------------------------------------------------
crash_points=0
kill_stats=("$in_save" "$before_first")
for point in after-file-0 after-file-1 after-file-2 after-file-3 before-manifest after-manifest \
    before-rename after-rename; do
    # Resume from the reference's checkpoint at task 2, step 2: the abort hits the next save
    # (task 2, step 3, a rotation due after it), and the resume is short.
    run="$work/crash-$point"
    rm -rf "$run"
    mkdir -p "$run/task-01"
    cp -r "$ref/task-01/step-000002" "$run/task-01/"
    train "$run" MULKI_CRASH_AT="$point" 2>/dev/null
    rc=$?
    if [[ $rc -ne 134 ]]; then
        fail "crash point $point: train exited with $rc instead of aborting (134)"
        continue
    fi
    crash_points=$((crash_points + 1))
    if ! compgen -G "$run/task-01/step-000003*" >/dev/null; then
        fail "crash point $point: the aborted save of task 2, step 3 left nothing behind"
    fi
    check_after_kill "$run" "crash point $point"
    if ! train "$run"; then
        fail "crash point $point: the resume failed"
        continue
    fi
    compare "$run" "crash point $point"
    [[ ${#failures[@]} -eq 0 ]] && rm -rf "$run"
done

in_save=${kill_stats[0]}
before_first=${kill_stats[1]}
t_total=$(( $(now_ms) - t_start ))
echo "chains: $chains (resumes: $resumes, runs that finished before their kill: $early, delays below ${span_ms} ms);" \
    "kills landing inside a checkpoint save: $in_save, before the first checkpoint: $before_first;" \
    "seed $seed; $(date -u +%Y-%m-%dT%H:%M:%SZ); $((t_total / 1000)) s"
if [[ ${#failures[@]} -gt 0 ]]; then
    identical=0
fi
echo "kills: $kills, crash points: $crash_points, all resumed runs identical: $([[ $identical -eq 1 ]] && echo yes || echo no)"
if [[ ${#failures[@]} -gt 0 ]]; then
    echo "${#failures[@]} failure(s); work folder kept: $work"
    exit 1
fi
if [[ $keep -eq 0 ]]; then
    rm -rf "$work"
fi
exit 0
