"""Oxford Flowers-102 -> mulki ImageFolder (or CSV), with ZSCL's split.

Download `102flowers.tgz`, `imagelabels.mat` and `setid.mat`
(https://www.robots.ox.ac.uk/~vgg/data/flowers/102/) into one folder and extract the archive there
(giving `jpg/image_00001.jpg` ..); SOURCE is that folder (torchvision's `<root>/flowers-102`).

ZSCL uses torchvision's `Flowers102(split="train")` and `split="test"`: train is `setid.mat`'s
`trnid` (1,020 images, 10 per class), test its `tstid` (6,149); `valid` (1,020) is not used. The
label of image k is `imagelabels.mat`'s `labels[k - 1]` (1..102), used 0-based (label - 1) as
torchvision >= 0.13 does; its class names are ZSCL's hard-coded list, in label order.

Class folders are the 1-based labels written with three digits (`001` .. `102`).

Requires: scipy (to read the .mat files).

    python3 scripts/convert/flowers.py ~/downloads/flowers-102 data/flowers
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import Writer, arg_parser  # noqa: E402


def main():
    from scipy.io import loadmat

    args = arg_parser(__doc__).parse_args()
    root = args.source
    if not os.path.isfile(os.path.join(root, "setid.mat")):
        root = os.path.join(root, "flowers-102")
    setid = loadmat(os.path.join(root, "setid.mat"), squeeze_me=True)
    labels = loadmat(os.path.join(root, "imagelabels.mat"), squeeze_me=True)["labels"].tolist()
    w = Writer(args.out, [f"{k:03d}" for k in range(1, 103)], args.format, args.mode)
    for split, key in (("train", "trnid"), ("test", "tstid")):
        for image_id in setid[key].tolist():
            label = int(labels[image_id - 1]) - 1
            w.add(split, os.path.join(root, "jpg", f"image_{image_id:05d}.jpg"), label)
    w.finish({"train": 1020, "test": 6149})


if __name__ == "__main__":
    main()
