//! f64 central finite differences for every hand-written backward of the `Backend` trait and of
//! the layers composed from it (see `mulki_tests::fd`).
use mulki_core::backend::{Attn, Backend, Bcast, Buf, Ce, Gemm, IdxBuf, Patches, Rows};
use mulki_core::clip::HiddenAct;
use mulki_core::layers::linear::Linear;
use mulki_core::layers::similarity::Similarity;
use mulki_core::loss::base::Terms;
use mulki_core::loss::contrastive::Contrastive;
use mulki_tests::fd::{check, check_scalar, scratch, Be, FdCase};
use mulki_tests::normals;

fn rnd(seed: u64, n: usize) -> Vec<f64> {
    normals(seed, n)
}

fn ids(be: &mut Be, v: &[u32]) -> IdxBuf {
    let a = be.alloc_idx(v.len()).unwrap();
    let b = IdxBuf { arena: a, offset: 0, len: v.len() };
    be.write_idx(b, v).unwrap();
    b
}

#[test]
fn layer_norm() {
    let d = Rows { rows: 5, c: 7, eps: 1e-5 };
    let fwd = |be: &mut Be, x: &[Buf]| {
        let (out, m, r) = (scratch(be, 35), scratch(be, 5), scratch(be, 5));
        be.layer_norm_forward(out, m, r, x[0], x[1], x[2], d).unwrap();
        out
    };
    check(FdCase {
        name: "layer_norm",
        inputs: vec![rnd(1, 35), rnd(2, 7), rnd(3, 7)],
        check: vec![true; 3],
        h: 1e-5,
        forward: &fwd,
        backward: &|be, x, dx, dy| {
            let (out, m, r) = (scratch(be, 35), scratch(be, 5), scratch(be, 5));
            be.layer_norm_forward(out, m, r, x[0], x[1], x[2], d).unwrap();
            be.layer_norm_backward(dx[0], dx[1], dx[2], dy, x[0], x[1], m, r, d).unwrap();
        },
    });
}

#[test]
fn softmax_and_log_softmax() {
    let d = Rows { rows: 4, c: 6, eps: 0.0 };
    for log in [false, true] {
        let fwd = move |be: &mut Be, x: &[Buf]| {
            let out = scratch(be, 24);
            if log {
                be.log_softmax_forward(out, x[0], d).unwrap();
            } else {
                be.softmax_forward(out, x[0], d).unwrap();
            }
            out
        };
        check(FdCase {
            name: if log { "log_softmax" } else { "softmax" },
            inputs: vec![rnd(4, 24).iter().map(|x| 3.0 * x).collect()],
            check: vec![true],
            h: 1e-5,
            forward: &fwd,
            backward: &|be, x, dx, dy| {
                let out = fwd(be, x);
                if log {
                    be.log_softmax_backward(dx[0], dy, out, d).unwrap();
                } else {
                    be.softmax_backward(dx[0], dy, out, d).unwrap();
                }
            },
        });
    }
}

#[test]
fn attention_causal_and_full() {
    for causal in [false, true] {
        let d = Attn { b: 2, t: 4, nh: 2, hs: 3, causal };
        let n = 2 * 4 * 6;
        let fwd = move |be: &mut Be, x: &[Buf]| {
            let (out, probs) = (scratch(be, n), scratch(be, 2 * 2 * 16));
            be.attention_forward(out, probs, x[0], d).unwrap();
            out
        };
        check(FdCase {
            name: if causal { "attention causal" } else { "attention" },
            inputs: vec![rnd(5, 3 * n)],
            check: vec![true],
            h: 1e-5,
            forward: &fwd,
            backward: &|be, x, dx, dy| {
                let (out, probs) = (scratch(be, n), scratch(be, 2 * 2 * 16));
                be.attention_forward(out, probs, x[0], d).unwrap();
                be.attention_backward(dx[0], dy, x[0], probs, d).unwrap();
            },
        });
    }
}

#[test]
fn activations() {
    for act in [HiddenAct::QuickGelu, HiddenAct::Gelu] {
        let fwd = move |be: &mut Be, x: &[Buf]| {
            let out = scratch(be, 40);
            be.act_forward(out, x[0], act).unwrap();
            out
        };
        check(FdCase {
            name: "act",
            inputs: vec![rnd(6, 40).iter().map(|x| 3.0 * x).collect()],
            check: vec![true],
            h: 1e-5,
            forward: &fwd,
            backward: &|be, x, dx, dy| be.act_backward(dx[0], dy, x[0], act).unwrap(),
        });
    }
}

