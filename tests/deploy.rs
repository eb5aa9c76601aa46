//! The deployment files, checked without a Docker engine: compose.yaml parses, has every service
//! the distributed deployment needs with a healthcheck, configures each role only with settings
//! the binary knows, and the Dockerfile is multi-stage and runs as a non-root user.

use std::collections::BTreeMap;
use std::path::Path;

use yaml_rust2::{Yaml, YamlLoader};

const BIN: &str = env!("CARGO_BIN_EXE_movies");

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A mapping with YAML merge keys (`<<: *anchor`) applied, as compose applies them.
fn merged(yaml: &Yaml) -> BTreeMap<String, Yaml> {
    let mut out = BTreeMap::new();
    let Yaml::Hash(hash) = yaml else { return out };
    if let Some(base) = hash.get(&Yaml::String("<<".into())) {
        out.extend(merged(base));
    }
    for (key, value) in hash {
        if let Yaml::String(key) = key {
            if key != "<<" {
                let value = match (out.get(key), value) {
                    // Nested mappings that both define keys (environment) merge one level deep.
                    (Some(Yaml::Hash(_)), Yaml::Hash(_)) if key == "environment" => {
                        let mut both = merged(out.get(key).unwrap());
                        both.extend(merged(value));
                        Yaml::Hash(both.into_iter().map(|(k, v)| (Yaml::String(k), v)).collect())
                    }
                    _ => value.clone(),
                };
                out.insert(key.clone(), value);
            }
        }
    }
    out
}

fn strings(yaml: &Yaml) -> Vec<String> {
    match yaml {
        Yaml::Array(items) => items.iter().filter_map(|i| i.as_str().map(str::to_owned)).collect(),
        Yaml::String(s) => vec![s.clone()],
        _ => Vec::new(),
    }
}

fn compose() -> BTreeMap<String, BTreeMap<String, Yaml>> {
    let text = std::fs::read_to_string(root().join("compose.yaml")).unwrap();
    let docs = YamlLoader::load_from_str(&text).expect("compose.yaml parses");
    let services = merged(&docs[0]).remove("services").expect("services");
    merged(&services).iter().map(|(name, service)| (name.clone(), merged(service))).collect()
}

#[test]
fn compose_runs_every_role_and_its_infrastructure_with_healthchecks() {
    let services = compose();
    for name in [
        "postgres",
        "kafka",
        "redis",
        "command-api",
        "relay",
        "projector",
        "search-1",
        "query-1",
        "search-2",
        "query-2",
        "nginx",
    ] {
        let service = services.get(name).unwrap_or_else(|| panic!("compose.yaml has no {name} service"));
        let test = service.get("healthcheck").map(merged).and_then(|h| h.get("test").cloned());
        assert!(test.is_some_and(|t| !strings(&t).is_empty()), "{name} has no healthcheck");
    }
    assert!(services["kafka"]["image"].as_str().unwrap().starts_with("apache/kafka"), "Apache Kafka itself");
    let kafka_env = merged(&services["kafka"]["environment"]);
    assert!(kafka_env["KAFKA_PROCESS_ROLES"].as_str().unwrap().contains("controller"), "KRaft: no ZooKeeper");
    let redis = strings(&services["redis"]["command"]).join(" ");
    assert!(
        redis.contains("--maxmemory ") && redis.contains("allkeys-lfu"),
        "Redis is bounded and LFU: {redis}"
    );
}

#[test]
fn each_query_replica_reads_the_index_its_own_search_projector_writes() {
    let services = compose();
    let mut volumes = Vec::new();
    for n in [1, 2] {
        let (search, query) = (&services[&format!("search-{n}")], &services[&format!("query-{n}")]);
        assert_eq!(strings(&search["command"]), ["projector", "--search-only"]);
        assert_eq!(strings(&query["command"]), ["query-api"]);
        let dir = merged(&query["environment"])["MOVIES_INDEX_DIR"].as_str().unwrap().to_owned();
        assert_eq!(merged(&search["environment"])["MOVIES_INDEX_DIR"].as_str(), Some(dir.as_str()));
        let index_volume = |service: &BTreeMap<String, Yaml>| {
            strings(&service["volumes"])
                .into_iter()
                .find(|v| v.ends_with(&format!(":{dir}")))
                .expect("index volume")
        };
        assert_eq!(index_volume(search), index_volume(query));
        volumes.push(index_volume(query));
    }
    assert_ne!(volumes[0], volumes[1], "each replica has its own index");
}

#[test]
fn compose_configures_the_roles_only_with_settings_the_binary_knows() {
    for (name, service) in compose() {
        if service.get("image").and_then(Yaml::as_str) != Some("movies:latest") || name == "keys" {
            continue;
        }
        let command = strings(&service["command"]);
        let output = std::process::Command::new(BIN).arg(&command[0]).arg("--help").output().unwrap();
        assert!(output.status.success(), "{name}: `movies {}` is not a subcommand", command[0]);
        let help = String::from_utf8(output.stdout).unwrap();
        for flag in command.iter().skip(1) {
            assert!(help.contains(flag.as_str()), "{name}: `movies {}` has no {flag}", command[0]);
        }
        for (key, _) in merged(&service["environment"]) {
            if key == "RUST_LOG" || key == "MOVIES_ADMIN_PASSWORD" {
                continue;
            }
            assert!(help.contains(&key), "{name}: `movies {}` does not read {key}", command[0]);
        }
    }
}

#[test]
fn the_image_is_multi_stage_and_runs_as_an_unprivileged_user() {
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let stages = dockerfile.lines().filter(|l| l.starts_with("FROM ")).count();
    assert!(stages >= 2, "a build stage and a runtime stage");
    let user = dockerfile.lines().filter_map(|l| l.strip_prefix("USER ")).next_back().expect("a USER line");
    assert!(!["root", "0"].contains(&user.trim()), "runs as {user}");
    assert!(dockerfile.contains("cargo build --release --locked"));
}

#[test]
fn nginx_sends_reads_to_the_query_replicas_and_writes_to_the_command_api() {
    let conf = std::fs::read_to_string(root().join("deploy/nginx.conf")).unwrap();
    assert!(conf.contains("server query-1:8080") && conf.contains("server query-2:8080"));
    assert!(conf.contains("server command-api:8080"));
    assert!(conf.contains("GET     queries;") && conf.contains("default commands;"));
    let services = compose();
    let mounts = strings(&services["nginx"]["volumes"]).join(" ");
    assert!(mounts.contains("./deploy/nginx.conf:"), "compose mounts this file: {mounts}");
}
