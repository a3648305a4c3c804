//! `kchat`: a chat client for the kchat kernel chat server.
//!
//! ```text
//! kchat [--nick NAME] [--linger MS] [HOST[:PORT]]      (default 127.0.0.1:10106)
//! ```
//!
//! On a terminal it is interactive: type a line and press Enter to send it; what others say is
//! printed above the line being typed, which stays intact on the terminal's last row. The
//! prompt shows the room the client is in, once the server has said so. Commands go to the
//! server as typed, except `/help`, which lists them, and `/quit`; Ctrl-D or Ctrl-C leave too.
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

/// Every command, as `/help` lists them. The server interprets all of them but the last two.
const COMMANDS: [(&str, &str); 8] = [
    ("/nick NAME", "set your nick: 1 to 32 of A-Z a-z 0-9 _ . -"),
    ("/join #room", "go to #room, made if it is new"),
    ("/part", "go back to #lobby, where everyone starts"),
    ("/rooms", "list the rooms and how many are in each"),
    ("/who", "list who is in your room"),
    ("/msg NICK TEXT", "send TEXT to NICK alone, in any room"),
    ("/help", "list these commands"),
    ("/quit", "leave (Ctrl-D too)"),
];

/// Acts on one line the user typed: sends it as it is, or lists the commands for `/help`.
/// Returns false for `/quit`.
fn act(stream: &mut TcpStream, line: &str) -> bool {
    match line.trim_end() {
        "" => {}
        "/quit" => return false,
        "/help" => {
            for (command, what) in COMMANDS {
                println!("{command:<16}{what}");
            }
        }
        line => {
            if let Err(e) = send(stream, line) {
                eprintln!("kchat: {e}");
                exit(1);
            }
        }
    }
    true
}

/// The room a line from the server says the client is now in: `* now in #room (N): ...`, the
/// answer to `/join` and `/part`.
fn room_entered(line: &str) -> Option<&str> {
    let (room, _) = line.strip_prefix("* now in ")?.split_once(" (")?;
    room.starts_with('#').then_some(room)
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

/// The prompt: the room the client is in, when known, then `> `.
struct Prompt {
    /// Set by the reader thread from the server's answers; empty until one names a room.
    room: Arc<Mutex<String>>,
}

impl reedline::Prompt for Prompt {
    fn render_prompt_left(&self) -> Cow<'_, str> {
        Cow::Owned(self.room.lock().unwrap().clone())
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
///
/// The line being typed stays on the terminal's last row, as in most chat clients: what the
/// screen showed is scrolled up into the scrollback at start, and Ctrl-L (which would clear the
/// screen and put the prompt on the first row) is unbound. reedline needs this to print incoming
/// lines correctly. Its painter (0.40; still so in 0.48) moves its record of the prompt's row
/// down one row per line printed, then checks that record with a cursor position query, which
/// reaches the terminal before the lines, still in its buffer. So with the prompt above the last
/// row, two or more lines printed together (a join and a nick change arriving together) look
/// like a cleared screen, and it clears the screen, lines and all; and the rows that a line wider
/// than the terminal wraps onto are painted over by the prompt. On the last row the record
/// cannot move, and both come out right.
fn interactive(mut stream: TcpStream, o: &Options) {
    let saved = terminal::save();
    // Incoming lines go through the editor, which prints them above the line being typed.
    let printer = reedline::ExternalPrinter::<String>::new(4096);
    let mut keybindings = reedline::default_emacs_keybindings();
    keybindings.remove_binding(
        reedline::KeyModifiers::CONTROL,
        reedline::KeyCode::Char('l'),
    );
    let mut editor = reedline::Reedline::create()
        .with_edit_mode(Box::new(reedline::Emacs::new(keybindings)))
        .with_external_printer(printer.clone());
    let prompt = Prompt {
        room: Arc::default(),
    };
    // The prompt starts on the last row.
    print!("{}", "\n".repeat(terminal::rows().saturating_sub(1).into()));
    println!("* connected to {}; /help lists the commands", o.addr);
    let reader = stream.try_clone().expect("clone the socket");
    let room = prompt.room.clone();
    thread::spawn(move || {
        let why = receive(reader, |line| {
            if let Some(entered) = room_entered(&line) {
                // Before the line is printed: the editor redraws the prompt just after it.
                *room.lock().unwrap() = entered.to_owned();
            }
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
    while let Ok(reedline::Signal::Success(line)) = editor.read_line(&prompt) {
        if !act(&mut stream, &line) {
            break;
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
    for line in io::stdin().lock().lines().map_while(Result::ok) {
        if !act(&mut stream, &line) {
            break;
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

/// The terminal: its size, and saving and restoring its mode, for leaving while the line editor
/// owns it.
mod terminal {
    /// The terminal's height in rows, or 0 if stdout is not a terminal that knows it.
    pub fn rows() -> u16 {
        let mut size = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ writes a `winsize` through the pointer, which is valid for that;
        // on failure `size` keeps its zeros.
        unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) };
        size.ws_row
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_room_comes_from_the_answer_to_join_and_part() {
        assert_eq!(
            room_entered("* now in #rust (2): alice, bob"),
            Some("#rust")
        );
        assert_eq!(room_entered("* now in #lobby (1): alice"), Some("#lobby"));
        for other in [
            "* 2 online in #rust: alice, bob",
            "* now in rust (1): alice",
            "* now in #rust",
            "alice: * now in #fake (1): alice",
            "! already in #lobby",
        ] {
            assert_eq!(room_entered(other), None, "{other}");
        }
    }

    #[test]
    fn control_characters_are_shown_not_obeyed() {
        assert_eq!(printable(b"a\x1b[2J\tb\xff"), "a\\x1b[2J\\x09b\u{fffd}");
    }
}
