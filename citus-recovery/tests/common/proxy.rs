//! A TCP forwarder on 127.0.0.1 in front of the S3 test server, which a test can take down and
//! bring up again on the same port: "the S3 server is stopped" for the tool and the servers,
//! while moto (which keeps objects only in memory) keeps what was stored before.

#![allow(dead_code)] // each test binary uses a different part

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// A forwarder from a port of its own to `127.0.0.1:<target>`.
pub struct Proxy {
    port: u16,
    target: u16,
    running: Option<Running>,
    /// Connections accepted so far (while up).
    pub accepted: Arc<AtomicUsize>,
}

struct Running {
    stop: Arc<AtomicBool>,
    accept: JoinHandle<()>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    /// Starts forwarding from a free port to `target`.
    pub fn start(target: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port on 127.0.0.1");
        let port = listener.local_addr().unwrap().port();
        let mut proxy = Proxy {
            port,
            target,
            running: None,
            accepted: Arc::new(AtomicUsize::new(0)),
        };
        proxy.serve(listener);
        proxy
    }

    /// The URL to give clients.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops listening and cuts every open connection: clients get "connection refused".
    pub fn down(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop.store(true, Ordering::SeqCst);
            // Wakes the blocking accept.
            let _ = TcpStream::connect(("127.0.0.1", self.port));
            let _ = r.accept.join();
            for c in r.conns.lock().unwrap().drain(..) {
                let _ = c.shutdown(Shutdown::Both);
            }
        }
    }

    /// Listens again on the same port.
    pub fn up(&mut self) {
        if self.running.is_some() {
            return;
        }
        let mut last = None;
        // The old socket may linger for a moment.
        for _ in 0..50 {
            match TcpListener::bind(("127.0.0.1", self.port)) {
                Ok(l) => return self.serve(l),
                Err(e) => last = Some(e),
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("cannot listen on 127.0.0.1:{} again: {last:?}", self.port);
    }

    fn serve(&mut self, listener: TcpListener) {
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (target, accepted) = (self.target, self.accepted.clone());
        let accept = {
            let (stop, conns) = (stop.clone(), conns.clone());
            std::thread::spawn(move || {
                for client in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(client) = client else { continue };
                    let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                        continue;
                    };
                    accepted.fetch_add(1, Ordering::SeqCst);
                    let mut list = conns.lock().unwrap();
                    for s in [&client, &server] {
                        if let Ok(c) = s.try_clone() {
                            list.push(c);
                        }
                    }
                    pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                    pipe(server, client);
                }
            })
        };
        self.running = Some(Running {
            stop,
            accept,
            conns,
        });
    }
}

/// Copies `from` to `to` on a thread until either side closes.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 64 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.down();
    }
}
