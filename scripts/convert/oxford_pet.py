"""Oxford-IIIT Pet -> mulki ImageFolder (or CSV), with ZSCL's split.

Download `images.tar.gz` and `annotations.tar.gz` (https://www.robots.ox.ac.uk/~vgg/data/pets/) and
extract both into one folder; SOURCE is that folder, holding `images/` and `annotations/`
(torchvision's `<root>/oxford-iiit-pet`).

ZSCL uses torchvision's `OxfordIIITPet(split="trainval")` for training (3,680 images) and
`split="test"` for testing (3,669): `annotations/trainval.txt` and `annotations/test.txt`, lines
`<image id> <class id 1..37> <species> <breed id>`, the image being `images/<image id>.jpg`. The
label is class id - 1. torchvision names class k after the image ids' breed prefix, each `_`-part
title-cased (`american_pit_bull_terrier` -> "American Pit Bull Terrier").

Class folders are the breed prefixes of the image ids (`Abyssinian`, `american_bulldog`, ...).

Requires: the Python standard library only.

    python3 scripts/convert/oxford_pet.py ~/downloads/oxford-iiit-pet data/oxford_pet
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import Writer, arg_parser  # noqa: E402


def main():
    args = arg_parser(__doc__).parse_args()
    root = args.source
    if not os.path.isdir(os.path.join(root, "annotations")):
        root = os.path.join(root, "oxford-iiit-pet")
    rows = {}
    breeds = {}
    for split, fname in (("train", "trainval.txt"), ("test", "test.txt")):
        rows[split] = []
        with open(os.path.join(root, "annotations", fname)) as f:
            for line in f:
                if not line.strip() or line.startswith("#"):
                    continue
                image_id, class_id = line.split()[:2]
                label = int(class_id) - 1
                breed = image_id.rsplit("_", 1)[0]
                if breeds.setdefault(label, breed) != breed:
                    raise SystemExit(f"class {class_id} is both {breeds[label]} and {breed}")
                rows[split].append((image_id, label))
    if sorted(breeds) != list(range(37)):
        raise SystemExit(f"expected class ids 1..37, found {sorted(breeds)}")
    w = Writer(args.out, [breeds[k] for k in range(37)], args.format, args.mode)
    for split, items in rows.items():
        for image_id, label in items:
            w.add(split, os.path.join(root, "images", image_id + ".jpg"), label)
    w.finish({"train": 3680, "test": 3669})


if __name__ == "__main__":
    main()
