"""mulki's CUDA training step beside PyTorch's, on the same GPU, in one command.

Runs `mulki bench step --json` (the real `Trainer::step`, preset mulki, task index 1: both
teachers) and `bench/torch_mulki_step.py --json` (the same step in PyTorch eager with bf16
autocast) for each K at the same batch and prompt length, then prints, per K: images/s of each,
their ratio (mulki / PyTorch), model FLOP utilisation of each against the measured dense bf16
matmul peak and the spec sheet's (FLOPs from bench/flops.py, the same formula for both), and
memory. With --profile, mulki's per-kernel breakdown (GPU time between CUDA events around each
launch, read in batches) follows.

  python bench/gpu_step.py --mulki ./mulki --classes 100 397 --batch 64 --text-len 77
"""
import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import flops  # noqa: E402


def run_json(cmd):
    print("$", " ".join(cmd), file=sys.stderr, flush=True)
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    lines = out.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith(("{", "[")))
    return json.loads("\n".join(lines[first:]))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mulki", default="mulki", help="the mulki binary")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--classes", type=int, nargs="+", default=[100, 397])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--text-len", type=int, default=77)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--device", default="cuda:0", help="mulki's --device (e.g. cuda:0:fp32)")
    ap.add_argument("--profile", action="store_true", help="also print mulki's per-kernel breakdown")
    ap.add_argument("--json", help="write everything measured to this file")
    ap.add_argument("--tiny", action="store_true", help="the tiny model on the CPU (a check of this script)")
    a = ap.parse_args()

    ks = [str(k) for k in a.classes]
    common = ["--batch", str(a.batch), "--text-len", str(a.text_len), "--steps", str(a.steps),
              "--warmup", str(a.warmup)]
    mulki_cmd = [a.mulki, "bench", "step", "--json", "--device", a.device, "--classes", *ks, *common]
    if a.profile:
        mulki_cmd.append("--profile")
    if a.tiny:
        mulki_cmd += ["--model", "tiny"]
        torch_cmd_extra = ["--tiny", "--device", "cpu"]
    else:
        torch_cmd_extra = []
    torch_cmd = [a.python, os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_mulki_step.py"),
                 "--json", "--merge", "schedule", "--classes", *ks, *common, *torch_cmd_extra]
    ours = run_json(mulki_cmd)
    ref = run_json(torch_cmd)
    peak = ref["peak"]["tflops_median"]
    spec = ref["peak"].get("spec_tflops")
    dims = flops.tiny(a.text_len) if a.tiny else flops.vit_b16(a.text_len)
    rows = []
    print(f"{ref['device']}; torch {ref['torch']}; measured bf16 matmul peak {peak:.1f} TFLOP/s, spec "
          f"{spec if spec else 'n/a'}; B={a.batch}, {a.text_len}-token prompts, {a.steps} timed steps")
    print(f"{'K':>4} {'mulki img/s':>12} {'torch img/s':>12} {'ratio':>6} {'TFLOP/step':>10} "
          f"{'MFU mulki':>18} {'MFU torch':>18} {'mem mulki':>10} {'mem torch':>10}")
    for m, t in zip(ours, ref["results"]):
        fl = flops.step_flops(a.batch, m["classes"], dims, teachers=2)["total"]
        tf_m = fl * m["images_per_second"] / a.batch / 1e12
        tf_t = fl * t["images_per_s"] / a.batch / 1e12

        def mfu(tf):
            s = f"{100 * tf / peak:.1f}%"
            return s + (f" / {100 * tf / spec:.1f}%" if spec else "")

        gib = lambda b: f"{b / 2**30:.1f} GiB" if b else "n/a"  # noqa: E731
        ratio = m["images_per_second"] / t["images_per_s"]
        print(f"{m['classes']:>4} {m['images_per_second']:>12.1f} {t['images_per_s']:>12.1f} {ratio:>6.2f} "
              f"{fl / 1e12:>10.3f} {mfu(tf_m):>18} {mfu(tf_t):>18} {gib(m['device_memory_bytes']):>10} "
              f"{gib(t['peak_mem_bytes']):>10}")
        rows.append({"classes": m["classes"], "mulki": m, "torch": t, "ratio": ratio, "model_flop_per_step": fl,
                     "mfu_mulki_measured": tf_m / peak, "mfu_torch_measured": tf_t / peak,
                     "mfu_mulki_spec": tf_m / spec if spec else None,
                     "mfu_torch_spec": tf_t / spec if spec else None})
    print("MFU columns: of the measured bf16 matmul peak / of the spec sheet's dense bf16 peak. "
          "mulki memory: device memory in use (cuMemGetInfo); torch: max_memory_allocated.")
    for m in ours:
        if m.get("profile"):
            total = sum(p[2] for p in m["profile"])
            wall = m.get("profile_seconds_per_step")
            busy = f", busy {100 * total / m['steps'] / wall:.0f}% of {1e3 * wall:.1f} ms wall" if wall else ""
            print(f"mulki K={m['classes']}: per-kernel GPU time over {m['steps']} steps, from events around each launch "
                  f"({1e3 * total / m['steps']:.1f} ms/step in kernels{busy}):")
            pool = m.get("rounded_pool")
            if pool:
                print(f"  rounded-operand pool {pool['capacity_bytes'] / 2**30:.2f} GiB, per step: "
                      f"{pool['reused']:.0f} roundings saved, {pool['rounded']:.0f} rounded into the pool, "
                      f"{pool['produced']:.0f} written there by their producer, "
                      f"{pool['refused']:.0f} outside it, {pool['restarts']:.1f} restarts")
            for name, calls, sec in m["profile"][:25]:
                print(f"  {name:<36} {calls:>7} calls {1e3 * sec / m['steps']:>9.2f} ms/step {100 * sec / total:>5.1f}%")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"args": vars(a), "torch_meta": {k: v for k, v in ref.items() if k != "results"},
                       "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
