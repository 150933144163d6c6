#!/usr/bin/env bash
# One GPU session: records the machine and its CUDA libraries, runs the CUDA test suite, the
# end-to-end run and the benchmark against PyTorch, with every log written to $OUT.
#
# Run from the repository root on a GPU machine that has no Rust toolchain, after
# scripts/gpu/build-carry.sh has built the binaries into carry/ (an ignored folder) on another
# machine and put this script there as carry/run.sh.
set -u
export MULKI_REPO=$PWD
OUT=${OUT:-/tmp/mulki-gpu-session}
mkdir -p "$OUT"
exec > >(tee "$OUT/session.log") 2>&1
date -u; nvidia-smi; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
libdirs=$( (ls -d /usr/local/cuda/lib64 /usr/local/cuda/targets/*/lib 2>/dev/null; python -c "import nvidia, os; [print(os.path.join(p, d, 'lib')) for p in nvidia.__path__ for d in os.listdir(p)]" 2>/dev/null; python -c "import nvidia, os; [print(os.path.join(p, 'cu13', 'lib')) for p in nvidia.__path__]" 2>/dev/null) | while read -r d; do [ -d "$d" ] && echo "$d"; done | tr '\n' ':')
export LD_LIBRARY_PATH="${libdirs}${LD_LIBRARY_PATH:-}"
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
for l in libcuda.so libnvrtc.so libcublas.so; do echo "== $l"; ldconfig -p | grep "$l" | head -3; for d in ${libdirs//:/ }; do ls "$d"/$l* 2>/dev/null; done; done
python -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__)"
chmod +x carry/*
# BENCH_ONLY=1 skips the checks (probe, kernel compile, suite, e2e) for a benchmark alone;
# SKIP_E2E=1 skips only the end-to-end run.
if [ -z "${BENCH_ONLY:-}" ]; then
    echo "== probe"; timeout 60 carry/probe --nocapture
    echo "== kernels compile"; MULKI_REQUIRE_NVRTC=1 timeout 120 carry/kernels-compile --nocapture
    echo "== cuda suite"; timeout 150 carry/cuda-tests --nocapture --test-threads=1
    if [ -z "${SKIP_E2E:-}" ]; then
        # E2E_DEVICE picks the device (cuda:0 unless set, e.g. cuda:0:bf16:graphs).
        echo "== e2e"; timeout 200 python scripts/gpu/e2e.py --mulki carry/mulki --work /tmp/mulki-e2e \
            --device "${E2E_DEVICE:-cuda:0}"
    fi
fi
# Both bf16 modes (BENCH_MODES): operands rounded by mulki's kernels (the default) and rounded
# inside cuBLAS; a mode may carry `:graphs` (e.g. "bf16 bf16:graphs"), its log named with `-`.
for precision in ${BENCH_MODES:-bf16 fast-bf16}; do
    echo "== bench $precision"
    timeout 200 python bench/gpu_step.py --mulki carry/mulki --device "cuda:0:$precision" --profile \
        --steps "${BENCH_STEPS:-10}" --warmup 3 --json "$OUT/bench-${precision//:/-}.json"
done
# Other builds as carry/mulki-<name> (optional; build-carry.sh puts MULKI_BASE at
# carry/mulki-base), or other devices of this build (BENCH_DEVICES, e.g.
# "cuda:0:bf16 cuda:0:bf16:graphs"): the same bench step side by side, on the same GPU, for a
# change's effect. BENCH_ARGS adds options (--profile).
others=$(ls carry/mulki-* 2>/dev/null)
devices=${BENCH_DEVICES:-cuda:0:bf16}
if [ -n "$others" ] || [ "$devices" != cuda:0:bf16 ]; then
    for m in $others carry/mulki; do
        for d in $devices; do
            echo "== $m $d"
            timeout 120 "$m" bench step --device "$d" --classes 100 397 --batch 64 --text-len 77 \
                --steps "${BENCH_STEPS:-10}" --warmup 3 ${BENCH_ARGS:-}
        done
    done
fi
date -u
