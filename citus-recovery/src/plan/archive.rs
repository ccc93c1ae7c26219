//! [`ArchivePlan`]: WAL archiving on every node, into `<archiveBaseFolder>/<node>`, or into the
//! config's `repository` through `archive_command = citus-recovery archive-push` (base backups
//! stay in `backupBaseFolder` either way).
//!
//! Archiving uses PostgreSQL's own `basic_archive` module: it writes to a temporary file, syncs
//! and renames, accepts a file that is already archived with identical content and fails loudly
//! on a different one, which is what a trustworthy archive needs and `cp` does not give.

use std::fmt;
use std::path::Path;

use serde::Serialize;

use super::{recovery_conf, run_phases, NodePlan, Parameter, Phase, RunOptions, Step};
use crate::backend::ClusterBackend;
use crate::config::{ClusterConfig, RepositoryConfig};
use crate::error::{Error, Result};
use crate::observe::NodeObservation;

/// Parameters that take effect only at a server restart.
const RESTART_ONLY: [&str; 2] = ["wal_level", "archive_mode"];

/// The plan of `prepare-archiving`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArchivePlan {
    /// The phases.
    pub phases: Vec<Phase>,
    /// Nodes that need a restart the plan does not do (`restart` was false), with the reasons.
    pub restart_pending: Vec<(String, Vec<String>)>,
    /// Archiving settings of another tool the plan replaces (only with `replace_existing`).
    pub replaces: Vec<ReplacedSetting>,
    /// Remarks.
    pub notes: Vec<String>,
    /// What it was built from, checked again by [`crate::Cluster::apply`] (not in the JSON).
    #[serde(skip)]
    pub basis: super::PlanBasis,
}

/// An archiving setting that belongs to something else, replaced by the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplacedSetting {
    /// The node.
    pub node: String,
    /// The setting (`archive_command`, `archive_library`, `basic_archive.archive_directory`).
    pub setting: String,
    /// Its value now, with anything that looks like a password, key or token masked.
    pub current: String,
}

impl ReplacedSetting {
    /// `replaces archive_command '...' (another tool's WAL stream stops)`.
    pub fn sentence(&self) -> String {
        format!(
            "replaces {} {} (another tool's WAL stream stops)",
            self.setting,
            recovery_conf::quote_value(&self.current)
        )
    }
}

/// What `prepare-archiving` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArchiveReport {
    /// Nodes restarted for settings that need it.
    pub restarted: Vec<String>,
    /// Nodes that still need a restart before archiving works, with the settings.
    pub restart_pending: Vec<(String, Vec<String>)>,
}

impl fmt::Display for ArchiveReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "archiving prepared")?;
        if !self.restarted.is_empty() {
            writeln!(f, "restarted: {}", self.restarted.join(", "))?;
        }
        for (node, because) in &self.restart_pending {
            writeln!(
                f,
                "restart needed on {node} for {} before archiving works",
                because.join(", ")
            )?;
        }
        Ok(())
    }
}

