"""CIFAR-100 (python version) -> mulki ImageFolder of PNGs (or CSV over the PNGs).

Download `cifar-100-python.tar.gz` (https://www.cs.toronto.edu/~kriz/cifar.html) and extract it;
SOURCE is the `cifar-100-python` folder (or the folder that holds it), with the pickled `train`,
`test` and `meta` files.

ZSCL uses torchvision's `CIFAR100(train=True)` (50,000 images) and `train=False` (10,000): the
official split, `fine_labels`, class names `fine_label_names` from `meta` in label order, with `_`
turned into a space for the prompts. Each 3072-byte row is 1024 red, 1024 green, 1024 blue values of
a 32x32 image; this script writes it as `<split>/<fine label name>/<row index:05d>.png`.

Class folders are the `fine_label_names` (`aquarium_fish`, ...).

Requires: numpy (to unpickle the arrays) and Pillow (to write the PNGs).

    python3 scripts/convert/cifar100.py ~/downloads/cifar-100-python data/cifar100
"""
import os
import pickle
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import Writer, arg_parser  # noqa: E402


def load(path):
    with open(path, "rb") as f:
        return pickle.load(f, encoding="bytes")


def main():
    import numpy as np
    from PIL import Image

    parser = arg_parser(__doc__)
    args = parser.parse_args()
    root = args.source
    if not os.path.isfile(os.path.join(root, "meta")):
        root = os.path.join(root, "cifar-100-python")
    names = [n.decode() for n in load(os.path.join(root, "meta"))[b"fine_label_names"]]
    if len(names) != 100:
        raise SystemExit(f"expected 100 fine labels, found {len(names)}")
    w = Writer(args.out, names, args.format, args.mode)
    for split in ("train", "test"):
        batch = load(os.path.join(root, split))
        data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        data = data.transpose(0, 2, 3, 1)
        for i, label in enumerate(batch[b"fine_labels"]):
            img = Image.fromarray(data[i])
            w.add_generated(split, int(label), f"{i:05d}.png", img.save)
    w.finish({"train": 50000, "test": 10000})


if __name__ == "__main__":
    main()
