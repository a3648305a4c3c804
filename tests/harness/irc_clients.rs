//! The `irc-clients` host step: real IRC clients from Debian (ii, sic, WeeChat headless,
//! irssi in tmux) and the native `kchat` client, all on the host, chat through the ports
//! forwarded to the guest's kchat (6667 for IRC, 10106 for the native protocol).
//!
//! The scenario, every client in `#lobby` at once:
//! - the native client (nick `hostnat`) connects and names the IRC nicks to expect in a
//!   message (`irc-clients: iiuser sicuser weeuser irssiuser`, for the guest's observer); the
//!   IRC clients connect and join `#lobby` one by one, the native client seeing each join
//!   (`* NICK joined`);
//! - the native client says `hello from hostnat` and every IRC client shows it; each IRC
//!   client says `hello from NICK` and the native client (`NICK: hello from NICK`) and the other
//!   IRC clients show it; ii and the native client exchange a private message both ways;
//! - the native client becomes `hostnat2` and every IRC client shows it; each IRC client
//!   becomes `NICK2` and the native client (`* NICK is now NICK2`) and the others show it;
//! - the IRC clients but the last (irssi when it runs) quit one by one, the native client
//!   (`* NICK2 left`) and the remaining ones seeing each quit; then the native client leaves,
//!   which the last one shows; irssi's screen is checked (`tmux capture-pane`) and it quits.
//!
//! Afterwards each IRC client's raw log (ii's and sic's standard output, irssi's `/rawlog`, a
//! WeeChat trigger on `irc_raw_in`) must hold its welcome (`001`) and no error numeric (4xx,
//! 5xx) but two: `422` (kchat has no MOTD) and a `451` before the welcome (irssi's `JOIN :`
//! probe for servers without CAP waits for it); with the guest's nickless observer in
//! `#lobby`, its NAMES must show a `kchat-ID`. A client not installed here is reported
//! skipped, never passed (`KCHAT_IRC_CLIENTS=ii,irssi` or `none` runs only those). Every
//! client runs with a home of its own under the step's directory, never the user's, and
//! every wait is bounded (20 s each, the whole scenario 100 s).

use std::{
    collections::HashMap,
    fs,
    io::{self, BufRead, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use super::Outcome;

/// The native client's nick, and the one it changes to.
pub const NATIVE_NICK: &str = "hostnat";
const NATIVE_NICK2: &str = "hostnat2";

/// The longest any one wait of the scenario may take (a TCG guest is slow).
const STEP_WAIT: Duration = Duration::from_secs(20);

/// What the step needs.
pub struct Setup {
    /// The native side: the `kchat` client against the guest (or a stand-in in tests).
    pub native: Box<dyn Native>,
    /// The host port that reaches kchat's IRC port.
    pub irc_port: u16,
    /// The step's directory (emptied first): every client's home and logs.
    pub work: PathBuf,
    /// Whether a native client without a nick is in `#lobby` (the guest's observer): then
    /// every IRC client must see a `kchat-ID` member in the NAMES of `#lobby`.
    pub expect_kchat_id: bool,
    /// The whole scenario's time limit.
    pub budget: Duration,
}

/// The native side of the scenario, which speaks and is shown in kchat's native formats.
pub trait Native: Send {
    /// Returns once the client is connected, named and in `#lobby`.
    fn ready(&mut self, timeout: Duration) -> Result<(), String>;
    /// Sends one line as a user would type it (`/nick X`, `/msg N T` or a chat message).
    fn send(&mut self, line: &str) -> Result<(), String>;
    /// Every line received so far, as the `kchat` client prints them.
    fn lines(&self) -> Vec<String>;
    /// Leaves (closes the connection); returns once the client is gone.
    fn leave(&mut self, timeout: Duration) -> Result<(), String>;
}

/// The `kchat` client in scripted mode: lines to its stdin, frames from its stdout.
pub struct KchatClient {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Arc<Mutex<Vec<String>>>,
}

impl KchatClient {
    /// Starts `kchat --nick hostnat ADDR`; its stderr goes to `stderr`.
    pub fn spawn(kchat: &Path, addr: &str, stderr: &Path) -> Result<Self, String> {
        let err = fs::File::create(stderr).map_err(|e| format!("{}: {e}", stderr.display()))?;
        let mut child = Command::new(kchat)
            .args(["--nick", NATIVE_NICK, "--linger", "300", addr])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", kchat.display()))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        thread::spawn(move || {
            for line in io::BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Ok(Self {
            child,
            stdin,
            lines,
        })
    }
}

impl Native for KchatClient {
    fn ready(&mut self, timeout: Duration) -> Result<(), String> {
        self.send("/who")?;
        let deadline = Instant::now() + timeout;
        loop {
            let named = self
                .lines()
                .iter()
                .any(|l| l.starts_with("* ") && l.contains(" online") && l.contains(NATIVE_NICK));
            if named {
                return Ok(());
            }
            if let Ok(Some(s)) = self.child.try_wait() {
                return Err(format!("the kchat client exited with {s}"));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "no answer to /who naming {NATIVE_NICK} within {timeout:?}; the client printed {:?}",
                    self.lines()
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn send(&mut self, line: &str) -> Result<(), String> {
        let stdin = self.stdin.as_mut().ok_or("the kchat client has left")?;
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("writing to the kchat client: {e}"))
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    fn leave(&mut self, timeout: Duration) -> Result<(), String> {
        // End of input: the client waits until the server has been quiet for its linger
        // time, then closes the connection and exits.
        self.stdin = None;
        match wait_child(&mut self.child, timeout) {
            Some(s) if s.success() => Ok(()),
            Some(s) => Err(format!("the kchat client exited with {s}")),
            None => Err(format!("the kchat client did not exit within {timeout:?}")),
        }
    }
}

impl Drop for KchatClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits up to `timeout` for `child` to exit.
fn wait_child(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Some(s),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
            _ => return None,
        }
    }
}

/// `name` on PATH (and the sbin directories), if it is there.
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/bin", "/usr/sbin", "/bin", "/sbin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file());
    found
}

/// The IRC clients the step knows, in the order they quit (the last one sees the native
/// client leave).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Ii,
    Sic,
    Weechat,
    Irssi,
}

impl Kind {
    const ALL: [Kind; 4] = [Kind::Ii, Kind::Sic, Kind::Weechat, Kind::Irssi];

