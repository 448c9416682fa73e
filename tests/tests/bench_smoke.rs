//! `rpc-bench` end to end: a quick run of the unix transport writes a JSON report with
//! positive medians for the framework and for the raw unix ping-pong; a tiny run under
//! `--load 1` reports the loaded machine and both client runtimes; a small soak on unix and on
//! shm gets every reply right and exits 0.

use std::fs::File;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rpc_tests::TempDir;

/// The longest a run may take before the test kills it and fails.
const LIMIT: Duration = Duration::from_secs(120);

/// Runs `rpc-bench args...` with stdout and stderr in files under `dir`, killed after
/// [`LIMIT`]; returns its status, stdout and stderr.
fn run_bench(dir: &Path, name: &str, args: &[&str]) -> (ExitStatus, String, String) {
    let stdout = dir.join(format!("{name}.md"));
    let stderr = dir.join(format!("{name}.stderr"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_rpc-bench"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(File::create(&stdout).expect("create stdout file"))
        .stderr(File::create(&stderr).expect("create stderr file"))
        .spawn()
        .expect("start rpc-bench");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for rpc-bench") {
            break status;
        }
        if start.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("rpc-bench {args:?} did not finish within {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let read = |path| std::fs::read_to_string(path).unwrap_or_default();
    (status, read(&stdout), read(&stderr))
}

#[test]
fn quick_unix_run_reports_positive_medians() {
    let dir = TempDir::new();
    let json = dir.0.join("bench.json");
    let json_arg = json.to_str().expect("UTF-8 temp path");
    let (status, markdown, stderr) = run_bench(
        &dir.0,
        "quick",
        &["--quick", "--only", "unix", "--json", json_arg],
    );
    assert!(
        status.success(),
        "rpc-bench failed ({status}):\n{markdown}\n{stderr}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap_or_default())
            .expect("the JSON report parses");

    let framework = report["transports"]
        .as_array()
        .expect("transports array")
        .iter()
        .find(|t| t["transport"] == "unix")
        .expect("a unix framework row");
    let median = framework["asynchronous"]["multi_thread"]["latency"]["median_us"]
        .as_f64()
        .unwrap_or(0.0);
    assert!(median > 0.0, "framework unix median {median}");

    let raw = report["raw"]
        .as_array()
        .expect("raw array")
        .iter()
        .find(|r| r["mechanism"] == "unix")
        .expect("a raw unix row");
    let median = raw["latency"]["median_us"].as_f64().unwrap_or(0.0);
    assert!(median > 0.0, "raw unix median {median}");

    assert!(markdown.contains("| unix |"), "no unix row in:\n{markdown}");
}

#[test]
fn tiny_loaded_unix_run_reports_both_runtimes() {
    let dir = TempDir::new();
    let json = dir.0.join("loaded.json");
    let json_arg = json.to_str().expect("UTF-8 temp path");
    let (status, markdown, stderr) = run_bench(
        &dir.0,
        "loaded",
        &[
            "--tiny", "--load", "1", "--only", "unix", "--json", json_arg,
        ],
    );
    assert!(
        status.success(),
        "rpc-bench --load 1 failed ({status}):\n{markdown}\n{stderr}"
    );
    for expected in [
        "Loaded machine (--load 1)",
        "multi-thread (#[tokio::main] default)",
        "current-thread",
        "| unix |",
        "loaded: unix: worst p99",
    ] {
        assert!(
            markdown.contains(expected),
            "no {expected:?} in:\n{markdown}"
        );
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap_or_default())
            .expect("the JSON report parses");
    assert_eq!(report["load"], 1, "load in the JSON report");
    assert_eq!(
        report["runtimes"]["multi_thread"],
        "multi-thread (#[tokio::main] default)"
    );
    let framework = &report["transports"][0]["asynchronous"];
    for runtime in ["multi_thread", "current_thread"] {
        let median = framework[runtime]["latency"]["median_us"]
            .as_f64()
            .unwrap_or(0.0);
        assert!(median > 0.0, "unix median on {runtime}: {median}");
    }
}

/// `rpc-bench --soak --connections 20 --calls 20000 --only TRANSPORT`: exit 0, and the JSON
/// counts every call sent and answered with the right sum.
fn small_soak_loses_nothing(transport: &str) {
    let dir = TempDir::new();
    let json = dir.0.join("soak.json");
    let json_arg = json.to_str().expect("UTF-8 temp path");
    let args = [
        "--soak",
        "--connections",
        "20",
        "--calls",
        "20000",
        "--only",
        transport,
        "--json",
        json_arg,
    ];
    let (status, markdown, stderr) = run_bench(&dir.0, "soak", &args);
    assert!(
        status.success(),
        "rpc-bench --soak failed ({status}):\n{markdown}\n{stderr}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap_or_default())
            .expect("the JSON report parses");
    let results = report["results"].as_array().expect("results array");
    assert_eq!(results.len(), 1, "one result in {report}");
    let r = &results[0];
    assert_eq!(r["transport"], transport);
    assert_eq!(r["connected"], 20, "connections opened: {r}");
    for (field, expected) in [("sent", 20000), ("ok", 20000), ("wrong", 0), ("failed", 0)] {
        assert_eq!(r[field], expected, "{field} in {r}");
    }
    assert!(
        r["rss_peak_kib"].as_u64().unwrap_or(0) > 0,
        "no VmHWM in {r}"
    );
    assert!(
        markdown.contains(&format!("| {transport} | 20/20 | 20000 |")),
        "no {transport} row in:\n{markdown}"
    );
}

#[test]
fn small_soak_on_unix_loses_nothing() {
    small_soak_loses_nothing("unix");
}

#[test]
fn small_soak_on_shm_loses_nothing() {
    small_soak_loses_nothing("shm");
}
