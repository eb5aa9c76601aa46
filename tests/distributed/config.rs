//! Each role documents its configuration and refuses, at once and in one line, to start without
//! what it needs.

use std::process::Stdio;
use std::time::Duration;

use crate::harness::{Cluster, BIN};

#[tokio::test]
async fn every_role_lists_its_flags_and_their_environment_variables() {
    let expected: &[(&str, &[&str])] = &[
        ("command-api", &["--listen", "DATABASE_URL", "MOVIES_JWT_PRIVATE_KEY", "MOVIES_JWT_PUBLIC_KEY"]),
        ("relay", &["DATABASE_URL", "KAFKA_BROKERS", "MOVIES_KAFKA_TOPIC", "MOVIES_KAFKA_PARTITIONS"]),
        ("projector", &["DATABASE_URL", "KAFKA_BROKERS", "REDIS_URL", "MOVIES_INDEX_DIR", "--search-only"]),
        (
            "query-api",
            &["DATABASE_URL", "DATABASE_READ_URL", "REDIS_URL", "MOVIES_INDEX_DIR", "MOVIES_JWT_PUBLIC_KEY"],
        ),
    ];
    for (role, names) in expected {
        let output = std::process::Command::new(BIN).args([role, "--help"]).output().unwrap();
        assert!(output.status.success());
        let help = String::from_utf8(output.stdout).unwrap();
        for name in *names {
            assert!(help.contains(name), "`movies {role} --help` does not mention {name}:\n{help}");
        }
    }
}

/// Runs a role with `env` changed and expects it to exit non-zero within seconds, with one
/// line on stderr that contains `reason`.
async fn refuses(cluster: &Cluster, args: &[&str], env: &[(&str, Option<&str>)], reason: &str) {
    let mut command = cluster.command(args);
    for (key, value) in env {
        match value {
            Some(value) => command.env(key, value),
            None => command.env_remove(key),
        };
    }
    let output = tokio::time::timeout(Duration::from_secs(20), command.stderr(Stdio::piped()).output())
        .await
        .unwrap_or_else(|_| panic!("`movies {}` hung instead of refusing to start", args.join(" ")))
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "`movies {}` started without {reason}", args.join(" "));
    assert_eq!(output.status.code(), Some(1), "a clean exit, not a panic: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line of reason: {stderr}");
    assert!(lines[0].contains(reason), "the reason names {reason}: {stderr}");
}

#[tokio::test]
async fn a_role_missing_what_it_needs_exits_at_once_with_a_one_line_reason() {
    let cluster = Cluster::new().await;
    refuses(&cluster, &["relay"], &[("DATABASE_URL", None)], "DATABASE_URL").await;
    refuses(&cluster, &["relay"], &[("DATABASE_URL", Some("sqlite://movies.db"))], "postgres://").await;
    refuses(&cluster, &["relay"], &[("KAFKA_BROKERS", None)], "KAFKA_BROKERS").await;
    refuses(&cluster, &["projector"], &[("KAFKA_BROKERS", None)], "KAFKA_BROKERS").await;
    refuses(&cluster, &["projector", "--search-only"], &[], "MOVIES_INDEX_DIR").await;
    refuses(&cluster, &["query-api"], &[], "MOVIES_INDEX_DIR").await;
    refuses(
        &cluster,
        &["query-api", "--index-dir", "/nonexistent"],
        &[("MOVIES_JWT_PUBLIC_KEY", None)],
        "MOVIES_JWT_PUBLIC_KEY",
    )
    .await;
    refuses(&cluster, &["command-api"], &[("MOVIES_JWT_PRIVATE_KEY", None)], "MOVIES_JWT_PRIVATE_KEY").await;
    refuses(
        &cluster,
        &["command-api"],
        &[("MOVIES_JWT_PRIVATE_KEY", Some("/nonexistent/key.pem"))],
        "/nonexistent/key.pem",
    )
    .await;
    refuses(&cluster, &["projector"], &[("REDIS_URL", Some("not a url"))], "REDIS_URL").await;
}
