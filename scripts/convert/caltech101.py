"""Caltech-101 -> mulki ImageFolder (or CSV), with ZSCL's random 80/20 split.

Download Caltech-101 (https://data.caltech.edu/records/mzrjq-6wc02: `caltech-101.zip`, which holds
`101_ObjectCategories.tar.gz`) and extract it; SOURCE is the folder that holds
`101_ObjectCategories/` (torchvision's `<root>/caltech101/` works too).

ZSCL builds torchvision's `Caltech101` (all images, no official split) and splits it with
`torch.utils.data.random_split(dataset, [int(0.8 * N), N - int(0.8 * N)],
generator=torch.Generator().manual_seed(42))`. torchvision lists the categories as
`sorted(os.listdir("101_ObjectCategories"))` without `BACKGROUND_Google` (101 categories) and, in
that order, each category's images `image_0001.jpg` .. `image_<n>.jpg` with n the number of files
in its folder: N = 8,677 images, train 6,941, test 1,736. This script rebuilds that list and draws
the same permutation (`_common.torch_randperm`, checked against PyTorch's values), so the split
is ZSCL's exactly.

Class folders are the original category folder names (`Faces`, `Faces_easy`, ..., `yin_yang`);
the config maps them, in this order, to ZSCL's descriptive class names.

Requires: the Python standard library only.

    python3 scripts/convert/caltech101.py ~/downloads/caltech-101 data/caltech101
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import Writer, arg_parser, zscl_split  # noqa: E402


def main():
    args = arg_parser(__doc__).parse_args()
    root = args.source
    if not os.path.isdir(os.path.join(root, "101_ObjectCategories")):
        root = os.path.join(root, "caltech101")
    cats_dir = os.path.join(root, "101_ObjectCategories")
    categories = sorted(os.listdir(cats_dir))
    categories.remove("BACKGROUND_Google")
    if len(categories) != 101:
        raise SystemExit(f"expected 101 categories, found {len(categories)}: {categories}")
    items = []  # (path, label) in torchvision's order
    for label, cat in enumerate(categories):
        n = len(os.listdir(os.path.join(cats_dir, cat)))
        items += [(os.path.join(cats_dir, cat, f"image_{k:04d}.jpg"), label)
                  for k in range(1, n + 1)]
    train, test = zscl_split(len(items))
    w = Writer(args.out, categories, args.format, args.mode)
    for split, idx in (("train", train), ("test", test)):
        for i in sorted(idx):
            w.add(split, *items[i])
    w.finish({"train": 6941, "test": 1736})


if __name__ == "__main__":
    main()
