//! `MethodConfig` validation and presets, and the MTIL metrics on hand-computed matrices.
use mulki_core::method::{MethodConfig, Teachers, WeightRuleName, PRESETS};
use mulki_core::metrics::{mean_std, metrics};
use mulki_core::Error;

fn field_of(c: MethodConfig) -> &'static str {
    match c.validate() {
        Err(Error::Config { field, .. }) => field,
        other => panic!("expected a config error, got {other:?}"),
    }
}

#[test]
fn bad_values_are_rejected_naming_the_field() {
    let d = MethodConfig::default;
    assert_eq!(field_of(MethodConfig { lambda_kd: f64::NAN, ..d() }), "lambda_kd");
    assert_eq!(field_of(MethodConfig { beta: f64::INFINITY, ..d() }), "beta");
    assert_eq!(field_of(MethodConfig { temperature: 0.0, ..d() }), "temperature");
    assert_eq!(field_of(MethodConfig { tau_w: -1.0, ..d() }), "tau_w");
    assert_eq!(field_of(MethodConfig { lambda_ei: -0.5, ..d() }), "lambda_ei");
    assert_eq!(field_of(MethodConfig { lambda_c: -1e-9, ..d() }), "lambda_c");
    assert_eq!(field_of(MethodConfig { proto_momentum: 1.5, ..d() }), "proto_momentum");
    assert_eq!(field_of(MethodConfig { proto_momentum: -0.1, ..d() }), "proto_momentum");
    assert_eq!(field_of(MethodConfig { ensemble_interval: Some(0), ..d() }), "ensemble_interval");
    assert_eq!(field_of(MethodConfig { label_smoothing: 1.0, ..d() }), "label_smoothing");
    assert_eq!(field_of(MethodConfig { interpolation: 1.01, ..d() }), "interpolation");
    match MethodConfig::preset("mulki-max") {
        Err(Error::Config { field: "preset", .. }) => {}
        other => panic!("unknown preset accepted: {other:?}"),
    }
}

#[test]
fn defaults_and_presets_are_as_written() {
    let m = MethodConfig::default();
    assert_eq!((m.label_smoothing, m.lambda_ei, m.lambda_kd, m.temperature, m.beta), (0.2, 1.0, 1.0, 2.0, 1.0));
    assert_eq!((m.tau_w, m.proto_momentum, m.lambda_c, m.interpolation), (0.1, 0.99, 1.0, 1.0));
    assert_eq!((m.discrepancy_scale, m.discrepancy_threshold), (6.0, 0.2));
    assert_eq!(m.interval(1000), 100);
    assert_eq!(m.interval(5), 1);
    for name in PRESETS {
        let c = MethodConfig::preset(name).unwrap();
        c.validate().unwrap();
    }
    assert!(!MethodConfig::preset("zero-shot").unwrap().train);
    assert_eq!(MethodConfig::preset("mulki").unwrap(), m);
    assert_eq!(MethodConfig::preset("mulki-no-dual").unwrap().teachers, Teachers::Original);
    assert_eq!(MethodConfig::preset("mulki-no-weight").unwrap().weight_rule, WeightRuleName::Equal);
    assert!(!MethodConfig::preset("mulki-no-rel").unwrap().relations);
    let conn = MethodConfig::preset("mulki-no-conn").unwrap();
    assert!(!conn.ensemble && conn.lambda_c == 0.0 && conn.interpolation == 1.0);
    let wise = MethodConfig::preset("wise-ft").unwrap();
    assert_eq!((wise.interpolation, wise.lambda_kd, wise.teachers), (0.5, 0.0, Teachers::None));
    let zscl = MethodConfig::preset("zscl").unwrap();
    assert!(zscl.ensemble && zscl.lambda_c == 1.0 && zscl.lambda_zscl == 1.0 && zscl.lambda_ei == 0.0);
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn metrics_of_a_three_task_matrix() {
    // Row 0 zero-shot, rows 1..3 after each task.
    let a = vec![vec![50.0, 40.0, 30.0], vec![90.0, 42.0, 31.0], vec![80.0, 95.0, 33.0], vec![70.0, 85.0, 99.0]];
    let m = metrics(&a).unwrap();
    // Transfer: j=2: A[1][2] = 42; j=3: (31 + 33)/2 = 32 → (42 + 32)/2 = 37.
    assert!(close(m.transfer.unwrap(), 37.0));
    // Avg: (163 + 208 + 254)/9.
    assert!(close(m.avg, 625.0 / 9.0));
    assert!(close(m.last, 254.0 / 3.0));
    // BWT: ((70 − 90) + (85 − 95))/2 = −15.
    assert!(close(m.bwt.unwrap(), -15.0));
}

#[test]
fn metrics_of_a_partial_matrix() {
    let a = vec![vec![50.0, 40.0, 30.0], vec![90.0, 42.0, 31.0], vec![80.0, 95.0, 33.0]];
    let m = metrics(&a).unwrap();
    // After task 2 of 3: Transfer j=2: 42; j=3: mean(rows 1..2) = 32 → 37.
    assert!(close(m.transfer.unwrap(), 37.0));
    assert!(close(m.avg, (163.0 + 208.0) / 6.0));
    assert!(close(m.last, 208.0 / 3.0));
    assert!(close(m.bwt.unwrap(), 80.0 - 90.0));
    // After task 1: BWT is undefined.
    let one = metrics(&a[..2]).unwrap();
    assert!(one.bwt.is_none());
    assert!(close(one.transfer.unwrap(), (42.0 + 31.0) / 2.0));
    assert!(metrics(&a[..1]).is_none(), "only the zero-shot row");
}

#[test]
fn metrics_of_an_eleven_task_matrix() {
    // A[t][j] = 10t + j (1-based j): Transfer = mean_j mean_{t<j}(10t + j) = mean_j 6j = 39,
    // Avg = 60 + 6 = 66, Last = 110 + 6 = 116, BWT = mean_{j≤10}(110 − 10j) = 55.
    let a: Vec<Vec<f64>> = (0..=11).map(|t| (1..=11).map(|j| (10 * t + j) as f64).collect()).collect();
    let m = metrics(&a).unwrap();
    assert!(close(m.transfer.unwrap(), 39.0));
    assert!(close(m.avg, 66.0));
    assert!(close(m.last, 116.0));
    assert!(close(m.bwt.unwrap(), 55.0));
}

#[test]
fn seeds_use_the_sample_standard_deviation() {
    let (m, s) = mean_std(&[1.0, 2.0, 3.0, 4.0]).unwrap();
    assert!(close(m, 2.5) && close(s, (5.0f64 / 3.0).sqrt()));
    assert_eq!(mean_std(&[7.0]), Some((7.0, 0.0)));
}

#[test]
fn every_preset_round_trips_through_toml_and_postcard() {
    for name in PRESETS {
        let c = MethodConfig::preset(name).unwrap();
        let text = toml::to_string(&c).unwrap();
        assert_eq!(toml::from_str::<MethodConfig>(&text).unwrap(), c, "{name} via TOML:\n{text}");
        let bytes = postcard::to_allocvec(&c).unwrap();
        assert_eq!(postcard::from_bytes::<MethodConfig>(&bytes).unwrap(), c, "{name} via postcard");
    }
    // Unknown keys are rejected, naming the key.
    let err = toml::from_str::<MethodConfig>("lamda_kd = 1.0").unwrap_err().to_string();
    assert!(err.contains("lamda_kd"), "{err}");
}
