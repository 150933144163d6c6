"""EuroSAT (RGB) -> mulki ImageFolder (or CSV), with ZSCL's random 80/20 split.

Download the RGB version of EuroSAT (`EuroSAT.zip`, https://github.com/phelber/eurosat; torchvision
now fetches the same archive from `torchgeo/eurosat` on the Hugging Face hub) and extract it;
SOURCE is the folder holding the 10 class folders (`2750/` in that archive, `EuroSAT_RGB/` in some
mirrors; torchvision's `<root>/eurosat/2750`).

ZSCL builds torchvision's `EuroSAT` (an `ImageFolder` over all 27,000 images) and splits it with
`torch.utils.data.random_split(dataset, [21600, 5400], generator=torch.Generator().manual_seed(42))`.
`ImageFolder` orders the samples by class folder (sorted) and, inside each, by `sorted(os.walk(...))`
and sorted file names (plain string order: `AnnualCrop_1.jpg`, `AnnualCrop_10.jpg`, ...). This
script rebuilds that order and draws the same permutation, so the split is ZSCL's exactly.

Class folders are the original ones (`AnnualCrop`, ..., `SeaLake`); the config maps them, in this
order, to ZSCL's class names ("annual crop land", ..., "lake or sea").

Requires: the Python standard library only.

    python3 scripts/convert/eurosat.py ~/downloads/2750 data/eurosat
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import Writer, arg_parser, zscl_split  # noqa: E402

# torchvision.datasets.folder.IMG_EXTENSIONS
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def main():
    args = arg_parser(__doc__).parse_args()
    root = args.source
    for candidate in (os.path.join(root, "eurosat", "2750"), os.path.join(root, "2750")):
        if os.path.isdir(candidate):
            root = candidate
            break
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir())
    if len(classes) != 10:
        raise SystemExit(f"expected 10 class folders in {root}, found {classes}")
    items = []  # (path, label) in ImageFolder's order
    for label, cls in enumerate(classes):
        for dirpath, _, fnames in sorted(os.walk(os.path.join(root, cls), followlinks=True)):
            for fname in sorted(fnames):
                if fname.lower().endswith(IMG_EXTENSIONS):
                    items.append((os.path.join(dirpath, fname), label))
    train, test = zscl_split(len(items))
    w = Writer(args.out, classes, args.format, args.mode)
    for split, idx in (("train", train), ("test", test)):
        for i in sorted(idx):
            w.add(split, *items[i])
    w.finish({"train": 21600, "test": 5400})


if __name__ == "__main__":
    main()