    fn name(self) -> &'static str {
        match self {
            Kind::Ii => "ii",
            Kind::Sic => "sic",
            Kind::Weechat => "weechat",
            Kind::Irssi => "irssi",
        }
    }

    fn nick(self) -> &'static str {
        match self {
            Kind::Ii => "iiuser",
            Kind::Sic => "sicuser",
            Kind::Weechat => "weeuser",
            Kind::Irssi => "irssiuser",
        }
    }

    fn outcome_name(self) -> String {
        match self {
            Kind::Ii => "host: IRC client ii chats with the native kchat client through the \
                         forwarded IRC port"
                .into(),
            Kind::Sic => "host: IRC client sic chats with the native kchat client through the \
                          forwarded IRC port"
                .into(),
            Kind::Weechat => "host: IRC client WeeChat (headless) chats with the native kchat \
                              client through the forwarded IRC port"
                .into(),
            Kind::Irssi => "host: IRC client irssi (in tmux, screen checked) chats with the \
                            native kchat client through the forwarded IRC port"
                .into(),
        }
    }

    /// Why it cannot run here, if it cannot.
    fn unavailable(self) -> Option<String> {
        match self {
            Kind::Ii => find_program("ii")
                .is_none()
                .then(|| "ii is not installed (Debian package ii)".into()),
            Kind::Sic => find_program("sic")
                .is_none()
                .then(|| "sic is not installed (Debian package sic)".into()),
            Kind::Irssi => {
                if find_program("irssi").is_none() {
                    Some("irssi is not installed (Debian package irssi)".into())
                } else if find_program("tmux").is_none() {
                    Some("tmux is not installed (Debian package tmux)".into())
                } else {
                    None
                }
            }
            Kind::Weechat => {
                if find_program("weechat-headless").is_none() {
                    return Some(
                        "weechat-headless is not installed (Debian package weechat-headless)"
                            .into(),
                    );
                }
                let plugin_dirs = [
                    "/usr/lib/x86_64-linux-gnu",
                    "/usr/lib/aarch64-linux-gnu",
                    "/usr/lib",
                ];
                let has = |p: &str| {
                    plugin_dirs
                        .iter()
                        .any(|d| Path::new(d).join("weechat/plugins").join(p).is_file())
                };
                (!(has("fifo.so") && has("trigger.so"))).then(|| {
                    "WeeChat's fifo and trigger plugins are not installed (Debian package \
                     weechat-plugins)"
                        .into()
                })
            }
        }
    }
}

/// A tmux server of the step's own (its socket outside the user's), for irssi.
struct Tmux {
    socket: PathBuf,
    home: PathBuf,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(["-f", "/dev/null"])
            .args(args)
            .env("HOME", &self.home)
            .env_remove("TMUX")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("tmux: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "tmux {}: {}",
                args.first().unwrap_or(&""),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Types `text` in the pane and presses Enter.
    fn type_line(&self, text: &str) -> Result<(), String> {
        self.run(&["send-keys", "-t", "irssi", "-l", text])?;
        self.run(&["send-keys", "-t", "irssi", "Enter"])?;
        Ok(())
    }

    /// The visible screen (`all`: and the scrollback, wrapped lines joined).
    fn capture(&self, all: bool) -> String {
        let args: &[&str] = if all {
            &["capture-pane", "-p", "-J", "-S", "-", "-t", "irssi"]
        } else {
            &["capture-pane", "-p", "-t", "irssi"]
        };
        self.run(args).unwrap_or_default()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
        let _ = fs::remove_file(&self.socket);
    }
}

/// One IRC client of the scenario.
struct Client {
    kind: Kind,
    nick: String,
    nick2: String,
    dir: PathBuf,
    child: Option<Child>,
    /// sic's standard input, where its commands go.
    stdin: Option<ChildStdin>,
    tmux: Option<Tmux>,
    /// FIFOs (ii's `in` files, WeeChat's command pipe), opened once and kept open: a reader
    /// that sees end-of-file closes and reopens its FIFO, losing what a writer sent between.
    fifos: HashMap<PathBuf, fs::File>,
}

/// A unique number for the step's tmux sockets (steps may run side by side in tests).
static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl Client {
    fn new(kind: Kind, work: &Path) -> Self {
        let nick = kind.nick().to_string();
        Self {
            kind,
            nick2: format!("{nick}2"),
            nick,
            dir: work.join(kind.name()),
            child: None,
            stdin: None,
            tmux: None,
            fifos: HashMap::new(),
        }
    }

    fn home(&self) -> PathBuf {
        self.dir.join("home")
    }

    /// ii's directory for server 127.0.0.1.
    fn ii_server(&self) -> PathBuf {
        self.dir.join("irc/127.0.0.1")
    }

    fn weechat_fifo(&self) -> PathBuf {
        self.home().join("fifo")
    }

    fn weechat_logs(&self) -> PathBuf {
        self.dir.join("logs")
    }

    /// Starts the client, connecting to 127.0.0.1:`port`.
    fn start(&mut self, port: u16) -> Result<(), String> {
        fs::create_dir_all(self.home()).map_err(|e| format!("{}: {e}", self.dir.display()))?;
        let file = |name: &str| {
            fs::File::create(self.dir.join(name))
                .map_err(|e| format!("{}: {e}", self.dir.join(name).display()))
        };
        match self.kind {
            Kind::Ii => {
                let child = Command::new("ii")
                    .args(["-s", "127.0.0.1", "-p", &port.to_string(), "-i"])
                    .arg(self.dir.join("irc"))
                    .args(["-n", &self.nick, "-f", "kchat test client"])
                    .env("HOME", self.home())
                    .stdin(Stdio::null())
                    // ii prints every line it receives, raw, on its standard output.
                    .stdout(file("raw.log")?)
                    .stderr(file("stderr.log")?)
                    .spawn()
                    .map_err(|e| format!("cannot run ii: {e}"))?;
                self.child = Some(child);
            }
            Kind::Sic => {
                let mut child = Command::new("sic")
                    .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-n", &self.nick])
                    .env("HOME", self.home())
                    .stdin(Stdio::piped())
                    // sic prints every line it receives, numerics with their number.
                    .stdout(file("raw.log")?)
                    .stderr(file("stderr.log")?)
                    .spawn()
                    .map_err(|e| format!("cannot run sic: {e}"))?;
                self.stdin = child.stdin.take();
                self.child = Some(child);
            }
            Kind::Weechat => {
                let home = self.home();
                let commands = [
                    format!("/set fifo.file.path {}", self.weechat_fifo().display()),
                    format!("/set logger.file.path {}", self.weechat_logs().display()),
                    "/set logger.file.flush_delay 0".into(),
                    format!("/set irc.server_default.nicks {}", self.nick),
                    "/set irc.server_default.username wee".into(),
                    "/set irc.server_default.realname \"kchat test client\"".into(),
                    "/set irc.server_default.autoreconnect off".into(),
                    // Everything goes out at once, not 2 s apart.
                    "/set irc.server_default.anti_flood_prio_high 0".into(),
                    "/set irc.server_default.anti_flood_prio_low 0".into(),
                    // The raw log: every line received (and sent, `raw> `), printed to the
                    // core buffer's log. ${raw:...} keeps -r's evaluation from expanding the
                    // trigger's variable.
                    "/trigger add kchatraw signal *,irc_raw_in_* \"\" \"\" \
                     \"${raw:/print -core raw< ${tg_signal_data}}\""
                        .into(),
                    "/trigger add kchatrawout signal *,irc_out_* \"\" \"\" \
                     \"${raw:/print -core raw> ${tg_signal_data}}\""
                        .into(),
                    format!("/server add kchat 127.0.0.1/{port}"),
                    "/connect kchat".into(),
                ];
                let child = Command::new("weechat-headless")
                    .arg("--dir")
                    .arg(&home)
                    .args(["-P", "irc,logger,fifo,trigger", "-s", "--stdout", "-r"])
                    .arg(commands.join("; "))
                    .env("HOME", &home)
                    .stdin(Stdio::null())
                    .stdout(file("stdout.log")?)
                    .stderr(file("stderr.log")?)
                    .spawn()
                    .map_err(|e| format!("cannot run weechat-headless: {e}"))?;
                self.child = Some(child);
            }
            Kind::Irssi => {
                let home = self.home();
                let config = format!(
                    "settings = {{\n  core = {{\n    real_name = \"kchat test client\";\n    \
                     user_name = \"irssi\";\n    nick = \"{}\";\n    settings_autosave = \"no\";\n    \
                     rawlog_lines = \"5000\";\n  }};\n}};\n",
                    self.nick
                );
                fs::write(home.join("config"), config).map_err(|e| format!("irssi config: {e}"))?;
                let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let tmux = Tmux {
                    socket: std::env::temp_dir()
                        .join(format!("kchat-irc-{}-{n}.tmux", std::process::id())),
                    home: home.clone(),
                };
                let cmd = format!(
                    "irssi --home={} -n {} -c 127.0.0.1 -p {port}; echo irssi exited with $?; sleep 60",
                    home.display(),
                    self.nick
                );
                tmux.run(&[
                    "new-session",
                    "-d",
                    "-s",
                    "irssi",
                    "-x",
                    "160",
                    "-y",
                    "50",
                    &cmd,
                ])?;
                self.tmux = Some(tmux);
            }
        }
        Ok(())
    }

    fn tmux(&self) -> Result<&Tmux, String> {
        self.tmux
            .as_ref()
            .ok_or_else(|| "irssi is not running".into())
    }

    /// Writes `line` to the FIFO `path`, opening it (once) when its reader is there.
    fn fifo_write(&mut self, path: PathBuf, line: &str, deadline: Instant) -> Result<(), String> {
        if !self.fifos.contains_key(&path) {
            let f = loop {
                // Non-blocking: opening fails (ENXIO) until the client reads the FIFO.
                match fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(&path)
                {
                    Ok(f) => break f,
                    Err(e) if Instant::now() > deadline => {
                        return Err(format!("cannot open {}: {e}", path.display()))
                    }
                    Err(_) => thread::sleep(Duration::from_millis(50)),
                }
            };
            self.fifos.insert(path.clone(), f);
        }
        let f = self.fifos.get_mut(&path).expect("opened");
        f.write_all(format!("{line}\n").as_bytes())
            .map_err(|e| format!("writing to {}: {e}", path.display()))
    }

    /// A command for the server (ii: to its server FIFO; WeeChat: in its server buffer;
    /// irssi: typed).
    fn command(&mut self, cmd: &str, deadline: Instant) -> Result<(), String> {
        match self.kind {
            Kind::Ii => self.fifo_write(self.ii_server().join("in"), cmd, deadline),
            // sic: ":j #c", ":m NICK text", other ":CMD ..." go to the server as they are.
            Kind::Sic => self.sic_line(&format!(":{}", &cmd[1..])),
            Kind::Weechat => self.fifo_write(
                self.weechat_fifo(),
                &format!("irc.server.kchat */{}", &cmd[1..]),
                deadline,
            ),
            Kind::Irssi => self.tmux()?.type_line(cmd),
        }
    }

    /// A line to sic's standard input.
    fn sic_line(&mut self, line: &str) -> Result<(), String> {
        let stdin = self.stdin.as_mut().ok_or("sic is not running")?;
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("writing to sic: {e}"))
    }

