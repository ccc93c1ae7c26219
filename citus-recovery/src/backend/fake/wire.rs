//! The fake's SQL: a loopback listener speaking just enough of PostgreSQL's wire protocol (trust
//! authentication, simple and extended queries, binary results) for `tokio_postgres` to connect,
//! and answers to the few statements the plans' waits and observations send, computed from the
//! fake server's state. Any other statement is an SQL error naming it.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::Inner;

const BOOL: i32 = 16;
const INT8: i32 = 20;
const TEXT: i32 = 25;
const VOID: i32 = 2278;
const TEXT_ARRAY: i32 = 1009;

/// A value in a result row.
enum Val {
    Bool(bool),
    Text(Option<String>),
    Int8(i64),
    Null,
}

impl Val {
    fn binary(&self) -> Option<Vec<u8>> {
        match self {
            Val::Bool(b) => Some(vec![u8::from(*b)]),
            Val::Text(t) => t.as_ref().map(|t| t.as_bytes().to_vec()),
            Val::Int8(i) => Some(i.to_be_bytes().to_vec()),
            Val::Null => None,
        }
    }
}

/// A statement the fake answers: its name in the call log, its parameter and column types.
struct Shape {
    name: &'static str,
    params: &'static [i32],
    columns: &'static [i32],
}

/// Which statement `sql` is, by its distinctive text.
fn shape(sql: &str) -> Option<Shape> {
    let s = |name, params, columns| {
        Some(Shape {
            name,
            params,
            columns,
        })
    };
    if sql.contains("pg_get_wal_replay_pause_state() ELSE ''") {
        s("pause_state", &[], &[BOOL, TEXT, TEXT])
    } else if sql.contains("pg_control_system()") && sql.contains("pg_extension") {
        s(
            "observe",
            &[],
            &[BOOL, TEXT, TEXT, TEXT, TEXT, TEXT, INT8, BOOL],
        )
    } else if sql.contains("unnest($1::text[])") {
        s("settings", &[TEXT_ARRAY], &[TEXT, TEXT])
    } else if sql.trim() == "SELECT pg_wal_replay_resume()" {
        s("resume", &[], &[VOID])
    } else if sql.contains("THEN '' ELSE pg_walfile_name(pg_current_wal_lsn())") {
        s("promotion_state", &[], &[BOOL, TEXT])
    } else if sql.trim() == "SELECT pg_reload_conf()" {
        s("reload", &[], &[BOOL])
    } else {
        None
    }
}

fn segment(timeline: u32) -> String {
    format!("{timeline:08X}0000000000000003")
}

/// Runs `shape` on `node`'s server; an error is the server's message.
fn answer(
    inner: &Mutex<Inner>,
    node: &str,
    data_dir: &Path,
    shape: &Shape,
) -> Result<Vec<Vec<Val>>, String> {
    let mut inner = inner.lock().unwrap_or_else(|e| e.into_inner());
    if inner.record(node, &format!("sql:{}", shape.name), String::new()) {
        return Err(format!(
            "injected failure of SQL {} (fake backend)",
            shape.name
        ));
    }
    let host = inner.hosts.entry(node.to_string()).or_default();
    let server = &mut host.server;
    let pause_state = if server.paused {
        "paused"
    } else {
        "not paused"
    };
    Ok(match shape.name {
        "pause_state" => vec![vec![
            Val::Bool(server.in_recovery),
            Val::Text(Some(
                if server.in_recovery { pause_state } else { "" }.into(),
            )),
            Val::Text(Some(server.replay_lsn.to_string())),
        ]],
        "observe" => vec![vec![
            Val::Bool(server.in_recovery),
            Val::Text(server.in_recovery.then(|| pause_state.to_string())),
            Val::Text(Some(server.replay_lsn.to_string())),
            Val::Text((!server.in_recovery).then(|| segment(server.timeline))),
            Val::Text(Some("15.18".into())),
            Val::Text(None),
            Val::Int8(7_000_000_000_000_000_000),
            Val::Bool(true),
        ]],
        "settings" => Vec::new(),
        "resume" => {
            if !server.in_recovery {
                return Err("recovery is not in progress".into());
            }
            // Resuming at a target whose action is pause promotes: recovery.signal goes.
            *server = super::FakeServer {
                running: true,
                in_recovery: false,
                paused: false,
                timeline: server.timeline + 1,
                replay_lsn: server.replay_lsn,
            };
            host.paths.remove(&data_dir.join("recovery.signal"));
            vec![vec![Val::Null]]
        }
        "promotion_state" => vec![vec![
            Val::Bool(server.in_recovery),
            Val::Text(Some(if server.in_recovery {
                String::new()
            } else {
                segment(server.timeline)
            })),
        ]],
        "reload" => vec![vec![Val::Bool(true)]],
        _ => unreachable!("every shape is answered"),
    })
}

