"""End-to-end MTIL-shaped run on a GPU: a random-init CLIP ViT-B/16 with the real shapes (HF
`openai/clip-vit-base-patch16` config, written by transformers), two tasks of generated 224 px
images, 50 steps each at batch 64, preset mulki, through `mulki train --device cuda:0`. Checks
that the run finishes, that each task's report row exists, and that device memory after task 2
equals that after task 1 (no leak across tasks).

  python scripts/gpu/e2e.py --mulki ./mulki --work /tmp/mulki-e2e

Needs numpy, Pillow, torch and transformers (no download: the config is built in code).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLASSES = [
    ["red circle", "blue square", "green triangle", "yellow star", "purple cross",
     "orange ring", "white bar", "black dot", "pink heart", "brown box"],
    ["striped cat", "spotted dog", "plain bird", "dotted fish", "checked frog",
     "wavy snake", "solid horse", "grid mouse", "zigzag cow", "ringed sheep"],
]


def write_model(path, size):
    import torch
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(0)
    if size == "vit-b-16":
        vision = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                      image_size=224, patch_size=16)
        text = dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8,
                    max_position_embeddings=77, vocab_size=49408, bos_token_id=49406, eos_token_id=49407)
        proj = 512
    else:  # a small stand-in to check this script without a GPU
        vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                      image_size=32, patch_size=8)
        text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                    max_position_embeddings=77, vocab_size=49408, bos_token_id=49406, eos_token_id=49407)
        proj = 16
    cfg = CLIPConfig(text_config=dict(text, hidden_act="quick_gelu"),
                     vision_config=dict(vision, hidden_act="quick_gelu"), projection_dim=proj)
    CLIPModel(cfg).save_pretrained(path, safe_serialization=True)
    for f in ["vocab.json", "merges.txt"]:
        shutil.copy(os.path.join(ROOT, "fixtures", "tokenizer", f), os.path.join(path, f))
    return vision["image_size"]


def write_images(root, side, train_per_class, test_per_class):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:side, 0:side] / side
    for t, classes in enumerate(CLASSES):
        for c, name in enumerate(classes):
            # each class: its own colour and blob position, plus noise; each task its own tint
            colour = np.array([(37 * c + 80 * t) % 256, (91 * c) % 256, (53 * c + 120 * t) % 256], float)
            cx, cy = 0.2 + 0.6 * ((c * 0.37) % 1), 0.2 + 0.6 * ((c * 0.61) % 1)
            for split, n in [("train", train_per_class), ("test", test_per_class)]:
                d = os.path.join(root, f"task{t}", split, name)
                os.makedirs(d, exist_ok=True)
                for i in range(n):
                    r = 0.12 + 0.05 * rng.random()
                    mask = ((xx - cx - 0.05 * rng.standard_normal()) ** 2 + (yy - cy) ** 2) < r * r
                    img = rng.normal(100, 25, (side, side, 3))
                    img[mask] = colour + rng.normal(0, 10, 3)
                    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(os.path.join(d, f"{i}.png"))


def write_config(path, steps, batch):
    tasks = ""
    for t, classes in enumerate(CLASSES):
        names = ", ".join(f'"{c}"' for c in classes)
        tasks += (f'[[tasks]]\nname = "task{t}"\nroot = "data/task{t}"\nclasses = [{names}]\n'
                  f'train_templates = ["a photo of a {{}}."]\neval_templates = ["a photo of a {{}}."]\n\n')
    with open(path, "w") as f:
        f.write(f'seed = 1\n[model]\nsource = "model"\n[method]\npreset = "mulki"\n'
                f'[train]\nbatch_size = {batch}\niterations = {steps}\nlr = 1e-5\neval_batch_size = {batch}\n'
                f'checkpoint_every = 0\n\n{tasks}')


def find_memory(obj, out):
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == "device_memory_bytes":
                out.append(v)
            else:
                find_memory(v, out)
    elif isinstance(obj, list):
        for v in obj:
            find_memory(v, out)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mulki", default="mulki")
    ap.add_argument("--work", default="/tmp/mulki-e2e")
    ap.add_argument("--device", default="cuda:0")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--model", default="vit-b-16", choices=["vit-b-16", "small"])
    a = ap.parse_args()

    shutil.rmtree(a.work, ignore_errors=True)
    os.makedirs(a.work)
    t0 = time.time()
    side = write_model(os.path.join(a.work, "model"), a.model)
    write_images(os.path.join(a.work, "data"), side, train_per_class=32, test_per_class=10)
    write_config(os.path.join(a.work, "e2e.toml"), a.steps, a.batch)
    print(f"prepared model and images in {time.time() - t0:.1f} s", flush=True)
    t0 = time.time()
    cmd = [a.mulki, "train", "--config", os.path.join(a.work, "e2e.toml"), "--device", a.device,
           "--output", os.path.join(a.work, "run"), "--quiet"]
    print("$", " ".join(cmd), flush=True)
    rc = subprocess.run(cmd).returncode
    wall = time.time() - t0
    print(f"mulki train exited {rc} after {wall:.1f} s", flush=True)
    if rc != 0:
        sys.exit(1)
    with open(os.path.join(a.work, "run", "metrics.json")) as f:
        metrics = json.load(f)
    with open(os.path.join(a.work, "run", "report.md")) as f:
        print(f.read())
    mem = find_memory(metrics, [])
    print(f"device memory after each task: {mem}")
    ok = len(mem) == 2 and mem[0] == mem[1]
    print("e2e: " + ("PASS" if ok else "FAIL") + f" (2 tasks x {a.steps} steps, batch {a.batch}, {wall:.1f} s)")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
