//! Run reports: accuracy.csv, metrics.json, report.md, the heat-map, run.json.
