"""Stanford Cars -> mulki ImageFolder (or CSV), with ZSCL's split.

The original site is gone; get the dataset as torchvision expects it (see
https://github.com/pytorch/vision/issues/7545): `cars_train/`, `cars_test/`,
`cars_test_annos_withlabels.mat` and `devkit/` (with `cars_meta.mat`, `cars_train_annos.mat`) in
one folder; SOURCE is that folder (torchvision's `<root>/stanford_cars`).

ZSCL uses torchvision's `StanfordCars(split="train")` (8,144 images) and `split="test"` (8,041):
the official split, `devkit/cars_train_annos.mat` with images in `cars_train/`, and
`cars_test_annos_withlabels.mat` with images in `cars_test/`. Each annotation has `fname` and a
1-based `class`; the label is class - 1 and the class names are `devkit/cars_meta.mat`'s
`class_names` in order (196).

Class folders are those class names with `/` replaced by `_` (`Ram C_V Cargo Van Minivan 2012`).

Requires: scipy (to read the .mat files).

    python3 scripts/convert/stanford_cars.py ~/downloads/stanford_cars data/stanford_cars
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import Writer, arg_parser, safe_folder  # noqa: E402


def main():
    from scipy.io import loadmat

    args = arg_parser(__doc__).parse_args()
    root = args.source
    if not os.path.isdir(os.path.join(root, "devkit")):
        root = os.path.join(root, "stanford_cars")
    devkit = os.path.join(root, "devkit")
    names = [str(n) for n in loadmat(os.path.join(devkit, "cars_meta.mat"),
                                     squeeze_me=True)["class_names"].tolist()]
    if len(names) != 196:
        raise SystemExit(f"expected 196 class names, found {len(names)}")
    test_annos = os.path.join(root, "cars_test_annos_withlabels.mat")
    if not os.path.isfile(test_annos):
        test_annos = os.path.join(devkit, "cars_test_annos_withlabels.mat")
    w = Writer(args.out, [safe_folder(n) for n in names], args.format, args.mode)
    for split, annos, images in (
        ("train", os.path.join(devkit, "cars_train_annos.mat"), os.path.join(root, "cars_train")),
        ("test", test_annos, os.path.join(root, "cars_test")),
    ):
        for a in loadmat(annos, squeeze_me=True)["annotations"]:
            w.add(split, os.path.join(images, str(a["fname"])), int(a["class"]) - 1)
    w.finish({"train": 8144, "test": 8041})


if __name__ == "__main__":
    main()
