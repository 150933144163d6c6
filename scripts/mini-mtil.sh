#!/usr/bin/env bash
# The mini-MTIL table: every method over configs/mini-mtil.toml (the five registry datasets), from
# models/mini-clip, then the comparison. Needs `scripts/get-offline-data.sh` (data/offline) and
# the mini CLIP:
#   mulki pretrain --out models/mini-clip --steps 3000 --batch 128 --lr 0.001 --warmup 200 \
#       --seed 0 --tokenizer fixtures/tokenizer --pairs data/offline/pairs.tsv
# Usage: scripts/mini-mtil.sh [METHOD...]   (default: zero-shot ft wise-ft zscl mulki)
# Each method's run goes to runs/mini-mtil/METHOD (resumed if it exists); the table to
# runs/mini-mtil/summary.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mulki=${MULKI:-target/release/mulki}
[[ -x "$mulki" ]] || cargo build --release -p mulki-host --no-default-features
methods=("$@")
[[ ${#methods[@]} -gt 0 ]] || methods=(zero-shot ft wise-ft zscl mulki)
mkdir -p runs/mini-mtil
dirs=()
for m in "${methods[@]}"; do
    # Same stream, another preset; zscl also takes the reference set the config lists. The copy
    # sits beside the original so its relative paths resolve the same way.
    cfg="configs/.mini-mtil-$m.toml"
    sed -e "s/^preset = \"mulki\"/preset = \"$m\"/" configs/mini-mtil.toml > "$cfg"
    case $m in
        zscl | mulki | mulki-no-ei | mulki-no-rel | mulki-no-dual | mulki-no-weight) ;;
        *) sed -i -e '/^lambda_c = /d' "$cfg" ;;
    esac
    if [[ $m == zscl ]]; then
        sed -i -e 's/^# \[reference\]/[reference]/' -e 's/^# images = /images = /' \
            -e 's/^# captions = /captions = /' -e 's/^# batch_size = /batch_size = /' "$cfg"
    fi
    echo "== $m"
    "$mulki" train --config "$cfg" --output "runs/mini-mtil/$m" --quiet
    rm -f "$cfg"
    dirs+=("runs/mini-mtil/$m")
done
"$mulki" report "${dirs[@]}" | tee runs/mini-mtil/summary.md