#[test]
fn embedding_gather_scatter() {
    let rows = [3u32, 0, 3, 1, 4];
    let fwd = |be: &mut Be, x: &[Buf]| {
        let out = scratch(be, 5 * 4);
        let i = ids(be, &rows);
        be.embedding_forward(out, x[0], i, 4).unwrap();
        out
    };
    check(FdCase {
        name: "embedding",
        inputs: vec![rnd(7, 6 * 4)],
        check: vec![true],
        h: 1e-5,
        forward: &fwd,
        backward: &|be, _x, dx, dy| {
            let i = ids(be, &rows);
            be.embedding_backward(dx[0], dy, i, 4).unwrap();
        },
    });
}

#[test]
fn broadcast_add() {
    let d = Bcast { outer: 3, inner: 2, c: 5 };
    let fwd = |be: &mut Be, x: &[Buf]| {
        let out = scratch(be, 30);
        be.copy(out, x[0]).unwrap();
        be.broadcast_add_forward(out, x[1], d).unwrap();
        out
    };
    check(FdCase {
        name: "broadcast_add",
        inputs: vec![rnd(8, 30), rnd(9, 10)],
        check: vec![false, true],
        h: 1e-5,
        forward: &fwd,
        backward: &|be, _x, dx, dy| be.broadcast_add_backward(dx[1], dy, d).unwrap(),
    });
}

#[test]
fn patchify_and_vision_embed() {
    let p = Patches { b: 2, channels: 3, side: 4, patch: 2 };
    let n = 2 * 3 * 16;
    check(FdCase {
        name: "patchify",
        inputs: vec![rnd(10, n)],
        check: vec![true],
        h: 1e-5,
        forward: &|be, x| {
            let out = scratch(be, n);
            be.patchify_forward(out, x[0], p).unwrap();
            out
        },
        backward: &|be, _x, dx, dy| be.patchify_backward(dx[0], dy, p).unwrap(),
    });
    let (b, t, c) = (2, 5, 3);
    check(FdCase {
        name: "vision_embed",
        inputs: vec![rnd(11, b * (t - 1) * c), rnd(12, c), rnd(13, t * c)],
        check: vec![true; 3],
        h: 1e-5,
        forward: &|be, x| {
            let out = scratch(be, b * t * c);
            be.vision_embed_forward(out, x[0], x[1], x[2], b, t, c).unwrap();
            out
        },
        backward: &|be, _x, dx, dy| be.vision_embed_backward(dx[0], dx[1], dx[2], dy, b, t, c).unwrap(),
    });
}

#[test]
fn l2_normalize_including_the_clamped_floor() {
    // Second case: every row below the floor, where out = x/eps as in F.normalize; its step
    // must keep ‖x ± h‖ below eps.
    for (x, h) in [(rnd(14, 12), 1e-5), (rnd(14, 12).iter().map(|v| v * 1e-14).collect(), 1e-17)] {
        let d = Rows { rows: 3, c: 4, eps: 1e-12 };
        let fwd = |be: &mut Be, x: &[Buf]| {
            let (out, n) = (scratch(be, 12), scratch(be, 3));
            be.l2_normalize_forward(out, n, x[0], d).unwrap();
            out
        };
        check(FdCase {
            name: "l2_normalize",
            inputs: vec![x],
            check: vec![true],
            h,
            forward: &fwd,
            backward: &|be, x, dx, dy| {
                let (out, n) = (scratch(be, 12), scratch(be, 3));
                be.l2_normalize_forward(out, n, x[0], d).unwrap();
                be.l2_normalize_backward(dx[0], dy, out, n, d).unwrap();
            },
        });
    }
}

#[test]
fn row_dot() {
    let d = Rows { rows: 3, c: 5, eps: 0.0 };
    check(FdCase {
        name: "row_dot",
        inputs: vec![rnd(15, 15), rnd(16, 15)],
        check: vec![true, true],
        h: 1e-5,
        forward: &|be, x| {
            let out = scratch(be, 3);
            be.row_dot_forward(out, x[0], x[1], d).unwrap();
            out
        },
        backward: &|be, x, dx, dy| be.row_dot_backward(Some(dx[0]), Some(dx[1]), dy, x[0], x[1], d).unwrap(),
    });
}

#[test]
fn cross_entropy_with_and_without_smoothing() {
    for smoothing in [0.0, 0.2] {
        let d = Ce { rows: 4, nc: 5, smoothing };
        let targets = [1u32, 4, 0, 4];
        let fwd = move |be: &mut Be, x: &[Buf]| {
            let (loss, lse) = (scratch(be, 4), scratch(be, 4));
            let t = ids(be, &targets);
            be.cross_entropy_forward(loss, lse, x[0], t, d).unwrap();
            loss
        };
        check(FdCase {
            name: "cross_entropy",
            inputs: vec![rnd(17, 20).iter().map(|x| 4.0 * x).collect()],
            check: vec![true],
            h: 1e-5,
            forward: &fwd,
            backward: &|be, x, dx, dy| {
                let (loss, lse) = (scratch(be, 4), scratch(be, 4));
                let t = ids(be, &targets);
                be.cross_entropy_forward(loss, lse, x[0], t, d).unwrap();
                be.cross_entropy_backward(dx[0], dy, x[0], lse, t, d).unwrap();
            },
        });
    }
}

