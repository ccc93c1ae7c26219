//! restore-start's prefetch into archive-get's spool, and its removal by restore-finish and
//! restore-abort: where the steps go in the plans, and that they never fail a plan.

use std::collections::HashSet;
use std::path::PathBuf;

use super::tests::{all, backup, config, data_dirs, kinds, point, restore_plan, t};
use super::*;
use crate::archiving::SPOOL_DIR;
use crate::backend::fake::FakeBackend;
use crate::config::ClusterConfig;
use crate::wal::Lsn;

/// The config of `plan::tests` with a repository (so restore_command is archive-get).
fn with_repository(queue: usize) -> ClusterConfig {
    let mut c = config();
    c.repository = Some(crate::config::RepositoryConfig::Posix {
        path: "/nonexistent/repo".into(),
    });
    c.binary = Some("/usr/local/bin/citus-recovery".into());
    c.source = Some("/etc/citus-recovery/cluster.json".into());
    c.archive_get_queue = queue;
    c
}

fn plan_to(c: &ClusterConfig, lsn: u64) -> RestorePlan {
    restore_plan(
        c,
        &all(true),
        &backup(t(10)),
        &point(lsn, t(20)),
        &data_dirs(c),
        None,
        t(30),
    )
    .unwrap()
}

fn prefetch_of(plan: &RestorePlan, i: usize) -> Option<&Step> {
    plan.phases[0].nodes[i]
        .steps
        .iter()
        .find(|s| matches!(s, Step::PrefetchWal { .. }))
}

#[test]
fn a_repository_restore_prefetches_after_extraction_and_settings_before_the_start() {
    let c = with_repository(8);
    let plan = plan_to(&c, 0x3000000);
    for i in 0..3 {
        assert_eq!(
            kinds(&plan, i),
            [
                "stop",
                "aside",
                "extract from repository",
                "settings",
                "signal",
                "prefetch",
                "control",
                "start",
                "wait"
            ]
        );
    }
    let node = c.node("worker1").unwrap();
    // The backup starts at 0/2000028 (segment 2), the point is at 0/3000000 (segment 3).
    assert_eq!(
        prefetch_of(&plan, 1),
        Some(&Step::PrefetchWal {
            pg_wal: c.data_dir(node).join("pg_wal"),
            first: "000000010000000000000002".into(),
            last: "000000010000000000000003".into(),
            count: 2,
            segment_size: crate::wal::DEFAULT_SEGMENT_SIZE,
        })
    );
    let text = plan.to_string();
    let spool = c.data_dir(node).join("pg_wal").join(SPOOL_DIR);
    assert!(
        text.contains(&format!(
            "start the archive-get prefetch worker as the servers' user: WAL segments 000000010000000000000002 to 000000010000000000000003 (2) from the repository into {}",
            spool.display()
        )),
        "{text}"
    );
    assert!(plan.to_json().contains("\"action\": \"prefetch_wal\""));
}

#[test]
fn the_window_is_bounded_by_the_queue_and_needs_one_timeline() {
    // A point far away (segment 0x40): the first queue + 1 segments only.
    let plan = plan_to(&with_repository(8), 0x4000_0000);
    let Some(Step::PrefetchWal { last, count, .. }) = prefetch_of(&plan, 0) else {
        panic!("a prefetch step")
    };
    assert_eq!((last.as_str(), *count), ("00000001000000000000000A", 9));
    // Prefetch off: no step.
    let plan = plan_to(&with_repository(0), 0x3000000);
    assert!(prefetch_of(&plan, 0).is_none());
    // Without the point's LSN (a Citus worker), its segment bounds the window.
    let c = with_repository(8);
    let mut rp = point(0x3000000, t(20));
    for n in &mut rp.nodes {
        n.lsn = None;
        n.segment = "000000010000000000000004".into();
    }
    let existing = data_dirs(&c);
    let plan = restore_plan(&c, &all(true), &backup(t(10)), &rp, &existing, None, t(30)).unwrap();
    let Some(Step::PrefetchWal { last, count, .. }) = prefetch_of(&plan, 2) else {
        panic!("a prefetch step")
    };
    assert_eq!((last.as_str(), *count), ("000000010000000000000004", 3));
    // A point on another timeline than the backup: replay switches timelines, no window.
    for n in &mut rp.nodes {
        n.timeline = 2;
        n.segment = "000000020000000000000004".into();
    }
    let mut b = backup(t(10));
    for n in &mut b.nodes {
        n.end_lsn = Lsn(0x2000100);
    }
    let plan = restore_plan(&c, &all(true), &b, &rp, &existing, None, t(30)).unwrap();
    assert!(prefetch_of(&plan, 0).is_none());
}

#[tokio::test]
async fn the_window_is_named_by_the_backups_segment_size() {
    // 64 MiB segments: the backup at 0/2000028 is in segment 0, the point at 0/10000000 in
    // segment 4 (16 MiB names would be 2 and 0x10).
    let c = with_repository(8);
    let mut b = backup(t(10));
    for n in &mut b.nodes {
        n.wal_segment_size = Some(64 << 20);
    }
    let plan = restore_plan(
        &c,
        &all(true),
        &b,
        &point(0x1000_0000, t(20)),
        &data_dirs(&c),
        None,
        t(30),
    )
    .unwrap();
    let Some(Step::PrefetchWal {
        first,
        last,
        count,
        segment_size,
        ..
    }) = prefetch_of(&plan, 0)
    else {
        panic!("a prefetch step")
    };
    assert_eq!(
        (first.as_str(), last.as_str(), *count, *segment_size),
        (
            "000000010000000000000000",
            "000000010000000000000004",
            5,
            64 << 20
        )
    );
    // The worker is told the size.
    let fake = FakeBackend::new(c.clone());
    fake.init_data_dir("coordinator", false);
    let phase = Phase {
        title: "spool".into(),
        nodes: vec![NodePlan {
            node: "coordinator".into(),
            steps: vec![prefetch_of(&plan, 0).unwrap().clone()],
        }],
    };
    run_phases(&fake, &[phase], &RunOptions::default())
        .await
        .unwrap();
    let calls = fake.node_calls("coordinator");
    assert!(
        calls
            .iter()
            .any(|c| c.starts_with("start_prefetch") && c.ends_with(" 5 size=67108864")),
        "{calls:?}"
    );
}

