"""Food-101 -> mulki ImageFolder (or CSV), with ZSCL's split.

Download `food-101.tar.gz` (https://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/) and
extract it; SOURCE is the `food-101` folder holding `images/` and `meta/` (or the folder that
holds it).

ZSCL uses torchvision's `Food101(split="train")` and `split="test"`: the official split,
`meta/train.json` (75,750 images, 750 per class) and `meta/test.json` (25,250, 250 per class);
`meta/train.txt` and `meta/test.txt` list the same images as `<class>/<image id>` lines, which this
script reads. Classes are the sorted class names (101), with `_` turned into a space for the
prompts; the image is `images/<class>/<image id>.jpg`.

Class folders are the original class names (`apple_pie`, ...).

Requires: the Python standard library only.

    python3 scripts/convert/food.py ~/downloads/food-101 data/food
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import Writer, arg_parser  # noqa: E402


def main():
    args = arg_parser(__doc__).parse_args()
    root = args.source
    if not os.path.isdir(os.path.join(root, "meta")):
        root = os.path.join(root, "food-101")
    lists = {}
    for split in ("train", "test"):
        with open(os.path.join(root, "meta", f"{split}.txt")) as f:
            lists[split] = [line.strip() for line in f if line.strip()]
    classes = sorted({entry.split("/")[0] for entry in lists["train"]})
    if len(classes) != 101:
        raise SystemExit(f"expected 101 classes, found {len(classes)}")
    index = {c: i for i, c in enumerate(classes)}
    w = Writer(args.out, classes, args.format, args.mode)
    for split, entries in lists.items():
        for entry in entries:
            cls = entry.split("/")[0]
            w.add(split, os.path.join(root, "images", *f"{entry}.jpg".split("/")), index[cls])
    w.finish({"train": 75750, "test": 25250})


if __name__ == "__main__":
    main()
