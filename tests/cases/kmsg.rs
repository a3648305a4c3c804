//! Reading the guest's kernel log through `/dev/kmsg`.

use std::{
    fs::File,
    io::{self, Read, Seek, SeekFrom},
    os::unix::fs::OpenOptionsExt,
    thread,
    time::{Duration, Instant},
};

/// A reader of kernel log records written after it was created.
pub struct Kmsg {
    file: File,
    /// Every record text read so far.
    seen: Vec<String>,
}

impl Kmsg {
    /// Starts reading at the end of the log: only later records are seen.
    pub fn from_now() -> io::Result<Self> {
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/kmsg")?;
        file.seek(SeekFrom::End(0))?;
        Ok(Self {
            file,
            seen: Vec::new(),
        })
    }

    /// Reads every record available now.
    pub fn poll(&mut self) -> &[String] {
        let mut buf = vec![0u8; 16384];
        loop {
            match self.file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let rec = String::from_utf8_lossy(&buf[..n]);
                    // "prio,seq,usec,flags;text\n KEY=value\n..."
                    let first = rec.lines().next().unwrap_or("");
                    let text = first.split_once(';').map_or(first, |(_, t)| t);
                    self.seen.push(text.to_string());
                }
                // EPIPE: records were overwritten before we read them; carry on.
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
                Err(_) => break,
            }
        }
        &self.seen
    }

    /// Waits until a record satisfies `pred`, returning it.
    pub fn wait_for(&mut self, timeout: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            self.poll();
            if let Some(line) = self.seen.iter().find(|l| pred(l)) {
                return Some(line.clone());
            }
            if Instant::now() > deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for a record containing `needle`.
    pub fn wait_contains(&mut self, needle: &str, timeout: Duration) -> Result<String, String> {
        self.wait_for(timeout, |l| l.contains(needle))
            .ok_or_else(|| format!("no kernel log line containing {needle:?} within {timeout:?}"))
    }

    /// Every record read so far, after reading what is available now.
    pub fn records(&mut self) -> Vec<String> {
        self.poll().to_vec()
    }
}
