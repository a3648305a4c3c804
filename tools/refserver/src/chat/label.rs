//! Labels: how a client is shown to the others, its nick or its address.

use std::{
    fmt,
    net::{IpAddr, SocketAddr},
};

/// Longest nick.
pub const MAX_NICK_LEN: usize = 32;

/// Longest label: an IPv6 address with its port,
/// `[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535`.
const LABEL_CAP: usize = 47;

/// Whether `c` may appear in a nick or a room name: `[A-Za-z0-9_.-]`.
pub fn is_name_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-')
}

/// How a client is shown to others: its nick, or its address until it sets one.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Label {
    bytes: [u8; LABEL_CAP],
    len: u8,
}

/// Why a requested nick is not valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NickError {
    /// No name given.
    Empty,
    /// Longer than [`MAX_NICK_LEN`] bytes.
    TooLong,
    /// A byte outside `[A-Za-z0-9_.-]`.
    BadChar,
}

impl NickError {
    /// The text after `! ` that the client gets back.
    pub fn message(self) -> &'static str {
        match self {
            Self::Empty => "usage: /nick NAME",
            Self::TooLong => "invalid nick: longer than 32 bytes",
            Self::BadChar => "invalid nick: use only A-Z a-z 0-9 _ . -",
        }
    }
}

impl Label {
    /// The default label: `A.B.C.D:PORT` for IPv4 peers, also when they arrive as v4-mapped
    /// IPv6 addresses, and `[ADDR]:PORT` for IPv6 peers (without a scope id).
    pub fn from_addr(addr: SocketAddr) -> Self {
        let ip = match addr.ip() {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        let text = match ip {
            IpAddr::V4(v4) => format!("{v4}:{}", addr.port()),
            IpAddr::V6(v6) => format!("[{v6}]:{}", addr.port()),
        };
        Self::from_ascii(text.as_bytes())
    }

    /// A nick: 1 to [`MAX_NICK_LEN`] bytes of `[A-Za-z0-9_.-]`.
    pub fn nick(name: &[u8]) -> Result<Self, NickError> {
        if name.is_empty() {
            return Err(NickError::Empty);
        }
        if name.len() > MAX_NICK_LEN {
            return Err(NickError::TooLong);
        }
        if !name.iter().all(|&c| is_name_byte(c)) {
            return Err(NickError::BadChar);
        }
        Ok(Self::from_ascii(name))
    }

    /// The label of ASCII `text`, which is at most [`LABEL_CAP`] bytes (a longer one would be
    /// cut).
    fn from_ascii(text: &[u8]) -> Self {
        let len = text.len().min(LABEL_CAP);
        let mut bytes = [0; LABEL_CAP];
        bytes[..len].copy_from_slice(&text[..len]);
        // At most LABEL_CAP (47): fits in a u8.
        Self {
            bytes,
            len: len as u8,
        }
    }

    /// The label's bytes (always ASCII).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The label as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or("?")
    }

    /// Whether this label is `name`, ignoring ASCII case.
    pub fn is(&self, name: &[u8]) -> bool {
        self.as_bytes().eq_ignore_ascii_case(name)
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Label({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nicks() {
        assert!(Label::nick(b"A-z_0.9").is_ok());
        assert!(Label::nick(&[b'x'; 32]).is_ok());
        assert_eq!(Label::nick(&[b'x'; 33]), Err(NickError::TooLong));
        assert_eq!(Label::nick(b""), Err(NickError::Empty));
        assert_eq!(Label::nick(b"b:b"), Err(NickError::BadChar));
        assert!(Label::nick(b"Bob").unwrap().is(b"bOB"));
    }

    #[test]
    fn addresses() {
        for (addr, label) in [
            ("255.255.255.255:65535", "255.255.255.255:65535"),
            ("[::1]:80", "[::1]:80"),
            ("[::ffff:10.0.0.1]:7", "10.0.0.1:7"),
            ("[fe80::1%2]:9", "[fe80::1]:9"),
            (
                "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
                "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
            ),
        ] {
            let got = Label::from_addr(addr.parse().unwrap());
            assert_eq!(got.as_str(), label);
        }
    }
}
