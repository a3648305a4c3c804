//! Helpers shared by the cases: loading kchat, connecting clients, reading its stats view.

use std::{
    collections::HashMap,
    thread,
    time::{Duration, Instant},
};

use kchat_proto::Conn;

use crate::{kmsg::Kmsg, module};

/// Where kchat listens in the guest (the default port).
pub const ADDR: &str = "127.0.0.1:10106";

/// A generous bound for one step of a case; TCG guests are slow and shared machines noisy.
pub const STEP: Duration = Duration::from_secs(20);

/// Fails the case with a formatted reason unless `cond` holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err(format!($($arg)+));
        }
    };
}

/// Turns any error into a case failure with context.
pub trait Context<T> {
    fn ctx(self, what: &str) -> Result<T, String>;
}

impl<T, E: std::fmt::Display> Context<T> for Result<T, E> {
    fn ctx(self, what: &str) -> Result<T, String> {
        self.map_err(|e| format!("{what}: {e}"))
    }
}

/// Loads kchat with `params` and waits for its start line; returns a log reader that started
/// just before the load.
pub fn start(params: &str) -> Result<Kmsg, String> {
    let mut log = Kmsg::from_now().ctx("open /dev/kmsg")?;
    module::load(params).ctx(&format!("insmod kchat.ko {params}"))?;
    log.wait_contains("kchat: listening on", STEP)?;
    Ok(log)
}

/// Connects a client to kchat.
pub fn connect() -> Result<Conn, String> {
    Conn::connect(ADDR).ctx("connect to kchat")
}

/// A client's default label as the server shows it: `ip:port`.
pub fn label(c: &Conn) -> String {
    c.local_addr().map(|a| a.to_string()).unwrap_or_default()
}

/// The counters of /sys/kernel/debug/kchat/stats.
pub fn stats() -> Result<HashMap<String, u64>, String> {
    let text = std::fs::read_to_string("/sys/kernel/debug/kchat/stats").ctx("read kchat stats")?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once(": "))
        .filter_map(|(k, v)| Some((k.to_string(), v.trim().parse().ok()?)))
        .collect())
}

/// One counter of the stats view.
pub fn stat(name: &str) -> Result<u64, String> {
    counter(&stats()?, name)
}

/// Counter `name` of a stats view read by [`stats`].
fn counter(all: &HashMap<String, u64>, name: &str) -> Result<u64, String> {
    all.get(name)
        .copied()
        .ok_or_else(|| format!("no {name} in kchat stats"))
}

/// Counters `names` once they have stopped moving: two reads 50 ms apart agree.
///
/// kchat counts a send after `sendmsg` returns, so a client may hold the bytes before the
/// counters show them, and the view reads its counters one at a time: comparing two
/// counters read while a send is being counted can be off by one either way.
pub fn settled_stats<const N: usize>(names: [&str; N]) -> Result<[u64; N], String> {
    let read = || -> Result<[u64; N], String> {
        let all = stats()?;
        let mut v = [0; N];
        for (slot, name) in v.iter_mut().zip(names) {
            *slot = counter(&all, name)?;
        }
        Ok(v)
    };
    let deadline = Instant::now() + STEP;
    let mut last = read()?;
    loop {
        thread::sleep(Duration::from_millis(50));
        let now = read()?;
        if now == last {
            return Ok(now);
        }
        if Instant::now() > deadline {
            return Err(format!("{names:?} still moving after {STEP:?}: {now:?}"));
        }
        last = now;
    }
}

/// Waits until the stats view shows `n` connected clients.
pub fn wait_clients(n: u64, timeout: Duration) -> Result<(), String> {
    wait_stat("clients_now", n, timeout)
}

