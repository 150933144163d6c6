#!/usr/bin/env bash
# Builds, on a machine with a Rust toolchain, everything scripts/gpu/session.sh runs on a GPU
# machine that has none, into carry/ (ignored by git):
#   carry/mulki            the release binary (bench step, train, e2e)
#   carry/cuda-tests       tests/tests/cuda.rs (the CUDA suite on the GPU)
#   carry/kernels-compile  mulki-cuda/tests/kernels_compile.rs
#   carry/probe            mulki-cuda/tests/probe.rs
#   carry/run.sh           scripts/gpu/session.sh
#   carry/mulki-base       with MULKI_BASE=PATH: an earlier release build, benchmarked beside
#                          this one by session.sh
# Binaries are stripped. Then, on the GPU machine: `bash carry/run.sh` from the repository root.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

mkdir -p carry
cargo build --release -p mulki-host
cp target/release/mulki carry/mulki

# The path of the test executable of `target` (`--test NAME` of package PKG), from cargo's JSON.
test_binary() {
    local pkg=$1 name=$2
    cargo test -p "$pkg" --test "$name" --no-run --message-format=json 2>/dev/null |
        python3 -c 'import json, sys
name = sys.argv[1]
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == name:
        print(m["executable"])' "$name"
}

cp "$(test_binary mulki-tests cuda)" carry/cuda-tests
cp "$(test_binary mulki-cuda kernels_compile)" carry/kernels-compile
cp "$(test_binary mulki-cuda probe)" carry/probe
cp scripts/gpu/session.sh carry/run.sh
strip carry/mulki carry/cuda-tests carry/kernels-compile carry/probe
rm -f carry/mulki-*
if [ -n "${MULKI_BASE:-}" ]; then
    cp "$MULKI_BASE" carry/mulki-base
    strip carry/mulki-base
fi
ls -l carry
