"""Model FLOPs of one MulKI training step of a CLIP model (preset `mulki`, a task with two teachers).

Counts matrix-multiply FLOPs only, 2·m·n·k per [m, k] x [k, n] product. Everything else
(layer norms, softmaxes, activations, normalisation, losses' elementwise parts, the AdamW update,
L_C, the prototype EMA, the ensemble merge) is left out: it is memory-bound work whose FLOPs
are a rounding error next to the matmuls, and MFU conventionally counts matmuls only.

One step (METHOD.md, mulki-host `Trainer::step`), B images, K classes, one template:

  student image tower   forward 1x, backward 2x (grad of the input and of the weight of
                        every matmul)                                                [B images]
  student text tower    forward 1x, backward 2x                                      [K prompts]
  teachers Z and P      image tower forward only (torch.no_grad); their text features of the
                        K prompts are computed once per task, outside the step: 0 here
  loss heads            the similarity products of the loss (below), forward and backward

Per transformer tower (n tokens, width d, MLP width f, L layers, h heads; the head split does not
change the count: h·(2·n·n·d/h) = 2·n·n·d):

  qkv        2·n·d·3d       the three input projections
  attn_qk    2·n·n·d        scores Q·Kᵀ, every head
  attn_pv    2·n·n·d        probabilities·V, every head
  attn_out   2·n·d·d        output projection
  mlp        2·n·d·f·2      fc1 and fc2
  (x L layers)

Image tower extras: patch embedding 2·P·(3·p²)·d for P = (image/p)² patches (a conv with stride
= kernel, i.e. a matmul), n = P + 1 tokens (class token), and the projection 2·d·proj of the
pooled class token. Text tower extras: the projection 2·d·proj of the EOT token; the token and
position embeddings are lookups (0 FLOPs).

Conventions, stated so nobody has to guess:
  * Text attention is causal. The count is the full n² of the dense product (what a
    non-causal kernel would do, the usual MFU convention, as in the PaLM paper's appendix);
    `causal_half=True` halves attn_qk and attn_pv for the text tower instead.
  * Backward = 2x forward for every student matmul, including the patch embedding, whose input
    gradient (w.r.t. the pixels) is not actually computed: that overcounts by 2·P·3p²·d per
    image (0.23 GFLOP per image for ViT-B/16, 0.4 % of the image backward).
  * The text tower runs all n = `text_len` positions of each prompt (77 for CLIP unless the
    caller trims the padding; see bench/README.md: mulki itself trims to the longest prompt).
  * Loss heads: the unique similarity products on normalised [., proj] features, p = proj:
      student   v̂·Ŵᵀ [B,K] (CE at scale s and R^X at s/T share it)   2·B·K·p
                v̂·Πᵀ [B,K] (R^V)                                       2·B·K·p
                Ŵ·Πᵀ [K,K] (L_EI in both directions and R^T)           2·K·K·p
      backward  v̂·Ŵᵀ: both operands (2x); v̂·Πᵀ and Ŵ·Πᵀ: Π is detached, one operand (1x)
      teacher k v̂ᵏ·Ŵᵏᵀ (R^X and the confidence q), v̂ᵏ·Πᵀ, Ŵᵏ·Πᵀ, forward only
    mulki computes some of these products twice (one per scale); they are counted once here.
    For B = 64, K = 397 they total ~0.9 GFLOP, 5e-5 of the step.

Cross-check: torch.utils.flop_counter.FlopCounterMode on the HF CLIPModel of
torch_mulki_step.py (ViT-B/16, fp32, CPU) counts exactly `per_image_fwd_total` (35,126,906,880)
for one image and `per_prompt_fwd_total` (5,959,540,736) for one 77-token prompt; it counts the
backward at 2.01x the forward (SDPA's backward is counted at 2.5x, the pixel gradient at 0).

Run `python bench/flops.py --classes 100 397 --batch 64 --json` for the ViT-B/16 numbers.
"""
import argparse
import json
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ClipDims:
    """The shape of a CLIP model, as far as matmul FLOPs care."""

    vision_width: int = 768
    vision_layers: int = 12
    vision_heads: int = 12
    vision_mlp: int = 3072
    image_size: int = 224
    patch_size: int = 16
    channels: int = 3
    text_width: int = 512
    text_layers: int = 12
    text_heads: int = 8
    text_mlp: int = 2048
    text_len: int = 77
    vocab_size: int = 49408
    proj: int = 512

    @property
    def patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @property
    def image_tokens(self) -> int:
        return self.patches + 1


def vit_b16(text_len: int = 77) -> ClipDims:
    """openai/clip-vit-base-patch16."""
    return ClipDims(text_len=text_len)


def tiny(text_len: int = 8) -> ClipDims:
    """The CPU smoke-test model of torch_mulki_step.py --tiny: widths 32, 2 layers, 32 px, patch 8."""
    return ClipDims(vision_width=32, vision_layers=2, vision_heads=2, vision_mlp=64, image_size=32, patch_size=8,
                    text_width=32, text_layers=2, text_heads=2, text_mlp=64, text_len=text_len, vocab_size=64,
                    proj=16)