impl ArchivePlan {
    /// Builds the plan from the config and the observed nodes (all must be running). With
    /// `restart`, nodes whose `wal_level` or `archive_mode` change are restarted.
    ///
    /// Archiving set up by something else (an `archive_library` other than `basic_archive`, an
    /// `archive_command`, or `basic_archive.archive_directory` pointing elsewhere) is refused
    /// with [`Error::ArchivingInUse`] unless `replace_existing`; then the plan says what it
    /// replaces, in the node's step and in a note.
    pub fn build(
        config: &ClusterConfig,
        observed: &[NodeObservation],
        restart: bool,
        replace_existing: bool,
    ) -> Result<Self> {
        let mut nodes = Vec::new();
        let mut restart_pending = Vec::new();
        let mut replaces = Vec::new();
        let mut all_prepared = true;
        for node in config.nodes() {
            let obs = find(observed, &node.name);
            obs.require_running("start it with `citus-recovery cluster start`")?;
            let archive = config.archive_dir(node);
            let current = |name: &str| obs.settings.get(name).cloned().unwrap_or_default();
            let ours = match config.repository {
                Some(_) => Some(tool_command(config, "archive-push", &node.name, "%p")?),
                None => None,
            };
            for (setting, value) in foreign_settings(obs, &archive, config, &node.name) {
                let found = ReplacedSetting {
                    node: node.name.clone(),
                    setting: setting.to_string(),
                    current: redact(&value),
                };
                if !replace_existing {
                    return Err(Error::ArchivingInUse {
                        node: found.node,
                        setting: found.setting,
                        current: found.current,
                    });
                }
                replaces.push(found);
            }
            let mut wanted = Vec::new();
            if !matches!(current("wal_level").as_str(), "replica" | "logical") {
                wanted.push(("wal_level", "replica".to_string()));
            }
            if !matches!(current("archive_mode").as_str(), "on" | "always") {
                wanted.push(("archive_mode", "on".to_string()));
            }
            let folder = match (&ours, &config.repository) {
                (Some(command), repository) => {
                    // archive_command runs archive-push into the repository.
                    if !current("archive_library").is_empty() {
                        wanted.push(("archive_library", String::new()));
                    }
                    if current("archive_command") != *command {
                        wanted.push(("archive_command", command.clone()));
                    }
                    match repository {
                        // The servers' user writes it: made as that user.
                        Some(RepositoryConfig::Posix { path }) => {
                            Some(path.join("wal").join(&node.name))
                        }
                        _ => None,
                    }
                }
                (None, _) => {
                    if current("archive_library") != "basic_archive" {
                        wanted.push(("archive_library", "basic_archive".to_string()));
                    }
                    if Path::new(&current("basic_archive.archive_directory")) != archive {
                        let dir = archive.to_string_lossy().to_string();
                        wanted.push(("basic_archive.archive_directory", dir));
                    }
                    // PostgreSQL 16 refuses both set at once, and a leftover command misleads.
                    if command_set(&current("archive_command")) {
                        wanted.push(("archive_command", String::new()));
                    }
                    Some(archive)
                }
            };
            let mut steps: Vec<Step> = folder
                .into_iter()
                .map(|path| Step::CreateFolder { path })
                .collect();
            let prepared = steps.len();
            let because: Vec<String> = wanted
                .iter()
                .filter(|(n, _)| RESTART_ONLY.contains(n))
                .map(|(n, _)| n.to_string())
                .collect();
            if !wanted.is_empty() {
                steps.push(Step::SetParameters {
                    parameters: wanted
                        .into_iter()
                        .map(|(name, value)| Parameter {
                            name: name.to_string(),
                            value,
                        })
                        .collect(),
                    replaces: replaces
                        .iter()
                        .filter(|r: &&ReplacedSetting| r.node == node.name)
                        .map(ReplacedSetting::sentence)
                        .collect(),
                });
                steps.push(Step::Reload);
            }
            if !because.is_empty() {
                if restart {
                    steps.push(Step::Restart { because });
                } else {
                    restart_pending.push((node.name.clone(), because));
                }
            }
            all_prepared &= steps.len() == prepared;
            nodes.push(NodePlan {
                node: node.name.clone(),
                steps,
            });
        }
        let mut notes: Vec<String> = replaces
            .iter()
            .map(|r| format!("node {}: {}", r.node, r.sentence()))
            .collect();
        for (node, because) in &restart_pending {
            notes.push(format!(
                "node {node} needs a restart for {} before archiving works: run prepare-archiving without --no-restart, or `citus-recovery cluster stop` and `cluster start`",
                because.join(" and ")
            ));
        }
        if config.repository.is_some() {
            notes.push(
                "WAL is archived into the repository by archive_command (citus-recovery \
                 archive-push); base backups stay in backupBaseFolder"
                    .into(),
            );
        }
        if all_prepared {
            notes.push("archiving is already prepared on every node".into());
        }
        Ok(ArchivePlan {
            phases: vec![Phase {
                title: "prepare WAL archiving".into(),
                nodes,
            }],
            restart_pending,
            replaces,
            notes,
            basis: super::PlanBasis::default(),
        })
    }

