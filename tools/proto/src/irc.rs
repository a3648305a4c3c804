//! IRC, as kchat's IRC front end and the benchmark speak it (RFC 2812 and the modern client
//! protocol, modern.ircdocs.horse): messages, lines, and a small blocking client.
//!
//! - [`Message`] parses a line into tags, prefix, command and parameters without copying,
//!   and writes one back ([`Message::write_to`]); [`OwnedMessage`] keeps one;
//! - [`LineSplitter`] cuts a byte stream into lines (CR LF or a bare LF), each at most a
//!   bounded number of bytes ([`MAX_LINE`] for what a client sends);
//! - [`Client`] registers, answers PINGs, joins, sends and receives, for tests.

mod client;
mod lines;
mod message;

pub use client::Client;
pub use lines::{LineSplitter, LineTooLong};
pub use message::{FormatError, Message, OwnedMessage, ParseError};

/// Longest line, CR LF included, tags not counted (RFC 2812 section 2.3).
pub const MAX_LINE: usize = 512;

/// Longest tags part a server may put in front of a line: `@`, the tags and the space
/// (IRCv3 message tags).
pub const MAX_TAGS: usize = 8191;

/// Most parameters a message has (RFC 2812).
pub const MAX_PARAMS: usize = 15;