/// Waits until counter `name` equals `want`.
pub fn wait_stat(name: &str, want: u64, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        let v = stat(name)?;
        if v == want {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{name} is {v}, expected {want} within {timeout:?}"));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A field of /proc/meminfo, in KiB.
pub fn meminfo(field: &str) -> Result<u64, String> {
    let text = std::fs::read_to_string("/proc/meminfo").ctx("read /proc/meminfo")?;
    text.lines()
        .find_map(|l| {
            let rest = l.strip_prefix(field)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .ok_or_else(|| format!("no {field} in /proc/meminfo"))
}

/// Expects the next frame on `c` to be exactly `want`.
pub fn expect_frame(c: &mut Conn, want: &str) -> Result<(), String> {
    let got = c.recv_text(STEP).ctx(&format!("waiting for {want:?}"))?;
    ensure!(got == want, "received {got:?}, expected {want:?}");
    Ok(())
}

/// Expects no frame on `c` for `quiet`.
pub fn expect_silence(c: &mut Conn, quiet: Duration) -> Result<(), String> {
    match c.recv_timeout(quiet) {
        Ok(None) => Ok(()),
        Ok(Some(f)) => Err(format!(
            "unexpected frame {:?}",
            String::from_utf8_lossy(&f)
        )),
        Err(e) => Err(format!("unexpected error {e}")),
    }
}

/// Where kchat listens for IPv6 clients in the guest: the same dual-stack listener as [`ADDR`].
pub const ADDR6: &str = "[::1]:10106";

/// Connects an IPv6 client to kchat.
pub fn connect6() -> Result<Conn, String> {
    Conn::connect(ADDR6).ctx("connect to kchat over IPv6")
}

/// Sends `text` as one frame.
pub fn say(c: &mut Conn, text: &str) -> Result<(), String> {
    c.send(text.as_bytes()).ctx(&format!("send {text:?}"))
}

/// Sends `cmd` and expects `reply` as the next frame.
pub fn ask(c: &mut Conn, cmd: &str, reply: &str) -> Result<(), String> {
    say(c, cmd)?;
    expect_frame(c, reply).map_err(|e| format!("after {cmd:?}: {e}"))
}

/// Expects the next frames on `c` to be exactly `want`, in order.
pub fn expect_frames<S: AsRef<str>>(c: &mut Conn, want: &[S]) -> Result<(), String> {
    for w in want {
        expect_frame(c, w.as_ref())?;
    }
    Ok(())
}

/// Receives frames until one satisfies `pred` and returns it; the frames before it are
/// returned too, in order.
pub fn recv_until(
    c: &mut Conn,
    what: &str,
    pred: impl Fn(&str) -> bool,
) -> Result<(String, Vec<String>), String> {
    let mut before = Vec::new();
    loop {
        let f = c.recv_text(STEP).ctx(&format!("waiting for {what}"))?;
        if pred(&f) {
            return Ok((f, before));
        }
        before.push(f);
    }
}

/// The header of /sys/kernel/debug/kchat/rooms.
pub const ROOMS_HEADER: &str = "name members relayed history_msgs history_bytes";

/// The header of /sys/kernel/debug/kchat/clients.
pub const CLIENTS_HEADER: &str = "id label peer room bytes_in bytes_out queued_bytes socket_wmem";

/// The rows of the debugfs table `name` (one of kchat's files), split into fields, after
/// checking its header is exactly `header` and every row has as many fields.
pub fn debugfs_table(name: &str, header: &str) -> Result<Vec<Vec<String>>, String> {
    let path = format!("/sys/kernel/debug/kchat/{name}");
    let text = std::fs::read_to_string(&path).ctx(&format!("read {path}"))?;
    let mut lines = text.lines();
    let first = lines.next().unwrap_or_default();
    ensure!(
        first.split_whitespace().eq(header.split_whitespace()),
        "{path} header is {first:?}, expected {header:?}"
    );
    let width = header.split_whitespace().count();
    let mut rows = Vec::new();
    for line in lines {
        let row: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        ensure!(row.len() == width, "bad line in {path}: {line:?}");
        rows.push(row);
    }
    Ok(rows)
}

/// The rooms file's rows: name, members, relayed, history_msgs, history_bytes.
pub fn room_rows() -> Result<Vec<Vec<String>>, String> {
    debugfs_table("rooms", ROOMS_HEADER)
}

/// The room names the rooms file lists, in its order.
pub fn room_names() -> Result<Vec<String>, String> {
    Ok(room_rows()?
        .into_iter()
        .map(|mut r| r.swap_remove(0))
        .collect())
}

/// Each client's room by label, from the clients file.
pub fn rooms_by_label() -> Result<HashMap<String, String>, String> {
    Ok(debugfs_table("clients", CLIENTS_HEADER)?
        .into_iter()
        .map(|r| (r[1].clone(), r[3].clone()))
        .collect())
}
