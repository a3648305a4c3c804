// SPDX-License-Identifier: GPL-2.0
//! The `kchat-bridge` process under test: started with a secret file, its stderr collected
//! line by line (and shown, prefixed, when a test fails), killed when dropped.

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::Duration,
};

use super::{kchat::FakeKchat, wait_for, SECRET};

/// A running bridge.
pub struct Bridge {
    pub node: String,
    child: Option<Child>,
    log: Arc<Mutex<Vec<String>>>,
    secret_file: PathBuf,
}

/// The binary cargo built for these tests.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_kchat-bridge")
}

/// Writes `text` to a fresh secret file.
pub fn secret_file(tag: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "kchat-bridge-test-{}-{tag}-{}",
        std::process::id(),
        super::free_port()
    ));
    std::fs::write(&path, text).expect("write the secret file");
    path
}

impl Bridge {
    /// Starts the bridge of `kchat`'s node, to the NATS servers on `nats_ports` (in that
    /// order), with `extra` options.
    pub fn start(kchat: &FakeKchat, nats_ports: &[u16], extra: &[&str]) -> Self {
        let urls: Vec<String> = nats_ports
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect();
        let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
        Self::start_urls(kchat, &urls, extra)
    }

    /// Starts the bridge of `kchat`'s node, to the NATS servers `urls`, with `extra` options.
    pub fn start_urls(kchat: &FakeKchat, urls: &[&str], extra: &[&str]) -> Self {
        let secret_file = secret_file(&kchat.node, &format!("{SECRET}\n"));
        let mut child = Command::new(binary())
            .arg("--kchat")
            .arg(format!("127.0.0.1:{}", kchat.port))
            .arg("--link-secret-file")
            .arg(&secret_file)
            .args(["--node", &kchat.node, "--nats", &urls.join(",")])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start kchat-bridge");
        let log = Arc::new(Mutex::new(Vec::new()));
        {
            let (log, stderr) = (log.clone(), child.stderr.take().unwrap());
            thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    eprintln!("| {line}");
                    log.lock().unwrap().push(line);
                }
            });
        }
        Self {
            node: kchat.node.clone(),
            child: Some(child),
            log,
            secret_file,
        }
    }

    /// The log lines so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Waits up to `timeout` for a log line containing `text`.
    pub fn wait_log(&self, timeout: Duration, text: &str) -> bool {
        self.wait_log_count(timeout, text, 1)
    }

    /// Waits up to `timeout` for `n` log lines containing `text` (the `n`th reconnection,
    /// not an earlier one).
    pub fn wait_log_count(&self, timeout: Duration, text: &str, n: usize) -> bool {
        wait_for(timeout, || self.count_log(text) >= n)
    }

    /// How many log lines contain `text`.
    pub fn count_log(&self, text: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(text))
            .count()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Resident memory, KiB (from /proc).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmRSS")
    }

    /// Kills the process at once (SIGKILL: it says nothing to anyone).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("running");
        let ok = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .expect("run kill");
        assert!(ok.success());
        let status = c.wait().expect("wait");
        // Let the stderr reader take the last lines.
        wait_for(Duration::from_secs(5), || {
            self.log
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains("exiting"))
        });
        status
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.secret_file);
    }
}
