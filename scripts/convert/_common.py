"""Shared helpers for the dataset converters in this folder (Python standard library only).

- `torch_random_split(n, lengths, seed)`: the index lists that ZSCL's
  `torch.utils.data.random_split(dataset, lengths, generator=torch.Generator().manual_seed(seed))`
  gives, without PyTorch: a Mersenne Twister (MT19937, seeded as `std::mt19937(seed)`, which is what
  `torch.Generator().manual_seed` does on the CPU) driving the Fisher-Yates shuffle of
  `torch.randperm` on the CPU (`z = random() % (n - i)`, swap `r[i]` and `r[i + z]`, for n below
  2**32 / 20).
- `Writer`: puts images into mulki's layouts, either ImageFolder (`<out>/<split>/<folder>/<file>`,
  copied, hard-linked or symlinked) or CSV (`<out>/<split>.csv` with `path,label` rows, paths
  relative to the CSV, pointing at the original files), and writes `<out>/folders.txt` (the folder
  names in label order) so the config's `folders` list can be checked against it.
"""
import argparse
import csv
import os
import shutil
import sys


class MT19937:
    """The 32-bit Mersenne Twister, seeded like `std::mt19937(seed)` / `init_genrand`."""

    def __init__(self, seed):
        self.mt = [0] * 624
        self.mt[0] = seed & 0xFFFFFFFF
        for i in range(1, 624):
            prev = self.mt[i - 1]
            self.mt[i] = (1812433253 * (prev ^ (prev >> 30)) + i) & 0xFFFFFFFF
        self.index = 624

    def _twist(self):
        mt = self.mt
        for i in range(624):
            y = (mt[i] & 0x80000000) | (mt[(i + 1) % 624] & 0x7FFFFFFF)
            v = mt[(i + 397) % 624] ^ (y >> 1)
            if y & 1:
                v ^= 0x9908B0DF
            mt[i] = v
        self.index = 0

    def next_u32(self):
        if self.index >= 624:
            self._twist()
        y = self.mt[self.index]
        self.index += 1
        y ^= y >> 11
        y ^= (y << 7) & 0x9D2C5680
        y ^= (y << 15) & 0xEFC60000
        y ^= y >> 18
        return y & 0xFFFFFFFF


def torch_randperm(n, seed):
    """`torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()` on the CPU."""
    if n >= 0xFFFFFFFF // 20:
        raise ValueError("torch uses another algorithm for n >= 2**32 / 20")
    gen = MT19937(seed)
    r = list(range(n))
    for i in range(n - 1):
        z = gen.next_u32() % (n - i)
        r[i], r[i + z] = r[i + z], r[i]
    return r


def torch_random_split(n, lengths, seed=42):
    """Index lists of `torch.utils.data.random_split` over `n` items with a seeded generator."""
    if sum(lengths) != n:
        raise ValueError("lengths must add up to n")
    perm = torch_randperm(n, seed)
    out, offset = [], 0
    for length in lengths:
        out.append(perm[offset:offset + length])
        offset += length
    return out


def zscl_split(n, ratio=0.8, seed=42):
    """ZSCL's `ClassificationDataset.split_dataset`: train = int(ratio * n) items, test the rest."""
    train_size = int(ratio * n)
    return torch_random_split(n, [train_size, n - train_size], seed)


def safe_folder(name):
    """A class name usable as one folder name: `/` (not allowed in a path component) becomes `_`."""
    return name.replace("/", "_")


def arg_parser(doc):
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", help="the downloaded (extracted) distribution, see the docstring")
    p.add_argument("out", help="the dataset root mulki reads (the config's `root`), e.g. data/<name>")
    p.add_argument("--format", choices=["image-folder", "csv"], default="image-folder",
                   help="image-folder: <out>/<split>/<folder>/<file>; csv: <out>/<split>.csv "
                        "pointing at the source files (keep them where they are)")
    p.add_argument("--mode", choices=["copy", "hardlink", "symlink"], default="copy",
                   help="how image-folder places the files (default: copy)")
    return p


class Writer:
    """Collects (split, source file, label) and writes mulki's layout for them."""

    def __init__(self, out, folders, fmt="image-folder", mode="copy"):
        if len(set(folders)) != len(folders):
            raise SystemExit("folder names are not unique")
        self.out, self.folders, self.fmt, self.mode = out, list(folders), fmt, mode
        self.rows = {}
        os.makedirs(out, exist_ok=True)

    def add(self, split, src, label, name=None):
        """Adds the image file `src` with 0-based `label` to `split` (file name `name` or its own)."""
        if not 0 <= label < len(self.folders):
            raise SystemExit(f"label {label} out of range for {src}")
        if not os.path.isfile(src):
            raise SystemExit(f"missing image: {src}")
        if self.fmt == "csv":
            path = os.path.relpath(os.path.abspath(src), os.path.abspath(self.out))
            self.rows.setdefault(split, []).append((path.replace(os.sep, "/"), label))
            return
        dst_dir = os.path.join(self.out, split, self.folders[label])
        os.makedirs(dst_dir, exist_ok=True)
        dst = os.path.join(dst_dir, name or os.path.basename(src))
        if os.path.lexists(dst):
            raise SystemExit(f"two images would land on {dst}")
        if self.mode == "copy":
            shutil.copyfile(src, dst)
        elif self.mode == "hardlink":
            os.link(src, dst)
        else:
            os.symlink(os.path.abspath(src), dst)
        self.rows.setdefault(split, []).append((dst, label))

    def add_generated(self, split, label, name, write):
        """Adds an image written by `write(path)` (for data shipped as arrays, e.g. CIFAR-100)."""
        if self.fmt == "csv":
            rel = "/".join(["images", split, self.folders[label], name])
            dst = os.path.join(self.out, *rel.split("/"))
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            write(dst)
            self.rows.setdefault(split, []).append((rel, label))
            return
        dst_dir = os.path.join(self.out, split, self.folders[label])
        os.makedirs(dst_dir, exist_ok=True)
        dst = os.path.join(dst_dir, name)
        write(dst)
        self.rows.setdefault(split, []).append((dst, label))

    def finish(self, expected=None):
        """Writes the CSVs (csv format) and folders.txt, prints the counts and checks `expected`
        ({split: number of images}) when given."""
        if self.fmt == "csv":
            for split, rows in self.rows.items():
                with open(os.path.join(self.out, f"{split}.csv"), "w", newline="") as f:
                    w = csv.writer(f)
                    w.writerow(["path", "label"])
                    w.writerows(rows)
        with open(os.path.join(self.out, "folders.txt"), "w") as f:
            f.write("".join(name + "\n" for name in self.folders))
        ok = True
        for split, rows in sorted(self.rows.items()):
            classes = len({label for _, label in rows})
            line = f"{split}: {len(rows)} images, {classes} classes"
            if expected and split in expected and expected[split] != len(rows):
                line += f" (ZSCL has {expected[split]})"
                ok = False
            print(line)
        if not ok:
            print("warning: the counts differ from ZSCL's; check the source files", file=sys.stderr)
        return ok
