"""DTD (Describable Textures) -> mulki ImageFolder (or CSV), with ZSCL's split.

Download `dtd-r1.0.1.tar.gz` (https://www.robots.ox.ac.uk/~vgg/data/dtd/) and extract it; SOURCE is
the `dtd` folder holding `images/` and `labels/` (or a folder that holds it).

ZSCL uses torchvision's `DTD(split="train")` and `DTD(split="test")` with the default partition 1:
train is `labels/train1.txt` (1,880 images), test `labels/test1.txt` (1,880); `val1.txt` is not
used. Lines are `<class>/<file>`, the image being `images/<class>/<file>`; classes are the sorted
class names (47).

Class folders are the class names, which are also the prompts' names (no `folders` needed).

Requires: the Python standard library only.

    python3 scripts/convert/dtd.py ~/downloads/dtd data/dtd
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import Writer, arg_parser  # noqa: E402


def main():
    parser = arg_parser(__doc__)
    parser.add_argument("--partition", type=int, default=1, choices=range(1, 11),
                        help="DTD partition (ZSCL: 1)")
    args = parser.parse_args()
    root = args.source
    for candidate in (root, os.path.join(root, "dtd"), os.path.join(root, "dtd", "dtd")):
        if os.path.isdir(os.path.join(candidate, "labels")):
            root = candidate
            break
    lists = {}
    for split in ("train", "test"):
        with open(os.path.join(root, "labels", f"{split}{args.partition}.txt")) as f:
            lists[split] = [line.strip().split("/") for line in f if line.strip()]
    classes = sorted({cls for cls, _ in lists["train"]})
    if len(classes) != 47:
        raise SystemExit(f"expected 47 classes, found {len(classes)}")
    index = {c: i for i, c in enumerate(classes)}
    w = Writer(args.out, classes, args.format, args.mode)
    for split, rows in lists.items():
        for cls, name in rows:
            w.add(split, os.path.join(root, "images", cls, name), index[cls])
    w.finish({"train": 1880, "test": 1880})


if __name__ == "__main__":
    main()
