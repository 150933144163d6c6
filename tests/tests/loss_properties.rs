//! Properties of the loss math (proptest, few cases each): distributions sum to 1, KLs are ≥ 0
//! and exactly 0 for identical inputs, teacher weights form a distribution, the total is
//! invariant under consistent permutations, L_EI is symmetric, dual teachers with P = Z reduce
//! to one, ε = 0 is plain CE, the ensemble is the mean of its members, and extreme inputs stay
//! finite.
use mulki_core::arena::{Planner, Scratch};
use mulki_core::backend::{Backend, Buf, Ce, IdxBuf, Rows};
use mulki_core::cpu::CpuBackend;
use mulki_core::loss::base::{ImageText, Terms, IMAGE_TEXT_SLOTS};
use mulki_core::loss::connections::{merge_due, Ensemble};
use mulki_core::loss::mulki::{Features, LossValues, MulkiLoss};
use mulki_core::loss::relations::LogSoftmaxSim;
use mulki_core::loss::tally::Tally;
use mulki_core::method::{MethodConfig, WeightRuleName};
use mulki_tests::normals;
use proptest::prelude::*;

type Be = CpuBackend<f64>;

fn buf(be: &mut Be, v: &[f64]) -> Buf {
    let a = be.alloc(v.len()).unwrap();
    let b = Buf { arena: a, offset: 0, len: v.len() };
    be.write(b, v).unwrap();
    b
}

fn get(be: &mut Be, b: Buf) -> Vec<f64> {
    let mut v = vec![0.0; b.len];
    be.read(b, &mut v).unwrap();
    v
}

/// One batch: student, two teachers, prototypes, labels.
#[derive(Clone, Debug)]
struct Batch {
    b: usize,
    k: usize,
    p: usize,
    s: f64,
    v: Vec<f64>,
    w: Vec<f64>,
    t: [Vec<f64>; 4],
    protos: Vec<f64>,
    labels: Vec<u32>,
}

fn batch(b: usize, k: usize, seed: u64, s: f64) -> Batch {
    let p = 5;
    let mut protos = normals(seed + 9, k * p);
    for row in protos.chunks_mut(p) {
        let n = row.iter().map(|x| x * x).sum::<f64>().sqrt();
        row.iter_mut().for_each(|x| *x /= n);
    }
    Batch {
        b,
        k,
        p,
        s,
        v: normals(seed, b * p),
        w: normals(seed + 1, k * p),
        t: [normals(seed + 2, b * p), normals(seed + 3, k * p), normals(seed + 4, b * p), normals(seed + 5, k * p)],
        protos,
        labels: (0..b).map(|i| ((i as u64 * 7 + seed) % k as u64) as u32).collect(),
    }
}

/// Runs the loss; returns the values and the gradients w.r.t. (v, w).
fn run(cfg: &MethodConfig, x: &Batch, teachers: usize) -> (LossValues, Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut be = Be::new(1);
    let mut l = MulkiLoss::new(&mut be, cfg, x.b, x.k, x.p).unwrap();
    l.prototypes.begin(&mut be, x.k).unwrap();
    let pr = l.prototypes.protos();
    be.write(pr, &x.protos).unwrap();
    let st = Features { v: buf(&mut be, &x.v), w: buf(&mut be, &x.w) };
    let t: Vec<Buf> = x.t.iter().map(|v| buf(&mut be, v)).collect();
    let kd = [Features { v: t[0], w: t[1] }, Features { v: t[2], w: t[3] }];
    l.forward(&mut be, st, &kd[..teachers], Some(kd[teachers - 1]), &x.labels, x.b, x.k, x.s).unwrap();
    let out = l.read(&mut be).unwrap();
    let alpha = get(&mut be, l.alpha());
    let (dv, dw) = (buf(&mut be, &vec![0.0; x.b * x.p]), buf(&mut be, &vec![0.0; x.k * x.p]));
    l.backward(&mut be, dv, dw).unwrap();
    (out, alpha, get(&mut be, dv), get(&mut be, dw))
}

