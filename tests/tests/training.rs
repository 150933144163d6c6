//! Training behaviour of the tiny model on the CPU backend: 200 AdamW steps on a fixed batch
//! drive the contrastive loss below 5% of its start, and the thread count never changes a bit.
use mulki_core::backend::Backend;
use mulki_core::clip::init::init_params;
use mulki_core::clip::{Capacity, Clip, ClipConfig};
use mulki_core::cpu::CpuBackend;
use mulki_core::loss::base::Terms;
use mulki_core::loss::contrastive::Contrastive;
use mulki_core::optim::{default_warmup, lr_at, AdamWConfig, Optimizer};
use mulki_tests::Rng;

struct Run {
    losses: Vec<f64>,
    params: Vec<f32>,
}

fn train(cfg: &ClipConfig, b: usize, steps: usize, lr: f64, threads: usize) -> Run {
    let mut be = CpuBackend::<f32>::new(threads);
    let mut clip = Clip::new(&mut be, cfg, Capacity { images: b, texts: b }).unwrap();
    be.write(clip.params(), &init_params::<f32>(cfg, &clip.layout, 11)).unwrap();
    let mut rng = Rng::new(5);
    let pixels: Vec<f32> = (0..clip.pixels(b).unwrap().len).map(|_| rng.normal() as f32).collect();
    let t = cfg.text_config.max_position_embeddings;
    let (bos, eos) = (cfg.text_config.bos_token_id, cfg.text_config.eos_token_id);
    let mut ids = Vec::new();
    for i in 0..b {
        ids.push(bos);
        let len = 2 + i % (t - 2);
        for j in 1..t {
            ids.push(if j < len {
                1 + rng.below(60) as u32
            } else if j == len {
                eos
            } else {
                0
            });
        }
    }
    let mut loss = Contrastive::new(&mut be, b, b, cfg.projection_dim).unwrap();
    let terms = Terms { contrastive: 1.0, labelled: 0.0, smoothing: 0.0 };
    let mut opt = Optimizer::new(&mut be, clip.layout.len, AdamWConfig::default()).unwrap();
    let r = clip.layout.trainable();
    let (pbuf, gbuf) = (clip.params().slice(r.start, r.len()), clip.grads().slice(r.start, r.len()));
    let s = cfg.logit_scale_init_value.exp();
    let mut losses = Vec::new();
    for k in 1..=steps + 1 {
        be.write(clip.pixels(b).unwrap(), &pixels).unwrap();
        let v = clip.encode_image(&mut be, b).unwrap();
        let w = clip.encode_text(&mut be, &ids, b, t).unwrap();
        losses.push(loss.forward(&mut be, v, w, b, b, s, &[], terms).unwrap().total);
        if k > steps {
            break;
        }
        clip.zero_grad(&mut be).unwrap();
        loss.backward(&mut be, Some(clip.image_dout()), Some(clip.text_dout()), None).unwrap();
        clip.backward_image(&mut be).unwrap();
        clip.backward_text(&mut be).unwrap();
        opt.step(&mut be, pbuf, gbuf, lr_at(lr, k, steps, default_warmup(steps))).unwrap();
    }
    let mut params = vec![0f32; clip.layout.len];
    be.read(clip.params(), &mut params).unwrap();
    Run { losses, params }
}

#[test]
fn two_hundred_adamw_steps_fit_a_fixed_batch() {
    let run = train(&ClipConfig::tiny(), 8, 200, 1e-3, 2);
    let (first, last) = (run.losses[0], *run.losses.last().unwrap());
    assert!(last < 0.05 * first, "loss {first} -> {last} (needs < 5%)");
}

#[test]
fn results_are_bit_identical_for_any_thread_count() {
    // Wide enough that GEMMs, attention and the column reductions really split across threads.
    let mut cfg = ClipConfig::tiny();
    cfg.vision_config.hidden_size = 64;
    cfg.vision_config.intermediate_size = 256;
    cfg.vision_config.num_attention_heads = 4;
    let runs: Vec<Run> = [1, 2, 3, 5].iter().map(|&th| train(&cfg, 24, 3, 1e-3, th)).collect();
    for (i, r) in runs.iter().enumerate().skip(1) {
        assert_eq!(
            r.losses.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            runs[0].losses.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            "losses differ for run {i}"
        );
        let same = r.params.iter().zip(&runs[0].params).all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same, "parameters differ for run {i}");
    }
}

/// A frozen model (teachers: two sets of block activations, no gradient arenas) encodes images
/// and texts bit for bit as the full model does, and refuses a backward with an error.
#[test]
fn a_frozen_model_encodes_exactly_like_the_full_one() {
    let cfg = ClipConfig {
        text_config: mulki_core::clip::TextConfig { num_hidden_layers: 3, ..ClipConfig::tiny().text_config },
        ..ClipConfig::tiny()
    };
    let (b, t) = (3, cfg.text_config.max_position_embeddings);
    let mut be = CpuBackend::<f32>::new(2);
    let cap = Capacity { images: b, texts: b };
    let mut full = Clip::new(&mut be, &cfg, cap).unwrap();
    let mut frozen = Clip::new_frozen(&mut be, &cfg, cap).unwrap();
    let theta = init_params::<f32>(&cfg, &full.layout, 4);
    let mut rng = Rng::new(9);
    let pixels: Vec<f32> = (0..full.pixels(b).unwrap().len).map(|_| rng.normal() as f32).collect();
    let ids: Vec<u32> = (0..b * t).map(|i| if i % t == t - 1 { 63 } else { 1 + (i % 50) as u32 }).collect();
    let mut feats = Vec::new();
    for m in [&mut full, &mut frozen] {
        be.write(m.params(), &theta).unwrap();
        be.write(m.pixels(b).unwrap(), &pixels).unwrap();
        let v = m.encode_image(&mut be, b).unwrap();
        let w = m.encode_text(&mut be, &ids, b, t).unwrap();
        let mut out = vec![0f32; v.len + w.len];
        be.read(v, &mut out[..v.len]).unwrap();
        be.read(w, &mut out[v.len..]).unwrap();
        feats.push(out);
    }
    assert_eq!(feats[0], feats[1], "frozen features differ from the full model's");
    assert!(frozen.backward_image(&mut be).is_err(), "a frozen model must refuse a backward");
}
