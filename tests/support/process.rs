//! Starting the `movies` binary as a process, for the tests that need it whole.
#![allow(dead_code)]

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const BIN: &str = env!("CARGO_BIN_EXE_movies");

pub fn movies(data_dir: &Path) -> Command {
    let mut command = Command::new(BIN);
    command.arg("--data-dir").arg(data_dir).env_remove("DATABASE_URL").env("RUST_LOG", "warn");
    command
}

pub async fn run(command: &mut Command) -> String {
    let output = command.output().await.unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

/// Starts the server on a free port and returns it with its base URL, read from what it prints.
pub async fn serve(data_dir: &Path) -> (Child, String, Vec<String>) {
    let mut command = movies(data_dir);
    command.env("MOVIES_ADMIN_PASSWORD", "cli-test-admin");
    serve_with(command).await
}

/// `movies` run under `prlimit` with at most `bytes` of address space: a test of hostile input
/// that could exhaust memory runs against this cap, never the machine's.
pub fn movies_capped(data_dir: &Path, bytes: u64) -> Command {
    let mut command = Command::new("prlimit");
    command
        .arg(format!("--as={bytes}"))
        .arg("--")
        .arg(BIN)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "warn");
    command
}

/// Starts `command` (the server) on a free port and returns it with its base URL.
pub async fn serve_with(mut command: Command) -> (Child, String, Vec<String>) {
    let mut child =
        command.args(["--listen", "127.0.0.1:0"]).stdout(Stdio::piped()).kill_on_drop(true).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    let base = tokio::time::timeout(Duration::from_secs(120), async {
        let mut base = None;
        while let Some(line) = lines.next_line().await.unwrap() {
            printed.push(line.clone());
            if let Some(rest) = line.strip_prefix("movies is serving on ") {
                base = Some(rest.split_whitespace().next().unwrap().to_owned());
            }
            if line.starts_with("Press Ctrl-C") {
                return base.expect("the address comes first");
            }
        }
        panic!("the server exited before printing its address: {printed:?}");
    })
    .await
    .expect("the server printed its address");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    // Ready: its projections have caught up with the log.
    let http = reqwest::Client::new();
    let ready = async {
        while http.get(format!("{base}/ready")).send().await.map_or(true, |r| r.status() != 200) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(120), ready).await.expect("the server became ready");
    (child, base, printed)
}
