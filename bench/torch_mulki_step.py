"""PyTorch reference for mulki's GPU training step: one MulKI step (preset `mulki`, task index 1,
so two frozen teachers Z = θ_0 and P = θ_{t−1}) of CLIP ViT-B/16, timed, with MFU.

The step does the work of mulki-host `Trainer::step` (METHOD.md, mulki-core `loss::mulki`):

  1. student image forward on B images and text forward on the task's K class prompts
     (one template), with gradient;
  2. teachers Z and P: image forward on the same batch under torch.no_grad (their text
     features of the K prompts are computed once per task, before the timed steps, as mulki's
     `begin_task` does);
  3. the loss, in fp32: L = L_CE + λ_EI·L_EI + λ_KD·L_KD (CE with label smoothing 0.2; the
     prototype/text InfoNCE; relations R^V, R^X, R^T against both teachers with KL at T = 2,
     β feature terms, per-sample confidence weights α with τ_w = 0.1); the `mulki` preset has
     λ_LwF = 0, so no LwF term;
  4. backward through both student towers;
  5. the connection L_C = λ_C·Σ‖θ − θ_{t−1}‖² (λ_C = 1), added analytically to the gradients
     (grad += 2·λ_C·(θ − θ_{t−1})) exactly as mulki's `connection_loss` does, not through autograd;
  6. AdamW (β = (0.9, 0.999), eps 1e-8, weight decay 0) on every parameter but the frozen
     logit_scale, with mulki's warm-up + cosine learning rate for step k;
  7. prototype EMA with the step's detached normalised student image features (m = 0.99);
  8. weight-ensemble merge θ̄ ← (n·θ̄ + θ)/(n+1): every step by default (`--merge every`, an
     upper bound: mulki merges 11 times in a 1000-step task), or on mulki's schedule
     (`--merge schedule`: after step 1, 1+I, 1+2I, …, N with I = max(1, ⌊N/10⌋), N =
     `--task-steps`).

Precision: fp32 parameters (student and both teachers), fp32 AdamW state, forwards under
torch.autocast(bfloat16), the loss in fp32. Model: HF transformers CLIPModel, the
openai/clip-vit-base-patch16 config built in code (no download), random init,
attn_implementation "sdpa", logit_scale set to ln 100 (s = 100, as OpenAI CLIP).

Prints one JSON object with --json. See bench/README.md for the GPU command and the MFU
definition; bench/flops.py for the FLOP formula.
"""
import argparse
import copy
import gc
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import flops  # noqa: E402

# METHOD.md defaults = mulki's `MethodConfig::default()` (preset `mulki`).
HP = dict(label_smoothing=0.2, lambda_ei=1.0, proto_momentum=0.99, lambda_kd=1.0, temperature=2.0, beta=1.0,
          tau_w=0.1, lambda_c=1.0)

# Dense (no sparsity) BF16 tensor-core peaks from NVIDIA's spec sheets, TFLOP/s.
SPEC_BF16_TFLOPS = [
    ("H200 NVL", 835.5),
    ("H200", 989.4),
    ("GH200", 989.4),
    ("H100 NVL", 835.5),
    ("H100 PCIe", 756.0),
    ("H100", 989.4),  # SXM ("NVIDIA H100 80GB HBM3")
]


def spec_peak_tflops(name: str):
    for key, v in SPEC_BF16_TFLOPS:
        if key.lower() in name.lower():
            return v
    return None


# ----------------------------------------------------------------------------------------------
# The loss (fp32 on the GPU; dtype-agnostic so --check-loss can run it in fp64)
# ----------------------------------------------------------------------------------------------


def kl_rows(logp, logq):
    """Row-wise KL(p‖q) from log-probabilities."""
    return (logp.exp() * (logp - logq)).sum(-1)