#[test]
fn a_posix_folder_restore_has_no_prefetch_and_no_spool_removal() {
    let c = config();
    let plan = plan_to(&c, 0x3000000);
    assert!((0..3).all(|i| prefetch_of(&plan, i).is_none()));
    assert!(!plan.to_string().contains("prefetch"));
    let finish = FinishPlan::build(&c, &paused(), None).unwrap();
    assert!(!finish.to_string().contains("spool"), "{finish}");
    let abort = abort_of(&c, &plan);
    assert!(!abort.to_string().contains("spool"), "{abort}");
}

fn paused() -> Vec<crate::observe::NodeObservation> {
    let mut obs = all(true);
    for o in &mut obs {
        o.in_recovery = Some(true);
        o.pause_state = Some("paused".into());
    }
    obs
}

/// The data directories and the moved-aside ones, as after restore-start.
fn existing_after(c: &ClusterConfig) -> HashSet<PathBuf> {
    let mut existing = data_dirs(c);
    for n in c.nodes() {
        let stamp = crate::names::default_name(t(30));
        existing.insert(moved_aside_dir(c, &n.name, &stamp));
    }
    existing
}

#[test]
fn finish_and_abort_remove_the_spool_of_a_repository_restore() {
    let c = with_repository(8);
    let finish = FinishPlan::build(&c, &paused(), None).unwrap();
    let clean = finish.phases.last().unwrap();
    for np in &clean.nodes {
        let node = c.node(&np.node).unwrap();
        assert_eq!(
            np.steps[1..],
            [Step::RemoveSpool {
                pg_wal: c.data_dir(node).join("pg_wal")
            }],
            "after the recovery settings are gone"
        );
    }
    assert!(finish.to_string().contains(&format!(
        "remove the archive-get prefetch spool {}/pg_wal/{SPOOL_DIR} (its regular files only, never through a link)",
        c.data_dir(c.node("worker2").unwrap()).display()
    )));

    let plan = plan_to(&c, 0x3000000);
    let abort = abort_of(&c, &plan);
    for np in &abort.phases[0].nodes {
        let node = c.node(&np.node).unwrap();
        match &np.steps[..] {
            [Step::Stop, Step::RemoveSpool { pg_wal }, Step::MoveAside { from, .. }, Step::MoveAside { .. }, Step::Start { wait: true }] =>
            {
                assert_eq!(pg_wal, &c.data_dir(node).join("pg_wal"));
                assert_eq!(
                    from,
                    &c.data_dir(node),
                    "removed before the copy is moved aside"
                );
            }
            other => panic!("{other:?}"),
        }
    }
}

/// Neither step fails its plan: a prefetch that cannot start, a spool that cannot go.
#[tokio::test]
async fn the_spool_steps_are_best_effort() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = with_repository(8);
    c.backup_base_folder = tmp.path().join("backup");
    let fake = FakeBackend::new(c.clone());
    fake.init_data_dir("worker1", false);
    let pg_wal = c.data_dir(c.node("worker1").unwrap()).join("pg_wal");
    let phase = |steps: Vec<Step>| Phase {
        title: "spool".into(),
        nodes: vec![NodePlan {
            node: "worker1".into(),
            steps,
        }],
    };
    let prefetch = Step::PrefetchWal {
        pg_wal: pg_wal.clone(),
        first: "000000010000000000000002".into(),
        last: "000000010000000000000003".into(),
        count: 2,
        segment_size: crate::wal::DEFAULT_SEGMENT_SIZE,
    };
    let remove = Step::RemoveSpool {
        pg_wal: pg_wal.clone(),
    };
    let opts = RunOptions::default();
    run_phases(&fake, &[phase(vec![prefetch.clone()])], &opts)
        .await
        .unwrap();
    let window = pg_wal.join(SPOOL_DIR).join(".window");
    assert!(fake.host("worker1").paths.contains_key(&window));
    run_phases(&fake, &[phase(vec![remove.clone()])], &opts)
        .await
        .unwrap();
    assert!(!fake
        .host("worker1")
        .paths
        .keys()
        .any(|p| p.starts_with(pg_wal.join(SPOOL_DIR))));
    fake.fail("worker1", "start_prefetch", 2);
    fake.fail("worker1", "remove_spool", 2);
    run_phases(&fake, &[phase(vec![prefetch, remove])], &opts)
        .await
        .expect("failures are warnings");
    assert_eq!(
        fake.node_calls("worker1")
            .iter()
            .filter(|c| c.contains("(injected failure)"))
            .count(),
        2,
        "{:?}",
        fake.node_calls("worker1")
    );
}

/// The restore-abort plan of `plan`'s restore, every node restored and running.
fn abort_of(c: &ClusterConfig, plan: &RestorePlan) -> AbortPlan {
    let stamp = crate::names::default_name(t(40));
    AbortPlan::build(c, &all(true), &plan.state, &existing_after(c), &stamp).unwrap()
}
