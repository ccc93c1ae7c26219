//! pgBackRest on a second cluster of the same generated data: one stanza per node, all at once,
//! compression off, one process per stanza (as `pg_basebackup` and the library use one stream
//! per node), fast start, WAL archived by `archive-push`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use citus_recovery::backend::StartWait;
use futures::future::try_join_all;

use crate::local::{poll, run, Env, Local, Result};
use crate::raw::{stop_and_move_aside, wait_paused};

/// A cluster backed up and restored by pgBackRest.
pub struct PgBackRest {
    /// The cluster.
    pub local: Local,
    conf: PathBuf,
}

/// The `pgbackrest` program: an absolute path where one is found, since the servers' own
/// `PATH` (for `archive_command`) may differ from ours.
fn program() -> String {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join("pgbackrest"))
        .find(|p| p.is_file())
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "pgbackrest".into())
}

/// Why pgBackRest cannot be measured, if it cannot: `None` when `pgbackrest version` runs.
pub async fn unavailable() -> Option<String> {
    let mut cmd = tokio::process::Command::new("pgbackrest");
    cmd.arg("version");
    match run(&mut cmd, "pgbackrest version").await {
        Ok(_) => None,
        Err(e) => Some(format!(
            "{e} (install it with `apt-get install pgbackrest`, as scripts/bench.sh does)"
        )),
    }
}

/// pgBackRest's version line.
pub async fn version() -> String {
    let mut cmd = tokio::process::Command::new("pgbackrest");
    cmd.arg("version");
    run(&mut cmd, "pgbackrest version")
        .await
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

impl PgBackRest {
    /// Writes the configuration, switches the nodes' archiving to `archive-push` (restarting
    /// them) and creates the stanzas.
    pub async fn setup(env: &Env, local: Local, root: &Path) -> Result<Self> {
        let dir = root.join(&local.name).join("pgbackrest");
        let repo = format!("repo1-path={}/repo\ncompress-type=none\n", dir.display());
        Self::setup_with(env, local, root, &repo).await
    }

    /// [`PgBackRest::setup`] with `repo` as the repository and compression lines of the
    /// `[global]` section (e.g. an S3 repository with `compress-type=zst`).
    pub async fn setup_with(env: &Env, local: Local, root: &Path, repo: &str) -> Result<Self> {
        let dir = root.join(&local.name).join("pgbackrest");
        env.mkdir(&dir, 0o755)?;
        for sub in ["repo", "log", "lock", "spool"] {
            env.mkdir(&dir.join(sub), 0o700)?;
        }
        let conf = dir.join("pgbackrest.conf");
        let mut text = format!(
            "[global]\n{repo}repo1-retention-full=1000\nlog-path={0}/log\nlock-path={0}/lock\nspool-path={0}/spool\n\
             log-level-console=warn\nlog-level-file=info\nprocess-max=1\nstart-fast=y\n",
            dir.display()
        );
        for node in local.nodes() {
            text.push_str(&format!(
                "\n[{}]\npg1-path={}\npg1-port={}\npg1-socket-path=/tmp\npg1-user={}\npg1-database={}\n",
                node.name,
                local.config().data_dir(node).display(),
                node.port,
                node.username,
                node.dbname
            ));
        }
        citus_recovery::files::write_atomic(&conf, text.as_bytes(), 0o600, &env.user)?;
        let this = PgBackRest { local, conf };
        try_join_all(this.local.nodes().map(|node| {
            let this = &this;
            async move {
                let command = format!(
                    "{} --config={} --stanza={} archive-push %p",
                    program(),
                    this.conf.display(),
                    node.name
                );
                let client = this.local.connect(node).await?;
                client
                    .batch_execute("ALTER SYSTEM SET archive_mode = 'on'")
                    .await?;
                let sql: String = client
                    .query_one(
                        "SELECT format('ALTER SYSTEM SET archive_command = %L', $1::text)",
                        &[&command],
                    )
                    .await?
                    .get(0);
                client.batch_execute(&sql).await?;
                Result::Ok(())
            }
        }))
        .await?;
        this.local.cluster.stop().await?;
        this.local.cluster.start().await?;
        try_join_all(
            this.local
                .nodes()
                .map(|node| this.command(env, &node.name, &["stanza-create"])),
        )
        .await?;
        Ok(this)
    }

    async fn command(&self, env: &Env, stanza: &str, args: &[&str]) -> Result<String> {
        let mut cmd = env.as_server_user(program());
        cmd.arg(format!("--config={}", self.conf.display()))
            .arg(format!("--stanza={stanza}"))
            .args(args);
        run(
            &mut cmd,
            &format!("pgbackrest {} ({stanza})", args.join(" ")),
        )
        .await
    }

    /// A full backup of every stanza at once.
    pub async fn backup(&self, env: &Env) -> Result<Duration> {
        let started = Instant::now();
        try_join_all(
            self.local
                .nodes()
                .map(|node| self.command(env, &node.name, &["--type=full", "backup"])),
        )
        .await?;
        Ok(started.elapsed())
    }

    /// `pg_create_restore_point` and `pg_switch_wal` on every node, waiting until pgBackRest
    /// has archived the segment.
    pub async fn restore_point(&self, name: &str) -> Result<()> {
        try_join_all(self.local.nodes().map(|node| async move {
            let client = self.local.connect(node).await?;
            client
                .execute("SELECT pg_create_restore_point($1)", &[&name])
                .await?;
            let segment: String = client
                .query_one("SELECT pg_walfile_name(pg_switch_wal())", &[])
                .await?
                .get(0);
            poll(Duration::from_millis(10), "archive-push", || async {
                let last: Option<String> = client
                    .query_one("SELECT last_archived_wal FROM pg_stat_archiver", &[])
                    .await?
                    .get(0);
                Ok(last.is_some_and(|l| l >= segment))
            })
            .await
        }))
        .await?;
        Ok(())
    }

    /// Restore until paused at `restore_point`, every node at once: stop, move the data directory
    /// aside, `pgbackrest restore` of the latest backup into an empty directory, start, poll
    /// until paused. Returns the moved-aside directories, for the caller to remove untimed.
    pub async fn restore(&self, env: &Env, restore_point: &str) -> Result<Vec<PathBuf>> {
        try_join_all(self.local.nodes().map(|node| async move {
            let aside = stop_and_move_aside(&self.local, node, "pgbr-aside").await?;
            env.mkdir(&self.local.config().data_dir(node), 0o700)?;
            let target = format!("--target={restore_point}");
            self.command(
                env,
                &node.name,
                &["--type=name", &target, "--target-action=pause", "restore"],
            )
            .await?;
            self.local
                .cluster
                .backend()
                .start(node, StartWait::NoWait)
                .await?;
            wait_paused(&self.local, node).await?;
            Result::Ok(aside)
        }))
        .await
    }
}

impl PgBackRest {
    /// Bytes the latest backup of every stanza takes in the repository (compressed), summed:
    /// `pgbackrest info`'s `repository.size`.
    pub async fn stored_bytes(&self, env: &Env) -> Result<u64> {
        let mut total = 0;
        for node in self.local.nodes() {
            let text = self
                .command(env, &node.name, &["--output=json", "info"])
                .await?;
            let info: serde_json::Value = serde_json::from_str(&text)?;
            total += info[0]["backup"]
                .as_array()
                .and_then(|b| b.last())
                .and_then(|b| b["info"]["repository"]["size"].as_u64())
                .ok_or_else(|| {
                    format!("pgbackrest info of {}: no backup size in {text}", node.name)
                })?;
        }
        Ok(total)
    }
}
