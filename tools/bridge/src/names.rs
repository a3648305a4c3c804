// SPDX-License-Identifier: GPL-2.0
//! What a node name, a room name and a nickname may be, and how a frame or a payload is cut
//! into its space-separated fields.
//!
//! Node names are exactly docs/link.md's (1 to 15 bytes of `[A-Za-z0-9_-]`). Rooms and nicks
//! are kchat's business: the bridge only asks what it needs to carry them, printable ASCII
//! without the separators of a `state` payload (` `, `,`, `;`), a room starting with `#`.

/// Why a frame or a payload could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// Longest node name.
pub const MAX_NODE_LEN: usize = 15;

/// Longest room or nick the bridge carries (kchat's are at most 33 and 32 bytes).
pub const MAX_NAME_LEN: usize = 64;

/// True if `s` is a node name: 1 to 15 bytes of `[A-Za-z0-9_-]`.
pub fn is_node(s: &str) -> bool {
    (1..=MAX_NODE_LEN).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// True if `b` may appear in a room or a nick: printable ASCII, not a `state` separator.
fn name_byte(b: u8) -> bool {
    b.is_ascii_graphic() && b != b',' && b != b';'
}

/// True if `s` is a room the bridge can carry: `#` and 1 to 63 name bytes.
pub fn is_room(s: &str) -> bool {
    s.len() <= MAX_NAME_LEN
        && s.strip_prefix('#')
            .is_some_and(|r| !r.is_empty() && r.bytes().all(name_byte))
}

/// True if `s` is a nick the bridge can carry: 1 to 64 name bytes, no `@` (which separates
/// a remote member's nick from its node).
pub fn is_nick(s: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&s.len()) && s.bytes().all(|b| name_byte(b) && b != b'@')
}

/// The ASCII-lower-case form under which rooms and nicks compare (kchat compares both
/// ignoring ASCII case).
pub fn key(s: &str) -> String {
    s.to_ascii_lowercase()
}

/// Cuts `bytes` at its first `N` single spaces: the `N` fields before them (each non-empty)
/// and the rest, which may hold spaces. `None` if there are fewer than `N` spaces or a field
/// is empty.
pub fn split_fields<const N: usize>(bytes: &[u8]) -> Option<([&[u8]; N], &[u8])> {
    let mut fields = [&bytes[..0]; N];
    let mut rest = bytes;
    for field in &mut fields {
        let at = rest.iter().position(|&b| b == b' ')?;
        if at == 0 {
            return None;
        }
        *field = &rest[..at];
        rest = &rest[at + 1..];
    }
    Some((fields, rest))
}

/// The field as text, if it is UTF-8 (every name field is ASCII).
pub fn text(field: &[u8]) -> Option<&str> {
    std::str::from_utf8(field).ok()
}

/// Cuts `bytes` into exactly `N` space-separated UTF-8 fields, none empty.
pub fn exact_fields<const N: usize>(bytes: &[u8]) -> Option<[&str; N]> {
    let mut out = [""; N];
    let mut parts = bytes.split(|&b| b == b' ');
    for slot in &mut out {
        let p = parts.next()?;
        if p.is_empty() {
            return None;
        }
        *slot = text(p)?;
    }
    parts.next().is_none().then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names() {
        assert!(is_node("a"));
        assert!(is_node("Node_1-x"));
        assert!(is_node("fifteen-bytes15"));
        assert!(!is_node("sixteen-bytes-16"));
        assert!(!is_node("seventeen-bytes-1"));
        assert!(!is_node(""));
        assert!(!is_node("a.b"), "a dot would split the NATS subject");
        assert!(!is_node("a b"));
        assert!(!is_node("a*"));
    }

    #[test]
    fn rooms_and_nicks() {
        assert!(is_room("#lobby"));
        assert!(is_room("#Rust.Dev-2_x"));
        assert!(!is_room("#"));
        assert!(!is_room("lobby"));
        assert!(!is_room("#a,b"));
        assert!(!is_room("#a;b"));
        assert!(!is_room(&format!("#{}", "x".repeat(64))));
        assert!(is_nick("alice"));
        assert!(
            is_nick("[::1]:5000"),
            "a native client without a nick is shown as ip:port"
        );
        assert!(!is_nick("bob@B"));
        assert!(!is_nick(""));
        assert!(!is_nick("a,b"));
        assert!(!is_nick("a\u{7f}"));
        assert_eq!(key("#Rust.Dev"), "#rust.dev");
    }

    #[test]
    fn fields() {
        let (f, rest) = split_fields::<2>(b"#room nick the text  with spaces").unwrap();
        assert_eq!(f, [&b"#room"[..], b"nick"]);
        assert_eq!(rest, b"the text  with spaces");
        let (f, rest) = split_fields::<1>(b"a ").unwrap();
        assert_eq!((f, rest), ([&b"a"[..]], &b""[..]));
        assert!(
            split_fields::<2>(b"a b").is_none(),
            "no space after the second field"
        );
        assert!(split_fields::<1>(b" a").is_none(), "empty field");
        assert_eq!(exact_fields::<2>(b"old new"), Some(["old", "new"]));
        assert_eq!(exact_fields::<2>(b"old new x"), None);
        assert_eq!(exact_fields::<2>(b"old"), None);
        assert_eq!(exact_fields::<2>(b"old  new"), None);
        assert_eq!(exact_fields::<1>(b"\xff"), None);
    }
}
