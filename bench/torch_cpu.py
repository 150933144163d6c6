"""PyTorch side of `mulki bench cpu`: the same models and workloads, on the CPU, with the same
thread count. Prints one JSON object; the Rust side prints both columns and their ratio.

Workloads (identical to mulki's):
  gemm      f32 [n, n] x [n, n]                                   -> GFLOP/s
  vit_fwd   HF CLIPVisionModelWithProjection ViT-B/16, 224 px, eval -> images/s
  tiny_step mulki's ClipConfig::tiny(), symmetric contrastive loss, AdamW step -> images/s
"""
import argparse
import json
import time

import torch


def timed(fn, iters, warmup=1):
    for _ in range(warmup):
        fn()
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - t0) / iters


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--vit-batch", type=int, default=4)
    ap.add_argument("--tiny-batch", type=int, default=32)
    ap.add_argument("--gemm-n", type=int, default=1024)
    ap.add_argument("--iters", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    out = {"torch": torch.__version__, "threads": torch.get_num_threads()}

    n = a.gemm_n
    x, y = torch.randn(n, n), torch.randn(n, n)
    out["gemm_gflops"] = 2 * n**3 / timed(lambda: x @ y, max(a.iters, 5)) / 1e9

    try:
        from transformers import CLIPConfig, CLIPModel, CLIPVisionConfig, CLIPTextConfig
    except ImportError as e:  # the workloads below need transformers
        out["error"] = f"transformers not installed: {e}"
        print(json.dumps(out))
        return

    vision = CLIPVisionConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                              num_attention_heads=12, image_size=224, patch_size=16,
                              hidden_act="quick_gelu")
    vit = CLIPModel(CLIPConfig(text_config=CLIPTextConfig().to_dict(), vision_config=vision.to_dict(),
                               projection_dim=512, attn_implementation="sdpa")).eval()
    px = torch.randn(a.vit_batch, 3, 224, 224)
    with torch.no_grad():
        sec = timed(lambda: vit.get_image_features(pixel_values=px), a.iters)
    out["vit_fwd_img_s"] = a.vit_batch / sec
    del vit

    text = CLIPTextConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=2, max_position_embeddings=8, pad_token_id=0,
                          bos_token_id=62, eos_token_id=63, hidden_act="quick_gelu")
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=2, image_size=16, patch_size=4,
                              hidden_act="quick_gelu")
    tiny = CLIPModel(CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(),
                                projection_dim=16, attn_implementation="sdpa"))
    tiny.logit_scale.requires_grad_(False)
    b = a.tiny_batch
    px = torch.randn(b, 3, 16, 16)
    ids = torch.randint(1, 61, (b, 8))
    ids[:, 0] = 62
    ids[:, -1] = 63
    opt = torch.optim.AdamW([p for p in tiny.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.0)
    labels = torch.arange(b)

    def step():
        o = tiny(input_ids=ids, pixel_values=px)
        z = o.logits_per_image
        loss = 0.5 * (torch.nn.functional.cross_entropy(z, labels) + torch.nn.functional.cross_entropy(z.T, labels))
        opt.zero_grad(set_to_none=False)
        loss.backward()
        opt.step()

    out["tiny_step_img_s"] = b / timed(step, max(a.iters * 10, 20), warmup=3)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
