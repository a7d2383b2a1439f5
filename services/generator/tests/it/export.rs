//! The parquet export, read back with polars: exact columns and types, one row per server per
//! step, nulls only where the server was offline, and the same data as live mode.

use std::fs::File;
use std::process::Command;

use generator::export::{column_names, export, ExportOptions};
use generator::{SimConfig, Simulator};
use polars::prelude::*;
use schemas::{Metric, STEP_MS};

const MONDAY: i64 = 1_767_571_200_000;

fn read(path: &std::path::Path) -> DataFrame {
    ParquetReader::new(File::open(path).unwrap()).finish().unwrap()
}

fn small(dir: &tempfile::TempDir, servers: usize, steps: u64, seed: u64) -> (std::path::PathBuf, DataFrame) {
    let out = dir.path().join(format!("sub/{servers}-{steps}-{seed}.parquet"));
    let s = export(&ExportOptions { servers, seed, start_ms: MONDAY, steps, out: out.clone(), progress: false }).unwrap();
    assert_eq!(s.rows, servers as u64 * steps);
    let df = read(&out);
    (out, df)
}

#[test]
fn columns_types_and_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (_, df) = small(&dir, 20, 600, 3);
    let names: Vec<&str> = df.get_column_names().iter().map(|n| n.as_str()).collect();
    assert_eq!(names, column_names());
    assert_eq!(df.height(), 20 * 600);
    for (name, want) in [
        ("server", DataType::String),
        ("profile", DataType::String),
        ("ts_ms", DataType::Int64),
        ("step", DataType::Int64),
        ("state", DataType::String),
        ("scenario", DataType::String),
        ("problem_child", DataType::Boolean),
        ("cascade_impact", DataType::Float32),
    ] {
        assert_eq!(df.column(name).unwrap().dtype(), &want, "{name}");
    }
    for m in Metric::ALL {
        assert_eq!(df.column(m.name()).unwrap().dtype(), &DataType::Float32, "{}", m.name());
    }

    let ts = df.column("ts_ms").unwrap().i64().unwrap();
    let step = df.column("step").unwrap().i64().unwrap();
    let state = df.column("state").unwrap().str().unwrap();
    let scenario = df.column("scenario").unwrap().str().unwrap();
    let profile = df.column("profile").unwrap().str().unwrap();
    let server = df.column("server").unwrap().str().unwrap();
    let impact = df.column("cascade_impact").unwrap().f32().unwrap();
    let cpu: Vec<&Float32Chunked> =
        ["cpu_user_pct", "cpu_sys_pct", "cpu_iowait_pct", "cpu_idle_pct"].iter().map(|c| df.column(c).unwrap().f32().unwrap()).collect();
    let mut offline = 0;
    for i in 0..df.height() {
        let (t, k) = (ts.get(i).unwrap(), step.get(i).unwrap());
        assert_eq!(t, MONDAY + k * STEP_MS);
        let p = schemas::Profile::from_name(profile.get(i).unwrap()).unwrap();
        assert_eq!(schemas::Profile::detect(server.get(i).unwrap()), p);
        assert!(schemas::Scenario::from_name(scenario.get(i).unwrap()).is_some());
        assert!((0.0..=1.0).contains(&impact.get(i).unwrap()));
        let nulls = Metric::ALL.iter().filter(|m| df.column(m.name()).unwrap().f32().unwrap().get(i).is_none()).count();
        if state.get(i).unwrap() == "offline" {
            assert_eq!(nulls, 14, "offline reports nothing");
            offline += 1;
        } else {
            assert_eq!(nulls, 0);
            assert_eq!(cpu.iter().map(|c| c.get(i).unwrap()).sum::<f32>(), 100.0);
        }
    }
    let distinct_servers = df.column("server").unwrap().n_unique().unwrap();
    assert_eq!(distinct_servers, 20);
    let children = df.filter(&df.column("problem_child").unwrap().bool().unwrap().clone()).unwrap();
    assert_eq!(children.column("server").unwrap().n_unique().unwrap(), 2, "int(0.10 x 20)");
    eprintln!("{offline} offline rows");
}

#[test]
fn same_data_as_the_live_simulation() {
    let dir = tempfile::tempdir().unwrap();
    let (_, df) = small(&dir, 20, 100, 9);
    let mut sim = Simulator::new(SimConfig { servers: 20, seed: 9, start_ms: MONDAY }).unwrap();
    let cols: Vec<&Float32Chunked> = Metric::ALL.iter().map(|m| df.column(m.name()).unwrap().f32().unwrap()).collect();
    let server = df.column("server").unwrap().str().unwrap();
    let mut row = 0;
    for _ in 0..100 {
        let step = sim.step();
        let records = step.records();
        let mut online = records.iter();
        for r in step.rows {
            if r.metrics.is_some() {
                let rec = online.next().unwrap();
                assert_eq!(server.get(row), Some(rec.server.as_str()));
                for (k, m) in Metric::ALL.iter().enumerate() {
                    assert_eq!(cols[k].get(row), rec.metrics.get(*m), "{} {}", rec.server, m.name());
                }
            }
            row += 1;
        }
    }
    let (_, again) = small(&dir, 20, 100, 9);
    assert!(df.equals_missing(&again), "same seed, same file contents");
}

#[test]
fn ten_days_hold_every_episode_label() {
    let dir = tempfile::tempdir().unwrap();
    let (_, df) = small(&dir, 45, 10 * 288, 7);
    let labels = df.column("scenario").unwrap().unique().unwrap();
    assert_eq!(labels.len(), 4, "healthy, degrading, critical and cascade all present");
}

#[test]
fn the_cli_writes_the_file_the_trainer_asks_for() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("data/train.parquet");
    let status = Command::new(env!("CARGO_BIN_EXE_generator"))
        .args(["export", "--days", "0.5", "--servers", "20", "--seed", "7", "--start", "2026-02-02", "--out"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let df = read(&out);
    assert_eq!(df.height(), 20 * 144);
    let first = df.column("ts_ms").unwrap().i64().unwrap().get(0).unwrap();
    assert_eq!(first, MONDAY + 28 * 86_400_000, "2026-02-02T00:00:00Z");
}
