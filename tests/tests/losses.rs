//! The method's losses against the float64 PyTorch reference written from METHOD.md
//! (`fixtures/gen_losses.py`): every stage, the baselines, the prototype updates, values and
//! gradients, in f64 (rtol 1e-10, atol 1e-12) and f32 (rtol 1e-5·max(1, s/(20T)), atol 1e-6).
use mulki_core::backend::{Backend, Buf, Rows};
use mulki_core::cpu::{CpuBackend, CpuElem};
use mulki_core::loss::mulki::{Features, MulkiLoss};
use mulki_core::loss::zscl::Zscl;
use mulki_core::method::{MethodConfig, Teachers, WeightRuleName};
use mulki_core::Elem;
use mulki_tests::fixture::{fixtures_dir, Fixture};
use mulki_tests::{max_abs, max_abs_diff};
use serde_json::Value;

struct Tol {
    rel: f64,
    abs: f64,
}

fn tol<E: Elem>(s: f64, t: f64) -> Tol {
    if core::mem::size_of::<E>() == 8 {
        Tol { rel: 1e-10, abs: 1e-12 }
    } else {
        Tol { rel: 1e-5 * (s / (20.0 * t)).max(1.0), abs: 1e-6 }
    }
}

fn check(what: &str, ours: &[f64], reference: &[f64], t: &Tol) {
    assert_eq!(ours.len(), reference.len(), "{what}: length");
    let (d, i) = max_abs_diff(ours, reference);
    let bound = t.rel * max_abs(reference) + t.abs;
    assert!(d <= bound, "{what}: max|Δ| = {d:e} at {i} (ours {}, ref {}), bound {bound:e}", ours[i], reference[i]);
}

struct Case<'a> {
    fx: &'a Fixture,
    name: &'a str,
    info: &'a Value,
}

impl Case<'_> {
    fn t(&self, n: &str) -> Vec<f64> {
        self.fx.f64s(&format!("{}.{n}", self.name)).unwrap_or_else(|e| panic!("{e}")).1
    }
    fn labels(&self, n: &str) -> Vec<u32> {
        self.fx.i64s(&format!("{}.{n}", self.name)).unwrap().1.iter().map(|&x| x as u32).collect()
    }
    fn f(&self, k: &str) -> f64 {
        self.info[k].as_f64().unwrap_or_else(|| panic!("{}: no {k}", self.name))
    }
    fn u(&self, k: &str) -> usize {
        self.info[k].as_u64().unwrap() as usize
    }
}

fn upload<E: CpuElem>(be: &mut CpuBackend<E>, v: &[f64]) -> Buf {
    let a = be.alloc(v.len()).unwrap();
    let b = Buf { arena: a, offset: 0, len: v.len() };
    be.write(b, &v.iter().map(|&x| E::from_f64(x)).collect::<Vec<_>>()).unwrap();
    b
}

fn download<E: CpuElem>(be: &mut CpuBackend<E>, b: Buf) -> Vec<f64> {
    let mut v = vec![E::zero(); b.len];
    be.read(b, &mut v).unwrap();
    v.iter().map(|&x| Elem::to_f64(x)).collect()
}

fn add(a: &[f64], b: &[f64], w: f64) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x + w * y).collect()
}

