//! Hostile NATS peers on loopback, speaking the text protocol (INFO, CONNECT, PING/PONG, SUB,
//! PUB/HPUB, MSG, -ERR) from plain threads: what a malicious server, or anyone on the path of a
//! `nats://` connection, can send (review findings N1, N7, N8).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// What the fake does with each connection.
#[derive(Clone, Copy, Debug)]
pub enum Mode {
    /// INFO, then `-ERR` carrying terminal escape sequences in answer to CONNECT.
    EscapeErr,
    /// INFO; on the first SUB, a MSG to it declaring 2^64-1 bytes (the client's size arithmetic
    /// overflows); later connections are silent.
    HugeDeclaredMsg,
    /// INFO; on the first SUB, a MSG declaring 1.5 GiB and then that many bytes, as fast as the
    /// client reads (or until `stop`).
    HugeMsg,
}

pub struct Fake {
    pub port: u16,
    pub connections: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

const INFO: &str = "INFO {\"server_id\":\"FAKE\",\"server_name\":\"fake\",\"version\":\"2.10.0\",\
\"proto\":1,\"headers\":true,\"max_payload\":1048576,\"jetstream\":true}\r\n";

impl Fake {
    pub fn start(mode: Mode) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicU64::new(0));
        let (s, c) = (stop.clone(), connections.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let n = c.fetch_add(1, Ordering::SeqCst);
                let s = s.clone();
                std::thread::spawn(move || {
                    let _ = serve(conn, mode, n, &s);
                });
            }
        });
        Self {
            port,
            connections,
            stop,
        }
    }

    pub fn url(&self, subject: &str) -> String {
        format!("nats://127.0.0.1:{}/{subject}", self.port)
    }
}

fn serve(conn: TcpStream, mode: Mode, n: u64, stop: &AtomicBool) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut out = conn.try_clone()?;
    let mut reader = BufReader::new(conn);
    out.write_all(INFO.as_bytes())?;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.first().copied() {
            Some("CONNECT") => {
                if let Mode::EscapeErr = mode {
                    out.write_all(
                        b"-ERR 'Authorization Violation \x1b]0;PWNED-NATS\x07\x1b[31mRED\x1b[0m'\r\n",
                    )?;
                    let _ = out.shutdown(Shutdown::Both);
                    return Ok(());
                }
            }
            Some("PING") => out.write_all(b"PONG\r\n")?,
            Some("PUB") | Some("HPUB") => {
                let size: usize = words.last().and_then(|w| w.parse().ok()).unwrap_or(0);
                let mut body = vec![0u8; size + 2];
                reader.read_exact(&mut body)?;
            }
            Some("SUB") if n == 0 => {
                let (subject, sid) = (words[1], words[words.len() - 1]);
                let subject = subject.replace('*', "x");
                match mode {
                    Mode::HugeDeclaredMsg => {
                        out.write_all(
                            format!("MSG {subject} {sid} 18446744073709551615\r\n").as_bytes(),
                        )?;
                    }
                    Mode::HugeMsg => {
                        out.write_all(format!("MSG {subject} {sid} 1610612736\r\n").as_bytes())?;
                        let chunk = vec![b'A'; 1 << 20];
                        for _ in 0..1536 {
                            if stop.load(Ordering::SeqCst) {
                                return Ok(());
                            }
                            out.write_all(&chunk)?;
                        }
                    }
                    Mode::EscapeErr => {}
                }
            }
            _ => {}
        }
    }
}

/// A TCP relay: the first connection goes to `first` and is cut after `cut_after`; every later
/// one goes to `later` (a server switched to TLS-only, as seen from a `nats://` sensor).
pub struct Flip {
    pub port: u16,
}

impl Flip {
    pub fn start(first: u16, later: u16, cut_after: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for (n, conn) in listener.incoming().enumerate() {
                let Ok(conn) = conn else { continue };
                let to = if n == 0 { first } else { later };
                let Ok(upstream) = TcpStream::connect(("127.0.0.1", to)) else {
                    continue;
                };
                let (a, b) = (conn.try_clone().unwrap(), upstream.try_clone().unwrap());
                let (c, d) = (conn.try_clone().unwrap(), upstream.try_clone().unwrap());
                std::thread::spawn(move || copy(conn, upstream));
                std::thread::spawn(move || copy(b, a));
                if n == 0 {
                    std::thread::spawn(move || {
                        std::thread::sleep(cut_after);
                        let _ = c.shutdown(Shutdown::Both);
                        let _ = d.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Self { port }
    }
}

fn copy(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Both);
}