def mulki_loss(v, w, teachers, protos, labels, s, hp=HP):
    """METHOD.md's L_CE + λ_EI·L_EI + λ_KD·L_KD on raw features.

    v [B, p], w [K, p]: the student's (with grad). teachers: [(v^k, w^k)] raw, Z then P
    (constants). protos: Π [K, p], unit rows, constant. Returns (total, normalised v̂ detached,
    dict of the terms as tensors)."""
    T, beta = hp["temperature"], hp["beta"]
    K = w.shape[0]
    vn, wn = F.normalize(v, dim=-1), F.normalize(w, dim=-1)
    zx = vn @ wn.T  # [B, K]: CE (scale s) and R^X (scale s/T)
    zv = vn @ protos.T  # [B, K]: R^V
    zt = wn @ protos.T  # [K, K]: L_EI (both directions) and R^T
    ce = F.cross_entropy(s * zx, labels, label_smoothing=hp["label_smoothing"])
    diag = torch.arange(K, device=w.device)
    # ½[CE(s·Π·Wᵀ, diag) + CE(s·W·Πᵀ, diag)]; Π·Wᵀ = (W·Πᵀ)ᵀ.
    ei = 0.5 * (F.cross_entropy(s * zt.T, diag) + F.cross_entropy(s * zt, diag))
    r = s / T
    ls_v, ls_x, ls_t = (F.log_softmax(r * z, dim=-1) for z in (zv, zx, zt))
    per_sample, per_class, conf = [], [], []
    with torch.no_grad():
        tfeat = [(F.normalize(tv, dim=-1), F.normalize(tw, dim=-1)) for tv, tw in teachers]
        trel = []
        for tvn, twn in tfeat:
            tzx = tvn @ twn.T
            # q^k = softmax_c(s·⟨v̂^k, ŵ^k_c⟩)[y] = exp(−CE), as mulki computes it.
            conf.append(torch.exp(-F.cross_entropy(s * tzx, labels, reduction="none")))
            trel.append(tuple(F.log_softmax(r * z, dim=-1) for z in (tvn @ protos.T, tzx, twn @ protos.T)))
        n = len(teachers)
        alpha = torch.ones(1, v.shape[0], device=v.device, dtype=v.dtype) if n == 1 else \
            torch.softmax(torch.stack(conf) / hp["tau_w"], dim=0)  # [n, B]
    for (tvn, twn), (lt_v, lt_x, lt_t) in zip(tfeat, trel):
        per_sample.append(T * T * (kl_rows(lt_v, ls_v) + kl_rows(lt_x, ls_x)) + beta * (1.0 - (vn * tvn).sum(-1)))
        per_class.append(T * T * kl_rows(lt_t, ls_t).mean() + beta * (1.0 - (wn * twn).sum(-1).mean()))
    kd = (alpha * torch.stack(per_sample)).sum(0).mean() + (alpha.mean(1) * torch.stack(per_class)).sum()
    total = ce + hp["lambda_ei"] * ei + hp["lambda_kd"] * kd
    return total, vn.detach(), dict(ce=ce, ei=ei, kd=kd, alpha=alpha)


@torch.no_grad()
def prototype_ema(protos, vn, labels, m):
    """π_c ← normalize(m·π_c + (1−m)·mean_{y_i=c} v̂_i) for the classes in the batch, in place,
    with no host synchronisation (index_add + where)."""
    K = protos.shape[0]
    sums = torch.zeros_like(protos).index_add_(0, labels, vn.to(protos.dtype))
    # index_add_, not bincount: CUDA's bincount reads the max label back to the host (a sync).
    counts = torch.zeros(K, 1, device=protos.device, dtype=protos.dtype).index_add_(
        0, labels, torch.ones(labels.shape[0], 1, device=protos.device, dtype=protos.dtype))
    new = F.normalize(m * protos + (1.0 - m) * sums / counts.clamp(min=1.0), dim=-1)
    protos.copy_(torch.where(counts > 0, new, protos))


def lr_at(lr, k, n, warmup):
    """mulki-core `optim::lr_at`: linear warm-up, then cosine; k is 1-based."""
    u = max(k - 1, 0)
    if u < warmup:
        return lr * (u + 1) / warmup
    span = max(n - warmup, 1)
    return 0.5 * (1.0 + math.cos(math.pi * (u - warmup) / span)) * lr


def merge_due(k, n, interval):
    """mulki-core `connections::merge_due`: after step 1, 1+I, 1+2I, …, and after step N."""
    return k == n or (k >= 1 and (k - 1) % max(interval, 1) == 0)


# ----------------------------------------------------------------------------------------------
# Model and data
# ----------------------------------------------------------------------------------------------