def block_flops(n: int, d: int, f: int, layers: int, causal_half: bool = False) -> dict:
    """Forward matmul FLOPs of `layers` pre-LN transformer blocks over one sequence of n tokens."""
    attn = 2 * n * n * d // (2 if causal_half else 1)
    per_layer = {
        "qkv": 2 * n * d * 3 * d,
        "attn_qk": attn,
        "attn_pv": attn,
        "attn_out": 2 * n * d * d,
        "mlp": 2 * n * d * f * 2,
    }
    return {k: v * layers for k, v in per_layer.items()}


def image_forward_terms(c: ClipDims) -> dict:
    """Forward matmul FLOPs of the image tower for ONE image, by term."""
    t = {"patch_embed": 2 * c.patches * (c.channels * c.patch_size**2) * c.vision_width}
    t.update(block_flops(c.image_tokens, c.vision_width, c.vision_mlp, c.vision_layers))
    t["proj"] = 2 * c.vision_width * c.proj
    return t


def text_forward_terms(c: ClipDims, causal_half: bool = False) -> dict:
    """Forward matmul FLOPs of the text tower for ONE prompt of c.text_len tokens, by term."""
    t = block_flops(c.text_len, c.text_width, c.text_mlp, c.text_layers, causal_half)
    t["proj"] = 2 * c.text_width * c.proj
    return t


def loss_head_terms(b: int, k: int, p: int, teachers: int) -> dict:
    """The loss's similarity products (see the module doc)."""
    fwd_student = 2 * b * k * p + 2 * b * k * p + 2 * k * k * p
    bwd_student = 2 * (2 * b * k * p) + 2 * b * k * p + 2 * k * k * p
    fwd_teachers = teachers * (2 * b * k * p + 2 * b * k * p + 2 * k * k * p)
    return {"student_fwd": fwd_student, "student_bwd": bwd_student, "teachers_fwd": fwd_teachers}


def step_flops(b: int, k: int, c: ClipDims = None, teachers: int = 2, causal_half: bool = False) -> dict:
    """Model FLOPs of one MulKI step: B images, K class prompts, `teachers` frozen image towers.

    Returns a dict with the per-image / per-prompt forward terms, the per-part totals and
    `total` (FLOPs per step)."""
    c = c or vit_b16()
    img = image_forward_terms(c)
    txt = text_forward_terms(c, causal_half)
    img1, txt1 = sum(img.values()), sum(txt.values())
    heads = loss_head_terms(b, k, c.proj, teachers)
    parts = {
        "student_image_fwd": b * img1,
        "student_image_bwd": 2 * b * img1,
        "student_text_fwd": k * txt1,
        "student_text_bwd": 2 * k * txt1,
        "teachers_image_fwd": teachers * b * img1,
        "loss_heads_fwd": heads["student_fwd"] + heads["teachers_fwd"],
        "loss_heads_bwd": heads["student_bwd"],
    }
    return {
        "batch": b,
        "classes": k,
        "teachers": teachers,
        "text_len": c.text_len,
        "text_attention": "causal, half counted" if causal_half else "causal, full n^2 counted",
        "config": asdict(c),
        "per_image_fwd": img,
        "per_image_fwd_total": img1,
        "per_prompt_fwd": txt,
        "per_prompt_fwd_total": txt1,
        "parts": parts,
        "total": sum(parts.values()),
    }


def _fmt(x: float) -> str:
    return f"{x / 1e12:9.4f} TFLOP" if x >= 1e11 else f"{x / 1e9:9.4f} GFLOP"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--classes", type=int, nargs="+", default=[100, 397])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--text-len", type=int, default=None, help="tokens per prompt (default: 77; tiny: 8)")
    ap.add_argument("--teachers", type=int, default=2)
    ap.add_argument("--causal-half", action="store_true", help="count half of the text attention products")
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if a.tiny:
        c = tiny() if a.text_len is None else tiny(a.text_len)
    else:
        c = vit_b16(77 if a.text_len is None else a.text_len)
    out = [step_flops(a.batch, k, c, a.teachers, a.causal_half) for k in a.classes]
    if a.json:
        print(json.dumps(out if len(out) > 1 else out[0], indent=1))
        return
    for r in out:
        print(f"B={r['batch']} K={r['classes']} teachers={r['teachers']} text_len={r['text_len']} "
              f"({r['text_attention']})")
        print(f"  per image fwd {_fmt(r['per_image_fwd_total'])}, per prompt fwd {_fmt(r['per_prompt_fwd_total'])}")
        for name, v in r["parts"].items():
            print(f"  {name:20s} {_fmt(v)}  {100 * v / r['total']:6.2f} %")
        print(f"  {'total':20s} {_fmt(r['total'])}")


if __name__ == "__main__":
    main()
