//! A real `redis-server` on a free loopback port, and a TCP proxy in front
//! of it that adds latency or drops connections.
#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    missing_debug_implementations
)]

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};

/// A `redis-server` owned by the test (killed on drop).
pub struct Redis {
    pub port: u16,
    child: Option<Child>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether `redis-server` can run here; says why not when it cannot.
fn installed() -> bool {
    let found = std::process::Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok();
    if !found {
        eprintln!("SKIPPED: redis-server not found (apt-get install -y redis-server)");
    }
    found
}

impl Redis {
    /// Starts a server, or `None` (with a message) when `redis-server` is
    /// not installed.
    pub async fn start() -> Option<Redis> {
        if !installed() {
            return None;
        }
        let mut redis = Redis {
            port: free_port(),
            child: None,
        };
        redis.up().await;
        Some(redis)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// (Re)starts the server on the same port and waits until it answers.
    pub async fn up(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        for _ in 0..500 {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)).await {
                let _ = s.write_all(b"PING\r\n").await;
                let mut buf = [0u8; 7];
                if s.read_exact(&mut buf).await.is_ok() && &buf == b"+PONG\r\n" {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    /// Kills the server.
    pub async fn down(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }
}

/// A TCP proxy to `target` that can add latency to each chunk or drop
/// every connection.
#[derive(Clone)]
pub struct Proxy {
    pub addr: SocketAddr,
    latency_ms: Arc<AtomicU64>,
    dropping: Arc<AtomicBool>,
    generation: Arc<AtomicU64>,
}

impl Proxy {
    pub async fn start(target_port: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = Proxy {
            addr: listener.local_addr().unwrap(),
            latency_ms: Arc::new(AtomicU64::new(0)),
            dropping: Arc::new(AtomicBool::new(false)),
            generation: Arc::new(AtomicU64::new(0)),
        };
        let p = proxy.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if p.dropping.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let p = p.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(("127.0.0.1", target_port)).await else {
                        return;
                    };
                    let gen = p.generation.load(Ordering::SeqCst);
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    let a = tokio::spawn(pipe(cr, sw, p.clone(), gen));
                    let b = tokio::spawn(pipe(sr, cw, p.clone(), gen));
                    let _ = tokio::join!(a, b);
                });
            }
        });
        proxy
    }

    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    pub fn set_latency(&self, latency: Duration) {
        self.latency_ms
            .store(latency.as_millis() as u64, Ordering::SeqCst);
    }

    /// Drops every open connection and refuses new ones while `on`.
    pub fn set_dropping(&self, on: bool) {
        self.dropping.store(on, Ordering::SeqCst);
        if on {
            self.generation.fetch_add(1, Ordering::SeqCst);
        }
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    p: Proxy,
    gen: u64,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = tokio::select! {
            n = from.read(&mut buf) => match n { Ok(0) | Err(_) => return, Ok(n) => n },
            () = tokio::time::sleep(Duration::from_millis(20)) => {
                if p.generation.load(Ordering::SeqCst) != gen { return; }
                continue;
            }
        };
        let latency = p.latency_ms.load(Ordering::SeqCst);
        if latency > 0 {
            tokio::time::sleep(Duration::from_millis(latency)).await;
        }
        if p.generation.load(Ordering::SeqCst) != gen || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Polls `cond` every 5 ms until it holds or `within` passes; returns how
/// long it took.
pub async fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let start = tokio::time::Instant::now();
    while start.elapsed() < within {
        if cond() {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cond().then(|| start.elapsed())
}

/// A Redis Cluster of `n` `redis-server`s on free loopback ports, owned
/// by the test (killed on drop): cluster mode on, the 16,384 slots split
/// between the nodes (`CLUSTER ADDSLOTSRANGE`), the nodes introduced to
/// each other (`CLUSTER MEET`), ready once every node says
/// `cluster_state:ok`.
pub struct Cluster {
    pub ports: Vec<u16>,
    _children: Vec<Child>,
    _dir: TempDir,
}

/// A directory removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Sends one command (RESP, inline arguments) and reads one reply line or
/// bulk string.
pub async fn command(port: u16, args: &[&str]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).await.unwrap();
        out.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&out);
        let done = match text.as_bytes().first() {
            Some(b'$') => text.find("\r\n").is_some_and(|i| {
                let len: i64 = text[1..i].parse().unwrap_or(-1);
                len < 0 || out.len() >= i + 2 + len as usize + 2
            }),
            _ => text.ends_with("\r\n"),
        };
        if n == 0 || done {
            return text.into_owned();
        }
    }
}