def clip_config(dims: flops.ClipDims, max_positions: int):
    from transformers import CLIPConfig, CLIPTextConfig, CLIPVisionConfig

    text = CLIPTextConfig(vocab_size=dims.vocab_size, hidden_size=dims.text_width, intermediate_size=dims.text_mlp,
                          num_hidden_layers=dims.text_layers, num_attention_heads=dims.text_heads,
                          max_position_embeddings=max_positions, projection_dim=dims.proj, hidden_act="quick_gelu",
                          pad_token_id=0, bos_token_id=dims.vocab_size - 2, eos_token_id=dims.vocab_size - 1)
    vision = CLIPVisionConfig(hidden_size=dims.vision_width, intermediate_size=dims.vision_mlp,
                              num_hidden_layers=dims.vision_layers, num_attention_heads=dims.vision_heads,
                              image_size=dims.image_size, patch_size=dims.patch_size, num_channels=dims.channels,
                              projection_dim=dims.proj, hidden_act="quick_gelu")
    return CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=dims.proj,
                      attn_implementation="sdpa")


def features(out):
    """transformers 4.x returns the projected features, 5.x an output whose pooler_output they are."""
    return out if torch.is_tensor(out) else out.pooler_output


def prompt_ids(k, t, vocab, gen):
    """K prompts of t tokens: BOS, random ids, EOT (vocab−1) at a random position in [2, t−1]
    (prompt 0 at t−1, so t is the longest prompt, as mulki trims to), zero padding after."""
    bos, eos = vocab - 2, vocab - 1
    body = torch.randint(1, vocab - 2, (k, t), generator=gen)
    eot = torch.randint(min(2, t - 1), t, (k,), generator=gen)
    eot[0] = t - 1
    pos = torch.arange(t)[None, :]
    ids = torch.where(pos < eot[:, None], body, torch.zeros_like(body))
    ids[:, 0] = bos
    ids[torch.arange(k), eot] = eos
    return ids


# ----------------------------------------------------------------------------------------------
# Timing helpers
# ----------------------------------------------------------------------------------------------


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


class Timer:
    """CUDA events on the GPU, perf_counter elsewhere; elapsed in ms."""

    def __init__(self, dev):
        self.cuda = dev.type == "cuda"
        self.dev = dev

    def mark(self):
        if self.cuda:
            e = torch.cuda.Event(enable_timing=True)
            e.record()
            return e
        return time.perf_counter()

    def ms(self, a, b):
        if self.cuda:
            return a.elapsed_time(b)
        return 1e3 * (b - a)