fn rules() -> impl Strategy<Value = WeightRuleName> {
    prop_oneof![Just(WeightRuleName::Confidence), Just(WeightRuleName::Equal), Just(WeightRuleName::Discrepancy)]
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + a.abs().max(b.abs()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn relation_rows_sum_to_one(m in 1usize..9, n in 1usize..12, seed in 0u64..1000, s in 1.0f64..100.0) {
        let mut be = Be::new(1);
        let (a, b) = (buf(&mut be, &normals(seed, m * 4)), buf(&mut be, &normals(seed + 1, n * 4)));
        let (_, mut r) = Scratch::new(&mut be, |pl: &mut Planner| LogSoftmaxSim::plan(pl, m, n)).unwrap();
        let lp = r.forward(&mut be, a, b, m, n, 4, s).unwrap();
        for row in get(&mut be, lp).chunks(n) {
            let sum: f64 = row.iter().map(|x| x.exp()).sum();
            prop_assert!((sum - 1.0).abs() < 1e-12, "row sums to {sum}");
        }
    }

    #[test]
    fn kl_is_nonnegative_and_zero_on_identical_rows(rows in 1usize..6, c in 1usize..10, seed in 0u64..1000) {
        let mut be = Be::new(1);
        let logp = |seed| normals(seed, rows * c).chunks(c).flat_map(|r| {
            let lse = r.iter().map(|v| (3.0 * v).exp()).sum::<f64>().ln();
            r.iter().map(move |v| 3.0 * v - lse).collect::<Vec<_>>()
        }).collect::<Vec<_>>();
        let (p, q) = (buf(&mut be, &logp(seed)), buf(&mut be, &logp(seed + 1)));
        let out = buf(&mut be, &vec![0.0; rows]);
        let d = Rows { rows, c, eps: 0.0 };
        be.row_kl_forward(out, p, q, d).unwrap();
        prop_assert!(get(&mut be, out).iter().all(|&x| x >= -1e-15));
        be.row_kl_forward(out, p, p, d).unwrap();
        prop_assert!(get(&mut be, out).iter().all(|&x| x == 0.0));
    }

    #[test]
    fn teacher_weights_are_a_distribution(b in 1usize..8, k in 2usize..7, seed in 0u64..1000, rule in rules()) {
        let cfg = MethodConfig { weight_rule: rule, ..MethodConfig::default() };
        let (_, alpha, _, _) = run(&cfg, &batch(b, k, seed, 20.0), 2);
        for i in 0..b {
            let (z, p) = (alpha[i], alpha[b + i]);
            prop_assert!((0.0..=1.0).contains(&z) && (0.0..=1.0).contains(&p));
            prop_assert!((z + p - 1.0).abs() < 1e-12);
        }
    }

    #[test]
    fn total_is_invariant_under_consistent_permutations(b in 2usize..7, k in 2usize..7, seed in 0u64..1000, rule in rules()) {
        let cfg = MethodConfig { weight_rule: rule, ..MethodConfig::default() };
        let x = batch(b, k, seed, 20.0);
        let (pb, pk): (Vec<usize>, Vec<usize>) = ((0..b).rev().collect(), (0..k).map(|c| (c + 1) % k).collect());
        let rows = |v: &[f64], perm: &[usize], p: usize| perm.iter().flat_map(|&i| v[i * p..(i + 1) * p].to_vec()).collect::<Vec<_>>();
        let inv_k: Vec<u32> = (0..k).map(|c| pk.iter().position(|&x| x == c).unwrap() as u32).collect();
        let y = Batch {
            v: rows(&x.v, &pb, x.p),
            w: rows(&x.w, &pk, x.p),
            t: [rows(&x.t[0], &pb, x.p), rows(&x.t[1], &pk, x.p), rows(&x.t[2], &pb, x.p), rows(&x.t[3], &pk, x.p)],
            protos: rows(&x.protos, &pk, x.p),
            labels: pb.iter().map(|&i| inv_k[x.labels[i] as usize]).collect(),
            ..x.clone()
        };
        let (a, _, _, _) = run(&cfg, &x, 2);
        let (c, _, _, _) = run(&cfg, &y, 2);
        prop_assert!(close(a.total, c.total, 1e-12), "{} vs {}", a.total, c.total);
    }

    #[test]
    fn ei_is_symmetric_in_prototypes_and_texts(k in 1usize..9, seed in 0u64..1000, s in 1.0f64..100.0) {
        let mut be = Be::new(1);
        let idx = ImageText::alloc_idx(&mut be, k, k).unwrap();
        let tally = Tally::new(&mut be, IMAGE_TEXT_SLOTS, k).unwrap();
        let (_, mut it) = Scratch::new(&mut be, |pl: &mut Planner| ImageText::plan(pl, idx, tally, k, k, 4)).unwrap();
        let (pi, w) = (buf(&mut be, &normals(seed, k * 4)), buf(&mut be, &normals(seed + 1, k * 4)));
        let t = Terms { contrastive: 1.0, labelled: 0.0, smoothing: 0.0 };
        it.forward(&mut be, pi, w, k, k, s, &[], t).unwrap();
        let a = it.read(&mut be).unwrap().contrastive;
        it.forward(&mut be, w, pi, k, k, s, &[], t).unwrap();
        let b = it.read(&mut be).unwrap().contrastive;
        prop_assert!(close(a, b, 1e-13), "{a} vs {b}");
    }

    #[test]
    fn dual_teachers_with_p_equal_to_z_reduce_to_one(b in 1usize..7, k in 2usize..7, seed in 0u64..1000, rule in rules()) {
        let cfg = MethodConfig { weight_rule: rule, lambda_lwf: 0.0, ..MethodConfig::default() };
        let mut x = batch(b, k, seed, 20.0);
        x.t[2] = x.t[0].clone();
        x.t[3] = x.t[1].clone();
        let (two, _, dv2, dw2) = run(&cfg, &x, 2);
        let (one, _, dv1, dw1) = run(&cfg, &x, 1);
        prop_assert!(close(two.total, one.total, 1e-12), "{} vs {}", two.total, one.total);
        for (a, b) in dv2.iter().chain(&dw2).zip(dv1.iter().chain(&dw1)) {
            prop_assert!(close(*a, *b, 1e-10));
        }
    }

    #[test]
    fn smoothing_zero_is_plain_cross_entropy(rows in 1usize..6, nc in 1usize..9, seed in 0u64..1000) {
        let mut be = Be::new(1);
        let z = normals(seed, rows * nc).iter().map(|x| 10.0 * x).collect::<Vec<_>>();
        let targets: Vec<u32> = (0..rows).map(|r| ((r as u64 + seed) % nc as u64) as u32).collect();
        let (zb, loss, lse) = (buf(&mut be, &z), buf(&mut be, &vec![0.0; rows]), buf(&mut be, &vec![0.0; rows]));
        let ids = IdxBuf { arena: be.alloc_idx(rows).unwrap(), offset: 0, len: rows };
        be.write_idx(ids, &targets).unwrap();
        be.cross_entropy_forward(loss, lse, zb, ids, Ce { rows, nc, smoothing: 0.0 }).unwrap();
        let lp = buf(&mut be, &vec![0.0; rows * nc]);
        be.log_softmax_forward(lp, zb, Rows { rows, c: nc, eps: 0.0 }).unwrap();
        let lp = get(&mut be, lp);
        for (r, l) in get(&mut be, loss).iter().enumerate() {
            prop_assert!(close(*l, -lp[r * nc + targets[r] as usize], 1e-13));
        }
    }

    #[test]
    fn extreme_inputs_stay_finite(b in 1usize..6, k in 2usize..6, seed in 0u64..1000, rule in rules(),
                                  which in 0usize..4, s in prop_oneof![Just(20.0), Just(100.0)],
                                  t in prop_oneof![Just(0.5), Just(2.0)]) {
        let cfg = MethodConfig { weight_rule: rule, temperature: t, lambda_lwf: 1.0, ..MethodConfig::default() };
        let mut x = batch(b, k, seed, s);
        match which {
            0 => { x.t[0] = x.v.clone(); x.t[1] = x.w.clone(); }                 // identical
            1 => { let r = x.v[..x.p].to_vec(); x.v = r.repeat(b); let r = x.w[..x.p].to_vec(); x.w = r.repeat(k); } // collapsed
            2 => { x.t[0] = x.v.iter().map(|v| -v).collect(); x.t[1] = x.w.iter().map(|v| -v).collect(); } // antipodal
            _ => { x.v.iter_mut().for_each(|v| *v *= 1e-30); }                     // below the norm floor
        }
        let (out, alpha, dv, dw) = run(&cfg, &x, 2);
        prop_assert!([out.ce, out.ei, out.kd, out.lwf, out.total].iter().all(|v| v.is_finite()), "{out:?}");
        prop_assert!(alpha.iter().chain(&dv).chain(&dw).all(|v| v.is_finite()));
    }
}

#[test]
fn ensemble_is_the_mean_of_its_members() {
    let (n, i, len) = (1000, 100, 7);
    let mut be = Be::new(1);
    let start = normals(1, len);
    let (theta, avg) = (buf(&mut be, &start), buf(&mut be, &vec![0.0; len]));
    let mut ens = Ensemble::start(&mut be, avg, theta).unwrap();
    let mut members = vec![start];
    for k in 1..=n {
        let step = normals(100 + k as u64, len);
        be.write(theta, &step).unwrap();
        if merge_due(k, n, i) {
            ens.merge(&mut be, theta).unwrap();
            members.push(step);
        }
    }
    assert_eq!(ens.members(), 12, "ZSCL's count for N = 1000, I = 100");
    assert_eq!(members.len(), 12);
    let ours = get(&mut be, avg);
    for (j, x) in ours.iter().enumerate() {
        let mean = members.iter().map(|m| m[j]).sum::<f64>() / 12.0;
        assert!((x - mean).abs() < 1e-14, "element {j}: {x} vs {mean}");
    }
    // Constant weights: every merge keeps them (to rounding: a·x + b·x with a + b = 1).
    let c = normals(5, len);
    be.write(theta, &c).unwrap();
    let mut ens = Ensemble::start(&mut be, avg, theta).unwrap();
    for _ in 0..20 {
        ens.merge(&mut be, theta).unwrap();
    }
    for (x, y) in get(&mut be, avg).iter().zip(&c) {
        assert!((x - y).abs() <= 4.0 * f64::EPSILON * y.abs(), "{x} vs {y}");
    }
}
