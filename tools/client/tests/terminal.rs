//! The `kchat` client against a scripted server end: its interactive line editing in a real
//! terminal (tmux), and its scriptable mode.
//!
//! The "server" here is the test itself holding the accepted socket: the client's behaviour is
//! what is under test; the kernel server is tested in the VM suite.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use kchat_proto::{encode, Decoder};

const KCHAT: &str = env!("CARGO_BIN_EXE_kchat");

fn listen() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    (l, addr)
}

/// Reads one frame from the client, within `timeout`.
fn read_frame(s: &mut TcpStream, d: &mut Decoder, timeout: Duration) -> Option<Vec<u8>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(f) = d.next_frame().unwrap() {
            return Some(f.to_vec());
        }
        let left = deadline.checked_duration_since(Instant::now())?;
        s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        let spare = d.spare(4096);
        match s.read(spare) {
            Ok(0) => return None,
            Ok(n) => d.filled(n),
            Err(_) => return None,
        }
    }
}

/// A tmux server of our own, so that the test touches no user session.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new() -> Self {
        Self {
            socket: format!("kchat-test-{}", std::process::id()),
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

    /// The visible pane, trailing blank lines removed.
    fn screen(&self) -> Vec<String> {
        let text = self.run(&["capture-pane", "-p", "-t", "chat"]);
        let mut lines: Vec<String> = text.lines().map(|l| l.trim_end().to_string()).collect();
        while lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
        }
        lines
    }

    fn wait_screen(&self, what: &str, pred: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = self.screen();
            if pred(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; screen: {s:#?}"
            );
            thread::sleep(Duration::from_millis(50));
        }
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
    let tmux = Tmux::new();
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "chat",
        "-x",
        "80",
        "-y",
        "12",
        &format!("{KCHAT} {addr}; echo kchat exited with $?; sleep 30"),
    ]);
    let (mut server, _) = listener.accept().unwrap();
    tmux.wait_screen("the prompt", |s| s.last().is_some_and(|l| l == ">"));

    tmux.run(&["send-keys", "-t", "chat", "-l", "hello wor"]);
    tmux.wait_screen("the typed text", |s| {
        s.last().is_some_and(|l| l == "> hello wor")
    });

    server
        .write_all(&encode(b"bob: incoming while you type"))
        .unwrap();
    let s = tmux.wait_screen("the incoming message", |s| {
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

    tmux.run(&["send-keys", "-t", "chat", "-l", "ld"]);
    tmux.run(&["send-keys", "-t", "chat", "Enter"]);
    let mut d = Decoder::new(1 << 20);
    let frame = read_frame(&mut server, &mut d, Duration::from_secs(10)).expect("the typed line");
    assert_eq!(frame, b"hello world");

    // A control sequence from the network is shown, not obeyed.
    server.write_all(&encode(b"eve: \x1b[2Jcleared?")).unwrap();
    tmux.wait_screen("the escaped message", |s| {
        s.iter().any(|l| l == "eve: \\x1b[2Jcleared?")
    });

    drop(server);
    tmux.wait_screen("the disconnect notice", |s| {
        s.iter()
            .any(|l| l.contains("* disconnected: the server closed the connection"))
            && s.iter().any(|l| l == "kchat exited with 1")
    });
}

/// Scripted mode (stdin not a terminal):
/// - `--nick` sends `/nick NAME` first, then each input line is one frame;
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
    let (mut server, _) = listener.accept().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"first line\n\nsecond line\n").unwrap();
    drop(stdin);
    let mut d = Decoder::new(1 << 20);
    for want in [&b"/nick scripty"[..], b"first line", b"second line"] {
        let f = read_frame(&mut server, &mut d, Duration::from_secs(10)).expect("a frame");
        assert_eq!(f, want);
    }
    // Replies that come after the end of input are still printed.
    thread::sleep(Duration::from_millis(200));
    server.write_all(&encode(b"* 1 online: scripty")).unwrap();
    server.write_all(&encode(b"bob: multi\nline")).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "* 1 online: scripty\nbob: multi\\x0aline\n"
    );
}
