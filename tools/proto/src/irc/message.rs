//! One IRC message: parsing a line into tags, prefix, command and parameters without copying,
//! and writing one back as a line.

use std::fmt;

use super::{MAX_LINE, MAX_PARAMS};

/// A parsed IRC message, borrowing from its line.
///
/// `[@TAGS ][:PREFIX ]COMMAND[ PARAM...][ :TRAILING]`: parameters are separated by one or
/// more spaces; a parameter starting with `:` (or the fifteenth) takes the rest of the line,
/// spaces included, and is the last one.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    tags: Option<&'a [u8]>,
    prefix: Option<&'a [u8]>,
    command: &'a [u8],
    params: [&'a [u8]; MAX_PARAMS],
    len: usize,
}

/// Why a line is not an IRC message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Nothing but spaces (RFC 2812: empty messages are silently ignored).
    Empty,
    /// Tags or a prefix, and no command after them.
    NoCommand,
    /// The command is neither letters nor three digits.
    BadCommand,
    /// A NUL, CR or LF inside the line.
    ForbiddenByte(u8),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Empty => f.write_str("empty line"),
            ParseError::NoCommand => f.write_str("no command"),
            ParseError::BadCommand => f.write_str("command is neither letters nor 3 digits"),
            ParseError::ForbiddenByte(b) => write!(f, "forbidden byte 0x{b:02x} in the line"),
        }
    }
}

impl std::error::Error for ParseError {}

/// Why a message cannot be written as a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatError {
    /// The command is neither letters nor three digits.
    BadCommand,
    /// Tags or prefix empty, or with a space, NUL, CR or LF.
    BadTagsOrPrefix,
    /// Parameter `n` (from 0) cannot be sent: a NUL, CR or LF anywhere, or, before the last,
    /// empty, with a space, or starting with `:`.
    BadParam(usize),
    /// The line without its tags would pass [`MAX_LINE`] bytes with its CR LF.
    TooLong(usize),
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormatError::BadCommand => f.write_str("command is neither letters nor 3 digits"),
            FormatError::BadTagsOrPrefix => f.write_str("tags or prefix empty or with a space"),
            FormatError::BadParam(n) => write!(f, "parameter {n} cannot be sent"),
            FormatError::TooLong(n) => write!(f, "line of {n} bytes, over {MAX_LINE}"),
        }
    }
}

impl std::error::Error for FormatError {}

/// True for a command: letters, or exactly three digits.
fn valid_command(c: &[u8]) -> bool {
    !c.is_empty()
        && (c.iter().all(u8::is_ascii_alphabetic)
            || (c.len() == 3 && c.iter().all(u8::is_ascii_digit)))
}

/// True if `b` may not appear anywhere in a line.
fn forbidden(b: u8) -> bool {
    matches!(b, 0 | b'\r' | b'\n')
}

/// True if `last`, the last parameter, must be written after a `:` (it could not be read
/// back as a middle parameter).
fn needs_colon(last: &[u8]) -> bool {
    last.is_empty() || last.starts_with(b":") || last.contains(&b' ')
}

/// Splits off the word at the start of `rest` (which starts with no space): the word and what
/// follows it, leading spaces removed.
fn word(rest: &[u8]) -> (&[u8], &[u8]) {
    let end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
    (&rest[..end], trim_spaces(&rest[end..]))
}

/// `s` without its leading spaces.
fn trim_spaces(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| b == b' ').count();
    &s[n..]
}

