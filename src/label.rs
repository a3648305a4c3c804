// SPDX-License-Identifier: GPL-2.0

//! Names: how a client is shown to others ([`Label`]: a nick, or its address until it sets
//! one), room names ([`RoomName`]), and the case-folded [`Key`] both are looked up by.
//!
//! These are the chat's names, not a wire format: every front end shows the same label.

use kernel::{
    fmt,
    prelude::*, //
};

use crate::net::PeerAddr;

/// Longest nick.
pub(crate) const MAX_NICK_LEN: usize = 32;

/// Longest label: a nick, or an address (`[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535`
/// is 47 bytes).
pub(crate) const MAX_LABEL_LEN: usize = 48;

/// Longest room name, `#` included.
pub(crate) const MAX_ROOM_LEN: usize = 1 + MAX_NICK_LEN;

/// Whether `c` may appear in a nick or a room name: `[A-Za-z0-9_.-]`.
fn name_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-')
}

/// Up to `N` bytes of ASCII, kept inline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Name<const N: usize> {
    bytes: [u8; N],
    len: u8,
}

impl<const N: usize> Name<N> {
    const EMPTY: Self = Self {
        bytes: [0; N],
        len: 0,
    };

    /// `bytes` as a name; the caller has checked the length (at most `N`, and `N` < 256).
    fn from_checked(bytes: &[u8]) -> Self {
        let mut name = Self::EMPTY;
        name.bytes[..bytes.len()].copy_from_slice(bytes);
        // `bytes.len() <= N <= 255`.
        name.len = bytes.len() as u8;
        name
    }

    /// The name's bytes (always ASCII).
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// `bytes` with what is not `[A-Za-z0-9_.~-]` left out, cut to `N` bytes; `fallback`
    /// if nothing is left.
    pub(crate) fn sanitized(bytes: &[u8], fallback: &[u8]) -> Self {
        let mut name = Self::EMPTY;
        let mut n = 0;
        for &c in bytes {
            if n == N {
                break;
            }
            if c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-' | b'~') {
                name.bytes[n] = c;
                n += 1;
            }
        }
        if n == 0 {
            let f = &fallback[..fallback.len().min(N)];
            name.bytes[..f.len()].copy_from_slice(f);
            n = f.len();
        }
        // `n <= N <= 255`.
        name.len = n as u8;
        name
    }

    /// The name folded to lower case, as names are compared.
    pub(crate) fn key(&self) -> Key {
        Key::of(self.as_bytes())
    }
}

impl<const N: usize> fmt::Write for Name<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let at = usize::from(self.len);
        let end = at + s.len();
        if end > N {
            return Err(fmt::Error);
        }
        self.bytes[at..end].copy_from_slice(s.as_bytes());
        // `end <= N <= 255`.
        self.len = end as u8;
        Ok(())
    }
}

impl<const N: usize> fmt::Display for Name<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Names are ASCII by construction (the nick alphabet, or an address).
        f.write_str(core::str::from_utf8(self.as_bytes()).unwrap_or("?"))
    }
}

/// How a client is shown to others: its nick, or its address until it sets one.
pub(crate) type Label = Name<MAX_LABEL_LEN>;

/// A room's name as first spelled: `#` and 1 to 32 bytes of `[A-Za-z0-9_.-]`.
pub(crate) type RoomName = Name<MAX_ROOM_LEN>;

/// Why a requested nick was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NickError {
    /// No name given.
    Empty,
    /// Longer than [`MAX_NICK_LEN`] bytes.
    TooLong,
    /// A byte outside `[A-Za-z0-9_.-]` (or, for IRC, outside the IRC nick alphabet).
    BadChar,
    /// Of the form `kchat-ID`, which names members known by their address.
    Reserved,
}

/// The prefix of the name IRC shows for a member known by its address.
pub(crate) const ALIAS: &[u8] = b"kchat-";

impl Label {
    /// The default label: the peer's address.
    pub(crate) fn from_addr(addr: PeerAddr) -> Self {
        let mut label = Self::EMPTY;
        // An address is at most 47 bytes: it always fits.
        let _ = fmt::Write::write_fmt(&mut label, fmt!("{addr}"));
        label
    }