fn message(out: &mut Vec<u8>, tag: u8, body: &[u8]) {
    out.push(tag);
    out.extend((body.len() as i32 + 4).to_be_bytes());
    out.extend(body);
}

fn error(out: &mut Vec<u8>, severity: &str, code: &str, text: &str) {
    let mut body = Vec::new();
    for (field, value) in [
        (b'S', severity),
        (b'V', severity),
        (b'C', code),
        (b'M', text),
    ] {
        body.push(field);
        body.extend(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    message(out, b'E', &body);
}

fn ready(out: &mut Vec<u8>) {
    message(out, b'Z', b"I");
}

/// Splits a NUL-terminated string off the front of `body`.
fn cstr(body: &mut &[u8]) -> String {
    let end = body.iter().position(|&b| b == 0).unwrap_or(body.len());
    let s = String::from_utf8_lossy(&body[..end]).into_owned();
    *body = body.get(end + 1..).unwrap_or_default();
    s
}

/// Accepts connections until the runtime ends.
pub(super) async fn serve(
    listener: TcpListener,
    inner: Arc<Mutex<Inner>>,
    data_dirs: HashMap<String, PathBuf>,
) {
    let data_dirs = Arc::new(data_dirs);
    while let Ok((socket, _)) = listener.accept().await {
        // Answers go out one message at a time: without this, Nagle's algorithm and delayed
        // acknowledgements hold each for tens of milliseconds.
        let _ = socket.set_nodelay(true);
        let (inner, data_dirs) = (inner.clone(), data_dirs.clone());
        tokio::spawn(async move {
            let _ = session(socket, &inner, &data_dirs).await;
        });
    }
}

fn running(inner: &Mutex<Inner>, node: &str) -> bool {
    let inner = inner.lock().unwrap_or_else(|e| e.into_inner());
    inner.hosts.get(node).is_some_and(|h| h.server.running)
}

/// One connection: the startup packet names the node as the database.
async fn session(
    mut socket: TcpStream,
    inner: &Mutex<Inner>,
    data_dirs: &HashMap<String, PathBuf>,
) -> io::Result<()> {
    let mut out = Vec::new();
    let node = loop {
        let len = socket.read_i32().await?;
        let mut body = vec![0; usize::try_from(len - 4).unwrap_or(0)];
        socket.read_exact(&mut body).await?;
        if body.get(..4) == Some(&80877103i32.to_be_bytes()[..]) {
            socket.write_all(b"N").await?; // no TLS
            continue;
        }
        let mut rest = &body[4..];
        let mut node = String::new();
        while !rest.is_empty() && rest[0] != 0 {
            let key = cstr(&mut rest);
            let value = cstr(&mut rest);
            if key == "database" {
                node = value;
            }
        }
        break node;
    };
    let Some(data_dir) = data_dirs.get(&node) else {
        error(
            &mut out,
            "FATAL",
            "3D000",
            &format!("database \"{node}\" does not exist"),
        );
        return socket.write_all(&out).await;
    };
    if !running(inner, &node) {
        error(
            &mut out,
            "FATAL",
            "57P03",
            "the database system is not running (fake)",
        );
        return socket.write_all(&out).await;
    }
    message(&mut out, b'R', &0i32.to_be_bytes());
    message(&mut out, b'K', &[0, 0, 0, 1, 0, 0, 0, 2]);
    ready(&mut out);
    socket.write_all(&out).await?;
    let mut statements: HashMap<String, String> = HashMap::new();
    let mut portals: HashMap<String, String> = HashMap::new();
    // After an error in an extended query, everything up to the next Sync is skipped.
    let mut skipping = false;
    loop {
        let tag = socket.read_u8().await?;
        let len = socket.read_i32().await?;
        let mut body = vec![0; usize::try_from(len - 4).unwrap_or(0)];
        socket.read_exact(&mut body).await?;
        let mut rest = &body[..];
        let mut out = Vec::new();
        if !running(inner, &node) {
            error(
                &mut out,
                "FATAL",
                "57P01",
                "terminating connection: the server stopped (fake)",
            );
            return socket.write_all(&out).await;
        }
        if skipping && tag != b'S' {
            continue;
        }
        match tag {
            b'X' => return Ok(()),
            b'S' => {
                skipping = false;
                ready(&mut out);
            }
            b'Q' => {
                let sql = cstr(&mut rest);
                if sql.trim_start().to_ascii_uppercase().starts_with("SET ") {
                    message(&mut out, b'C', b"SET\0");
                } else {
                    error(
                        &mut out,
                        "ERROR",
                        "0A000",
                        &format!("the fake server does not run {sql:?}"),
                    );
                }
                ready(&mut out);
            }
            b'P' => {
                let name = cstr(&mut rest);
                let sql = cstr(&mut rest);
                if shape(&sql).is_some() {
                    statements.insert(name, sql);
                    message(&mut out, b'1', b"");
                } else {
                    error(
                        &mut out,
                        "ERROR",
                        "0A000",
                        &format!("the fake server does not answer {sql:?}"),
                    );
                    skipping = true;
                }
            }
            b'D' => {
                let _kind = rest.first().copied();
                rest = &rest[1..];
                let name = cstr(&mut rest);
                let shape = statements.get(&name).and_then(|sql| shape(sql));
                let Some(shape) = shape else {
                    error(&mut out, "ERROR", "26000", "unknown statement");
                    skipping = true;
                    socket.write_all(&out).await?;
                    continue;
                };
                let mut params = (shape.params.len() as i16).to_be_bytes().to_vec();
                for oid in shape.params {
                    params.extend(oid.to_be_bytes());
                }
                message(&mut out, b't', &params);
                let mut cols = (shape.columns.len() as i16).to_be_bytes().to_vec();
                for (i, oid) in shape.columns.iter().enumerate() {
                    cols.extend(format!("c{i}\0").as_bytes());
                    cols.extend(0i32.to_be_bytes());
                    cols.extend(0i16.to_be_bytes());
                    cols.extend(oid.to_be_bytes());
                    cols.extend((-1i16).to_be_bytes());
                    cols.extend((-1i32).to_be_bytes());
                    cols.extend(1i16.to_be_bytes());
                }
                message(&mut out, b'T', &cols);
            }
            b'B' => {
                let portal = cstr(&mut rest);
                let statement = cstr(&mut rest);
                portals.insert(portal, statement);
                message(&mut out, b'2', b"");
            }
            b'E' => {
                let portal = cstr(&mut rest);
                let sql = portals
                    .get(&portal)
                    .and_then(|s| statements.get(s))
                    .cloned()
                    .unwrap_or_default();
                let shape = shape(&sql).expect("parsed statements have a shape");
                match answer(inner, &node, data_dir, &shape) {
                    Ok(rows) => {
                        for row in &rows {
                            let mut body = (row.len() as i16).to_be_bytes().to_vec();
                            for v in row {
                                match v.binary() {
                                    Some(b) => {
                                        body.extend((b.len() as i32).to_be_bytes());
                                        body.extend(b);
                                    }
                                    None => body.extend((-1i32).to_be_bytes()),
                                }
                            }
                            message(&mut out, b'D', &body);
                        }
                        message(
                            &mut out,
                            b'C',
                            format!("SELECT {}\0", rows.len()).as_bytes(),
                        );
                    }
                    Err(text) => {
                        error(&mut out, "ERROR", "55000", &text);
                        skipping = true;
                    }
                }
            }
            b'C' => message(&mut out, b'3', b""),
            b'H' => {}
            other => {
                error(
                    &mut out,
                    "ERROR",
                    "08P01",
                    &format!("unexpected message {:?}", other as char),
                );
                skipping = true;
            }
        }
        socket.write_all(&out).await?;
    }
}