    /// Runs the plan.
    pub async fn execute(
        &self,
        backend: &dyn ClusterBackend,
        opts: &RunOptions,
    ) -> Result<ArchiveReport> {
        if backend.config().repository.is_some() {
            // archive_command runs the tool on each node's host: check every host at once
            // before any setting changes.
            let checks = backend
                .config()
                .nodes()
                .map(|node| backend.check_node_tools(node));
            let errors = futures::future::join_all(checks)
                .await
                .into_iter()
                .filter_map(Result::err)
                .collect();
            if let Some(e) = Error::from_several(errors) {
                return Err(e);
            }
        }
        run_phases(backend, &self.phases, opts).await?;
        let restarted = self.phases[0]
            .nodes
            .iter()
            .filter(|n| n.steps.iter().any(|s| matches!(s, Step::Restart { .. })))
            .map(|n| n.node.clone())
            .collect();
        Ok(ArchiveReport {
            restarted,
            restart_pending: self.restart_pending.clone(),
        })
    }
}

/// The observation of `node`; plans are always built from observations of every config node.
pub(super) fn find<'a>(observed: &'a [NodeObservation], node: &str) -> &'a NodeObservation {
    observed
        .iter()
        .find(|o| o.node == node)
        .expect("every config node is observed")
}

/// Whether an `archive_command` value is set (PostgreSQL shows `(disabled)` while archiving is off).
fn command_set(value: &str) -> bool {
    !value.trim().is_empty() && value != "(disabled)"
}

/// The archiving settings of `obs` that are not this config's: each setting and its value.
/// `basic_archive` into `archive` and this config's own `archive-push` for `node` are ours,
/// whichever of the two the config now asks for.
fn foreign_settings(
    obs: &NodeObservation,
    archive: &Path,
    config: &ClusterConfig,
    node: &str,
) -> Vec<(&'static str, String)> {
    let get = |name: &str| obs.settings.get(name).cloned().unwrap_or_default();
    let mut found = Vec::new();
    let library = get("archive_library");
    if !library.is_empty() && library != "basic_archive" {
        found.push(("archive_library", library));
    }
    let command = get("archive_command");
    if command_set(&command) && !is_our_push(&command, config, node) {
        found.push(("archive_command", command));
    }
    let dir = get("basic_archive.archive_directory");
    if !dir.is_empty() && Path::new(&dir) != archive {
        found.push(("basic_archive.archive_directory", dir));
    }
    found
}

/// Whether `command` is this config's `archive-push` for `node`, whatever binary runs it.
fn is_our_push(command: &str, config: &ClusterConfig, node: &str) -> bool {
    let Some(source) = &config.source else {
        return false;
    };
    let tail = format!(
        " --config {} archive-push --node {} %p",
        percent(&shell_quote(&source.to_string_lossy())),
        percent(&shell_quote(node))
    );
    command.ends_with(&tail)
}

/// `value` in single quotes for `sh`, `'` written as `'\''`.
pub(crate) fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "'\\''"))
}

/// `%` doubled, so PostgreSQL leaves it alone in `archive_command`/`restore_command`.
fn percent(value: &str) -> String {
    value.replace('%', "%%")
}

/// The command PostgreSQL runs for `node`: `'<binary>' --config '<config>' <verb> --node
/// '<node>' <placeholders>` (`archive-push ... %p`, `archive-get ... %f %p`). Needs the config's
/// `binary` (the CLI fills it with itself) and the absolute path the config was read from.
pub(crate) fn tool_command(
    config: &ClusterConfig,
    verb: &str,
    node: &str,
    placeholders: &str,
) -> Result<String> {
    let (binary, source) = tool_paths(config)?;
    Ok(format!(
        "{} --config {} {verb} --node {} {placeholders}",
        percent(&shell_quote(&binary.to_string_lossy())),
        percent(&shell_quote(&source.to_string_lossy())),
        percent(&shell_quote(node)),
    ))
}

/// The program and config file of [`tool_command`]: the config's `binary` and the absolute path
/// the config was read from (restore-start's prefetch runs them too).
pub(crate) fn tool_paths(config: &ClusterConfig) -> Result<(&Path, &Path)> {
    let config_error = |field: &str, problem: &str, fix: &str| Error::Config {
        path: config.source.clone(),
        field: field.into(),
        problem: problem.into(),
        fix: fix.into(),
    };
    let binary = config.binary.as_ref().ok_or_else(|| {
        config_error(
            "binary",
            "is not set, and PostgreSQL must run citus-recovery to move WAL to and from the repository",
            "set \"binary\" to the absolute path of the citus-recovery program (the command-line tool sets it to itself)",
        )
    })?;
    let source = config
        .source
        .as_ref()
        .filter(|p| p.is_absolute())
        .ok_or_else(|| {
            config_error(
                "(file)",
                "the config was not read from a file with an absolute path, and PostgreSQL's commands must name it",
                "load the config from a file with an absolute path (ClusterConfig::from_file; Python: Cluster.from_config, or Cluster(config, config_file=...))",
            )
        })?;
    Ok((binary, source))
}