    /// A nick: 1 to 32 bytes of `[A-Za-z0-9_.-]`.
    pub(crate) fn nick(name: &[u8]) -> Result<Self, NickError> {
        if name.is_empty() {
            return Err(NickError::Empty);
        }
        if name.len() > MAX_NICK_LEN {
            return Err(NickError::TooLong);
        }
        if !name.iter().all(|&c| name_byte(c)) {
            return Err(NickError::BadChar);
        }
        if Self::alias_conn(name).is_some() {
            return Err(NickError::Reserved);
        }
        Ok(Self::from_checked(name))
    }

    /// An IRC nick: 1 to 32 bytes, a letter or one of ``[]\`_^{|}`` first, then letters,
    /// digits, those or `-`; not of the reserved `kchat-ID` form.
    pub(crate) fn irc_nick(name: &[u8]) -> Result<Self, NickError> {
        let special = |c: u8| b"[]\\`_^{|}".contains(&c);
        let Some(&first) = name.first() else {
            return Err(NickError::Empty);
        };
        if name.len() > MAX_NICK_LEN {
            return Err(NickError::TooLong);
        }
        let rest_ok = name[1..]
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || special(c) || c == b'-');
        if !(first.is_ascii_alphabetic() || special(first)) || !rest_ok {
            return Err(NickError::BadChar);
        }
        if Self::alias_conn(name).is_some() {
            return Err(NickError::Reserved);
        }
        Ok(Self::from_checked(name))
    }

    /// Whether this label is a nick (not an address: addresses always hold a `:`).
    pub(crate) fn is_nick(&self) -> bool {
        !self.as_bytes().contains(&b':')
    }

    /// A remote member's label, `NICK@NODE` (docs/link.md): NICK is 1 to 32 bytes of what
    /// labels of either protocol hold (letters, digits, the backquote and `_.-:[]\^{|}`),
    /// NODE a node name, 48 bytes at most in all. Returns the label and its node.
    pub(crate) fn remote(name: &[u8]) -> Option<(Self, NodeName)> {
        let at = name.iter().rposition(|&c| c == b'@')?;
        let (nick, node) = (&name[..at], NodeName::parse(&name[at + 1..])?);
        let byte = |c: u8| name_byte(c) || b":[]\\`^{|}".contains(&c);
        let valid = !nick.is_empty()
            && nick.len() <= MAX_NICK_LEN
            && name.len() <= MAX_LABEL_LEN
            && nick.iter().all(|&c| byte(c));
        valid.then(|| (Self::from_checked(name), node))
    }

    /// Whether this is a remote member's label (`NICK@NODE`).
    pub(crate) fn is_remote(&self) -> bool {
        self.as_bytes().contains(&b'@')
    }

    /// The connection number in `kchat-ID`, the name under which IRC shows a member known
    /// by its address (ignoring case).
    pub(crate) fn alias_conn(name: &[u8]) -> Option<u64> {
        let digits = name
            .get(..ALIAS.len())
            .filter(|p| p.eq_ignore_ascii_case(ALIAS))
            .map(|_| &name[ALIAS.len()..])?;
        if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        digits.iter().try_fold(0u64, |n, &d| {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })
    }
}

impl RoomName {
    /// `#lobby`, where every client starts.
    pub(crate) fn lobby() -> Self {
        Self::from_checked(b"#lobby")
    }

    /// A room name, if `name` is one.
    pub(crate) fn parse(name: &[u8]) -> Option<Self> {
        let rest = name.strip_prefix(b"#")?;
        let valid =
            !rest.is_empty() && rest.len() <= MAX_NICK_LEN && rest.iter().all(|&c| name_byte(c));
        valid.then(|| Self::from_checked(name))
    }
}

/// Longest node name (docs/link.md): a remote member's label `NICK@NODE` fits a [`Label`].
pub(crate) const MAX_NODE_LEN: usize = MAX_LABEL_LEN - MAX_NICK_LEN - 1;

/// A kchat node's name, as a bridge gives it: 1 to 15 bytes of `[A-Za-z0-9_-]` (no `.`: it is
/// a NATS subject token).
pub(crate) type NodeName = Name<MAX_NODE_LEN>;

impl NodeName {
    /// A node name, if `name` is one.
    pub(crate) fn parse(name: &[u8]) -> Option<Self> {
        let valid = !name.is_empty()
            && name.len() <= MAX_NODE_LEN
            && name
                .iter()
                .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-'));
        valid.then(|| Self::from_checked(name))
    }
}