#[test]
fn linear_is_gemm_and_its_transposes() {
    let l = Linear { rows: 4, inp: 3, out: 5 };
    check(FdCase {
        name: "linear",
        inputs: vec![rnd(18, 12), rnd(19, 15), rnd(20, 5)],
        check: vec![true; 3],
        h: 1e-5,
        forward: &|be, x| {
            let out = scratch(be, 20);
            l.forward(be, out, x[0], x[1], Some(x[2]), false).unwrap();
            out
        },
        backward: &|be, x, dx, dy| l.backward(be, Some(dx[0]), dx[1], Some(dx[2]), dy, x[0], x[1]).unwrap(),
    });
}

#[test]
fn batched_gemm_with_broadcast_operand() {
    // C_i = A_i · Bᵀ with B shared (stride 0), as the patch embedding uses it.
    let g = Gemm { batch: 3, stride_a: 8, stride_b: 0, stride_c: 6, ..Gemm::new(2, 3, 4, false, true, 1.5, 0.0) };
    check(FdCase {
        name: "batched gemm",
        inputs: vec![rnd(21, 24), rnd(22, 12)],
        check: vec![true, true],
        h: 1e-5,
        forward: &|be, x| {
            let out = scratch(be, 18);
            be.gemm(out, x[0], x[1], g).unwrap();
            out
        },
        backward: &|be, x, dx, dy| {
            for i in 0..3 {
                let (a, da, c) = (x[0].slice(8 * i, 8), dx[0].slice(8 * i, 8), dy.slice(6 * i, 6));
                be.gemm(da, c, x[1], Gemm::new(2, 4, 3, false, false, 1.5, 1.0)).unwrap();
                be.gemm(dx[1], c, a, Gemm::new(3, 4, 2, true, false, 1.5, 1.0)).unwrap();
            }
        },
    });
}

#[test]
fn similarity_including_log_scale() {
    let s = Similarity { m: 3, n: 4, c: 5, scale: 7.0 };
    check(FdCase {
        name: "similarity",
        inputs: vec![rnd(23, 15), rnd(24, 20), vec![7.0f64.ln()]],
        check: vec![true, true, true],
        h: 1e-5,
        forward: &|be, x| {
            let mut ls = [0.0];
            be.read(x[2], &mut ls).unwrap();
            let z = scratch(be, 12);
            Similarity { scale: ls[0].exp(), ..s }.forward(be, z, x[0], x[1]).unwrap();
            z
        },
        backward: &|be, x, dx, dy| {
            let z = scratch(be, 12);
            s.forward(be, z, x[0], x[1]).unwrap();
            let tmp = scratch(be, 1);
            s.backward(be, Some(dx[0]), Some(dx[1]), Some((dx[2], tmp)), dy, z, x[0], x[1]).unwrap();
        },
    });
}

#[test]
fn contrastive_loss_composition() {
    let (b, p) = (4, 6);
    let labels = [2u32, 0, 3, 3];
    let terms = Terms { contrastive: 0.7, labelled: 1.3, smoothing: 0.2 };
    let run = |be: &mut Be, x: &[Buf]| {
        let mut l = Contrastive::new(be, b, b, p).unwrap();
        let v = l.forward(be, x[0], x[1], b, b, 9.0, &labels, terms).unwrap().total;
        (l, v)
    };
    check_scalar("contrastive", vec![rnd(25, b * p), rnd(26, b * p)], &|be, x| run(be, x).1, &|be, x, dx| {
        run(be, x).0.backward(be, Some(dx[0]), Some(dx[1]), None).unwrap()
    });
}