fn mulki_case<E: CpuElem>(c: &Case) {
    let (k, b, d, s, t) = (c.u("K"), c.u("B"), c.u("d"), c.f("s"), c.f("T"));
    let tol = tol::<E>(s, t);
    let rule = match c.info["rule"].as_str().unwrap() {
        "confidence" => WeightRuleName::Confidence,
        "equal" => WeightRuleName::Equal,
        _ => WeightRuleName::Discrepancy,
    };
    let full = MethodConfig {
        label_smoothing: c.f("eps"),
        lambda_ei: c.f("lambda_ei"),
        lambda_kd: c.f("lambda_kd"),
        temperature: t,
        beta: c.f("beta"),
        tau_w: c.f("tau_w"),
        weight_rule: rule,
        discrepancy_scale: c.f("disc_scale"),
        discrepancy_threshold: c.f("disc_threshold"),
        relations: c.info["kl_on"].as_bool().unwrap(),
        ..MethodConfig::default()
    };
    let two = c.u("n_teachers") == 2;
    let (l_ce, l_ei) = (c.t("grad.l_ce.v_s"), c.t("grad.l_ei.v_s"));
    let (w_ce, w_ei) = (c.t("grad.l_ce.w_s"), c.t("grad.l_ei.w_s"));
    // Three configurations isolate the terms: CE only; CE + EI; everything.
    let variants = [
        ("l_ce", MethodConfig { lambda_ei: 0.0, lambda_kd: 0.0, ..full.clone() }, l_ce.clone(), w_ce.clone()),
        (
            "l_ce+l_ei",
            MethodConfig { lambda_kd: 0.0, ..full.clone() },
            add(&l_ce, &l_ei, full.lambda_ei),
            add(&w_ce, &w_ei, full.lambda_ei),
        ),
        ("total", full.clone(), c.t("grad.total.v_s"), c.t("grad.total.w_s")),
    ];
    for (what, cfg, gv, gw) in variants {
        let mut be = CpuBackend::<E>::new(2);
        let mut loss = MulkiLoss::new(&mut be, &cfg, b, k, d).unwrap();
        loss.prototypes.begin(&mut be, k).unwrap();
        let protos = loss.prototypes.protos();
        be.write(protos, &c.t("protos").iter().map(|&x| E::from_f64(x)).collect::<Vec<_>>()).unwrap();
        let student = Features { v: upload(&mut be, &c.t("v_s")), w: upload(&mut be, &c.t("w_s")) };
        let mut kd = vec![Features { v: upload(&mut be, &c.t("v_z")), w: upload(&mut be, &c.t("w_z")) }];
        if two {
            kd.push(Features { v: upload(&mut be, &c.t("v_p")), w: upload(&mut be, &c.t("w_p")) });
        }
        loss.forward(&mut be, student, &kd, None, &c.labels("labels"), b, k, s).unwrap();
        let out = loss.read(&mut be).unwrap();
        let name = format!("{} {what} ({})", c.name, core::any::type_name::<E>());
        check(&format!("{name} l_ce"), &[out.ce], &c.t("l_ce"), &tol);
        if what != "l_ce" {
            check(&format!("{name} l_ei"), &[out.ei], &c.t("l_ei"), &tol);
        }
        if what == "total" {
            check(&format!("{name} l_kd"), &[out.kd], &c.t("l_kd"), &tol);
            check(&format!("{name} total"), &[out.total], &c.t("total"), &tol);
            check(&format!("{name} alpha"), &download(&mut be, loss.alpha()), &c.t("alpha"), &tol);
        }
        let (dv, dw) = (upload(&mut be, &vec![0.0; b * d]), upload(&mut be, &vec![0.0; k * d]));
        loss.backward(&mut be, dv, dw).unwrap();
        check(&format!("{name} d/dv_s"), &download(&mut be, dv), &gv, &tol);
        check(&format!("{name} d/dw_s"), &download(&mut be, dw), &gw, &tol);
    }
}

fn lwf_case<E: CpuElem>(c: &Case) {
    let (k, b, d, s, t) = (c.u("K"), c.u("B"), c.u("d"), c.f("s"), c.f("T"));
    let tol = tol::<E>(s, t);
    let cfg = MethodConfig {
        label_smoothing: c.f("eps"),
        lambda_lwf: 1.0,
        lwf_temperature: t,
        ..MethodConfig::preset("ft").unwrap()
    };
    assert_eq!(cfg.teachers, Teachers::None);
    let mut be = CpuBackend::<E>::new(2);
    let mut loss = MulkiLoss::new(&mut be, &cfg, b, k, d).unwrap();
    let student = Features { v: upload(&mut be, &c.t("v_s")), w: upload(&mut be, &c.t("w_s")) };
    let p = Features { v: upload(&mut be, &c.t("v_p")), w: upload(&mut be, &c.t("w_p")) };
    loss.forward(&mut be, student, &[], Some(p), &c.labels("labels"), b, k, s).unwrap();
    let out = loss.read(&mut be).unwrap();
    check(&format!("{} l_ce", c.name), &[out.ce], &c.t("l_ce"), &tol);
    check(&format!("{} lwf", c.name), &[out.lwf], &c.t("lwf"), &tol);
    let (dv, dw) = (upload(&mut be, &vec![0.0; b * d]), upload(&mut be, &vec![0.0; k * d]));
    loss.backward(&mut be, dv, dw).unwrap();
    check(
        &format!("{} d/dv_s", c.name),
        &download(&mut be, dv),
        &add(&c.t("grad.l_ce.v_s"), &c.t("grad.lwf.v_s"), 1.0),
        &tol,
    );
    check(
        &format!("{} d/dw_s", c.name),
        &download(&mut be, dw),
        &add(&c.t("grad.l_ce.w_s"), &c.t("grad.lwf.w_s"), 1.0),
        &tol,
    );
}

