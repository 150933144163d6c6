//! Run reports: metrics.json against hand-computed metrics (full and partial matrices), the
//! accuracy.csv round trip and quoting, report.md and heatmap.svg contents, errors on bad input
//! (file, line, field; no panic), run.json, and the compare tables.
use mulki_tests::scratch::Scratch;
use std::path::Path;

use mulki_host::report::{
    compare, compare_seeds, heatmap_svg, read_run, report_markdown, write_reports, write_run_json, ReportError,
    RunInfo, RunReport, TaskLog, TrainableParameters,
};
use serde_json::Value;

fn temp_dir(test: &str) -> Scratch {
    Scratch::new("report", test)
}

fn log(name: &str, loss: f64) -> TaskLog {
    TaskLog {
        name: name.into(),
        alpha_mean: vec![0.25, 0.75],
        alpha_histogram: vec![0, 1, 2, 4, 8, 0, 0, 3, 1, 1],
        drift: 1.5,
        wall_seconds: 12.25,
        peak_memory_bytes: 3 << 20,
        device_memory_bytes: None,
        final_loss: loss,
    }
}

/// The 3-task matrix of the brief: Transfer 37, Avg 625/9, Last 254/3, BWT −15.
fn sample(names: [&str; 3]) -> RunReport {
    let rows = vec![vec![50.0, 40.0, 30.0], vec![90.0, 42.0, 31.0], vec![80.0, 95.0, 33.0], vec![70.0, 85.0, 99.0]];
    RunReport {
        method: "mulki".into(),
        task_names: names.iter().map(|s| s.to_string()).collect(),
        tasks: names.iter().map(|n| log(n, 0.5)).collect(),
        rows,
    }
}

const NAMES: [&str; 3] = ["Aircraft", "Caltech101", "CIFAR100"];

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn close(v: &Value, want: f64) {
    let got = v.as_f64().unwrap_or_else(|| panic!("{v} is not a number"));
    assert!((got - want).abs() < 1e-9, "{got} != {want}");
}

#[test]
fn metrics_json_matches_hand_computation() {
    let dir = temp_dir("metrics");
    write_reports(&dir, &sample(NAMES)).unwrap();
    let j = read_json(&dir.join("metrics.json"));
    assert_eq!(j["method"], "mulki");
    assert_eq!(j["tasks_done"], 3);
    assert_eq!(j["n_tasks"], 3);
    close(&j["transfer"], 37.0);
    close(&j["avg"], 625.0 / 9.0);
    close(&j["last"], 254.0 / 3.0);
    close(&j["bwt"], -15.0);
    assert_eq!(j["per_task"].as_array().unwrap().len(), 3);
    assert_eq!(j["per_task"][1]["name"], "Caltech101");

    let after = j["after_each_task"].as_array().unwrap();
    assert_eq!(after.len(), 3);
    // After task 1: Transfer over columns 2, 3 of row 1; BWT undefined.
    assert_eq!(after[0]["task"], "Aircraft");
    close(&after[0]["transfer"], (42.0 + 31.0) / 2.0);
    close(&after[0]["avg"], 163.0 / 3.0);
    close(&after[0]["last"], 163.0 / 3.0);
    assert!(after[0]["bwt"].is_null());
    // After task 2.
    close(&after[1]["transfer"], (42.0 + (31.0 + 33.0) / 2.0) / 2.0);
    close(&after[1]["avg"], 371.0 / 6.0);
    close(&after[1]["last"], 208.0 / 3.0);
    close(&after[1]["bwt"], -10.0);
    close(&after[2]["bwt"], -15.0);
}

#[test]
fn metrics_json_on_partial_matrices() {
    let dir = temp_dir("partial");
    let partial = sample(NAMES).truncated(2);
    write_reports(&dir, &partial).unwrap();
    let j = read_json(&dir.join("metrics.json"));
    assert_eq!(j["tasks_done"], 2);
    assert_eq!(j["n_tasks"], 3);
    close(&j["transfer"], 37.0);
    close(&j["avg"], 371.0 / 6.0);
    close(&j["last"], 208.0 / 3.0);
    close(&j["bwt"], -10.0);
    assert_eq!(j["after_each_task"].as_array().unwrap().len(), 2);
    assert_eq!(j["per_task"].as_array().unwrap().len(), 2);

    // Only the zero-shot row: every metric undefined, the files still written.
    let zero = sample(NAMES).truncated(0);
    write_reports(&dir, &zero).unwrap();
    let j = read_json(&dir.join("metrics.json"));
    assert_eq!(j["tasks_done"], 0);
    for key in ["transfer", "avg", "last", "bwt"] {
        assert!(j[key].is_null(), "{key}");
    }
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains("| Avg. | n/a | n/a | n/a | n/a |"), "{md}");
    assert!(md.contains("No per-task log recorded."));
    let back = read_run(&dir).unwrap();
    assert_eq!(back.rows, zero.rows);
}