def matmul_peak(dev, n, repeats):
    """Dense bf16 matmul [n, n] x [n, n] → TFLOP/s (median of `repeats` timed products)."""
    dt = torch.bfloat16
    a = torch.randn(n, n, device=dev, dtype=dt)
    b = torch.randn(n, n, device=dev, dtype=dt)
    c = torch.empty(n, n, device=dev, dtype=dt)
    for _ in range(3):
        torch.matmul(a, b, out=c)
    sync(dev)
    tm = Timer(dev)
    times = []
    for _ in range(repeats):
        s = tm.mark()
        torch.matmul(a, b, out=c)
        e = tm.mark()
        if tm.cuda:
            e.synchronize()
        times.append(tm.ms(s, e))
    times.sort()
    med = times[len(times) // 2]
    best = times[0]
    del a, b, c
    return {"n": n, "repeats": repeats, "median_ms": med, "tflops_median": 2 * n**3 / (med * 1e-3) / 1e12,
            "tflops_best": 2 * n**3 / (best * 1e-3) / 1e12}


# ----------------------------------------------------------------------------------------------
# One configuration (K classes): build, run, time
# ----------------------------------------------------------------------------------------------


def run_classes(a, dev, dims, k, max_positions):
    from transformers import CLIPModel

    gen = torch.Generator().manual_seed(a.seed + k)
    torch.manual_seed(a.seed)
    if dev.type == "cuda":
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
    cfg = clip_config(dims, max_positions)
    with torch.device(dev):
        z = CLIPModel(cfg)
    z.logit_scale.data.fill_(math.log(100.0))
    # θ_{t−1} = θ_1: θ_0 moved a little, so P ≠ Z; the student starts the task at θ_{t−1}.
    p = copy.deepcopy(z)
    with torch.no_grad():
        for q in p.parameters():
            if q is not p.logit_scale:
                q.add_(1e-3 * torch.randn_like(q))
    student = copy.deepcopy(p)
    for m in (z, p):
        m.eval().requires_grad_(False)
    student.train()
    student.logit_scale.requires_grad_(False)  # logit_scale stays frozen (mulki's layout.trainable())
    s = float(z.logit_scale.exp())  # exp(logit_scale) of θ_0, read once
    names = [n for n, q in student.named_parameters() if q.requires_grad]
    params = [q for q in student.parameters() if q.requires_grad]
    prev = [dict(p.named_parameters())[n] for n in names]  # θ_{t−1}, the anchor of L_C

    # Task start (outside the step, as mulki's begin_task): prompts, teacher text features, Π,
    # fresh optimiser and ensemble.
    ids = prompt_ids(k, dims.text_len, dims.vocab_size, gen).to(dev)
    amp = dict(device_type=dev.type, dtype=torch.bfloat16, enabled=a.precision == "bf16")
    with torch.no_grad(), torch.autocast(**amp):
        wz = features(z.get_text_features(input_ids=ids)).float()
        wp = features(p.get_text_features(input_ids=ids)).float()
    protos = F.normalize(torch.randn(k, dims.proj, generator=gen), dim=-1).to(dev)
    fused = a.adamw == "fused"
    opt = torch.optim.AdamW(params, lr=a.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                            fused=fused, foreach=a.adamw == "foreach")
    ens = [q.detach().clone() for q in params]  # θ̄ = the task-start weights, one member
    members = 1
    n_task, warm = a.task_steps, min(100, a.task_steps // 10)
    interval = max(1, n_task // 10)

    b = a.batch
    px_host = torch.randn(b, 3, dims.image_size, dims.image_size, generator=gen)
    y_host = torch.randint(0, k, (b,), generator=gen)
    if a.h2d and dev.type == "cuda":
        px_host, y_host = px_host.pin_memory(), y_host.pin_memory()
    px_dev, y_dev = px_host.to(dev), y_host.to(dev)
    last = {}

    def step(kk):
        nonlocal members
        if a.h2d:
            px, y = px_host.to(dev, non_blocking=True), y_host.to(dev, non_blocking=True)
        else:
            px, y = px_dev, y_dev
        opt.zero_grad(set_to_none=True)
        with torch.autocast(**amp):
            v = features(student.get_image_features(pixel_values=px))
            w = features(student.get_text_features(input_ids=ids))
            with torch.no_grad():
                vz = features(z.get_image_features(pixel_values=px))
                vp = features(p.get_image_features(pixel_values=px))
        total, vn, terms = mulki_loss(v.float(), w.float(), [(vz.float(), wz), (vp.float(), wp)], protos, y, s)
        total.backward()
        if kk == 1:  # every trainable parameter must get a gradient (L_C adds into .grad)
            missing = [n for n, q in zip(names, params) if q.grad is None]
            assert not missing, f"trainable parameters with no gradient: {missing}"
        with torch.no_grad():
            # L_C: grad += 2λ(θ − θ_{t−1}); its value λ·Σ(θ − θ_{t−1})².
            diff = torch._foreach_sub(params, prev)
            lc = HP["lambda_c"] * torch.stack(torch._foreach_norm(diff)).square().sum()
            torch._foreach_add_([q.grad for q in params], diff, alpha=2.0 * HP["lambda_c"])
            del diff
        for g in opt.param_groups:
            g["lr"] = lr_at(a.lr, kk, n_task, warm)
        opt.step()
        prototype_ema(protos, vn, y, HP["proto_momentum"])
        if a.merge == "every" or (a.merge == "schedule" and merge_due(kk, n_task, interval)):
            with torch.no_grad():
                torch._foreach_lerp_(ens, [q.detach() for q in params], 1.0 / (members + 1))
            members += 1
        last.update(total=total.detach(), lc=lc, terms={key: t.detach() for key, t in terms.items()})
        if a.sync_loss:
            # mulki reads the loss to the host every step (its non-finite check): one sync.
            val = float(total.detach() + lc)
            if not math.isfinite(val):
                raise RuntimeError(f"non-finite loss at step {kk}")

    tm = Timer(dev)
    kk = 0
    for _ in range(a.warmup):
        kk += 1
        step(kk)
    sync(dev)
    marks = []
    wall0 = time.perf_counter()
    for _ in range(a.steps):
        kk += 1
        s0 = tm.mark()
        step(kk)
        marks.append((s0, tm.mark()))
    sync(dev)
    wall = time.perf_counter() - wall0
    per = sorted(tm.ms(x, y) for x, y in marks)
    total_ms = tm.ms(marks[0][0], marks[-1][1])
    ms = total_ms / a.steps
    fl = flops.step_flops(b, k, dims, teachers=2)
    out = {
        "classes": k,
        "batch": b,
        "text_len": dims.text_len,
        "steps": a.steps,
        "warmup": a.warmup,
        "ms_per_step": ms,
        "ms_per_step_median": per[len(per) // 2],
        "ms_per_step_min": per[0],
        "wall_s": wall,
        "images_per_s": b / (ms * 1e-3),
        "peak_mem_bytes": torch.cuda.max_memory_allocated(dev) if dev.type == "cuda" else None,
        "model_flop_per_step": fl["total"],
        "achieved_tflops": fl["total"] / (ms * 1e-3) / 1e12,
        "flops": fl["parts"],
        "ensemble_members": members,
        "loss": {key: float(v) for key, v in last["terms"].items() if key != "alpha"} |
                {"total": float(last["total"]), "connection": float(last["lc"]),
                 "alpha_mean": [float(x) for x in last["terms"]["alpha"].mean(1)]},
    }
    del student, z, p, opt, ens, params, prev, last
    return out


def check_loss(path):
    """Compares `mulki_loss` (fp64) and `prototype_ema` with the fixture mulki's loss is tested
    against (fixtures/gen_losses.py): total and student gradients of every default-rule case."""
    from safetensors.torch import load_file
    from safetensors import safe_open

    with safe_open(path, "pt") as f:
        info = json.loads(f.metadata()["info"])
    t = load_file(path)
    worst, n = 0.0, 0
    for name, c in info.items():
        if c["kind"] == "mulki" and c["rule"] == "confidence" and c["kl_on"]:
            hp = dict(HP, label_smoothing=c["eps"], lambda_ei=c["lambda_ei"], lambda_kd=c["lambda_kd"],
                      temperature=c["T"], beta=c["beta"], tau_w=c["tau_w"])
            g = lambda key: t[f"{name}.{key}"]  # noqa: E731
            v, w = g("v_s").clone().requires_grad_(True), g("w_s").clone().requires_grad_(True)
            teachers = [(g("v_z"), g("w_z"))] + ([(g("v_p"), g("w_p"))] if c["n_teachers"] == 2 else [])
            total, _, _ = mulki_loss(v, w, teachers, g("protos"), g("labels"), c["s"], hp)
            gv, gw = torch.autograd.grad(total, [v, w])
            for got, ref in ((total.reshape(1), g("total")), (gv, g("grad.total.v_s")), (gw, g("grad.total.w_s"))):
                worst = max(worst, ((got - ref).abs().max() / ref.abs().max().clamp(min=1.0)).item())
            n += 1
        elif c["kind"] == "proto_ema":
            pr = t[f"{name}.protos"].clone()
            prototype_ema(pr, F.normalize(t[f"{name}.v_s"], dim=-1), t[f"{name}.labels"], c["m"])
            worst = max(worst, (pr - t[f"{name}.protos_ema"]).abs().max().item())
            n += 1
    return {"fixture": os.path.relpath(path), "cases": n, "max_rel_err": worst, "ok": n > 0 and worst < 1e-10}


def main():
    ap = argparse.ArgumentParser(description="PyTorch MulKI training step (ViT-B/16 CLIP), timed, with MFU")
    ap.add_argument("--classes", type=int, nargs="+", default=None, help="K (default: 100 397; tiny: 5)")
    ap.add_argument("--batch", type=int, default=None, help="B (default: 64; tiny: 4)")
    ap.add_argument("--steps", type=int, default=30, help="timed steps per K")
    ap.add_argument("--warmup", type=int, default=10, help="untimed steps per K before timing")
    ap.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    ap.add_argument("--text-len", type=int, default=None,
                    help="tokens per prompt (default 77; mulki trims to the longest prompt, see README)")
    ap.add_argument("--tiny", action="store_true", help="tiny CPU-testable config (widths 32, 2 layers, 32 px)")
    ap.add_argument("--precision", choices=["bf16", "fp32"], default="bf16", help="autocast dtype of the forwards")
    ap.add_argument("--adamw", choices=["fused", "foreach", "for-loop"], default=None,
                    help="AdamW implementation (default: fused on cuda, foreach elsewhere)")
    ap.add_argument("--merge", choices=["every", "schedule", "never"], default="every",
                    help="weight-ensemble merge: every step (upper bound, default), mulki's schedule, never")
    ap.add_argument("--task-steps", type=int, default=1000, help="N of the lr schedule and the merge schedule")
    ap.add_argument("--lr", type=float, default=1e-5)
    ap.add_argument("--h2d", action="store_true", help="copy the batch from pinned host memory every step")
    ap.add_argument("--no-sync-loss", dest="sync_loss", action="store_false",
                    help="do not read the loss to the host every step (mulki does)")
    ap.add_argument("--peak-n", type=int, default=None, help="bf16 matmul size for the measured peak (default 8192)")
    ap.add_argument("--peak-repeats", type=int, default=20)
    ap.add_argument("--check-loss", action="store_true",
                    help="first compare the loss with fixtures/losses/cases.safetensors (fp64, CPU)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()

    dev = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if a.tiny:
        dims = flops.tiny(a.text_len or 8)
        max_positions = max(8, dims.text_len)
        a.classes = a.classes or [5]
        a.batch = a.batch or 4
        a.peak_n = a.peak_n or 256
    else:
        dims = flops.vit_b16(a.text_len or 77)
        max_positions = 77
        a.classes = a.classes or [100, 397]
        a.batch = a.batch or 64
        a.peak_n = a.peak_n or 8192
    if dims.text_len > max_positions or dims.text_len < 2:
        ap.error(f"--text-len must be in [2, {max_positions}]")
    a.adamw = a.adamw or ("fused" if dev.type == "cuda" else "foreach")

    import transformers

    out = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "model": "tiny" if a.tiny else "openai/clip-vit-base-patch16 config, random init",
        "attn_implementation": "sdpa",
        "precision": f"params/optimiser fp32, forwards autocast {a.precision}, loss fp32",
        "adamw": a.adamw,
        "merge": a.merge,
        "h2d": a.h2d,
        "sync_loss_every_step": a.sync_loss,
        "teachers": 2,
        "hp": HP,
    }
    if a.check_loss:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        out["loss_check"] = check_loss(os.path.join(root, "fixtures", "losses", "cases.safetensors"))
        if not out["loss_check"]["ok"]:
            print(json.dumps(out, indent=1))
            sys.exit(1)
    pk = matmul_peak(dev, a.peak_n, a.peak_repeats)
    spec = spec_peak_tflops(out["device"]) if dev.type == "cuda" else None
    out["peak"] = dict(pk, spec_tflops=spec)
    results = []
    for k in a.classes:
        r = run_classes(a, dev, dims, k, max_positions)
        r["mfu_vs_measured_matmul"] = r["achieved_tflops"] / pk["tflops_median"]
        r["mfu_vs_spec"] = r["achieved_tflops"] / spec if spec else None
        results.append(r)
        if dev.type == "cuda":
            gc.collect()
            torch.cuda.empty_cache()
    out["results"] = results
    if a.json:
        print(json.dumps(out, indent=1))
        return
    print(f"torch {out['torch']}, transformers {out['transformers']}, {out['device']}, adamw {a.adamw}, "
          f"merge {a.merge}")
    print(f"bf16 matmul {a.peak_n}^3: {pk['tflops_median']:.1f} TFLOP/s measured (median), spec "
          f"{spec if spec else 'n/a'}")
    if "loss_check" in out:
        print(f"loss check: {out['loss_check']}")
    for r in results:
        mem = f"{r['peak_mem_bytes'] / 2**30:.2f} GiB" if r["peak_mem_bytes"] is not None else "n/a"
        spec_mfu = f"{100 * r['mfu_vs_spec']:.1f} %" if r["mfu_vs_spec"] is not None else "n/a"
        print(f"K={r['classes']:4d} B={r['batch']} T={r['text_len']}: {r['ms_per_step']:.2f} ms/step "
              f"(median {r['ms_per_step_median']:.2f}), {r['images_per_s']:.1f} img/s, peak mem {mem}, "
              f"{r['model_flop_per_step'] / 1e12:.3f} TFLOP/step, {r['achieved_tflops']:.1f} TFLOP/s, "
              f"MFU {100 * r['mfu_vs_measured_matmul']:.1f} % of measured, {spec_mfu} of spec; "
              f"loss {r['loss']['total']:.4f}")


if __name__ == "__main__":
    main()