    fn join(&mut self, deadline: Instant) -> Result<(), String> {
        match self.kind {
            Kind::Ii | Kind::Sic => self.command("/j #lobby", deadline),
            Kind::Weechat => self.command("/join #lobby", deadline),
            Kind::Irssi => {
                // The raw log from the start: irssi writes the lines it kept so far first.
                let raw = self.dir.join("raw.log");
                self.command(&format!("/rawlog open {}", raw.display()), deadline)?;
                self.command("/join #lobby", deadline)
            }
        }
    }

    /// Says `text` in `#lobby`.
    fn say(&mut self, text: &str, deadline: Instant) -> Result<(), String> {
        match self.kind {
            Kind::Ii => {
                let path = self.ii_server().join("#lobby/in");
                self.fifo_write(path, text, deadline)
            }
            Kind::Weechat => {
                let path = self.weechat_fifo();
                self.fifo_write(path, &format!("irc.kchat.#lobby *{text}"), deadline)
            }
            // The channel joined last is where sic's plain lines go.
            Kind::Sic => self.sic_line(text),
            Kind::Irssi => self.tmux()?.type_line(text),
        }
    }

    fn change_nick(&mut self, new: &str, deadline: Instant) -> Result<(), String> {
        match self.kind {
            Kind::Ii => self.command(&format!("/n {new}"), deadline),
            Kind::Sic => self.command(&format!("/NICK {new}"), deadline),
            _ => self.command(&format!("/nick {new}"), deadline),
        }
    }