/// Masks what looks like a secret in a setting's value (`PGPASSWORD=...`, `--secret-key ...`,
/// `user:password@host`), so errors, plans and logs never carry it.
pub fn redact(value: &str) -> String {
    const SECRET_WORDS: [&str; 6] = ["pass", "secret", "key", "token", "credential", "auth"];
    let secret = |name: &str| {
        let name = name.to_ascii_lowercase();
        SECRET_WORDS.iter().any(|w| name.contains(w))
    };
    let mut out = Vec::new();
    let mut mask_next = false;
    for word in value.split(' ') {
        if mask_next && !word.is_empty() {
            out.push("***".to_string());
            mask_next = false;
            continue;
        }
        if let Some((name, _)) = word.split_once('=') {
            if secret(name) {
                out.push(format!("{name}=***"));
                continue;
            }
        }
        if word.starts_with('-') && secret(word) {
            // `--password x`: the value is the next word.
            mask_next = true;
        }
        // `scheme://user:password@host`
        match (word.find("://"), word.find('@')) {
            (Some(s), Some(at)) if at > s && word[s + 3..at].contains(':') => {
                let colon = s + 3 + word[s + 3..at].find(':').unwrap_or(0);
                out.push(format!("{}:***{}", &word[..colon], &word[at..]));
            }
            _ => out.push(word.to_string()),
        }
    }
    out.join(" ")
}

