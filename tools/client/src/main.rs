//! `kchat`: a chat client for the kchat kernel chat server.
//!
//! ```text
//! kchat [--nick NAME] [--linger MS] [HOST[:PORT]]      (default 127.0.0.1:10106)
//! ```
//!
//! On a terminal it is interactive: type a line and press Enter to send it; what others say is
//! printed above the line being typed, which stays intact. `/nick NAME` and `/who` go to the
//! server; `/quit`, Ctrl-D or Ctrl-C leave.
//!
//! When stdin is not a terminal it is scriptable: each input line is sent as one message,
//! every frame received is printed as one line, and at the end of input it waits until the
//! server has been quiet for `--linger` milliseconds (default 500), then exits. Exit status 1
//! means the server closed the connection (or could not be reached).

use std::{
    borrow::Cow,
    io::{self, BufRead, IsTerminal, Read, Write},
    net::{Shutdown, TcpStream},
    process::exit,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread,
    time::{Duration, Instant},
};

use kchat_proto::{encode, Decoder, MAX_MSG_LEN_LIMIT};

/// Command-line options.
struct Options {
    addr: String,
    nick: Option<String>,
    linger: Duration,
}

fn usage() -> ! {
    eprintln!("usage: kchat [--nick NAME] [--linger MS] [HOST[:PORT]]   (default 127.0.0.1:10106)");
    exit(2)
}

fn parse_args() -> Options {
    let mut o = Options {
        addr: "127.0.0.1:10106".into(),
        nick: None,
        linger: Duration::from_millis(500),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--nick" => o.nick = Some(args.next().unwrap_or_else(|| usage())),
            "--linger" => {
                let ms = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| usage());
                o.linger = Duration::from_millis(ms);
            }
            "-h" | "--help" => usage(),
            _ if a.starts_with('-') => usage(),
            _ => {
                o.addr = if a.contains(':') {
                    a
                } else {
                    format!("{a}:10106")
                };
            }
        }
    }
    o
}

/// A received frame as one printable line: control characters (which could move the cursor
/// or forge lines on the terminal) are shown as `\xNN`.
fn printable(frame: &[u8]) -> String {
    let text = String::from_utf8_lossy(frame);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.push_str(&format!("\\x{:02x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// Reads frames from `stream` and hands each printable line to `print` until the connection
/// ends; returns how it ended.
fn receive(mut stream: TcpStream, mut print: impl FnMut(String)) -> String {
    let mut decoder = Decoder::new(MAX_MSG_LEN_LIMIT + 64);
    loop {
        let spare = decoder.spare(64 * 1024);
        match stream.read(spare) {
            Ok(0) => return "the server closed the connection".into(),
            Ok(n) => decoder.filled(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return format!("connection lost: {e}"),
        }
        loop {
            match decoder.next_frame() {
                Ok(Some(f)) => print(printable(f)),
                Ok(None) => break,
                Err(e) => return format!("protocol error: {e}"),
            }
        }
    }
}

fn send(stream: &mut TcpStream, line: &str) -> io::Result<()> {
    stream.write_all(&encode(line.as_bytes()))
}

fn main() {
    let o = parse_args();
    let mut stream = match TcpStream::connect(&o.addr) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("kchat: cannot connect to {}: {e}", o.addr);
            exit(1);
        }
    };
    let _ = stream.set_nodelay(true);
    if let Some(nick) = &o.nick {
        if let Err(e) = send(&mut stream, &format!("/nick {nick}")) {
            eprintln!("kchat: {e}");
            exit(1);
        }
    }
    if io::stdin().is_terminal() && io::stdout().is_terminal() {
        interactive(stream, &o);
    } else {
        scripted(stream, &o);
    }
}

/// The prompt: `> `, nothing else.
struct Prompt;

impl reedline::Prompt for Prompt {
    fn render_prompt_left(&self) -> Cow<'_, str> {
        Cow::Borrowed("")
    }

    fn render_prompt_right(&self) -> Cow<'_, str> {
        Cow::Borrowed("")
    }

    fn render_prompt_indicator(&self, _mode: reedline::PromptEditMode) -> Cow<'_, str> {
        Cow::Borrowed("> ")
    }

    fn render_prompt_multiline_indicator(&self) -> Cow<'_, str> {
        Cow::Borrowed("  ")
    }

    fn render_prompt_history_search_indicator(
        &self,
        _search: reedline::PromptHistorySearch,
    ) -> Cow<'_, str> {
        Cow::Borrowed("(search) ")
    }
}