impl<'a> Message<'a> {
    /// A message to send: `command` with `params` (the last may contain spaces), no tags or
    /// prefix. It is checked when written.
    ///
    /// # Panics
    ///
    /// With more than [`MAX_PARAMS`] parameters.
    pub fn new(command: &'a [u8], params: &[&'a [u8]]) -> Self {
        assert!(
            params.len() <= MAX_PARAMS,
            "more than {MAX_PARAMS} parameters"
        );
        let mut all = [&b""[..]; MAX_PARAMS];
        all[..params.len()].copy_from_slice(params);
        Self {
            tags: None,
            prefix: None,
            command,
            params: all,
            len: params.len(),
        }
    }

    /// This message with a prefix (`nick!user@host` or a server name, without the `:`).
    pub fn with_prefix(mut self, prefix: &'a [u8]) -> Self {
        self.prefix = Some(prefix);
        self
    }

    /// This message with tags (`key=value;key2`, without the `@`, values escaped).
    pub fn with_tags(mut self, tags: &'a [u8]) -> Self {
        self.tags = Some(tags);
        self
    }

    /// Parses one line (without its CR LF or LF).
    pub fn parse(line: &'a [u8]) -> Result<Self, ParseError> {
        if let Some(&b) = line.iter().find(|&&b| forbidden(b)) {
            return Err(ParseError::ForbiddenByte(b));
        }
        let mut rest = trim_spaces(line);
        if rest.is_empty() {
            return Err(ParseError::Empty);
        }
        let mut tags = None;
        if let Some(r) = rest.strip_prefix(b"@") {
            let (t, r) = word(r);
            tags = Some(t);
            rest = r;
        }
        let mut prefix = None;
        if let Some(r) = rest.strip_prefix(b":") {
            let (p, r) = word(r);
            prefix = Some(p);
            rest = r;
        }
        let (command, mut rest) = word(rest);
        if command.is_empty() {
            return Err(ParseError::NoCommand);
        }
        if !valid_command(command) {
            return Err(ParseError::BadCommand);
        }
        let mut params = [&b""[..]; MAX_PARAMS];
        let mut len = 0;
        while !rest.is_empty() {
            if let Some(trailing) = rest.strip_prefix(b":") {
                params[len] = trailing;
                len += 1;
                break;
            }
            if len == MAX_PARAMS - 1 {
                // RFC 2812: after 14 middle parameters the rest is the last, `:` or not.
                params[len] = rest;
                len += 1;
                break;
            }
            let (p, r) = word(rest);
            params[len] = p;
            len += 1;
            rest = r;
        }
        Ok(Self {
            tags,
            prefix,
            command,
            params,
            len,
        })
    }

    /// The tags, without the `@` (values still escaped).
    pub fn tags(&self) -> Option<&'a [u8]> {
        self.tags
    }

    /// The tags as `(key, value)` pairs (values still escaped; `None` without `=`).
    pub fn tag_pairs(&self) -> impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)> {
        let tags = self.tags.unwrap_or_default();
        tags.split(|&b| b == b';')
            .filter(|t| !t.is_empty())
            .map(|t| match t.iter().position(|&b| b == b'=') {
                Some(i) => (&t[..i], Some(&t[i + 1..])),
                None => (t, None),
            })
    }

    /// The prefix (the source), without the `:`.
    pub fn prefix(&self) -> Option<&'a [u8]> {
        self.prefix
    }

    /// The nick of the source: the prefix up to its `!` or `@` (all of it for a server).
    pub fn source_nick(&self) -> Option<&'a [u8]> {
        let p = self.prefix?;
        let end = p.iter().position(|&b| b == b'!' || b == b'@');
        Some(&p[..end.unwrap_or(p.len())])
    }

    /// The command as sent (letters in any case, or three digits).
    pub fn command(&self) -> &'a [u8] {
        self.command
    }

    /// True if the command is `name`, ignoring ASCII case.
    pub fn is(&self, name: &str) -> bool {
        self.command.eq_ignore_ascii_case(name.as_bytes())
    }

    /// The numeric reply code, for a three-digit command.
    pub fn numeric(&self) -> Option<u16> {
        let c = self.command;
        if c.len() != 3 || !c.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(c.iter().fold(0, |n, &d| n * 10 + u16::from(d - b'0')))
    }

    /// The parameters, the trailing one last.
    pub fn params(&self) -> &[&'a [u8]] {
        &self.params[..self.len]
    }

    /// Parameter `i`, if there is one.
    pub fn param(&self, i: usize) -> Option<&'a [u8]> {
        self.params().get(i).copied()
    }

    /// The last parameter (the text of PRIVMSG, NOTICE, QUIT, ERROR, a numeric's message).
    pub fn last(&self) -> Option<&'a [u8]> {
        self.params().last().copied()
    }

    /// Appends this message as one line, CR LF included, to `out`. Nothing is appended if
    /// it cannot be sent as it is.
    pub fn write_to(&self, out: &mut Vec<u8>) -> Result<(), FormatError> {
        self.check()?;
        if let Some(t) = self.tags {
            out.push(b'@');
            out.extend_from_slice(t);
            out.push(b' ');
        }
        let start = out.len();
        if let Some(p) = self.prefix {
            out.push(b':');
            out.extend_from_slice(p);
            out.push(b' ');
        }
        out.extend_from_slice(self.command);
        for (i, p) in self.params().iter().enumerate() {
            out.push(b' ');
            if i + 1 == self.len && needs_colon(p) {
                out.push(b':');
            }
            out.extend_from_slice(p);
        }
        out.extend_from_slice(b"\r\n");
        let len = out.len() - start;
        if len > MAX_LINE {
            out.truncate(start - self.tags.map_or(0, |t| t.len() + 2));
            return Err(FormatError::TooLong(len));
        }
        Ok(())
    }

    /// This message as one line, CR LF included.
    pub fn to_line(&self) -> Result<Vec<u8>, FormatError> {
        let mut out = Vec::new();
        self.write_to(&mut out)?;
        Ok(out)
    }

    /// Checks that the message can be written as it is.
    fn check(&self) -> Result<(), FormatError> {
        if !valid_command(self.command) {
            return Err(FormatError::BadCommand);
        }
        let word_ok = |w: &[u8]| !w.is_empty() && !w.iter().any(|&b| forbidden(b) || b == b' ');
        if !self.tags.is_none_or(word_ok) || !self.prefix.is_none_or(word_ok) {
            return Err(FormatError::BadTagsOrPrefix);
        }
        for (i, p) in self.params().iter().enumerate() {
            let ok = if i + 1 == self.len {
                !p.iter().any(|&b| forbidden(b))
            } else {
                word_ok(p) && !p.starts_with(b":")
            };
            if !ok {
                return Err(FormatError::BadParam(i));
            }
        }
        Ok(())
    }
}