/// A name folded to ASCII lower case: what nicks, labels and rooms are looked up by.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Key {
    // Names hold no NUL byte, so the padding orders a prefix before its extensions.
    bytes: [u8; MAX_LABEL_LEN],
    len: u8,
}

impl Key {
    /// The key of `name` (at most [`MAX_LABEL_LEN`] bytes are used).
    pub(crate) fn of(name: &[u8]) -> Self {
        let mut key = Self {
            bytes: [0; MAX_LABEL_LEN],
            len: 0,
        };
        let n = name.len().min(MAX_LABEL_LEN);
        for (k, c) in key.bytes.iter_mut().zip(&name[..n]) {
            // A remote member `NICK@NODE` is `NICK|NODE` to IRC clients: both spellings are
            // one name, so neither can be taken by someone else.
            *k = match c {
                b'@' => b'|',
                c => c.to_ascii_lowercase(),
            };
        }
        // `n <= MAX_LABEL_LEN` (48).
        key.len = n as u8;
        key
    }
}

#[kunit_tests(kchat_label)]
mod tests {
    use super::*;

    #[test]
    fn nicks() -> Result {
        let cases: [(&[u8], Result<(), NickError>); 7] = [
            (b"bob", Ok(())),
            (b"A-z_0.9", Ok(())),
            (&[b'x'; 32], Ok(())),
            (&[b'x'; 33], Err(NickError::TooLong)),
            (b"", Err(NickError::Empty)),
            (b"bob smith", Err(NickError::BadChar)),
            (b"b:b", Err(NickError::BadChar)),
        ];
        for (name, want) in cases {
            let got = Label::nick(name).map(|_| ());
            assert_eq!(got, want);
        }
        let a = Label::nick(b"Bob").map_err(|_| EINVAL)?;
        let b = Label::nick(b"bOB").map_err(|_| EINVAL)?;
        let keys_equal = a.key() == b.key();
        assert!(keys_equal);
        Ok(())
    }

    #[test]
    fn irc_nicks_and_aliases() -> Result {
        let cases: [(&[u8], Result<(), NickError>); 8] = [
            (b"alice", Ok(())),
            (b"[bot]|x^-1", Ok(())),
            (b"1abc", Err(NickError::BadChar)),
            (b"-abc", Err(NickError::BadChar)),
            (b"a.b", Err(NickError::BadChar)),
            (b"", Err(NickError::Empty)),
            (b"kchat-12", Err(NickError::Reserved)),
            (b"kchat-x", Ok(())),
        ];
        for (name, want) in cases {
            let got = Label::irc_nick(name).map(|_| ());
            assert_eq!(got, want);
        }
        let native_reserved = Label::nick(b"KCHAT-7").map(|_| ());
        assert_eq!(native_reserved, Err(NickError::Reserved));
        assert_eq!(Label::alias_conn(b"kchat-42"), Some(42));
        assert_eq!(Label::alias_conn(b"kchat-"), None);
        assert_eq!(Label::alias_conn(b"kchat-99999999999999999999"), None);
        let addr = Label::from_addr(PeerAddr::V4([127, 0, 0, 1], 5));
        assert!(!addr.is_nick());
        Ok(())
    }

    #[test]
    fn rooms() -> Result {
        let cases: [(&[u8], bool); 8] = [
            (b"#lobby", true),
            (b"#Rust-2.0_x", true),
            (b"#", false),
            (b"lobby", false),
            (b"##a", false),
            (b"#a b", false),
            (b"#xxxxxxxx", true),
            (b"#caf\xc3\xa9", false),
        ];
        for (name, valid) in cases {
            let got = RoomName::parse(name).is_some();
            assert_eq!(got, valid);
        }
        let mut long = [b'x'; 34];
        long[0] = b'#';
        let too_long = RoomName::parse(&long).is_none();
        assert!(too_long);
        let fits = RoomName::parse(&long[..33]).is_some();
        assert!(fits);
        Ok(())
    }

    #[test]
    fn keys_order_prefixes_first() -> Result {
        let ab = Key::of(b"ab");
        let abc = Key::of(b"ABC");
        assert!(ab < abc);
        let same = Key::of(b"#Lobby") == RoomName::lobby().key();
        assert!(same);
        Ok(())
    }
}
