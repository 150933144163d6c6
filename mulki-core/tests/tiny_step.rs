//! Runs with the core compiled with or without `std` (`cargo test -p mulki-core
//! --no-default-features --features cpu`): a tiny forward pass, the contrastive loss and
//! optimiser steps, on the CPU backend.
use mulki_core::backend::Backend;
use mulki_core::clip::init::init_params;
use mulki_core::clip::{Capacity, Clip, ClipConfig};
use mulki_core::cpu::CpuBackend;
use mulki_core::loss::base::Terms;
use mulki_core::loss::contrastive::Contrastive;
use mulki_core::optim::{AdamWConfig, Optimizer};
use mulki_core::rng::Rng;

const B: usize = 6;

fn setup() -> (CpuBackend<f32>, Clip, Vec<f32>, Vec<u32>) {
    let cfg = ClipConfig::tiny();
    let mut be = CpuBackend::<f32>::new(2);
    let clip = Clip::new(&mut be, &cfg, Capacity { images: B, texts: B }).unwrap();
    let params = init_params::<f32>(&cfg, &clip.layout, 7);
    be.write(clip.params(), &params).unwrap();
    let mut rng = Rng::new(3);
    let pixels: Vec<f32> = (0..clip.pixels(B).unwrap().len).map(|_| rng.normal() as f32).collect();
    let t = cfg.text_config.max_position_embeddings;
    let mut ids = Vec::new();
    for i in 0..B {
        ids.push(62);
        for j in 1..t {
            ids.push(if j == 2 + i % 4 { 63 } else { 1 + rng.below(60) as u32 });
        }
    }
    (be, clip, pixels, ids)
}

#[test]
fn forward_gives_finite_features_of_the_right_size() {
    let (mut be, mut clip, pixels, ids) = setup();
    be.write(clip.pixels(B).unwrap(), &pixels).unwrap();
    let v = clip.encode_image(&mut be, B).unwrap();
    let t = ids.len() / B;
    let w = clip.encode_text(&mut be, &ids, B, t).unwrap();
    assert_eq!((v.len, w.len), (B * 16, B * 16));
    let mut out = vec![0f32; v.len];
    be.read(v, &mut out).unwrap();
    assert!(out.iter().all(|x| x.is_finite()) && out.iter().any(|&x| x != 0.0));
    // A batch larger than planned is an error, not a panic.
    assert!(clip.pixels(B + 1).is_err());
    assert!(clip.encode_text(&mut be, &ids, B, t + 1).is_err());
}

#[test]
fn adamw_steps_lower_the_loss_and_leave_logit_scale_frozen() {
    let (mut be, mut clip, pixels, ids) = setup();
    let t = ids.len() / B;
    let mut loss = Contrastive::new(&mut be, B, B, 16).unwrap();
    let terms = Terms { contrastive: 1.0, labelled: 0.0, smoothing: 0.0 };
    let mut opt = Optimizer::new(&mut be, clip.layout.len, AdamWConfig::default()).unwrap();
    let r = clip.layout.trainable();
    let (pbuf, gbuf) = (clip.params().slice(r.start, r.len()), clip.grads().slice(r.start, r.len()));
    let s = (clip.config.logit_scale_init_value).exp();
    let mut before = vec![0f32; clip.layout.len];
    be.read(clip.params(), &mut before).unwrap();
    let mut losses = Vec::new();
    for step in 0..5 {
        be.write(clip.pixels(B).unwrap(), &pixels).unwrap();
        let v = clip.encode_image(&mut be, B).unwrap();
        let w = clip.encode_text(&mut be, &ids, B, t).unwrap();
        losses.push(loss.forward(&mut be, v, w, B, B, s, &[], terms).unwrap().total);
        clip.zero_grad(&mut be).unwrap();
        loss.backward(&mut be, Some(clip.image_dout()), Some(clip.text_dout()), None).unwrap();
        clip.backward_image(&mut be).unwrap();
        clip.backward_text(&mut be).unwrap();
        if step == 0 {
            // One step moves exactly the parameters whose gradient is non-zero.
            let mut g = vec![0f32; clip.layout.len];
            be.read(clip.grads(), &mut g).unwrap();
            opt.step(&mut be, pbuf, gbuf, 1e-3).unwrap();
            let mut after = vec![0f32; clip.layout.len];
            be.read(clip.params(), &mut after).unwrap();
            for e in &clip.layout.entries {
                for i in e.view.offset..e.view.offset + e.view.len {
                    let trainable = r.contains(&i);
                    let moved = after[i].to_bits() != before[i].to_bits();
                    assert_eq!(moved, trainable && g[i] != 0.0, "{}[{}]: grad {}", e.name, i - e.view.offset, g[i]);
                }
            }
        } else {
            opt.step(&mut be, pbuf, gbuf, 1e-3).unwrap();
        }
    }
    assert!(losses.iter().all(|l| l.is_finite()));
    assert!(losses[4] < losses[0], "loss did not decrease: {losses:?}");
}
