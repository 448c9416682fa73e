//! `rpc-schema diff OLD.json NEW.json`: whether a new version of a service may replace an old
//! one without breaking the old one's clients, as `buf breaking` does for protobuf.
//!
//! The JSON files are what a server prints with `--schema` (`ServiceSchema::to_json`). Exit
//! status: 0 compatible, 1 breaking changes (each printed with the rule it breaks), 2 a file
//! could not be read.

use std::process::ExitCode;

use rpc_core::schema::{ServiceSchema, breaking_changes};

const USAGE: &str = "usage: rpc-schema diff OLD.json NEW.json

Says whether NEW may replace OLD without breaking OLD's clients; exits 1 on a break.
Write a schema with your server's --schema flag (ServiceSchema::to_json).";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["diff", old, new] => diff(old, new),
        ["-h" | "--help" | "help"] => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn read(path: &str) -> Result<ServiceSchema, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    ServiceSchema::from_json(&text).map_err(|e| format!("{path} is not a service schema: {e}"))
}

fn diff(old: &str, new: &str) -> ExitCode {
    let (old, new) = match (read(old), read(new)) {
        (Ok(old), Ok(new)) => (old, new),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("rpc-schema: {e}");
            return ExitCode::from(2);
        }
    };
    let broken = breaking_changes(&old, &new);
    let added: Vec<&str> = new
        .methods
        .iter()
        .filter(|m| old.method(m.id).is_none() && !old.methods.iter().any(|o| o.name == m.name))
        .map(|m| m.name.as_str())
        .collect();
    if broken.is_empty() {
        println!("compatible: '{}' may replace the old version", new.name);
        for name in added {
            println!("  added method '{name}'");
        }
        return ExitCode::SUCCESS;
    }
    println!(
        "breaking: {} change(s) break clients of the old '{}'",
        broken.len(),
        old.name
    );
    for change in &broken {
        println!("  {change}");
    }
    ExitCode::from(1)
}
