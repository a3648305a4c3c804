//! The `kchat` client against a scripted server end: its interactive line editing in a real
//! terminal (tmux), and its scriptable mode.
//!
//! The "server" here is the test itself holding the accepted sockets and answering with
//! kchat's texts: the client's behaviour is what is under test (so no server needs rooms for
//! it); the kernel server is tested in the VM suite.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use kchat_proto::{encode, Decoder};

const KCHAT: &str = env!("CARGO_BIN_EXE_kchat");

/// The commands `/help` lists, one line each, in this order.
const COMMANDS: [&str; 8] = [
    "/nick", "/join", "/part", "/rooms", "/who", "/msg", "/help", "/quit",
];

/// Whether `lines` are the list of commands that `/help` prints.
fn is_help(lines: &[String]) -> bool {
    lines.len() == COMMANDS.len()
        && lines
            .iter()
            .zip(COMMANDS)
            .all(|(l, c)| l.strip_prefix(c).is_some_and(|rest| rest.starts_with(' ')))
}

fn listen() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    (l, addr)
}

/// The server's end of one client's connection.
struct Peer {
    stream: TcpStream,
    decoder: Decoder,
}

impl Peer {
    fn accept(listener: &TcpListener) -> Self {
        Self {
            stream: listener.accept().unwrap().0,
            decoder: Decoder::new(1 << 20),
        }
    }

    /// The client's `ip:port`, its label on a server until it sets a nick.
    fn label(&self) -> String {
        self.stream.peer_addr().unwrap().to_string()
    }

    /// The next frame from the client, within 10 seconds.
    fn frame(&mut self) -> Vec<u8> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(f) = self.decoder.next_frame().unwrap() {
                return f.to_vec();
            }
            let left = deadline
                .checked_duration_since(Instant::now())
                .expect("a frame within 10 s");
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            let n = self.stream.read(self.decoder.spare(4096)).expect("a frame");
            assert!(n > 0, "the client closed the connection");
            self.decoder.filled(n);
        }
    }

    /// Sends these frames in one write, so that the client gets them together.
    fn send(&mut self, frames: &[&str]) {
        let bytes: Vec<u8> = frames.iter().flat_map(|f| encode(f.as_bytes())).collect();
        self.stream.write_all(&bytes).unwrap();
    }
}

/// A tmux server of our own (one per test, as tests run in parallel), so that the tests touch
/// no user session. Each client runs in a session of its own, named for it.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new(test: &str) -> Self {
        Self {
            socket: format!("kchat-test-{}-{test}", std::process::id()),
        }
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("tmux is installed (tests/scripts/setup.sh installs it)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `kchat ARGS` in a new `cols` x `rows` session `name`; the pane then says how it
    /// exited.
    fn start(&self, name: &str, (cols, rows): (u16, u16), args: &str) {
        self.run(&[
            "new-session",
            "-d",
            "-s",
            name,
            "-x",
            &cols.to_string(),
            "-y",
            &rows.to_string(),
            &format!("{KCHAT} {args}; echo kchat exited with $?; sleep 30"),
        ]);
    }

    /// Types `text` in session `name`, without pressing Enter.
    fn type_text(&self, name: &str, text: &str) {
        self.run(&["send-keys", "-t", name, "-l", text]);
    }

    /// Types `text` in session `name` and presses Enter.
    fn type_line(&self, name: &str, text: &str) {
        self.type_text(name, text);
        self.run(&["send-keys", "-t", name, "Enter"]);
    }

    /// The visible pane of session `name`, trailing blank lines removed.
    fn screen(&self, name: &str) -> Vec<String> {
        let text = self.run(&["capture-pane", "-p", "-t", name]);
        let mut lines: Vec<String> = text.lines().map(|l| l.trim_end().to_string()).collect();
        while lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
        }
        lines
    }

    fn wait_screen(&self, name: &str, what: &str, pred: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = self.screen(name);
            if pred(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what} in {name}'s pane; screen: {s:#?}"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the last line of session `name` is the prompt `prompt`, nothing typed.
    fn wait_prompt(&self, name: &str, prompt: &str) -> Vec<String> {
        self.wait_screen(name, prompt, |s| s.last().is_some_and(|l| l == prompt))
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.run(&["kill-server"]);
    }
}

/// - the prompt appears once connected;
/// - a message that arrives while a line is half typed is printed above it, and the half
///   typed line stays as it was, with the cursor where it was;
/// - finishing the line sends exactly what was typed, as one frame;
/// - when the server closes the connection the client says so and exits.
#[test]
fn incoming_message_keeps_the_typed_line() {
    let (listener, addr) = listen();
    let tmux = Tmux::new("typed");
    tmux.start("chat", (80, 12), &addr);
    let mut server = Peer::accept(&listener);
    tmux.wait_prompt("chat", ">");

    tmux.type_text("chat", "hello wor");
    tmux.wait_prompt("chat", "> hello wor");

    server.send(&["bob: incoming while you type"]);
    let s = tmux.wait_screen("chat", "the incoming message", |s| {
        s.iter().any(|l| l == "bob: incoming while you type")
    });
    assert_eq!(
        s.last().unwrap(),
        "> hello wor",
        "the typed line was disturbed: {s:#?}"
    );
    let at = s
        .iter()
        .position(|l| l == "bob: incoming while you type")
        .unwrap();
    assert_eq!(
        at,
        s.len() - 2,
        "the message is not just above the prompt: {s:#?}"
    );

    tmux.type_line("chat", "ld");
    assert_eq!(server.frame(), b"hello world");

    // A control sequence from the network is shown, not obeyed.
    server.send(&["eve: \x1b[2Jcleared?"]);
    tmux.wait_screen("chat", "the escaped message", |s| {
        s.iter().any(|l| l == "eve: \\x1b[2Jcleared?")
    });

    drop(server);
    tmux.wait_screen("chat", "the disconnect notice", |s| {
        s.iter()
            .any(|l| l.contains("* disconnected: the server closed the connection"))
            && s.iter().any(|l| l == "kchat exited with 1")
    });
}