#[test]
fn row_kl_both_sides() {
    let d = Rows { rows: 3, c: 5, eps: 0.0 };
    // Inputs are log-probabilities: normalise random logits on the host.
    let logp = |seed| {
        let x = rnd(seed, 15);
        x.chunks(5)
            .flat_map(|r| {
                let lse = r.iter().map(|v| v.exp()).sum::<f64>().ln();
                r.iter().map(move |v| v - lse).collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
    };
    check(FdCase {
        name: "row_kl",
        inputs: vec![logp(27), logp(28)],
        check: vec![true, true],
        h: 1e-5,
        forward: &|be, x| {
            let out = scratch(be, 3);
            be.row_kl_forward(out, x[0], x[1], d).unwrap();
            out
        },
        backward: &|be, x, dx, dy| be.row_kl_backward(Some(dx[0]), Some(dx[1]), dy, x[0], x[1], d).unwrap(),
    });
}

/// The whole MulKI loss (every stage, two teachers, each weighting rule): its gradient with
/// respect to the student's raw features. Teacher weights are detached by definition, so the
/// finite difference is taken with them held at their values (the rule's inputs do not depend
/// on the student).
#[test]
fn mulki_total_loss() {
    use mulki_core::loss::mulki::{Features, MulkiLoss};
    use mulki_core::method::{MethodConfig, WeightRuleName};
    let (b, k, p) = (5, 4, 6);
    let labels = [0u32, 3, 1, 1, 2];
    for rule in [WeightRuleName::Confidence, WeightRuleName::Equal, WeightRuleName::Discrepancy] {
        let cfg = MethodConfig { weight_rule: rule, lambda_lwf: 0.5, ..MethodConfig::default() };
        let teachers = [rnd(30, b * p), rnd(31, k * p), rnd(32, b * p), rnd(33, k * p)];
        let protos = rnd(34, k * p);
        let run = |be: &mut Be, x: &[Buf]| {
            let mut l = MulkiLoss::new(be, &cfg, b, k, p).unwrap();
            l.prototypes.begin(be, k).unwrap();
            let pr = l.prototypes.protos();
            be.write(pr, &protos).unwrap();
            let t: Vec<Buf> = teachers
                .iter()
                .map(|v| {
                    let x = scratch(be, v.len());
                    be.write(x, v).unwrap();
                    x
                })
                .collect();
            let kd = [Features { v: t[0], w: t[1] }, Features { v: t[2], w: t[3] }];
            l.forward(be, Features { v: x[0], w: x[1] }, &kd, Some(kd[1]), &labels, b, k, 20.0).unwrap();
            let v = l.read(be).unwrap().total;
            (l, v)
        };
        check_scalar("mulki total", vec![rnd(35, b * p), rnd(36, k * p)], &|be, x| run(be, x).1, &|be, x, dx| {
            run(be, x).0.backward(be, dx[0], dx[1]).unwrap()
        });
    }
}

#[test]
fn zscl_reference_terms() {
    use mulki_core::loss::zscl::Zscl;
    let (r, n, p) = (4, 5, 6);
    let fixed = [rnd(40, r * p), rnd(41, n * p)];
    let run = |be: &mut Be, x: &[Buf]| {
        let mut z = Zscl::new(be, r, n, p, 2.0, 1.0).unwrap();
        let (t, c) = (scratch(be, r * p), scratch(be, n * p));
        be.write(t, &fixed[0]).unwrap();
        be.write(c, &fixed[1]).unwrap();
        z.forward(be, x[0], t, c, r, n, 30.0).unwrap();
        let v = z.read(be).unwrap();
        (z, v.img + v.txt)
    };
    check_scalar("zscl", vec![rnd(42, r * p)], &|be, x| run(be, x).1, &|be, x, dx| {
        run(be, x).0.backward(be, dx[0]).unwrap()
    });
}

/// Pretraining's soft-target contrastive loss, including the learnable logit scale.
#[test]
fn soft_contrastive_with_logit_scale() {
    use mulki_core::loss::soft_contrastive::SoftContrastive;
    let (b, p) = (4, 5);
    // Row-stochastic targets with several positives per row.
    let targets = |seed| {
        let mut t: Vec<f64> = rnd(seed, b * b).iter().map(|x| if *x > 0.0 { x + 0.1 } else { 0.0 }).collect();
        for (r, row) in t.chunks_mut(b).enumerate() {
            row[r] += 1.0;
            let s: f64 = row.iter().sum();
            row.iter_mut().for_each(|x| *x /= s);
        }
        t
    };
    let (ti, tt) = (targets(50), targets(51));
    let run = |be: &mut Be, x: &[Buf]| {
        let mut ls = [0.0];
        be.read(x[2], &mut ls).unwrap();
        let mut l = SoftContrastive::new(be, b, p).unwrap();
        let v = l.forward(be, x[0], x[1], b, ls[0].exp(), &ti, &tt).unwrap();
        (l, v)
    };
    check_scalar(
        "soft contrastive",
        vec![rnd(52, b * p), rnd(53, b * p), vec![2.0]],
        &|be, x| run(be, x).1,
        &|be, x, dx| run(be, x).0.backward(be, dx[0], dx[1], dx[2]).unwrap(),
    );
}