#[test]
fn write_then_read_round_trips() {
    let dir = temp_dir("roundtrip");
    let mut report = sample(NAMES);
    report.rows[2][1] = 95.25;
    report.tasks[2].final_loss = f64::NAN; // a diverged task survives JSON as null
    report.tasks[0].alpha_mean.clear();
    report.tasks[0].alpha_histogram.clear();
    write_reports(&dir, &report).unwrap();
    let back = read_run(&dir).unwrap();
    assert_eq!(back.method, report.method);
    assert_eq!(back.task_names, report.task_names);
    assert_eq!(back.rows, report.rows);
    assert_eq!(back.tasks.len(), 3);
    assert_eq!(back.tasks[..2], report.tasks[..2]);
    assert!(back.tasks[2].final_loss.is_nan());
    assert_eq!(back.tasks[2].alpha_histogram, report.tasks[2].alpha_histogram);
    // No temporary files are left behind.
    let mut names: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["accuracy.csv", "heatmap.svg", "metrics.json", "report.md"]);

    // Without metrics.json the method is the directory's name and there is no log.
    std::fs::remove_file(dir.join("metrics.json")).unwrap();
    let back = read_run(&dir).unwrap();
    assert_eq!(back.method, dir.file_name().unwrap().to_string_lossy());
    assert!(back.tasks.is_empty());
    assert_eq!(back.rows, report.rows);
}

