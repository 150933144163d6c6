"""MNIST -> mulki's `idx` layout (the original files, uncompressed).

Download `train-images-idx3-ubyte.gz`, `train-labels-idx1-ubyte.gz`, `t10k-images-idx3-ubyte.gz`
and `t10k-labels-idx1-ubyte.gz` (the original MNIST files; torchvision keeps them in
`<root>/MNIST/raw/`); SOURCE is the folder holding them (compressed or not).

ZSCL uses torchvision's `MNIST(train=True)` (60,000 images) and `train=False` (10,000), the
official split, with torchvision's class names `"0 - zero"` .. `"9 - nine"`. mulki reads the IDX
files directly (`format = "idx"`, `train_split = "train"`, `test_split = "t10k"`), so this script
only decompresses them into OUT and checks their headers and sizes.

Requires: the Python standard library only.

    python3 scripts/convert/mnist.py ~/downloads/MNIST/raw data/mnist
"""
import argparse
import gzip
import os
import struct

FILES = {
    "train-images-idx3-ubyte": (2051, 60000),
    "train-labels-idx1-ubyte": (2049, 60000),
    "t10k-images-idx3-ubyte": (2051, 10000),
    "t10k-labels-idx1-ubyte": (2049, 10000),
}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("source", help="folder with the four MNIST files (.gz or not)")
    p.add_argument("out", help="the dataset root mulki reads, e.g. data/mnist")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for name, (magic, count) in FILES.items():
        src = os.path.join(args.source, name)
        if os.path.isfile(src):
            with open(src, "rb") as f:
                data = f.read()
        elif os.path.isfile(src + ".gz"):
            with gzip.open(src + ".gz", "rb") as f:
                data = f.read()
        else:
            raise SystemExit(f"missing {src}[.gz]")
        got_magic, got_count = struct.unpack(">II", data[:8])
        if (got_magic, got_count) != (magic, count):
            raise SystemExit(f"{name}: header {got_magic}/{got_count}, expected {magic}/{count}")
        expected = 16 + count * 28 * 28 if magic == 2051 else 8 + count
        if len(data) != expected:
            raise SystemExit(f"{name}: {len(data)} bytes, expected {expected}")
        with open(os.path.join(args.out, name), "wb") as f:
            f.write(data)
        print(f"{name}: {count} items")


if __name__ == "__main__":
    main()