/// Interactive mode: a line editor whose line survives incoming messages.
fn interactive(mut stream: TcpStream, o: &Options) {
    let saved = terminal::save();
    // Incoming lines go through the editor, which prints them above the line being typed.
    let printer = reedline::ExternalPrinter::<String>::new(4096);
    let mut editor = reedline::Reedline::create().with_external_printer(printer.clone());
    println!("* connected to {}; /nick NAME, /who, /quit", o.addr);
    let reader = stream.try_clone().expect("clone the socket");
    thread::spawn(move || {
        let why = receive(reader, |line| {
            let _ = printer.print(line);
        });
        if LEAVING.load(Ordering::SeqCst) {
            return;
        }
        let _ = printer.print(format!("* disconnected: {why}"));
        // The editor prints within 100 ms and is blocked reading the terminal: put the
        // terminal back as we found it before leaving from this thread.
        thread::sleep(Duration::from_millis(300));
        terminal::restore(&saved);
        println!();
        exit(1);
    });
    // Ctrl-C, Ctrl-D or a lost terminal end the loop.
    while let Ok(reedline::Signal::Success(line)) = editor.read_line(&Prompt) {
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        if line == "/quit" {
            break;
        }
        if let Err(e) = send(&mut stream, line) {
            eprintln!("* disconnected: {e}");
            exit(1);
        }
    }
    LEAVING.store(true, Ordering::SeqCst);
    let _ = stream.shutdown(Shutdown::Both);
}

/// Set when the user leaves: the connection's end is then ours, not news for the reader thread
/// (which would otherwise report it and exit with status 1 before the main thread exits 0).
static LEAVING: AtomicBool = AtomicBool::new(false);

/// Scripted mode: lines in, frames out, one per line.
fn scripted(mut stream: TcpStream, o: &Options) {
    let last_frame = Arc::new(Mutex::new(Instant::now()));
    let reader = stream.try_clone().expect("clone the socket");
    let seen = last_frame.clone();
    thread::spawn(move || {
        let why = receive(reader, |line| {
            let mut out = io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
            *seen.lock().unwrap() = Instant::now();
        });
        if LEAVING.load(Ordering::SeqCst) {
            return;
        }
        eprintln!("kchat: {why}");
        exit(1);
    });
    for line in io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        if line == "/quit" {
            break;
        }
        if let Err(e) = send(&mut stream, line) {
            eprintln!("kchat: {e}");
            exit(1);
        }
    }
    // Wait for the replies: until the server has been quiet for the linger time.
    let eof = Instant::now();
    loop {
        let quiet_since = (*last_frame.lock().unwrap()).max(eof);
        let quiet = quiet_since.elapsed();
        if quiet >= o.linger {
            break;
        }
        thread::sleep(o.linger - quiet);
    }
    LEAVING.store(true, Ordering::SeqCst);
    let _ = stream.shutdown(Shutdown::Both);
}

/// Saving and restoring the terminal's mode, for leaving while the line editor owns it.
mod terminal {
    /// The terminal settings at start, if stdin is a terminal.
    pub struct Saved(Option<libc::termios>);

    pub fn save() -> Saved {
        let mut t = std::mem::MaybeUninit::<libc::termios>::uninit();
        // SAFETY: `t` is valid for writes of a `termios`; tcgetattr fills it on success.
        let ok = unsafe { libc::tcgetattr(libc::STDIN_FILENO, t.as_mut_ptr()) } == 0;
        // SAFETY: tcgetattr succeeded, so `t` is initialised.
        Saved(ok.then(|| unsafe { t.assume_init() }))
    }

    pub fn restore(saved: &Saved) {
        if let Some(t) = &saved.0 {
            // SAFETY: `t` is a termios that tcgetattr returned for this terminal.
            unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, t) };
        }
    }
}