super::plan_impls!(ArchivePlan, "prepare-archiving", |_p| {
    "plan: prepare-archiving"
});

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::backend::ServerState;
    use crate::plan::Plan;

    fn config() -> ClusterConfig {
        let json = serde_json::json!({
            "clusterName": "demo", "workerCount": 1,
            "coordinatorNode": {"name": "coordinator", "hostname": "localhost", "port": 9700, "username": "postgres", "dbname": "postgres"},
            "workerNodes": [{"name": "worker1", "hostname": "localhost", "port": 9701, "username": "postgres", "dbname": "postgres"}],
            "clusterBaseFolder": "/nonexistent/cluster", "archiveBaseFolder": "/nonexistent/archive", "backupBaseFolder": "/nonexistent/backup"
        });
        ClusterConfig::from_json_str(&json.to_string(), None).unwrap()
    }

    /// A running node archiving into this config's folder, with `edits` applied to its settings.
    fn node(name: &str, edits: &[(&str, &str)]) -> NodeObservation {
        let mut settings: BTreeMap<String, String> = [
            ("wal_level", "replica".to_string()),
            ("archive_mode", "on".to_string()),
            ("archive_library", "basic_archive".to_string()),
            ("archive_command", String::new()),
            (
                "basic_archive.archive_directory",
                format!("/nonexistent/archive/{name}"),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        for (k, v) in edits {
            settings.insert(k.to_string(), v.to_string());
        }
        NodeObservation {
            in_recovery: Some(false),
            lsn: Some("0/3000000".into()),
            timeline: Some(1),
            settings,
            server_version: Some("15.18".into()),
            ..NodeObservation::new(name, ServerState::Running)
        }
    }

    fn worker_with(edits: &[(&str, &str)]) -> Vec<NodeObservation> {
        vec![node("coordinator", &[]), node("worker1", edits)]
    }

    /// Changes to a node's settings.
    type Edits<'a> = &'a [(&'a str, &'a str)];

    /// Each case: the worker's settings, then the setting and value the refusal must name.
    #[test]
    fn another_tools_archiving_is_refused_and_replaced_only_when_asked() {
        let c = config();
        let cases: [(Edits, &str, &str); 5] = [
            (
                &[("archive_library", ""), ("archive_command", "/bin/true")],
                "archive_command",
                "/bin/true",
            ),
            (
                // Shown as "(disabled)" only when read through SHOW with archive_mode off.
                &[
                    ("archive_mode", "off"),
                    ("archive_library", ""),
                    (
                        "archive_command",
                        "pgbackrest --stanza=main archive-push %p",
                    ),
                ],
                "archive_command",
                "pgbackrest --stanza=main archive-push %p",
            ),
            (
                &[("archive_library", "pgbackrest_archive")],
                "archive_library",
                "pgbackrest_archive",
            ),
            (
                &[("basic_archive.archive_directory", "/mnt/other-archive")],
                "basic_archive.archive_directory",
                "/mnt/other-archive",
            ),
            (
                &[
                    ("archive_library", ""),
                    ("archive_command", "PGPASSWORD=hunter2 push %p"),
                ],
                "archive_command",
                "PGPASSWORD=*** push %p",
            ),
        ];
        for (edits, setting, current) in cases {
            let obs = worker_with(edits);
            match ArchivePlan::build(&c, &obs, true, false) {
                Err(Error::ArchivingInUse {
                    node,
                    setting: s,
                    current: v,
                }) => {
                    assert_eq!(node, "worker1");
                    assert_eq!(s, setting);
                    assert_eq!(v, current);
                    let text = Error::ArchivingInUse {
                        node,
                        setting: s,
                        current: v,
                    }
                    .to_string();
                    assert!(text.contains("--replace-existing"), "{text}");
                    assert!(text.contains("worker1"), "{text}");
                    assert!(!text.contains("hunter2"), "{text}");
                }
                other => panic!("{edits:?}: expected ArchivingInUse, got {other:?}"),
            }
            let plan = ArchivePlan::build(&c, &obs, true, true).unwrap();
            let sentence = format!(
                "replaces {setting} {} (another tool's WAL stream stops)",
                recovery_conf::quote_value(current)
            );
            let lines = plan.step_lines();
            assert!(
                lines
                    .iter()
                    .any(|l| l.starts_with("worker1: ALTER SYSTEM SET") && l.contains(&sentence)),
                "{lines:#?}"
            );
            assert!(plan.to_string().contains(&sentence), "{plan}");
            assert!(
                plan.notes
                    .iter()
                    .any(|n| n == &format!("node worker1: {sentence}")),
                "{:?}",
                plan.notes
            );
            assert!(!plan.to_string().contains("hunter2"));
            assert!(!plan.to_json().contains("hunter2"));
            assert_eq!(
                plan.phases[0].nodes[0].steps.len(),
                1,
                "the coordinator is ours already: {plan}"
            );
            let Step::SetParameters { parameters, .. } = &plan.phases[0].nodes[1].steps[1] else {
                panic!("{plan}")
            };
            let set = |n: &str| {
                parameters
                    .iter()
                    .find(|p| p.name == n)
                    .map(|p| p.value.as_str())
            };
            match setting {
                "archive_command" => assert_eq!(set("archive_command"), Some("")),
                "archive_library" => assert_eq!(set("archive_library"), Some("basic_archive")),
                _ => assert_eq!(
                    set("basic_archive.archive_directory"),
                    Some("/nonexistent/archive/worker1")
                ),
            }
        }
    }

    #[test]
    fn our_own_settings_need_no_change() {
        let c = config();
        for edits in [
            &[][..],
            &[("archive_command", "(disabled)")][..],
            // A trailing slash is the same folder.
            &[(
                "basic_archive.archive_directory",
                "/nonexistent/archive/worker1/",
            )][..],
        ] {
            let plan = ArchivePlan::build(&c, &worker_with(edits), true, false).unwrap();
            assert!(
                plan.phases[0].nodes.iter().all(|n| n.steps.len() == 1),
                "no SetParameters step: {plan}"
            );
            assert!(plan.replaces.is_empty());
            let again = ArchivePlan::build(&c, &worker_with(edits), true, true).unwrap();
            assert_eq!(
                plan, again,
                "replace_existing changes nothing when it is ours"
            );
        }
    }

    fn repo_config(binary: Option<&str>) -> ClusterConfig {
        let mut json = serde_json::json!({
            "clusterName": "demo", "workerCount": 1,
            "coordinatorNode": {"name": "coordinator", "hostname": "localhost", "port": 9700, "username": "postgres", "dbname": "postgres"},
            "workerNodes": [{"name": "worker1", "hostname": "localhost", "port": 9701, "username": "postgres", "dbname": "postgres"}],
            "clusterBaseFolder": "/nonexistent/cluster", "archiveBaseFolder": "/nonexistent/archive", "backupBaseFolder": "/nonexistent/backup",
            "repository": {"type": "posix", "path": "/nonexistent/repo"}
        });
        if let Some(b) = binary {
            json["binary"] = b.into();
        }
        let path = std::path::Path::new("/etc/it's 100%/cluster.json");
        ClusterConfig::from_json_str(&json.to_string(), Some(path)).unwrap()
    }

    #[test]
    fn with_a_repository_archive_command_replaces_our_basic_archive() {
        let c = repo_config(Some("/usr/local/bin/citus-recovery"));
        let expected =
            "'/usr/local/bin/citus-recovery' --config '/etc/it'\\''s 100%%/cluster.json' \
                        archive-push --node 'worker1' %p";
        assert_eq!(
            tool_command(&c, "archive-push", "worker1", "%p").unwrap(),
            expected
        );
        // Our basic_archive: replaced without --replace-existing.
        let plan = ArchivePlan::build(&c, &worker_with(&[]), true, false).unwrap();
        assert!(plan.replaces.is_empty());
        let steps = &plan.phases[0].nodes[1].steps;
        assert_eq!(
            steps[0],
            Step::CreateFolder {
                path: "/nonexistent/repo/wal/worker1".into()
            }
        );
        let Step::SetParameters { parameters, .. } = &steps[1] else {
            panic!("{plan}");
        };
        let set: Vec<(&str, &str)> = parameters
            .iter()
            .map(|p| (p.name.as_str(), p.value.as_str()))
            .collect();
        assert_eq!(
            set,
            [("archive_library", ""), ("archive_command", expected)]
        );
        // Done: nothing more to change, and it is ours (another binary path included).
        for command in [
            expected.to_string(),
            expected.replace("/usr/local/bin", "/opt/bin"),
        ] {
            let coordinator = command.replace("'worker1'", "'coordinator'");
            let done = vec![
                node(
                    "coordinator",
                    &[("archive_library", ""), ("archive_command", &coordinator)],
                ),
                node(
                    "worker1",
                    &[("archive_library", ""), ("archive_command", &command)],
                ),
            ];
            let again = ArchivePlan::build(&c, &done, true, false).unwrap();
            assert!(again.replaces.is_empty(), "{command}");
            if command == expected {
                assert_eq!(again.phases[0].nodes[1].steps.len(), 1, "{again}");
                assert!(again.notes.iter().any(|n| n.contains("already prepared")));
            }
        }
        // Another tool's command is still refused.
        let other = worker_with(&[("archive_library", ""), ("archive_command", "cp %p /x/%f")]);
        assert!(matches!(
            ArchivePlan::build(&c, &other, true, false),
            Err(Error::ArchivingInUse { .. })
        ));
        // No binary known: a clear refusal.
        match ArchivePlan::build(&repo_config(None), &worker_with(&[]), true, false) {
            Err(Error::Config { field, fix, .. }) => {
                assert_eq!(field, "binary");
                assert!(fix.contains("citus-recovery"), "{fix}");
            }
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn a_fresh_node_is_not_someone_elses() {
        let c = config();
        let fresh = worker_with(&[
            ("archive_mode", "off"),
            ("archive_library", ""),
            ("archive_command", ""),
        ]);
        let mut fresh = fresh;
        fresh[1].settings.remove("basic_archive.archive_directory");
        let plan = ArchivePlan::build(&c, &fresh, true, false).unwrap();
        assert!(plan.replaces.is_empty());
        assert_eq!(plan.phases[0].nodes[1].steps.len(), 4, "{plan}");
    }

    #[test]
    fn secrets_are_masked() {
        for (value, masked) in [
            ("cp %p /a/%f", "cp %p /a/%f"),
            (
                "AWS_SECRET_ACCESS_KEY=abc aws s3 cp %p s3://b/%f",
                "AWS_SECRET_ACCESS_KEY=*** aws s3 cp %p s3://b/%f",
            ),
            ("tool --password hunter2 %p", "tool --password *** %p"),
            (
                "curl -T %p https://user:pw@host/%f",
                "curl -T %p https://user:***@host/%f",
            ),
        ] {
            assert_eq!(redact(value), masked);
        }
    }
}