/// The message as a line (bytes that are not UTF-8 replaced), without CR LF.
impl fmt::Display for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        if let Some(t) = self.tags {
            write!(f, "@{} ", text(t))?;
        }
        if let Some(p) = self.prefix {
            write!(f, ":{} ", text(p))?;
        }
        f.write_str(&text(self.command))?;
        for (i, p) in self.params().iter().enumerate() {
            let colon = i + 1 == self.len && needs_colon(p);
            write!(f, " {}{}", if colon { ":" } else { "" }, text(p))?;
        }
        Ok(())
    }
}

impl fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Message({self})")
    }
}

/// A parsed message that owns its line, for keeping messages after the buffer moves on.
#[derive(Clone, PartialEq, Eq)]
pub struct OwnedMessage {
    line: Vec<u8>,
}

impl OwnedMessage {
    /// Parses `line` (without CR LF) and keeps it.
    pub fn parse(line: Vec<u8>) -> Result<Self, ParseError> {
        Message::parse(&line)?;
        Ok(Self { line })
    }

    /// The message.
    pub fn message(&self) -> Message<'_> {
        Message::parse(&self.line).expect("checked when made")
    }

    /// The line, without CR LF.
    pub fn line(&self) -> &[u8] {
        &self.line
    }
}

impl fmt::Display for OwnedMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.message().fmt(f)
    }
}