fn zscl_case<E: CpuElem>(c: &Case) {
    let (r, n, d, s, t) = (c.u("Br"), c.u("Nc"), c.u("d"), c.f("s"), c.f("T"));
    let tol = tol::<E>(s, t);
    let mut be = CpuBackend::<E>::new(2);
    let mut z = Zscl::new(&mut be, r, n, d, t, 1.0).unwrap();
    let (rs, rz, cz) = (upload(&mut be, &c.t("r_v_s")), upload(&mut be, &c.t("r_v_z")), upload(&mut be, &c.t("r_c_z")));
    z.forward(&mut be, rs, rz, cz, r, n, s).unwrap();
    let out = z.read(&mut be).unwrap();
    check(&format!("{} img", c.name), &[out.img], &c.t("zscl_img"), &tol);
    check(&format!("{} txt", c.name), &[out.txt], &c.t("zscl_txt"), &tol);
    let dr = upload(&mut be, &vec![0.0; r * d]);
    z.backward(&mut be, dr).unwrap();
    let reference = add(&c.t("grad.zscl_img.r_v_s"), &c.t("grad.zscl_txt.r_v_s"), 1.0);
    check(&format!("{} d/dr_v_s", c.name), &download(&mut be, dr), &reference, &tol);
}

/// Normalises raw rows on the backend (`F.normalize`), as the runner does before the
/// prototype updates.
fn normalized<E: CpuElem>(be: &mut CpuBackend<E>, raw: &[f64], d: usize) -> Buf {
    let x = upload(be, raw);
    let (out, norm) = (upload(be, &vec![0.0; raw.len()]), upload(be, &vec![0.0; raw.len() / d]));
    be.l2_normalize_forward(out, norm, x, Rows { rows: raw.len() / d, c: d, eps: 1e-12 }).unwrap();
    out
}

fn proto_case<E: CpuElem>(c: &Case, init: bool) {
    let (k, d) = (c.u("K"), c.u("d"));
    let tol = tol::<E>(20.0, 2.0);
    let mut be = CpuBackend::<E>::new(2);
    let n = if init { c.u("N") } else { c.u("B") };
    let mut loss = MulkiLoss::new(&mut be, &MethodConfig::default(), n, k, d).unwrap();
    loss.prototypes.begin(&mut be, k).unwrap();
    let mut counts = vec![0u32; k];
    if init {
        let vn = normalized(&mut be, &c.t("feats"), d);
        loss.prototypes.accumulate(&mut be, vn, &c.labels("feat_labels"), &mut counts).unwrap();
        loss.prototypes.finish_init(&mut be).unwrap();
        check(&format!("{} protos", c.name), &download(&mut be, loss.prototypes.protos()), &c.t("protos_init"), &tol);
    } else {
        be.write(loss.prototypes.protos(), &c.t("protos").iter().map(|&x| E::from_f64(x)).collect::<Vec<_>>()).unwrap();
        let vn = normalized(&mut be, &c.t("v_s"), d);
        loss.prototypes.ema(&mut be, vn, &c.labels("labels"), c.f("m"), &mut counts, None).unwrap();
        check(&format!("{} protos", c.name), &download(&mut be, loss.prototypes.protos()), &c.t("protos_ema"), &tol);
    }
}

fn all_cases<E: CpuElem>() {
    let fx = Fixture::load(fixtures_dir().join("losses/cases.safetensors")).unwrap();
    let info: Value = serde_json::from_str(&fx.metadata()["info"]).unwrap();
    let cases = info.as_object().unwrap();
    assert!(cases.len() >= 20, "expected the whole case list");
    for (name, params) in cases {
        let c = Case { fx: &fx, name, info: params };
        match params["kind"].as_str().unwrap() {
            "mulki" => mulki_case::<E>(&c),
            "lwf" => lwf_case::<E>(&c),
            "zscl" => zscl_case::<E>(&c),
            "proto_init" => proto_case::<E>(&c, true),
            "proto_ema" => proto_case::<E>(&c, false),
            other => panic!("{name}: unknown kind {other}"),
        }
    }
}

#[test]
fn every_case_matches_the_reference_in_f64() {
    all_cases::<f64>();
}

#[test]
fn every_case_matches_the_reference_in_f32() {
    all_cases::<f32>();
}