#[test]
fn csv_quotes_names_with_commas_and_quotes() {
    let dir = temp_dir("quoting");
    let report = sample(["Cars, Stanford", "say \"hi\"", "plain"]);
    write_reports(&dir, &report).unwrap();
    let csv = std::fs::read_to_string(dir.join("accuracy.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], r#"row,"Cars, Stanford","say ""hi""",plain"#);
    assert_eq!(lines[1], "zero-shot,50.00,40.00,30.00");
    assert_eq!(lines[2], r#""after Cars, Stanford",90.00,42.00,31.00"#);
    assert_eq!(lines[3], r#""after say ""hi""",80.00,95.00,33.00"#);
    assert_eq!(lines.len(), 5);
    let back = read_run(&dir).unwrap();
    assert_eq!(back.task_names, report.task_names);
    assert_eq!(back.rows, report.rows);
}

#[test]
fn report_md_has_matrix_and_metrics() {
    let md = report_markdown(&sample(NAMES));
    for want in [
        "# MTIL report: mulki",
        "| | Aircraft | Caltech101 | CIFAR100 |",
        "| zero-shot | 50.00 | 40.00 | 30.00 |",
        "| after Aircraft | **90.00** | 42.00 | 31.00 |",
        "| after Caltech101 | 80.00 | **95.00** | 33.00 |",
        "| after CIFAR100 | 70.00 | 85.00 | **99.00** |",
        "| Metric | Aircraft | Caltech101 | CIFAR100 | Mean |",
        "| Transfer | n/a | 42.00 | 32.00 | 37.00 |",
        "| Avg. | 80.00 | 74.00 | 54.33 | 69.44 |",
        "| Last | 70.00 | 85.00 | 99.00 | 84.67 |",
        "**BWT**: -15.00",
        "| Aircraft | 0.250, 0.750 | ·▁▂▄█··▃▁▁ (n = 20) | 1.5000 | 12.2 | 3.0 | 0.5000 |",
    ] {
        assert!(md.contains(want), "missing {want:?} in\n{md}");
    }
    // Markup in names is escaped so the table keeps its columns.
    let md = report_markdown(&sample(["a|b", "c*d", "e"]));
    assert!(md.contains("| after a\\|b | **90.00** |"), "{md}");
    // BWT is undefined after one task.
    let md = report_markdown(&sample(NAMES).truncated(1));
    assert!(md.contains("**BWT**: n/a"), "{md}");
    assert!(md.contains("| Transfer | n/a | 42.00 | 31.00 | 36.50 |"), "{md}");
}

/// Checks that `xml` is well-formed enough for a browser: tags balance, attribute values are
/// quoted, and `&` only starts a known entity. Returns the element names in document order.
fn check_xml(xml: &str) -> Vec<String> {
    let mut stack: Vec<String> = Vec::new();
    let mut elements = Vec::new();
    let mut rest = xml;
    let check_text = |text: &str| {
        for (i, _) in text.match_indices('&') {
            let ent = &text[i..];
            let ok = ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"].iter().any(|e| ent.starts_with(e));
            assert!(ok, "bare & in {text:?}");
        }
        assert!(!text.contains('>'), "raw > in {text:?}");
    };
    while let Some(start) = rest.find('<') {
        check_text(&rest[..start]);
        rest = &rest[start..];
        if let Some(body) = rest.strip_prefix("<?") {
            let end = body.find("?>").expect("unterminated <?");
            rest = &body[end + 2..];
            continue;
        }
        // Find the end of the tag outside quoted attribute values.
        let mut quote = None;
        let end = rest
            .char_indices()
            .find(|&(_, c)| match (quote, c) {
                (None, '"' | '\'') => {
                    quote = Some(c);
                    false
                }
                (Some(q), c) if c == q => {
                    quote = None;
                    false
                }
                (None, '>') => true,
                _ => false,
            })
            .map(|(i, _)| i)
            .expect("unterminated tag");
        let tag = &rest[1..end];
        rest = &rest[end + 1..];
        assert!(!tag.contains('<'), "nested < in {tag:?}");
        if let Some(name) = tag.strip_prefix('/') {
            let open = stack.pop().expect("close tag without open");
            assert_eq!(open, name.trim(), "mismatched close tag");
            continue;
        }
        let self_closing = tag.ends_with('/');
        let tag = tag.trim_end_matches('/');
        let name: String = tag.chars().take_while(|c| !c.is_whitespace()).collect();
        assert!(!name.is_empty(), "empty tag name");
        // Attributes: name="value" pairs.
        let mut attrs = tag[name.len()..].trim();
        while !attrs.is_empty() {
            let eq = attrs.find('=').expect("attribute without value");
            let q = attrs[eq + 1..].chars().next().expect("value");
            assert!(q == '"' || q == '\'', "unquoted attribute in {tag:?}");
            let close = attrs[eq + 2..].find(q).expect("unterminated value");
            let value = &attrs[eq + 2..eq + 2 + close];
            assert!(!value.contains('<'), "< in attribute {value:?}");
            check_text(value);
            attrs = attrs[eq + 3 + close..].trim_start();
        }
        elements.push(name.clone());
        if !self_closing {
            stack.push(name);
        }
    }
    check_text(rest);
    assert!(stack.is_empty(), "unclosed elements {stack:?}");
    elements
}

#[test]
fn heatmap_is_well_formed_with_a_rect_per_cell() {
    let report = sample(["A&B <x>", "Caltech101", "CIFAR100"]);
    let svg = heatmap_svg(&report);
    let elements = check_xml(&svg);
    assert_eq!(elements[0], "svg");
    assert_eq!(svg.matches("<rect class=\"cell\"").count(), 4 * 3);
    assert!(elements.iter().filter(|e| *e == "rect").count() > 12); // plus background and bar
    assert!(svg.contains("A&amp;B &lt;x&gt;"));
    assert!(svg.contains("after A&amp;B &lt;x&gt;"));
    assert!(!svg.contains("A&B"));
    assert!(svg.contains("mulki: accuracy (%) after each task"));
    assert!(svg.contains("linearGradient"));
    // Viridis ends: 0 % is dark purple with white text, 100 % yellow with black text.
    assert_eq!(mulki_host::report::viridis(0.0), [0x44, 0x01, 0x54]);
    assert_eq!(mulki_host::report::viridis(1.0), [0xfd, 0xe7, 0x25]);
    assert_eq!(mulki_host::report::viridis(0.5), [0x21, 0x91, 0x8c]);
    let mut low = sample(NAMES);
    low.rows[0][0] = 0.0;
    low.rows[3][2] = 100.0;
    let svg = heatmap_svg(&low);
    assert!(svg.contains(r##"fill="#440154""##));
    assert!(svg.contains(r##"fill="#ffffff">0.00</text>"##), "{svg}");
    assert!(svg.contains(r##"fill="#000000" font-weight="bold">100.00</text>"##));
}

fn read_err(test: &str, csv: &[u8]) -> String {
    let dir = temp_dir(test);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("accuracy.csv"), csv).unwrap();
    let err = read_run(&dir).expect_err("bad CSV accepted");
    assert!(matches!(err, ReportError::Parse { .. }), "{err:?}");
    err.to_string()
}

#[test]
fn bad_csv_names_file_line_and_field() {
    let cases: [(&str, &[u8], &str); 12] = [
        (
            "nan",
            b"row,MNIST,Cars\nzero-shot,1,2\nafter MNIST,abc,3\n",
            "accuracy.csv:3: column 'MNIST': not a number: \"abc\"",
        ),
        (
            "width",
            b"row,MNIST,Cars\nzero-shot,1\n",
            "accuracy.csv:2: expected 3 fields (row label and 2 tasks), found 2",
        ),
        ("empty", b"", "accuracy.csv:1: empty file"),
        ("blank", b"\n\n", "accuracy.csv:1: empty file"),
        ("header", b"task,MNIST\nzero-shot,1\n", "accuracy.csv:1: column 1: expected \"row\""),
        ("no-rows", b"row,MNIST\n", "accuracy.csv:2: missing the zero-shot row"),
        (
            "label",
            b"row,MNIST\nzero-shot,1\nafter Cars,2\n",
            "accuracy.csv:3: column 'row': expected \"after MNIST\", found \"after Cars\"",
        ),
        (
            "range",
            b"row,MNIST\r\nzero-shot,101\r\n",
            "accuracy.csv:2: column 'MNIST': \"101\" is not an accuracy in [0, 100]",
        ),
        ("too-many", b"row,MNIST\nzero-shot,1\nafter MNIST,2\nafter MNIST,3\n", "accuracy.csv:4: more than 2 rows"),
        ("quote", b"row,\"MNIST\nzero-shot,1\n", "accuracy.csv:1: unterminated quoted field"),
        ("stray-quote", b"row,MNIST\nzero-shot,1\"2\n", "accuracy.csv:2: quote inside an unquoted field"),
        ("utf8", b"row,MNIST\nzero-shot,1\nafter MNIST,\xff\n", "accuracy.csv:3: not UTF-8"),
    ];
    for (test, csv, want) in cases {
        let msg = read_err(test, csv);
        assert!(msg.contains(want), "{test}: {msg:?} lacks {want:?}");
    }

    // A missing file names the file.
    let dir = temp_dir("missing");
    let err = read_run(&dir).unwrap_err();
    assert!(matches!(err, ReportError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("accuracy.csv: read:"), "{err}");

    // A bad metrics.json names that file and serde_json's line.
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("accuracy.csv"), "row,MNIST\nzero-shot,1\n").unwrap();
    std::fs::write(dir.join("metrics.json"), "{\n  \"per_task\": []\n}\n").unwrap();
    let err = read_run(&dir).unwrap_err().to_string();
    assert!(err.contains("metrics.json: missing field `method` at line 3"), "{err}");
}

#[test]
fn inconsistent_reports_are_refused_before_writing() {
    let scratch = temp_dir("invalid");
    let dir = scratch.join("reports");
    let mut bad = sample(NAMES);
    bad.rows[2].pop();
    let err = write_reports(&dir, &bad).unwrap_err();
    assert!(matches!(err, ReportError::Invalid { .. }));
    assert!(err.to_string().contains("rows[2]: 2 values, expected 3"), "{err}");
    assert!(!dir.exists());
    let mut bad = sample(NAMES);
    bad.rows[1][0] = f64::NAN;
    assert!(write_reports(&dir, &bad).unwrap_err().to_string().contains("rows[1][0]"));
    let mut bad = sample(NAMES);
    bad.rows.push(vec![1.0; 3]);
    assert!(write_reports(&dir, &bad).is_err());
    let mut bad = sample(NAMES);
    bad.task_names[2] = "Aircraft".into();
    assert!(write_reports(&dir, &bad).unwrap_err().to_string().contains("duplicate task name"));
    assert!(!dir.exists());
}

#[test]
fn run_json_has_the_provenance_fields() {
    let dir = temp_dir("run_json");
    let config = serde_json::json!({"method": {"preset": "mulki"}, "seed": 3});
    let params = TrainableParameters { text: 10, vision: 20, projection: 3, logit_scale: 0 };
    let info = RunInfo::new(config.clone(), "abc123", "cpu", 3, "bitwise", params);
    write_run_json(&dir, &info).unwrap();
    let j = read_json(&dir.join("run.json"));
    assert_eq!(j["config"], config);
    assert_eq!(j["config_hash"], "abc123");
    assert_eq!(j["mulki_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(j["device"], "cpu");
    assert_eq!(j["seed"], 3);
    assert_eq!(j["determinism"], "bitwise");
    assert_eq!(
        j["trainable_parameters"],
        serde_json::json!({"text": 10, "vision": 20, "projection": 3, "logit_scale": 0})
    );
    match &j["git_commit"] {
        Value::Null => {}
        Value::String(s) => assert!(s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())),
        other => panic!("git_commit {other}"),
    }
    let back: RunInfo = serde_json::from_value(j).unwrap();
    assert_eq!(back, info);
}

/// The sample with `d` added to every accuracy after training (Transfer, Avg. and Last shift by
/// `d`, BWT does not).
fn shifted(method: &str, d: f64) -> RunReport {
    let mut r = sample(NAMES);
    r.method = method.into();
    for row in &mut r.rows[1..] {
        for x in row {
            *x += d;
        }
    }
    r
}

#[test]
fn compare_lists_methods_side_by_side() {
    let (md, csv) = compare(&[sample(NAMES), shifted("zscl", -5.0).truncated(2)]);
    for want in [
        "| Method | Tasks | Transfer | Avg. | Last | BWT |",
        "| mulki | 3/3 | 37.00 | 69.44 | 84.67 | -15.00 |",
        "| zscl | 2/3 | 32.00 | 56.83 | 64.33 | -10.00 |",
        "### Transfer (%)",
        "| Method | Aircraft | Caltech101 | CIFAR100 | Mean |",
        "| mulki | n/a | 42.00 | 32.00 | 37.00 |",
        "### Last (%)",
        "| zscl | 75.00 | 90.00 | 28.00 | 64.33 |",
    ] {
        assert!(md.contains(want), "missing {want:?} in\n{md}");
    }
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "method,tasks_done,n_tasks,transfer,avg,last,bwt,\
         transfer/Aircraft,transfer/Caltech101,transfer/CIFAR100,\
         avg/Aircraft,avg/Caltech101,avg/CIFAR100,\
         last/Aircraft,last/Caltech101,last/CIFAR100"
    );
    assert_eq!(lines[1], "mulki,3,3,37.00,69.44,84.67,-15.00,,42.00,32.00,80.00,74.00,54.33,70.00,85.00,99.00");
    assert_eq!(lines.len(), 3);

    // Different task lists: only the overall metrics.
    let (md, csv) = compare(&[sample(NAMES), sample(["x", "y", "z"])]);
    assert!(!md.contains("### Transfer"));
    assert_eq!(csv.lines().next().unwrap(), "method,tasks_done,n_tasks,transfer,avg,last,bwt");
}

#[test]
fn compare_seeds_gives_mean_and_sample_std() {
    let mulki = vec![shifted("mulki", 0.0), shifted("mulki", -1.0), shifted("mulki", -2.0)];
    // One seed of zscl is a task behind: every seed is cut to 2 tasks.
    let zscl = vec![shifted("zscl", 0.0), shifted("zscl", -4.0).truncated(2)];
    let one = vec![shifted("one", 0.0)];
    let groups = [("mulki".into(), mulki), ("zscl".into(), zscl), ("empty".into(), vec![]), ("one".into(), one)];
    let (md, csv) = compare_seeds(&groups);
    // Sample std of {0, −1, −2} is 1; of {0, −4} is √8.
    for want in [
        "| Method | Seeds | Tasks | Transfer | Avg. | Last | BWT |",
        "| mulki | 3 | 3/3 | 36.00 ± 1.00 | 68.44 ± 1.00 | 83.67 ± 1.00 | -15.00 ± 0.00 |",
        "| zscl | 2 | 2/3 | 35.00 ± 2.83 | 59.83 ± 2.83 | 67.33 ± 2.83 | -10.00 ± 0.00 |",
        "| empty | 0 | 0/0 | n/a | n/a | n/a | n/a |",
        // One seed: its values, no "± 0.00" (a sample std needs two).
        "| one | 1 | 3/3 | 37.00 | 69.44 | 84.67 | -15.00 |",
        "| mulki | 79.00 ± 1.00 | 73.00 ± 1.00 | 53.33 ± 1.00 | 68.44 ± 1.00 |",
    ] {
        assert!(md.contains(want), "missing {want:?} in\n{md}");
    }
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with(
        "method,seeds,tasks_done,n_tasks,transfer_mean,transfer_std,avg_mean,avg_std,\
         last_mean,last_std,bwt_mean,bwt_std,transfer/Aircraft_mean,transfer/Aircraft_std,"
    ));
    assert!(lines[1].starts_with("mulki,3,3,3,36.00,1.00,68.44,1.00,83.67,1.00,-15.00,0.00,,,"));
    assert!(lines[4].starts_with("one,1,3,3,37.00,,69.44,,84.67,,-15.00,,,,"), "{}", lines[4]);
    let fields = |l: &str| l.split(',').count();
    assert!(lines.iter().all(|l| fields(l) == fields(lines[0])), "{csv}");
}

/// Prints the sample report (run with `--nocapture` to see it).
#[test]
fn print_sample_report() {
    println!("{}", report_markdown(&sample(NAMES)));
}