    /// Quits with `reason` and waits until the client has exited.
    fn quit(&mut self, reason: &str, deadline: Instant) -> Result<(), String> {
        match self.kind {
            Kind::Ii => self.command(&format!("/q {reason}"), deadline)?,
            Kind::Sic => self.command(&format!("/QUIT :{reason}"), deadline)?,
            _ => self.command(&format!("/quit {reason}"), deadline)?,
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match self.kind {
            Kind::Irssi => {
                let tmux = self.tmux()?;
                wait_for(deadline, "irssi to exit after /quit", || {
                    tmux.capture(false).contains("irssi exited with 0")
                })
                .map_err(|e| format!("{e}; screen:\n{}", tmux.capture(false)))
            }
            _ => {
                let sic = self.kind == Kind::Sic;
                let child = self.child.as_mut().ok_or("not running")?;
                match wait_child(child, left) {
                    // sic says "remote host closed connection" and exits with 1 after QUIT.
                    Some(_) if sic => Ok(()),
                    Some(s) if s.success() => Ok(()),
                    Some(s) => Err(format!("exited with {s} after its quit command")),
                    None => Err("still running after its quit command".into()),
                }
            }
        }
    }

    /// What the client has shown so far: its logs (ii's `out` files, WeeChat's buffers) or
    /// irssi's screen with its scrollback.
    fn transcript(&self) -> String {
        match self.kind {
            Kind::Ii => {
                let mut text = String::new();
                let server = self.ii_server();
                text.push_str(&fs::read_to_string(server.join("out")).unwrap_or_default());
                for entry in fs::read_dir(&server).into_iter().flatten().flatten() {
                    if entry.path().is_dir() {
                        let out = entry.path().join("out");
                        text.push_str(&fs::read_to_string(out).unwrap_or_default());
                    }
                }
                text
            }
            Kind::Weechat => {
                let logs = self.weechat_logs();
                ["irc.server.kchat.weechatlog", "irc.kchat.#lobby.weechatlog"]
                    .iter()
                    .map(|f| fs::read_to_string(logs.join(f)).unwrap_or_default())
                    .collect()
            }
            Kind::Sic => fs::read_to_string(self.dir.join("raw.log")).unwrap_or_default(),
            Kind::Irssi => self
                .tmux
                .as_ref()
                .map(|t| t.capture(true))
                .unwrap_or_default(),
        }
    }

    /// The last lines of the transcript, for a failure's detail.
    fn tail(&self) -> String {
        let text = self.transcript();
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        lines[lines.len().saturating_sub(12)..].join(" | ")
    }

    /// How this client shows the welcome (`001`).
    fn registered(&self) -> bool {
        match self.kind {
            Kind::Weechat | Kind::Sic => self.raw_lines().iter().any(|l| numeric(l) == Some(1)),
            _ => self.transcript().contains("Welcome to the"),
        }
    }

    fn joined(&self) -> bool {
        self.transcript().lines().any(|l| {
            // sic: "nick : DATE TIME >< JOIN (): #lobby" or, without the colon, "JOIN (#lobby): "
            let sic = l.starts_with(&format!("{} ", self.nick))
                && l.contains(">< JOIN (")
                && l.contains("#lobby");
            sic || (l.contains(&self.nick) && l.contains("has joined #lobby"))
        })
    }

    /// How this client shows `from` saying `text` in `#lobby`.
    fn shows_message(&self, from: &str, text: &str) -> bool {
        let want = match self.kind {
            Kind::Ii | Kind::Sic => format!("<{from}> {text}"),
            // "< nick> text" or "<@nick> text"
            Kind::Irssi => format!("{from}> {text}"),
            Kind::Weechat => format!("{from}\t{text}"),
        };
        self.transcript().contains(&want)
    }

    /// ii shows a private message from `from` in a directory named after it.
    fn shows_private(&self, from: &str, text: &str) -> bool {
        let out = self.ii_server().join(from.to_ascii_lowercase()).join("out");
        fs::read_to_string(out)
            .unwrap_or_default()
            .contains(&format!("<{from}> {text}"))
    }

    fn shows_nick_change(&self, old: &str, new: &str) -> bool {
        let text = self.transcript();
        match self.kind {
            Kind::Ii => text.contains(&format!("{old} changed nick to {new}")),
            // "old         : DATE TIME >< NICK (): new" (or "NICK (new): ")
            Kind::Sic => text.lines().any(|l| {
                l.starts_with(&format!("{old} "))
                    && (l.trim_end().ends_with(&format!(">< NICK (): {new}"))
                        || l.contains(&format!(">< NICK ({new}):")))
            }),
            _ => text.contains(&format!("{old} is now known as {new}")),
        }
    }

    fn shows_quit(&self, nick: &str) -> bool {
        self.transcript().lines().any(|l| match self.kind {
            Kind::Sic => l.starts_with(&format!("{nick} ")) && l.contains(">< QUIT ("),
            _ => l.contains("has quit") && mentions(l, nick),
        })
    }

    /// The lines the client received from the server, as sent, from its raw log.
    fn raw_lines(&self) -> Vec<String> {
        let read = |p: PathBuf| fs::read_to_string(p).unwrap_or_default();
        match self.kind {
            // "TIMESTAMP :prefix COMMAND ..." (ii also prints the lines it sends, without
            // a prefix).
            Kind::Ii => read(self.dir.join("raw.log"))
                .lines()
                .filter_map(|l| {
                    let (stamp, rest) = l.split_once(' ')?;
                    (stamp.bytes().all(|b| b.is_ascii_digit()) && rest.starts_with(':'))
                        .then(|| rest.to_string())
                })
                .collect(),
            Kind::Irssi => read(self.dir.join("raw.log"))
                .lines()
                .filter_map(|l| l.strip_prefix(">> ").map(str::to_string))
                .collect(),
            // "SOURCE: DATE TIME >< CMD (PARAMS): TEXT", back to ":SOURCE CMD PARAMS :TEXT"
            // (sic's other lines, messages, are not needed here).
            Kind::Sic => read(self.dir.join("raw.log"))
                .lines()
                .filter_map(|l| {
                    let (source, rest) = l.split_once(':')?;
                    // The date and time, then ">< " (a message has "<nick> " there).
                    let mut words = rest.trim_start().splitn(3, ' ');
                    let (_date, _time) = (words.next()?, words.next()?);
                    let rest = words.next()?.strip_prefix(">< ")?;
                    let (cmd, rest) = rest.split_once(" (")?;
                    let (params, text) = rest
                        .split_once("): ")
                        .or_else(|| rest.strip_suffix("):").map(|p| (p, "")))?;
                    Some(format!(":{} {cmd} {params} :{text}", source.trim()))
                })
                .collect(),
            Kind::Weechat => read(self.weechat_logs().join("core.weechat.weechatlog"))
                .lines()
                .filter_map(|l| l.split_once("\traw< ").map(|(_, r)| r.to_string()))
                .collect(),
        }
    }

    /// The checks of the raw log: the welcome came, no error numeric but the two expected,
    /// and (when a nickless native client is in `#lobby`) a `kchat-ID` in the NAMES.
    fn check_raw(&self, expect_kchat_id: bool) -> Result<(), String> {
        let raw = self.raw_lines();
        ensure(raw.iter().any(|l| numeric(l) == Some(1)), || {
            format!("no welcome (001) in its raw log ({} lines)", raw.len())
        })?;
        let errors = error_numerics(&raw);
        ensure(errors.is_empty(), || {
            format!("error numerics in its raw log: {}", errors.join(" | "))
        })?;
        if expect_kchat_id {
            let names: Vec<&str> = raw
                .iter()
                .filter(|l| numeric(l) == Some(353))
                .filter_map(|l| l.split_once(" :").map(|(_, t)| t))
                .flat_map(|t| t.split_whitespace())
                .collect();
            ensure(names.iter().any(|n| is_kchat_id(n)), || {
                format!("no kchat-ID member in the NAMES of #lobby: {names:?}")
            })?;
        }
        Ok(())
    }

    fn stop(&mut self) {
        self.fifos.clear();
        self.stdin = None;
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.tmux = None;
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether `line` names `nick` as a whole word (not as part of a longer nick).
fn mentions(line: &str, nick: &str) -> bool {
    line.match_indices(nick).any(|(i, _)| {
        let before = line[..i].chars().next_back();
        let after = line[i + nick.len()..].chars().next();
        let part = |c: Option<char>| {
            c.is_some_and(|c| c.is_ascii_alphanumeric() || "-_[]\\`^{|}".contains(c))
        };
        !part(before) && !part(after)
    })
}

/// `kchat-` and digits, as kchat shows a native client without a nick (an `@` or `+` may
/// lead in NAMES).
fn is_kchat_id(name: &str) -> bool {
    let name = name.trim_start_matches(['@', '+']);
    name.strip_prefix("kchat-")
        .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
}

/// The numeric of a raw IRC line (`:server 001 me ...`), if it is one.
fn numeric(line: &str) -> Option<u16> {
    let mut words = line.split(' ').filter(|w| !w.is_empty());
    let mut cmd = words.next()?;
    if cmd.starts_with(':') {
        cmd = words.next()?;
    }
    (cmd.len() == 3 && cmd.bytes().all(|b| b.is_ascii_digit()))
        .then(|| cmd.parse().ok())
        .flatten()
}

/// The error numerics (4xx, 5xx) among raw lines, but `422` (no MOTD) and a `451` before the
/// welcome (the answer irssi's `JOIN :` probe waits for).
fn error_numerics(raw: &[String]) -> Vec<String> {
    let mut welcomed = false;
    let mut errors = Vec::new();
    for line in raw {
        match numeric(line) {
            Some(1) => welcomed = true,
            Some(422) => {}
            Some(451) if !welcomed => {}
            Some(400..=599) => errors.push(line.clone()),
            _ => {}
        }
    }
    errors
}

fn ensure(cond: bool, why: impl FnOnce() -> String) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(why())
    }
}

/// Polls `done` until it holds, up to `STEP_WAIT` or `deadline`, whichever comes first.
fn wait_for(deadline: Instant, what: &str, mut done: impl FnMut() -> bool) -> Result<(), String> {
    let start = Instant::now();
    let end = deadline.min(start + STEP_WAIT);
    loop {
        if done() {
            return Ok(());
        }
        if Instant::now() > end {
            return Err(format!(
                "timed out after {:.0} s waiting for {what}",
                start.elapsed().as_secs_f64()
            ));
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Who a failure belongs to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Who {
    Native,
    Irc(Kind),
}

struct Failure {
    who: Who,
    why: String,
}

fn at<T>(who: Who, r: Result<T, String>) -> Result<T, Failure> {
    r.map_err(|why| Failure { who, why })
}

/// The scenario; the first failure stops it.
fn scenario(
    native: &mut dyn Native,
    clients: &mut [Client],
    irc_port: u16,
    deadline: Instant,
) -> Result<(), Failure> {
    let n = Who::Native;
    let native_sees = |native: &dyn Native, what: &str, pred: &dyn Fn(&str) -> bool| {
        wait_for(deadline, what, || native.lines().iter().any(|l| pred(l))).map_err(|e| {
            let lines = native.lines();
            format!(
                "{e}; the native client printed, last: {:?}",
                &lines[lines.len().saturating_sub(8)..]
            )
        })
    };
    let irc_sees = |c: &Client, what: &str, pred: &dyn Fn(&Client) -> bool| {
        wait_for(deadline, what, || pred(c))
            .map_err(|e| format!("{e}; it shows, last: {}", c.tail()))
    };

    at(
        n,
        native.ready(STEP_WAIT.min(deadline.saturating_duration_since(Instant::now()))),
    )?;
    // For the guest's observer: which IRC clients to expect.
    let nicks: Vec<&str> = clients.iter().map(|c| c.kind.nick()).collect();
    at(n, native.send(&format!("irc-clients: {}", nicks.join(" "))))?;

    // Connect and join.
    for c in clients.iter_mut() {
        at(Who::Irc(c.kind), c.start(irc_port))?;
    }
    for c in clients.iter_mut() {
        let who = Who::Irc(c.kind);
        at(who, irc_sees(c, "its welcome (001)", &|c| c.registered()))?;
        at(who, c.join(deadline))?;
        at(who, irc_sees(c, "its own join to #lobby", &|c| c.joined()))?;
        let want = format!("* {} joined", c.nick);
        at(
            who,
            native_sees(
                native,
                &format!("the native client to show {want:?}"),
                &|l| l == want,
            ),
        )?;
    }

    // Messages, native to IRC.
    let hello = format!("hello from {NATIVE_NICK}");
    at(n, native.send(&hello))?;
    for c in clients.iter() {
        at(
            Who::Irc(c.kind),
            irc_sees(c, &format!("{NATIVE_NICK}'s {hello:?}"), &|c| {
                c.shows_message(NATIVE_NICK, &hello)
            }),
        )?;
    }
    // IRC to native and to the other IRC clients.
    for i in 0..clients.len() {
        let (kind, nick) = (clients[i].kind, clients[i].nick.clone());
        let text = format!("hello from {nick}");
        at(Who::Irc(kind), clients[i].say(&text, deadline))?;
        let want = format!("{nick}: {text}");
        at(
            Who::Irc(kind),
            native_sees(
                native,
                &format!("the native client to show {want:?}"),
                &|l| l == want,
            ),
        )?;
        for o in clients.iter().filter(|o| o.kind != kind) {
            at(
                Who::Irc(o.kind),
                irc_sees(o, &format!("{nick}'s {text:?}"), &|o| {
                    o.shows_message(&nick, &text)
                }),
            )?;
        }
    }
    // Private messages both ways, with ii.
    if let Some(ii) = clients.iter_mut().find(|c| c.kind == Kind::Ii) {
        let who = Who::Irc(Kind::Ii);
        let text = format!("psst from {NATIVE_NICK}");
        at(n, native.send(&format!("/msg {} {text}", ii.nick)))?;
        at(
            who,
            irc_sees(ii, &format!("the private {text:?}"), &|c| {
                c.shows_private(NATIVE_NICK, &text)
            }),
        )?;
        let text = format!("psst from {}", ii.nick);
        at(
            who,
            ii.command(&format!("/PRIVMSG {NATIVE_NICK} :{text}"), deadline),
        )?;
        let want = format!("{} (private): {text}", ii.nick);
        at(
            who,
            native_sees(
                native,
                &format!("the native client to show {want:?}"),
                &|l| l == want,
            ),
        )?;
    }

    // Nick changes.
    at(n, native.send(&format!("/nick {NATIVE_NICK2}")))?;
    for c in clients.iter() {
        at(
            Who::Irc(c.kind),
            irc_sees(c, &format!("{NATIVE_NICK} becoming {NATIVE_NICK2}"), &|c| {
                c.shows_nick_change(NATIVE_NICK, NATIVE_NICK2)
            }),
        )?;
    }
    for i in 0..clients.len() {
        let (kind, old, new) = (
            clients[i].kind,
            clients[i].nick.clone(),
            clients[i].nick2.clone(),
        );
        at(Who::Irc(kind), clients[i].change_nick(&new, deadline))?;
        let want = format!("* {old} is now {new}");
        at(
            Who::Irc(kind),
            native_sees(
                native,
                &format!("the native client to show {want:?}"),
                &|l| l == want,
            ),
        )?;
        for o in clients.iter().filter(|o| o.kind != kind) {
            at(
                Who::Irc(o.kind),
                irc_sees(o, &format!("{old} becoming {new}"), &|o| {
                    o.shows_nick_change(&old, &new)
                }),
            )?;
        }
    }

    // Quits: all IRC clients but the last, then the native client, then the last.
    let last = clients.len().saturating_sub(1);
    for i in 0..last {
        let (kind, nick) = (clients[i].kind, clients[i].nick2.clone());
        at(
            Who::Irc(kind),
            clients[i].quit(&format!("bye from {nick}"), deadline),
        )?;
        let quit = |l: &str| {
            l.starts_with("* ") && mentions(l, &nick) && (l.contains("left") || l.contains("quit"))
        };
        at(
            Who::Irc(kind),
            native_sees(
                native,
                &format!("the native client to show {nick} quitting"),
                &quit,
            ),
        )?;
        for o in clients[i + 1..].iter() {
            at(
                Who::Irc(o.kind),
                irc_sees(o, &format!("{nick} quitting"), &|o| o.shows_quit(&nick)),
            )?;
        }
    }
    at(n, native.leave(STEP_WAIT))?;
    let nicks = clients_nicks_before(clients);
    if let Some(c) = clients.last_mut() {
        let who = Who::Irc(c.kind);
        at(
            who,
            irc_sees(c, &format!("{NATIVE_NICK2} quitting"), &|c| {
                c.shows_quit(NATIVE_NICK2)
            }),
        )?;
        if c.kind == Kind::Irssi {
            at(who, check_irssi_screen(c, &nicks))?;
        }
        let nick = c.nick2.clone();
        at(who, c.quit(&format!("bye from {nick}"), deadline))?;
    }
    Ok(())
}

/// The (first nick, second nick) of every IRC client.
fn clients_nicks_before(clients: &[Client]) -> Vec<(String, String)> {
    clients
        .iter()
        .map(|c| (c.nick.clone(), c.nick2.clone()))
        .collect()
}

/// irssi's visible screen, the `#lobby` window, shows the whole conversation (saved to
/// `screen.txt` beside its logs).
fn check_irssi_screen(c: &Client, nicks: &[(String, String)]) -> Result<(), String> {
    let screen = c.tmux()?.capture(false);
    let _ = fs::write(c.dir.join("screen.txt"), &screen);
    let mut want = vec![
        format!("{NATIVE_NICK}> hello from {NATIVE_NICK}"),
        format!("{NATIVE_NICK} is now known as {NATIVE_NICK2}"),
        format!("You're now known as {}", c.nick2),
    ];
    for (nick, nick2) in nicks {
        want.push(format!("{nick}> hello from {nick}"));
        if *nick != c.nick {
            want.push(format!("{nick} is now known as {nick2}"));
        }
    }
    let mut missing: Vec<String> = want
        .into_iter()
        .filter(|w| !screen.contains(w.as_str()))
        .collect();
    let quitters = nicks
        .iter()
        .filter(|(n, _)| *n != c.nick)
        .map(|(_, n2)| n2.as_str())
        .chain([NATIVE_NICK2]);
    for q in quitters {
        if !screen
            .lines()
            .any(|l| l.contains("has quit") && mentions(l, q))
        {
            missing.push(format!("{q} ... has quit"));
        }
    }
    let status = screen.lines().last().unwrap_or_default().to_string();
    if !screen.lines().any(|l| l.contains("[#lobby]")) {
        missing.push(format!("the #lobby window (last line {status:?})"));
    }
    ensure(missing.is_empty(), || {
        format!("irssi's screen lacks {missing:?}; screen:\n{screen}")
    })
}

/// Runs the step: the scenario, then each client's raw log checks. One outcome per IRC client
/// and one for the native client.
pub fn run(setup: Setup) -> Vec<Outcome> {
    let Setup {
        mut native,
        irc_port,
        work,
        expect_kchat_id,
        budget,
    } = setup;
    let work = &work;
    let native_name =
        "host: native kchat client chats with IRC clients (native <-> IRC)".to_string();
    let _ = fs::remove_dir_all(work);
    if let Err(e) = fs::create_dir_all(work) {
        return vec![Outcome {
            ok: false,
            skipped: false,
            name: native_name,
            detail: format!("cannot create {}: {e}", work.display()),
        }];
    }
    let mut outcomes = Vec::new();
    let mut clients = Vec::new();
    // KCHAT_IRC_CLIENTS=ii,irssi (or "none") runs only those, to look at one client.
    let chosen = std::env::var("KCHAT_IRC_CLIENTS").ok();
    for kind in Kind::ALL {
        let unchosen = chosen
            .as_deref()
            .filter(|list| !list.split(',').any(|c| c.trim() == kind.name()))
            .map(|list| format!("not among KCHAT_IRC_CLIENTS={list}"));
        match unchosen.or_else(|| kind.unavailable()) {
            Some(why) => {
                outcomes.push(Outcome {
                    ok: true,
                    skipped: true,
                    name: kind.outcome_name(),
                    detail: why,
                });
            }
            None => clients.push(Client::new(kind, work)),
        }
    }
    // With no IRC client, the native client's part still runs (the guest waits for it).
    let deadline = Instant::now() + budget;
    let result = scenario(&mut *native, &mut clients, irc_port, deadline);
    drop(native);
    for c in clients.iter_mut() {
        c.stop();
    }
    let failed_at = result.as_ref().err().map(|f| f.who);
    let first = result
        .as_ref()
        .err()
        .map(|f| format!("{:?}: {}", f.who, f.why))
        .unwrap_or_default();
    let verdict = |who: Who| -> Result<(), String> {
        match failed_at {
            Some(w) if w == who => Err(first.clone()),
            Some(_) => Err(format!("scenario stopped early; {first}")),
            None => Ok(()),
        }
    };
    let summary = format!(
        "joined #lobby, messages both ways, nick changes and quits seen, with {}",
        clients
            .iter()
            .map(|c| c.kind.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    for c in &clients {
        let who = Who::Irc(c.kind);
        let raw = c.check_raw(expect_kchat_id && failed_at.is_none());
        let r = match (verdict(who), raw) {
            (Ok(()), Ok(())) => Ok(()),
            (Err(e), Ok(())) => Err(e),
            (Ok(()), Err(r)) => Err(r),
            (Err(e), Err(r)) => Err(format!("{e}; also {r}")),
        };
        outcomes.push(Outcome {
            ok: r.is_ok(),
            skipped: false,
            name: c.kind.outcome_name(),
            detail: match r {
                Ok(()) => format!("{summary}; no error numeric; logs in {}", c.dir.display()),
                Err(e) => format!("{e} (logs in {})", c.dir.display()),
            },
        });
    }
    let r = verdict(Who::Native);
    // Without an IRC client, what this outcome stands for did not run.
    let skipped = r.is_ok() && clients.is_empty();
    outcomes.push(Outcome {
        ok: r.is_ok(),
        skipped,
        name: native_name,
        detail: match r {
            Err(e) => e,
            Ok(()) if skipped => "no IRC client is installed here".into(),
            Ok(()) => summary,
        },
    });
    outcomes
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpStream;

    #[test]
    fn numerics_and_errors() {
        assert_eq!(numeric(":kchat 001 alice :Welcome"), Some(1));
        assert_eq!(numeric(":a!b@c PRIVMSG #lobby :421"), None);
        assert_eq!(numeric("PING :x"), None);
        let raw: Vec<String> = [
            ":kchat 451 * :You have not registered",
            ":kchat 001 alice :Welcome",
            ":kchat 422 alice :MOTD File is missing",
            ":kchat 324 alice #lobby +n",
            ":kchat 421 alice BOGUS :Unknown command",
            ":kchat 451 alice :You have not registered",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            error_numerics(&raw),
            vec![
                ":kchat 421 alice BOGUS :Unknown command".to_string(),
                ":kchat 451 alice :You have not registered".to_string()
            ]
        );
        assert!(is_kchat_id("kchat-12"));
        assert!(is_kchat_id("@kchat-3"));
        assert!(!is_kchat_id("kchat-"));
        assert!(!is_kchat_id("kchat-1a"));
        assert!(mentions("-!- iiuser2(~ii@h) has quit", "iiuser2"));
        assert!(!mentions("-!- iiuser22(~ii@h) has quit", "iiuser2"));
        assert!(!mentions("hostnat2 has quit", "hostnat"));
    }

    /// Each client's raw log, in the form it writes it, is read back to IRC lines: the
    /// welcome, the NAMES and an error numeric are found.
    #[test]
    fn raw_logs_are_parsed() {
        let work = std::env::temp_dir().join(format!("kchat-irc-raw-test-{}", std::process::id()));
        let samples = [
            (
                Kind::Ii,
                "raw.log",
                "NICK iiuser\n\
                 1796209787 :kchat 001 iiuser :Welcome to the kchat IRC network iiuser!i@h\n\
                 1796209788 :kchat 353 iiuser = #lobby :kchat-3 iiuser\n\
                 1796209792 :kchat 421 iiuser BOGUS :Unknown command\n",
            ),
            (
                Kind::Sic,
                "raw.log",
                "kchat: 12/02/26 11:21 >< 001 (sicuser): Welcome to the kchat IRC network\n\
                 kchat: 12/02/26 11:21 >< 353 (sicuser = #lobby): sicuser kchat-3\n\
                 #lobby      : 12/02/26 11:21 <peer> >< 421 (x): not a numeric\n\
                 kchat: 12/02/26 11:21 >< 421 (sicuser BOGUS): Unknown command\n",
            ),
            (
                Kind::Irssi,
                "raw.log",
                "<< CAP LS 302\n<< JOIN :\n>> :kchat 451 * :You have not registered\n\
                 >> :kchat 001 irssiuser :Welcome\n>> :kchat 422 irssiuser :MOTD File is missing\n\
                 >> :kchat 353 irssiuser = #lobby :kchat-3 irssiuser\n\
                 >> :kchat 421 irssiuser BOGUS :Unknown command\n",
            ),
            (
                Kind::Weechat,
                "logs/core.weechat.weechatlog",
                "2026-12-02 11:12:09\t\traw< :kchat 001 weeuser :Welcome\n\
                 2026-12-02 11:12:09\t\traw< :kchat 353 weeuser = #lobby :kchat-3 weeuser\n\
                 2026-12-02 11:12:11\t\traw< :kchat 421 weeuser BOGUS :Unknown command\n",
            ),
        ];
        for (kind, file, text) in samples {
            let c = Client::new(kind, &work);
            fs::create_dir_all(c.dir.join(file).parent().unwrap()).unwrap();
            fs::write(c.dir.join(file), text).unwrap();
            let err = c.check_raw(true).unwrap_err();
            assert!(
                err.contains("421") && !err.contains("451") && !err.contains("not a numeric"),
                "{kind:?}: {err}"
            );
            let without: String = text
                .lines()
                .filter(|l| !l.contains("BOGUS"))
                .map(|l| format!("{l}\n"))
                .collect();
            fs::write(c.dir.join(file), without).unwrap();
            assert_eq!(c.check_raw(true), Ok(()), "{kind:?}");
        }
        let _ = fs::remove_dir_all(&work);
    }

    /// A stand-in for the native client on a real IRC server: an IRC connection that shows
    /// what it receives in kchat's native formats.
    struct StandIn {
        stream: TcpStream,
        nick: String,
        lines: Arc<Mutex<Vec<String>>>,
        joined: Arc<std::sync::atomic::AtomicBool>,
    }

    impl StandIn {
        fn connect(port: u16, nick: &str) -> Self {
            let stream =
                TcpStream::connect(("127.0.0.1", port)).expect("connect to the IRC server");
            let mut w = stream.try_clone().unwrap();
            write!(w, "NICK {nick}\r\nUSER native 0 * :stand-in\r\n").unwrap();
            let lines = Arc::new(Mutex::new(Vec::new()));
            let joined = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let (sink, flag, me) = (lines.clone(), joined.clone(), nick.to_string());
            let reader = stream.try_clone().unwrap();
            thread::spawn(move || {
                let mut me = me;
                for line in io::BufReader::new(reader).lines().map_while(Result::ok) {
                    let line = line.trim_end_matches('\r');
                    if let Some(token) = line.strip_prefix("PING ") {
                        let _ = write!(w, "PONG {token}\r\n");
                        continue;
                    }
                    let Some(rest) = line.strip_prefix(':') else {
                        continue;
                    };
                    let (prefix, rest) = rest.split_once(' ').unwrap_or((rest, ""));
                    let from = prefix.split('!').next().unwrap_or_default().to_string();
                    let (cmd, args) = rest.split_once(' ').unwrap_or((rest, ""));
                    let (params, text) = match args.split_once(" :") {
                        Some((p, t)) => (p.to_string(), t.to_string()),
                        None if args.starts_with(':') => (String::new(), args[1..].to_string()),
                        None => (args.to_string(), String::new()),
                    };
                    let shown = match cmd {
                        "001" => {
                            let _ = write!(w, "JOIN #lobby\r\n");
                            None
                        }
                        "JOIN" if from == me => {
                            flag.store(true, std::sync::atomic::Ordering::SeqCst);
                            None
                        }
                        "JOIN" => Some(format!("* {from} joined")),
                        "NICK" if from == me => {
                            me = text.clone();
                            None
                        }
                        "NICK" => Some(format!("* {from} is now {text}")),
                        "QUIT" => Some(format!("* {from} left ({text})")),
                        "PRIVMSG" if params == "#lobby" => Some(format!("{from}: {text}")),
                        "PRIVMSG" => Some(format!("{from} (private): {text}")),
                        _ => None,
                    };
                    if let Some(s) = shown {
                        sink.lock().unwrap().push(s);
                    }
                }
            });
            Self {
                stream,
                nick: nick.into(),
                lines,
                joined,
            }
        }

        fn raw(&mut self, line: &str) -> Result<(), String> {
            write!(self.stream, "{line}\r\n").map_err(|e| e.to_string())
        }
    }

    impl Native for StandIn {
        fn ready(&mut self, timeout: Duration) -> Result<(), String> {
            let flag = self.joined.clone();
            wait_for(Instant::now() + timeout, "the stand-in's join", || {
                flag.load(std::sync::atomic::Ordering::SeqCst)
            })
        }

        fn send(&mut self, line: &str) -> Result<(), String> {
            if let Some(n) = line.strip_prefix("/nick ") {
                self.nick = n.to_string();
                self.raw(&format!("NICK {n}"))
            } else if let Some(rest) = line.strip_prefix("/msg ") {
                let (to, text) = rest.split_once(' ').unwrap_or((rest, ""));
                self.raw(&format!("PRIVMSG {to} :{text}"))
            } else {
                self.raw(&format!("PRIVMSG #lobby :{line}"))
            }
        }

        fn lines(&self) -> Vec<String> {
            self.lines.lock().unwrap().clone()
        }

        fn leave(&mut self, _timeout: Duration) -> Result<(), String> {
            // As the native client does: close the connection.
            let _ = self.stream.shutdown(std::net::Shutdown::Both);
            Ok(())
        }
    }

    /// A real IRC server on the host, started and stopped with tests/scripts/irc-peer.sh.
    struct PeerServer {
        server: &'static str,
        port: u16,
        dir: PathBuf,
    }

    impl PeerServer {
        fn script() -> PathBuf {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/irc-peer.sh")
        }

        fn start(server: &'static str, dir: &Path) -> Result<Self, String> {
            let port = crate::qemu::free_listener()
                .and_then(|l| l.local_addr())
                .map_err(|e| e.to_string())?
                .port();
            let out = Command::new("sh")
                .arg(Self::script())
                .args(["start", server, &port.to_string()])
                .env("KCHAT_IRC_PEER_DIR", dir)
                .output()
                .map_err(|e| e.to_string())?;
            if !out.status.success() {
                return Err(String::from_utf8_lossy(&out.stderr).into_owned());
            }
            Ok(Self {
                server,
                port,
                dir: dir.to_path_buf(),
            })
        }
    }

    impl Drop for PeerServer {
        fn drop(&mut self) {
            let _ = Command::new("sh")
                .arg(Self::script())
                .args(["stop", self.server, &self.port.to_string()])
                .env("KCHAT_IRC_PEER_DIR", &self.dir)
                .output();
        }
    }

    /// The step's scenario against ngircd, with a stand-in for the native client and for the
    /// guest's nickless observer (`kchat-7`): the clients' scripting is right, whatever kchat
    /// does.
    #[test]
    fn irc_clients_against_ngircd() {
        against("ngircd", "irc_clients::tests::irc_clients_against_ngircd");
    }

    /// The same against InspIRCd: the scripts depend on no one server's ways.
    #[test]
    fn irc_clients_against_inspircd() {
        against(
            "inspircd",
            "irc_clients::tests::irc_clients_against_inspircd",
        );
    }

    /// Says the test is skipped, in one line to stderr that the test harness does not capture
    /// (`SKIPPED: WHY [TEST]`, which the VM harness's summary counts as skipped).
    fn skip(why: &str, test: &str) {
        let line = format!("SKIPPED: {why} [{test}]\n");
        let _ = io::stderr().write_all(line.as_bytes());
    }

    fn against(server: &'static str, name: &str) {
        if find_program(server).is_none() {
            skip(&format!("{server} is not installed"), name);
            return;
        }
        if Kind::ALL.iter().all(|k| k.unavailable().is_some()) {
            skip("no IRC client (ii, sic, WeeChat, irssi) is installed", name);
            return;
        }
        let work = std::env::temp_dir().join(format!(
            "kchat-irc-clients-test-{server}-{}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&work);
        fs::create_dir_all(&work).unwrap();
        let peer = PeerServer::start(server, &work.join(server)).expect("the IRC server starts");
        let mut observer = StandIn::connect(peer.port, "kchat-7");
        observer.ready(STEP_WAIT).unwrap();
        let native = StandIn::connect(peer.port, NATIVE_NICK);
        let outcomes = run(Setup {
            native: Box::new(native),
            irc_port: peer.port,
            work: work.join("step"),
            expect_kchat_id: true,
            budget: Duration::from_secs(100),
        });
        let ran: Vec<&Outcome> = outcomes.iter().filter(|o| !o.skipped).collect();
        for o in &outcomes {
            let mark = match (o.skipped, o.ok) {
                (true, _) => "skip",
                (false, true) => "ok",
                (false, false) => "FAIL",
            };
            println!("{mark} {}: {}", o.name, o.detail);
        }
        // The native client and at least one IRC client.
        assert!(ran.len() >= 2, "no IRC client ran here");
        assert!(ran.iter().all(|o| o.ok), "see the outcomes above");
        // The observer saw what the guest's observer must see.
        let seen = observer.lines();
        let mut want = vec![
            "hostnat: hello from hostnat".to_string(),
            "* hostnat is now hostnat2".to_string(),
        ];
        let ran_kind = |k: &&Kind| ran.iter().any(|o| o.name == k.outcome_name());
        for kind in Kind::ALL.iter().filter(ran_kind) {
            let n = kind.nick();
            want.push(format!("* {n} joined"));
            want.push(format!("{n}: hello from {n}"));
            want.push(format!("* {n} is now {n}2"));
            want.push(format!("* {n}2 left"));
        }
        for w in &want {
            assert!(
                seen.iter()
                    .any(|l| l == w || l.starts_with(&format!("{w} ("))),
                "the observer did not see {w:?}: {seen:?}"
            );
        }
        drop(peer);
        // KCHAT_IRC_KEEP=1 keeps the clients' logs and irssi's screen for a look.
        if std::env::var_os("KCHAT_IRC_KEEP").is_none() {
            let _ = fs::remove_dir_all(&work);
        }
    }
}
