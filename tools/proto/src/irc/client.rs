//! A blocking IRC client for tests and scripts: registers, answers PINGs, joins channels,
//! sends messages and reads lines with timeouts.

use std::{
    io::{self, Write},
    net::{TcpStream, ToSocketAddrs},
    time::{Duration, Instant},
};

use super::{LineSplitter, Message, OwnedMessage, MAX_LINE, MAX_TAGS};
use crate::conn::read_within;

/// An error numeric (400 to 599) in `m`, if it is one.
fn error_numeric(m: &Message<'_>) -> Option<u16> {
    m.numeric().filter(|n| (400..600).contains(n))
}

/// An `InvalidData` error saying what the server sent.
fn refused(what: &str, m: &Message<'_>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{what}: {m}"))
}

/// A connection to an IRC server.
#[derive(Debug)]
pub struct Client {
    stream: TcpStream,
    lines: LineSplitter,
    nick: String,
    auto_pong: bool,
}

impl Client {
    /// Connects to `addr` without registering.
    pub fn connect(addr: impl ToSocketAddrs) -> io::Result<Self> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            // Servers may put IRCv3 tags in front of a line of up to 512 bytes.
            lines: LineSplitter::new(MAX_TAGS + MAX_LINE),
            nick: String::new(),
            auto_pong: true,
        })
    }

    /// Connects to `addr` and registers as `nick` (`NICK`, then `USER`), waiting up to
    /// `timeout` for the welcome (001). An error numeric (a nick in use, say) fails it.
    pub fn register(addr: impl ToSocketAddrs, nick: &str, timeout: Duration) -> io::Result<Self> {
        let mut c = Self::connect(addr)?;
        c.nick = nick.to_string();
        let n = nick.as_bytes();
        c.send(&Message::new(b"NICK", &[n]))?;
        c.send(&Message::new(b"USER", &[n, b"0", b"*", n]))?;
        let welcome = c.expect(timeout, |m| {
            m.numeric() == Some(1) || error_numeric(m).is_some()
        })?;
        match error_numeric(&welcome.message()) {
            Some(_) => Err(refused("registration refused", &welcome.message())),
            None => Ok(c),
        }
    }

    /// The nick this client registered with.
    pub fn nick(&self) -> &str {
        &self.nick
    }

    /// The underlying stream, for tests that need raw access.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Whether PINGs are answered (and not returned by [`Client::recv`]); on by default.
    pub fn set_auto_pong(&mut self, on: bool) {
        self.auto_pong = on;
    }

    /// Sends one message.
    pub fn send(&mut self, m: &Message<'_>) -> io::Result<()> {
        let line = m
            .to_line()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        self.stream.write_all(&line)
    }

    /// Sends `line` as it is, then CR LF (for malformed lines too).
    pub fn send_line(&mut self, line: &str) -> io::Result<()> {
        self.send_raw(format!("{line}\r\n").as_bytes())
    }

    /// Sends raw bytes (for split or unterminated lines).
    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Sends `PRIVMSG target :text`.
    pub fn privmsg(&mut self, target: &str, text: &str) -> io::Result<()> {
        self.send(&Message::new(
            b"PRIVMSG",
            &[target.as_bytes(), text.as_bytes()],
        ))
    }

    /// Joins `channel` and returns what the server sent up to and including its end of
    /// names (366), waiting at most `timeout`; an error numeric fails it.
    pub fn join(&mut self, channel: &str, timeout: Duration) -> io::Result<Vec<OwnedMessage>> {
        self.send(&Message::new(b"JOIN", &[channel.as_bytes()]))?;
        let deadline = Instant::now() + timeout;
        let mut got = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let m = self.recv_or_timeout(left, "end of names")?;
            let msg = m.message();
            if error_numeric(&msg).is_some() {
                return Err(refused(&format!("joining {channel}"), &msg));
            }
            let end = msg.numeric() == Some(366)
                && msg
                    .param(1)
                    .is_some_and(|c| c.eq_ignore_ascii_case(channel.as_bytes()));
            got.push(m);
            if end {
                return Ok(got);
            }
        }
    }

    /// Sends `QUIT :reason`.
    pub fn quit(&mut self, reason: &str) -> io::Result<()> {
        self.send(&Message::new(b"QUIT", &[reason.as_bytes()]))
    }

    /// The next message, waiting at most `timeout`: `Ok(None)` on timeout, an
    /// `UnexpectedEof` error if the server closed the connection, `InvalidData` for a line
    /// that is too long or not a message. Empty lines are skipped. (An interrupted system
    /// call is an error, as for [`crate::Conn`].)
    pub fn recv(&mut self, timeout: Duration) -> io::Result<Option<OwnedMessage>> {
        let deadline = Instant::now() + timeout;
        loop {
            while let Some(line) = self.lines.next_line() {
                let line = line.map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                if line.iter().all(|&b| b == b' ') {
                    continue;
                }
                let m = OwnedMessage::parse(line.to_vec())
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                if self.auto_pong && m.message().is("PING") {
                    let token = m.message().last().unwrap_or_default().to_vec();
                    self.send(&Message::new(b"PONG", &[&token]))?;
                    continue;
                }
                return Ok(Some(m));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            match read_within(&mut self.stream, self.lines.buffer().spare(4096), left)? {
                Some(n) => self.lines.buffer().filled(n),
                None => return Ok(None),
            }
        }
    }

    /// Waits up to `timeout` for a message that `wanted` accepts, dropping the others;
    /// a `TimedOut` error if none came.
    pub fn expect(
        &mut self,
        timeout: Duration,
        mut wanted: impl FnMut(&Message<'_>) -> bool,
    ) -> io::Result<OwnedMessage> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let m = self.recv_or_timeout(left, "the message waited for")?;
            if wanted(&m.message()) {
                return Ok(m);
            }
        }
    }

    /// The next message within `timeout`, or a `TimedOut` error naming `what` was awaited.
    fn recv_or_timeout(&mut self, timeout: Duration, what: &str) -> io::Result<OwnedMessage> {
        self.recv(timeout)?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no {what} within {timeout:?}"),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use std::{io::BufRead, net::TcpListener, thread};

    use super::*;

    const T: Duration = Duration::from_secs(5);

    /// A one-client server on a free port: reads the client's lines and answers each with
    /// what `script` returns (raw bytes, CR LF included). Returns the address and the lines
    /// it received.
    fn server(
        script: impl Fn(&str) -> Vec<u8> + Send + 'static,
    ) -> (std::net::SocketAddr, thread::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut out = stream.try_clone().unwrap();
            let mut got = Vec::new();
            for line in io::BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                let line = line.trim_end_matches('\r').to_string();
                out.write_all(&script(&line)).unwrap();
                let quit = line.starts_with("QUIT");
                got.push(line);
                if quit {
                    break;
                }
            }
            got
        });
        (addr, handle)
    }

    /// Checks a whole session against a scripted server: registration (NICK, USER, then the
    /// welcome, with a PING before it that is answered), a join that returns everything up to
    /// its 366, a PRIVMSG, a PING answered while waiting, a message received, and QUIT. The
    /// server saw exactly those lines, PONGs included.
    #[test]
    fn session() {
        let (addr, srv) = server(|line| {
            let reply: &str = match line.split(' ').next().unwrap_or("") {
                "USER" => "PING :tok1\r\n:s 001 amy :Welcome\r\n",
                "JOIN" => {
                    ":amy!a@h JOIN #c\r\n:s 353 amy = #c :@amy\n:s 366 amy #C :End of /NAMES list.\r\n"
                }
                "PRIVMSG" => "PING :tok2\r\n:bob!b@h PRIVMSG #c :hi amy\r\n",
                _ => "",
            };
            reply.as_bytes().to_vec()
        });
        let mut c = Client::register(addr, "amy", T).unwrap();
        assert_eq!(c.nick(), "amy");
        let joined = c.join("#c", T).unwrap();
        assert_eq!(joined.len(), 3);
        assert_eq!(joined[2].message().numeric(), Some(366));
        c.privmsg("#c", "hello all").unwrap();
        let m = c.expect(T, |m| m.is("PRIVMSG")).unwrap();
        assert_eq!(m.message().source_nick(), Some(&b"bob"[..]));
        assert_eq!(m.message().last(), Some(&b"hi amy"[..]));
        c.quit("bye").unwrap();
        let seen = srv.join().unwrap();
        assert_eq!(
            seen,
            [
                "NICK amy",
                "USER amy 0 * amy",
                "PONG tok1",
                "JOIN #c",
                "PRIVMSG #c :hello all",
                "PONG tok2",
                "QUIT bye"
            ]
        );
    }

    /// Checks that error numerics fail registration and joins with the server's line, that
    /// a silent server times out, and that a closed connection is `UnexpectedEof`.
    #[test]
    fn errors() {
        let (addr, _srv) = server(|line| match line {
            l if l.starts_with("USER") => b":s 433 * amy :Nickname is already in use\r\n".to_vec(),
            _ => Vec::new(),
        });
        let e = Client::register(addr, "amy", T).unwrap_err();
        assert!(e.to_string().contains("433"), "{e}");
        let (addr, _srv) = server(|line| match line {
            l if l.starts_with("USER") => b":s 001 amy :hi\r\n".to_vec(),
            l if l.starts_with("JOIN") => b":s 405 amy #d :Too many channels\r\n".to_vec(),
            _ => Vec::new(),
        });
        let mut c = Client::register(addr, "amy", T).unwrap();
        let e = c.join("#d", T).unwrap_err();
        assert!(e.to_string().contains("405"), "{e}");
        let short = Duration::from_millis(50);
        assert!(c.recv(short).unwrap().is_none());
        let e = c.expect(short, |_| true).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        c.quit("x").unwrap();
        let e = c.recv(T).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }
}
