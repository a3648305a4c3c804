// SPDX-License-Identifier: GPL-2.0
//! Real IRC servers (Debian's ngircd and InspIRCd) as peers, started and stopped by
//! `tests/scripts/irc-peer.sh` with the repository's configuration; a test whose server is
//! not installed says so (`SKIPPED: ...`) and passes.

use std::{
    env,
    io::Write,
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::Command,
    thread,
};

/// A running IRC server, stopped (and its directory removed) when dropped.
pub struct Peer {
    pub server: &'static str,
    pub addr: SocketAddr,
    dir: PathBuf,
}

/// The repository's `tests/scripts/irc-peer.sh`.
fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/scripts/irc-peer.sh")
}

/// Says that the running test is skipped, and why, in one line to stderr that the test
/// harness does not capture: `SKIPPED: WHY [TEST]`.
pub fn skip(why: &str) {
    let test = thread::current().name().unwrap_or("?").to_string();
    let line = format!("SKIPPED: {why} [{test}]\n");
    // Written to the stream itself in one piece: `eprintln!` would be captured.
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// True if `server`'s binary is where irc-peer.sh looks: `$NGIRCD` / `$INSPIRCD`, PATH,
/// /usr/sbin, /sbin.
fn installed(server: &str) -> bool {
    if let Some(b) = env::var_os(server.to_uppercase()) {
        return Path::new(&b).exists();
    }
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .any(|d| d.join(server).exists())
}

/// A port nobody listens on now.
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("local addr").port()
}

impl Peer {
    /// Starts `server` (`ngircd` or `inspircd`) on a free loopback port; `None`, after
    /// saying the test is skipped, if it is not installed.
    pub fn start(server: &'static str) -> Option<Self> {
        if !installed(server) {
            skip(&format!("{server} is not installed"));
            return None;
        }
        let port = free_port();
        let dir = env::temp_dir().join(format!("kchat-irc-{server}-{port}-{}", std::process::id()));
        let out = Command::new(script())
            .args(["start", server, &port.to_string()])
            .env("KCHAT_IRC_PEER_DIR", &dir)
            .output()
            .expect("run irc-peer.sh");
        assert!(
            out.status.success(),
            "irc-peer.sh start {server}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(Self {
            server,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
        })
    }

    /// The server's own log so far (what it said about clients it dropped, for one).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log"))
            .or_else(|_| std::fs::read_to_string(self.dir.join("inspircd.log")))
            .unwrap_or_default()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = Command::new(script())
            .args(["stop", self.server, &self.addr.port().to_string()])
            .env("KCHAT_IRC_PEER_DIR", &self.dir)
            .status();
    }
}
