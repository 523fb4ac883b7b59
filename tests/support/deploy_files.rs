//! Readers for the files an admin deploys with: the Dockerfile's runtime stage and the compose
//! files in deploy/. The drift test (tests/deploy.rs) compares them; the image test
//! (tests/container_image.rs) runs the image from them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use yaml_rust2::{Yaml, YamlLoader};

pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

pub const COMPOSE_FILES: [&str; 2] = [
    "deploy/docker-compose.yml",
    "deploy/truenas-custom-app.yaml",
];

/// The instructions of the Dockerfile's last stage (the image that ships), continuation lines
/// joined.
pub struct RuntimeStage {
    pub user: String,
    pub env: BTreeMap<String, String>,
    pub volumes: Vec<String>,
    pub expose: Vec<u16>,
    /// `HEALTHCHECK` options (`interval` → `30s`) and its `CMD` in exec form.
    pub health_options: BTreeMap<String, String>,
    pub health_cmd: Vec<String>,
}

pub fn runtime_stage() -> RuntimeStage {
    let text = std::fs::read_to_string(repo("Dockerfile")).expect("Dockerfile");
    let joined = text.replace("\\\n", " ");
    let lines: Vec<&str> = joined
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let last_from = lines
        .iter()
        .rposition(|l| l.starts_with("FROM "))
        .expect("a FROM");
    let mut stage = RuntimeStage {
        user: String::new(),
        env: BTreeMap::new(),
        volumes: Vec::new(),
        expose: Vec::new(),
        health_options: BTreeMap::new(),
        health_cmd: Vec::new(),
    };
    for line in &lines[last_from + 1..] {
        let (instruction, rest) = line.split_once(' ').unwrap_or((line, ""));
        let rest = rest.trim();
        match instruction {
            "USER" => stage.user = rest.to_owned(),
            "ENV" => {
                for pair in rest.split_whitespace() {
                    let (k, v) = pair.split_once('=').expect("ENV key=value");
                    stage
                        .env
                        .insert(k.to_owned(), v.trim_matches('"').to_owned());
                }
            }
            "VOLUME" => stage
                .volumes
                .extend(rest.split_whitespace().map(str::to_owned)),
            "EXPOSE" => stage.expose.extend(
                rest.split_whitespace()
                    .map(|p| p.trim_end_matches("/tcp").parse::<u16>().expect("port")),
            ),
            "HEALTHCHECK" => {
                let (options, cmd) = rest.split_once(" CMD ").expect("HEALTHCHECK … CMD [...]");
                for option in options.split_whitespace() {
                    let (k, v) = option
                        .trim_start_matches("--")
                        .split_once('=')
                        .expect("--option=value");
                    stage.health_options.insert(k.to_owned(), v.to_owned());
                }
                stage.health_cmd = serde_json::from_str(cmd.trim()).expect("CMD in exec form");
            }
            _ => {}
        }
    }
    stage
}

/// The `passgate` service of a compose file.
pub struct Service {
    pub file: &'static str,
    yaml: Yaml,
}

pub fn service(file: &'static str) -> Service {
    let text = std::fs::read_to_string(repo(file)).expect("compose file");
    let docs = YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
    let yaml = docs[0]["services"]["passgate"].clone();
    assert!(!yaml.is_badvalue(), "{file} has no services.passgate");
    Service { file, yaml }
}

/// A scalar as compose reads it: strings, and numbers or booleans written bare.
fn scalar(value: &Yaml) -> Option<String> {
    match value {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

impl Service {
    /// The service's keys, to refuse one that a reader here does not understand.
    pub fn keys(&self) -> Vec<String> {
        self.yaml
            .as_hash()
            .expect("a mapping")
            .keys()
            .filter_map(|k| k.as_str().map(str::to_owned))
            .collect()
    }

    pub fn str(&self, key: &str) -> Option<String> {
        scalar(&self.yaml[key])
    }

    pub fn list(&self, key: &str) -> Vec<String> {
        match &self.yaml[key] {
            Yaml::Array(items) => items.iter().filter_map(scalar).collect(),
            Yaml::BadValue => Vec::new(),
            other => vec![scalar(other).unwrap_or_else(|| panic!("{}: {key}", self.file))],
        }
    }

    /// `environment:` in mapping form.
    pub fn environment(&self) -> BTreeMap<String, String> {
        self.yaml["environment"]
            .as_hash()
            .unwrap_or_else(|| panic!("{}: environment as a mapping", self.file))
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().expect("a name").to_owned(),
                    scalar(v).expect("a value"),
                )
            })
            .collect()
    }

    /// `volumes:` entries as (source, target).
    pub fn volumes(&self) -> Vec<(String, String)> {
        self.list("volumes")
            .iter()
            .map(|v| {
                let mut parts = v.split(':');
                let source = parts.next().expect("source").to_owned();
                let target = parts.next().expect("target").to_owned();
                (source, target)
            })
            .collect()
    }

    /// `ports:` entries as (host part, container port): `127.0.0.1:8080:8080` →
    /// (`127.0.0.1:8080`, 8080).
    pub fn ports(&self) -> Vec<(String, u16)> {
        self.list("ports")
            .iter()
            .map(|p| {
                let (host, container) = p.rsplit_once(':').expect("HOST:CONTAINER");
                (host.to_owned(), container.parse().expect("a port"))
            })
            .collect()
    }

    pub fn healthcheck_test(&self) -> Vec<String> {
        match &self.yaml["healthcheck"]["test"] {
            Yaml::Array(items) => items.iter().filter_map(scalar).collect(),
            _ => panic!("{}: healthcheck.test in exec form", self.file),
        }
    }

    pub fn healthcheck_option(&self, key: &str) -> Option<String> {
        scalar(&self.yaml["healthcheck"][key])
    }

    /// The file secrets of the top level (`secrets: NAME: file: PATH`) the service names.
    pub fn secrets(&self) -> Vec<String> {
        self.list("secrets")
    }
}
