"""FGVC-Aircraft -> mulki ImageFolder (or CSV), with ZSCL's split.

Download `fgvc-aircraft-2013b.tar.gz` (https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/) and
extract it; SOURCE is the `fgvc-aircraft-2013b` folder (or the folder that holds it).

ZSCL uses torchvision's `FGVCAircraft(split="train")` for training and `split="test"` for testing,
at the `variant` level: classes are the 100 lines of `data/variants.txt` in file order; train is
`data/images_variant_train.txt` (3,334 images), test `data/images_variant_test.txt` (3,333). The
`val` split (3,333 images) is not used. Each line is `<image id> <variant>`, the image being
`data/images/<image id>.jpg`.

Class folders are the variant names with `/` replaced by `_` (`F-16A_B`, `F_A-18`).

Requires: the Python standard library only.

    python3 scripts/convert/aircraft.py ~/downloads/fgvc-aircraft-2013b data/aircraft
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import Writer, arg_parser, safe_folder  # noqa: E402


def main():
    args = arg_parser(__doc__).parse_args()
    root = args.source
    if not os.path.isdir(os.path.join(root, "data")):
        root = os.path.join(root, "fgvc-aircraft-2013b")
    data = os.path.join(root, "data")
    with open(os.path.join(data, "variants.txt")) as f:
        classes = [line.strip() for line in f if line.strip()]
    if len(classes) != 100:
        raise SystemExit(f"expected 100 variants in variants.txt, found {len(classes)}")
    index = {c: i for i, c in enumerate(classes)}
    w = Writer(args.out, [safe_folder(c) for c in classes], args.format, args.mode)
    for split in ("train", "test"):
        with open(os.path.join(data, f"images_variant_{split}.txt")) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                image, variant = line.split(" ", 1)
                w.add(split, os.path.join(data, "images", image + ".jpg"), index[variant])
    w.finish({"train": 3334, "test": 3333})


if __name__ == "__main__":
    main()