impl Cluster {
    /// Starts the cluster, or `None` (with a message) when `redis-server`
    /// is not installed.
    pub async fn start(n: usize) -> Option<Cluster> {
        if !installed() {
            return None;
        }
        let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let dir = std::env::temp_dir().join(format!(
            "bulwark-cluster-{}-{}",
            std::process::id(),
            ports[0]
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let dir = TempDir(dir);
        let mut children = Vec::new();
        for port in &ports {
            let conf = dir.0.join(format!("nodes-{port}.conf"));
            children.push(
                Command::new("redis-server")
                    .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                    .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
                    .args(["--cluster-enabled", "yes"])
                    .arg("--cluster-config-file")
                    .arg(&conf)
                    .arg("--dir")
                    .arg(&dir.0)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .kill_on_drop(true)
                    .spawn()
                    .expect("spawn redis-server"),
            );
        }
        for port in &ports {
            let mut up = false;
            for _ in 0..500 {
                if let Ok(mut s) = TcpStream::connect(("127.0.0.1", *port)).await {
                    let _ = s.write_all(b"PING\r\n").await;
                    let mut buf = [0u8; 7];
                    if s.read_exact(&mut buf).await.is_ok() && &buf == b"+PONG\r\n" {
                        up = true;
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert!(up, "redis-server (cluster) did not start on port {port}");
        }
        // Split the slots evenly.
        let per = 16384 / n;
        for (i, port) in ports.iter().enumerate() {
            let from = i * per;
            let to = if i + 1 == n { 16383 } else { from + per - 1 };
            let reply = command(
                *port,
                &[
                    "CLUSTER",
                    "ADDSLOTSRANGE",
                    &from.to_string(),
                    &to.to_string(),
                ],
            )
            .await;
            assert!(reply.starts_with("+OK"), "ADDSLOTSRANGE on {port}: {reply}");
        }
        for port in &ports[1..] {
            let reply = command(
                ports[0],
                &["CLUSTER", "MEET", "127.0.0.1", &port.to_string()],
            )
            .await;
            assert!(reply.starts_with("+OK"), "MEET {port}: {reply}");
        }
        let mut ok = false;
        for _ in 0..1000 {
            let mut all = true;
            for port in &ports {
                let info = command(*port, &["CLUSTER", "INFO"]).await;
                all &= info.contains("cluster_state:ok")
                    && info.contains(&format!("cluster_known_nodes:{n}"));
            }
            if all {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            ok,
            "the cluster on {ports:?} did not reach cluster_state:ok"
        );
        Some(Cluster {
            ports,
            _children: children,
            _dir: dir,
        })
    }

    /// The `redis+cluster://` URL of every node.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+cluster://{}", nodes.join(","))
    }

    /// The port of the node serving `key`'s slot (`CLUSTER KEYSLOT`, then
    /// `CLUSTER SLOTS` read by hand: the node whose range holds it).
    pub async fn node_of(&self, key: &str) -> u16 {
        let slot: u16 = command(self.ports[0], &["CLUSTER", "KEYSLOT", key])
            .await
            .trim_start_matches(':')
            .trim()
            .parse()
            .unwrap();
        let n = self.ports.len();
        let per = 16384 / n;
        self.ports[(usize::from(slot) / per).min(n - 1)]
    }
}
