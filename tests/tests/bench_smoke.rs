//! `rpc-bench` end to end: a quick run of the unix transport writes a JSON report with
//! positive medians for the framework and for the raw unix ping-pong.

use std::fs::File;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rpc_tests::TempDir;

/// The longest the run may take before the test kills it and fails.
const LIMIT: Duration = Duration::from_secs(120);

#[test]
fn quick_unix_run_reports_positive_medians() {
    let dir = TempDir::new();
    let json = dir.0.join("bench.json");
    let stdout = dir.0.join("stdout.md");
    let stderr = dir.0.join("stderr.txt");
    let mut child = Command::new(env!("CARGO_BIN_EXE_rpc-bench"))
        .args(["--quick", "--only", "unix", "--json"])
        .arg(&json)
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
            panic!("rpc-bench did not finish within {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let read = |path| std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        status.success(),
        "rpc-bench failed ({status}):\n{}\n{}",
        read(&stdout),
        read(&stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&read(&json)).expect("the JSON report parses");

    let framework = report["transports"]
        .as_array()
        .expect("transports array")
        .iter()
        .find(|t| t["transport"] == "unix")
        .expect("a unix framework row");
    let median = framework["latency_async"]["median_us"]
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

    let markdown = read(&stdout);
    assert!(markdown.contains("| unix |"), "no unix row in:\n{markdown}");
}