/// The review's case: alice starts (`--nick alice`, a 100x20 pane) and types nothing; bob
/// connects and sets his nick at once, so `* ... joined` and `* ... is now bob` reach her
/// together. Every line is on her screen, in order, above her prompt; bob's screen shows his.
///
/// (reedline printed the two lines and then, misled by a cursor position query sent before
/// them, cleared the screen and drew the prompt on its first row: alice saw only `>`.)
#[test]
fn lines_that_arrive_before_the_first_keystroke_are_shown() {
    let (listener, addr) = listen();
    let tmux = Tmux::new("first-keystroke");
    tmux.start("alice", (100, 20), &format!("--nick alice {addr}"));
    let mut alice = Peer::accept(&listener);
    assert_eq!(alice.frame(), b"/nick alice");
    tmux.wait_prompt("alice", ">");

    tmux.start("bob", (100, 20), &format!("--nick bob {addr}"));
    let mut bob = Peer::accept(&listener);
    assert_eq!(bob.frame(), b"/nick bob");
    let joined = format!("* {} joined", bob.label());
    let renamed = format!("* {} is now bob", bob.label());
    alice.send(&[&joined, &renamed]);

    let connected = format!("* connected to {addr}");
    tmux.wait_screen("alice", "the connection, join and nick lines", |s| {
        matches!(s, [.., c, j, r, p] if c.starts_with(&connected) && *j == joined
            && *r == renamed && p == ">")
    });
    tmux.wait_screen(
        "bob",
        "bob's own connection line",
        |s| matches!(s, [.., c, p] if c.starts_with(&connected) && p == ">"),
    );
}

/// A line wider than the terminal is shown whole, on as many rows as it takes, above the
/// prompt (reedline used to paint the prompt over all its rows but the first).
#[test]
fn a_line_wider_than_the_terminal_is_shown_whole() {
    let (listener, addr) = listen();
    let tmux = Tmux::new("wide");
    tmux.start("chat", (80, 12), &addr);
    let mut server = Peer::accept(&listener);
    tmux.wait_prompt("chat", ">");

    let line = format!("bob: {}", "0123456789".repeat(20));
    server.send(&[&line]);
    let mut bottom: Vec<String> = line
        .as_bytes()
        .chunks(80)
        .map(|row| String::from_utf8_lossy(row).into_owned())
        .collect();
    bottom.push(">".into());
    tmux.wait_screen("chat", "the three rows of the line", |s| {
        s.ends_with(&bottom)
    });
}

/// Rooms, against a server that answers as kchat does:
/// - `/help` lists every command, one line each, and is not sent;
/// - `/join`, `/who`, `/rooms`, `/msg` and `/part` go to the server as typed;
/// - the prompt shows the room the server's `* now in #room (N): ...` names.
#[test]
fn room_commands_go_to_the_server_and_the_prompt_shows_the_room() {
    let (listener, addr) = listen();
    let tmux = Tmux::new("rooms");
    tmux.start("chat", (80, 24), &addr);
    let mut server = Peer::accept(&listener);
    tmux.wait_prompt("chat", ">");

    tmux.type_line("chat", "/help");
    let s = tmux.wait_prompt("chat", ">");
    let asked = s
        .iter()
        .position(|l| l == "> /help")
        .expect("the typed /help");
    assert!(is_help(&s[asked + 1..s.len() - 1]), "not the help: {s:#?}");

    tmux.type_line("chat", "/join #rust");
    assert_eq!(server.frame(), b"/join #rust", "/help was sent");
    server.send(&["* now in #rust (2): bob, alice"]);
    tmux.wait_prompt("chat", "#rust>");

    for command in ["/who", "/rooms", "/msg bob hi there", "/part"] {
        tmux.type_line("chat", command);
        assert_eq!(server.frame(), command.as_bytes());
    }
    server.send(&["* now in #lobby (1): alice"]);
    tmux.wait_prompt("chat", "#lobby>");
}

/// Scripted mode (stdin not a terminal):
/// - `--nick` sends `/nick NAME` first, then each input line is one frame;
/// - `/help` lists the commands and is not sent;
/// - each frame received is printed as one line;
/// - at the end of input the client waits for replies until the server is quiet, then exits 0.
#[test]
fn scripted_mode() {
    let (listener, addr) = listen();
    let mut child = Command::new(KCHAT)
        .args(["--nick", "scripty", "--linger", "800", &addr])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut server = Peer::accept(&listener);
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"first line\n\n/help\nsecond line\n")
        .unwrap();
    drop(stdin);
    for want in [&b"/nick scripty"[..], b"first line", b"second line"] {
        assert_eq!(server.frame(), want);
    }
    // Replies that come after the end of input are still printed.
    thread::sleep(Duration::from_millis(200));
    server.send(&["* 1 online: scripty", "bob: multi\nline"]);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect();
    let (help, replies) = lines.split_at(COMMANDS.len().min(lines.len()));
    assert!(is_help(help), "not the help: {lines:#?}");
    assert_eq!(replies, ["* 1 online: scripty", "bob: multi\\x0aline"]);
}
