"""SUN397 -> mulki ImageFolder (or CSV), with ZSCL's random 80/20 split.

Download `SUN397.tar.gz` (https://vision.princeton.edu/projects/2010/SUN/) and extract it; SOURCE
is the `SUN397` folder holding `ClassName.txt` and `a/`, `b/`, ... (or the folder that holds it).

ZSCL does not use SUN397's official partitions. It builds torchvision's `SUN397`: classes are the
lines of `ClassName.txt` without their first three characters (`/a/abbey` -> `abbey`,
`/a/apartment_building/outdoor` -> `apartment_building/outdoor`; 397), the images every
`sun_*.jpg` found by `Path("SUN397").rglob("sun_*.jpg")` (108,754), each labelled by its folder
path under the letter folder. It then splits them with `torch.utils.data.random_split(dataset,
[87003, 21751], generator=torch.Generator().manual_seed(42))`.

`rglob` returns the files in the file system's directory order, which differs between machines, so
ZSCL's exact split cannot be rebuilt elsewhere. By default (`--order sorted`) this script sorts the
image paths (relative, `/`-separated, plain string order) and draws ZSCL's permutation over that
list: the same sizes and the same procedure, a fixed split. `--order rglob` keeps this machine's
`rglob` order instead (ZSCL's split if ZSCL's code ran on these very files). `--partition N
--partitions DIR` uses the official `Training_0N.txt` / `Testing_0N.txt` lists of
`Partitions.zip` instead (50 + 50 images per class); that is not ZSCL's protocol.

Class folders are the `ClassName.txt` paths without the leading `/`, with `/` replaced by `_`
(`a_abbey`, `a_apartment_building_outdoor`).

Requires: the Python standard library only.

    python3 scripts/convert/sun397.py ~/downloads/SUN397 data/sun397
"""
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import Writer, arg_parser, safe_folder, zscl_split  # noqa: E402


def main():
    parser = arg_parser(__doc__)
    parser.add_argument("--order", choices=["sorted", "rglob"], default="sorted",
                        help="image order the permutation is drawn over (see above)")
    parser.add_argument("--partition", type=int, choices=range(1, 11),
                        help="use the official partition N instead of ZSCL's split")
    parser.add_argument("--partitions", help="folder with Training_0N.txt / Testing_0N.txt")
    args = parser.parse_args()
    root = Path(args.source)
    if not (root / "ClassName.txt").is_file():
        root = root / "SUN397"
    with open(root / "ClassName.txt") as f:
        lines = [c for c in f if c.strip()]
    classes = [c[3:].strip() for c in lines]  # as torchvision: "/a/abbey" -> "abbey"
    if len(classes) != 397:
        raise SystemExit(f"expected 397 classes, found {len(classes)}")
    index = {c: i for i, c in enumerate(classes)}
    folders = [safe_folder(c.strip().lstrip("/")) for c in lines]
    w = Writer(args.out, folders, args.format, args.mode)

    def label_of(rel):  # rel: "a/apartment_building/outdoor/sun_x.jpg"
        return index["/".join(rel.split("/")[1:-1])]

    if args.partition:
        if not args.partitions:
            raise SystemExit("--partition needs --partitions DIR")
        for split, name in (("train", "Training"), ("test", "Testing")):
            with open(os.path.join(args.partitions, f"{name}_{args.partition:02d}.txt")) as f:
                for line in f:
                    rel = line.strip().lstrip("/")
                    if rel:
                        w.add(split, str(root / rel), label_of(rel))
        w.finish({"train": 19850, "test": 19850})
        return

    files = [p.relative_to(root).as_posix() for p in root.rglob("sun_*.jpg")]
    if args.order == "sorted":
        files.sort()
    train, test = zscl_split(len(files))
    for split, idx in (("train", train), ("test", test)):
        for i in sorted(idx):
            w.add(split, str(root / files[i]), label_of(files[i]))
    w.finish({"train": 87003, "test": 21751})


if __name__ == "__main__":
    main()