impl fmt::Debug for OwnedMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.message().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params<'a>(m: &Message<'a>) -> Vec<&'a str> {
        m.params()
            .iter()
            .map(|p| std::str::from_utf8(p).unwrap())
            .collect()
    }

    /// Checks every part of a message: tags, prefix, command, middle and trailing parameters
    /// (spaces and colons kept inside the trailing one), the source's nick, numerics, and
    /// runs of spaces between the parts.
    #[test]
    fn parse_parts() {
        let m = Message::parse(b"@id=1;+x :nick!u@h PRIVMSG #c :hi there :)").unwrap();
        assert_eq!(m.tags(), Some(&b"id=1;+x"[..]));
        let tags: Vec<_> = m.tag_pairs().collect();
        assert_eq!(
            tags,
            [(&b"id"[..], Some(&b"1"[..])), (&b"+x"[..], None::<&[u8]>)]
        );
        assert_eq!(m.prefix(), Some(&b"nick!u@h"[..]));
        assert_eq!(m.source_nick(), Some(&b"nick"[..]));
        assert!(m.is("privmsg"));
        assert_eq!(params(&m), ["#c", "hi there :)"]);
        assert_eq!(m.last(), Some(&b"hi there :)"[..]));
        let m = Message::parse(b":irc.local 366  me   #c :End of /NAMES list.").unwrap();
        assert_eq!(m.numeric(), Some(366));
        assert_eq!(m.source_nick(), Some(&b"irc.local"[..]));
        assert_eq!(params(&m), ["me", "#c", "End of /NAMES list."]);
        let m = Message::parse(b"PING").unwrap();
        assert_eq!((m.params().len(), m.prefix(), m.numeric()), (0, None, None));
        let m = Message::parse(b"PRIVMSG #c :").unwrap();
        assert_eq!(params(&m), ["#c", ""]);
        let m = Message::parse(b"NICK  bob  ").unwrap();
        assert_eq!(params(&m), ["bob"]);
    }

    /// Checks that after 14 middle parameters the rest of the line is the 15th, spaces and
    /// all, as RFC 2812 says.
    #[test]
    fn fifteen_params() {
        let line = b"CMD 1 2 3 4 5 6 7 8 9 10 11 12 13 14 rest of it";
        let m = Message::parse(line).unwrap();
        assert_eq!(m.params().len(), MAX_PARAMS);
        assert_eq!(m.last(), Some(&b"rest of it"[..]));
    }

    /// Checks what is not a message: empty or blank lines, a prefix with no command, bad
    /// commands, NUL and bare CR inside the line.
    #[test]
    fn parse_errors() {
        assert_eq!(Message::parse(b""), Err(ParseError::Empty));
        assert_eq!(Message::parse(b"   "), Err(ParseError::Empty));
        assert_eq!(Message::parse(b":prefix"), Err(ParseError::NoCommand));
        assert_eq!(Message::parse(b"@a=b :p "), Err(ParseError::NoCommand));
        assert_eq!(Message::parse(b"12 x"), Err(ParseError::BadCommand));
        assert_eq!(Message::parse(b"PRIV-MSG x"), Err(ParseError::BadCommand));
        assert_eq!(
            Message::parse(b"PRIVMSG #c :a\0b"),
            Err(ParseError::ForbiddenByte(0))
        );
        assert_eq!(
            Message::parse(b"PRIVMSG #c :a\rb"),
            Err(ParseError::ForbiddenByte(b'\r'))
        );
    }

    /// Checks writing: a `:` before a last parameter only where it needs one (empty, with a
    /// space, starting with `:`), tags and prefix, and that writing then parsing gives the
    /// same message back.
    #[test]
    fn write_and_round_trip() {
        let line = |m: Message<'_>| String::from_utf8(m.to_line().unwrap()).unwrap();
        assert_eq!(line(Message::new(b"JOIN", &[b"#c"])), "JOIN #c\r\n");
        assert_eq!(
            line(Message::new(b"PRIVMSG", &[b"#c", b"hi there"])),
            "PRIVMSG #c :hi there\r\n"
        );
        assert_eq!(line(Message::new(b"PONG", &[b""])), "PONG :\r\n");
        assert_eq!(line(Message::new(b"X", &[b":)"])), "X ::)\r\n");
        let m = Message::new(b"001", &[b"me", b"Welcome"])
            .with_prefix(b"irc.local")
            .with_tags(b"time=1");
        assert_eq!(line(m), "@time=1 :irc.local 001 me Welcome\r\n");
        let bytes = m.to_line().unwrap();
        assert_eq!(Message::parse(&bytes[..bytes.len() - 2]).unwrap(), m);
        assert_eq!(m.to_string(), "@time=1 :irc.local 001 me Welcome");
    }

    /// Checks that what cannot be sent is refused, with nothing appended: bad commands,
    /// spaces or colons in middle parameters, empty middle parameters, CR or LF anywhere,
    /// a prefix with a space, and lines over 512 bytes (tags not counted).
    #[test]
    fn write_errors() {
        let mut out = b"kept".to_vec();
        let err = |m: Message<'_>, out: &mut Vec<u8>| m.write_to(out).unwrap_err();
        assert_eq!(
            err(Message::new(b"", &[]), &mut out),
            FormatError::BadCommand
        );
        assert_eq!(
            err(Message::new(b"X", &[b"a b", b"c"]), &mut out),
            FormatError::BadParam(0)
        );
        assert_eq!(
            err(Message::new(b"X", &[b":a", b"c"]), &mut out),
            FormatError::BadParam(0)
        );
        assert_eq!(
            err(Message::new(b"X", &[b"", b"c"]), &mut out),
            FormatError::BadParam(0)
        );
        assert_eq!(
            err(Message::new(b"X", &[b"a\nb"]), &mut out),
            FormatError::BadParam(0)
        );
        assert_eq!(
            err(Message::new(b"X", &[]).with_prefix(b"a b"), &mut out),
            FormatError::BadTagsOrPrefix
        );
        let text = vec![b'x'; 509];
        let tags = vec![b'k'; 1000];
        let long = Message::new(b"X", &[&text]).with_tags(&tags);
        assert_eq!(err(long, &mut out), FormatError::TooLong(513));
        assert_eq!(out, b"kept");
        let fits = Message::new(b"X", &[&text[..508]]).with_tags(&tags);
        assert!(fits.write_to(&mut out).is_ok());
        assert_eq!(out.len(), 4 + 1002 + 512);
    }

    /// Checks the owned form: it keeps the line and gives the same message.
    #[test]
    fn owned() {
        let o = OwnedMessage::parse(b":a!b@c QUIT :bye".to_vec()).unwrap();
        assert_eq!(o.message().last(), Some(&b"bye"[..]));
        assert_eq!(o.to_string(), ":a!b@c QUIT bye");
        assert!(OwnedMessage::parse(b"".to_vec()).is_err());
    }
}
