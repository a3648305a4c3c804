// SPDX-License-Identifier: GPL-2.0

//! Module parameters: one table of names, defaults and ranges, which the `module!`
//! declaration (`src/kchat_main.rs`), the load-time validation and the tests all read.
//!
//! Rust-for-Linux 7.3 parameters are read once at load and are not visible in sysfs, so every
//! value is checked here before anything is set up, and `insmod` fails with `-EINVAL` and a
//! message naming the parameter and its range (DESIGN.md section 2).

use kernel::{
    fmt,
    prelude::*, //
};

/// One numeric parameter: its name, default and inclusive range.
pub(crate) struct Spec {
    pub(crate) name: &'static str,
    pub(crate) default: u64,
    pub(crate) min: u64,
    pub(crate) max: u64,
}

/// Largest `max_msg_len` accepted: 1 MiB.
pub(crate) const MAX_MSG_LEN_LIMIT: u32 = 1 << 20;

macro_rules! specs {
    ($($id:ident $name:literal: $default:expr, $min:expr, $max:expr;)*) => {
        $(
            pub(crate) const $id: Spec = Spec {
                name: $name,
                default: $default,
                min: $min,
                max: $max,
            };
        )*
    };
}

specs! {
    PORT "port": 10106, 1, 65535;
    BACKLOG "backlog": 512, 1, 65535;
    MAX_CLIENTS "max_clients": 10000, 1, 1_000_000;
    MAX_MSG_LEN "max_msg_len": 4096, 1, MAX_MSG_LEN_LIMIT as u64;
    MAX_QUEUE_BYTES "max_queue_bytes": 262_144, 4096, 1 << 30;
    MAX_MSG_RATE "max_msg_rate": 1000, 0, 1_000_000;
    NOTICES "notices": 1, 0, 1;
    TRACE "trace": 1, 0, 2;
    HISTORY "history": 20, 0, 1000;
    MAX_ROOMS "max_rooms": 1000, 1, 100_000;
    IRC_PORT "irc_port": 6667, 0, 65535;
    IRC_PING "irc_ping": 120, 5, 3600;
    ZEROCOPY "zerocopy": 1, 0, 1;
}

// Every default and maximum fits the parameter's type (`module!` takes the defaults with
// `as`, which would truncate silently).
const _: () = assert!(PORT.max <= u16::MAX as u64);
const _: () = assert!(TRACE.max <= u8::MAX as u64);
const _: () = assert!(MAX_QUEUE_BYTES.max <= u32::MAX as u64);
const _: () = assert!(MAX_CLIENTS.max <= u32::MAX as u64);
const _: () = assert!(MAX_ROOMS.max <= u32::MAX as u64);
const _: () = assert!(IRC_PORT.max <= u16::MAX as u64);
const _: () = assert!(IRC_PING.max <= u32::MAX as u64);

/// The values in force, read once from the module parameters.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Params {
    /// TCP port to listen on (IPv6 and IPv4).
    pub(crate) port: u16,
    /// Backlog passed to `listen`.
    pub(crate) backlog: u32,
    /// Connections beyond this many are accepted, told `! server full` and closed.
    pub(crate) max_clients: u32,
    /// Largest payload accepted from a client, in bytes.
    pub(crate) max_msg_len: u32,
    /// Bytes queued to one client before it is dropped as a slow consumer.
    pub(crate) max_queue_bytes: u32,
    /// Messages per second one client may send; 0 means unlimited.
    pub(crate) max_msg_rate: u32,
    /// Whether join, leave and nick notices are sent.
    pub(crate) notices: bool,
    /// Kernel log verbosity: 0 errors, 1 connections, 2 every message.
    pub(crate) trace: u8,
    /// Chat messages a room keeps and replays to a client entering it; 0 = off.
    pub(crate) history: u32,
    /// Rooms that may exist at once, `#lobby` included.
    pub(crate) max_rooms: u32,
    /// TCP port for IRC clients; 0 = none.
    pub(crate) irc_port: u16,
    /// Seconds of silence before an IRC client is sent a `PING` (and as many again before it
    /// is dropped); also how long it has to register.
    pub(crate) irc_ping: u32,
    /// Whether room messages are written once into page-backed logs and spliced to every
    /// recipient (`MSG_SPLICE_PAGES`) rather than copied into each socket.
    pub(crate) zerocopy: bool,
    /// The secret a bridge gives in `/link SECRET NODE` (docs/link.md); 0 refuses every link.
    /// Any value is valid; it is never logged.
    pub(crate) link_secret: u64,
}

impl Params {
    /// Every numeric parameter with its value.
    fn values(&self) -> [(&'static Spec, u64); 13] {
        [
            (&PORT, self.port.into()),
            (&BACKLOG, self.backlog.into()),
            (&MAX_CLIENTS, self.max_clients.into()),
            (&MAX_MSG_LEN, self.max_msg_len.into()),
            (&MAX_QUEUE_BYTES, self.max_queue_bytes.into()),
            (&MAX_MSG_RATE, self.max_msg_rate.into()),
            (&NOTICES, self.notices.into()),
            (&TRACE, self.trace.into()),
            (&HISTORY, self.history.into()),
            (&MAX_ROOMS, self.max_rooms.into()),
            (&IRC_PORT, self.irc_port.into()),
            (&IRC_PING, self.irc_ping.into()),
            (&ZEROCOPY, self.zerocopy.into()),
        ]
    }

    /// The parameters whose value lies outside their range.
    fn invalid(&self) -> impl Iterator<Item = (&'static Spec, u64)> {
        self.values()
            .into_iter()
            .filter(|(s, v)| *v < s.min || *v > s.max)
    }

    /// Checks every parameter, logging each one out of range.
    ///
    /// Returns `EINVAL` if any is out of range, so that `insmod` fails.
    pub(crate) fn validate(&self) -> Result {
        let mut result = Ok(());
        for (s, v) in self.invalid() {
            pr_err!(
                "invalid parameter {}={}: allowed range is {}..={}\n",
                s.name,
                v,
                s.min,
                s.max
            );
            result = Err(EINVAL);
        }
        result
    }
}

impl Params {
    /// Whether `secret` is the link secret (never true when links are off). Takes the same
    /// time whichever byte differs.
    pub(crate) fn link_secret_is(&self, secret: u64) -> bool {
        let diff = (self.link_secret ^ secret) | u64::from(self.link_secret == 0);
        // No early exit: one comparison of the folded difference.
        core::hint::black_box(diff) == 0
    }
}

impl fmt::Display for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        for (s, v) in self.values() {
            // The port is in the start line's address already.
            if s.name != PORT.name {
                f.write_fmt(fmt!("{sep}{}={v}", s.name))?;
                sep = " ";
            }
        }
        // The secret itself is never shown.
        let links = if self.link_secret == 0 { "off" } else { "on" };
        f.write_fmt(fmt!("{sep}links={links}"))
    }
}

#[kunit_tests(kchat_params)]
mod tests {
    use super::*;

    /// The defaults, from the table.
    fn defaults() -> Params {
        Params {
            port: PORT.default as u16,
            backlog: BACKLOG.default as u32,
            max_clients: MAX_CLIENTS.default as u32,
            max_msg_len: MAX_MSG_LEN.default as u32,
            max_queue_bytes: MAX_QUEUE_BYTES.default as u32,
            max_msg_rate: MAX_MSG_RATE.default as u32,
            notices: NOTICES.default != 0,
            trace: TRACE.default as u8,
            history: HISTORY.default as u32,
            max_rooms: MAX_ROOMS.default as u32,
            irc_port: IRC_PORT.default as u16,
            irc_ping: IRC_PING.default as u32,
            zerocopy: ZEROCOPY.default != 0,
            link_secret: 0,
        }
    }

    #[test]
    fn link_secret() -> Result {
        let mut p = defaults();
        // Off: no secret opens it, 0 least of all.
        let off = !p.link_secret_is(0) && !p.link_secret_is(1);
        assert!(off);
        p.link_secret = 0x1234_5678_9abc_def0;
        let on =
            p.link_secret_is(0x1234_5678_9abc_def0) && !p.link_secret_is(0x1234_5678_9abc_def1);
        assert!(on);
        Ok(())
    }

    #[test]
    fn defaults_are_valid() -> Result {
        let n = defaults().invalid().count();
        assert_eq!(n, 0);
        Ok(())
    }

    #[test]
    fn boundaries() -> Result {
        type Change = fn(&mut Params);
        let cases: [(Change, bool); 18] = [
            (|p| p.irc_port = 0, true),
            (|p| p.irc_ping = 4, false),
            (|p| p.irc_ping = 5, true),
            (|p| p.irc_ping = 3601, false),
            (|p| p.port = 0, false),
            (|p| p.port = 1, true),
            (|p| p.max_msg_len = 0, false),
            (|p| p.max_msg_len = MAX_MSG_LEN_LIMIT, true),
            (|p| p.max_msg_len = MAX_MSG_LEN_LIMIT + 1, false),
            (|p| p.max_clients = 0, false),
            (|p| p.trace = 3, false),
            (|p| p.trace = 2, true),
            (|p| p.max_queue_bytes = 4095, false),
            (|p| p.max_msg_rate = 0, true),
            (|p| p.history = 0, true),
            (|p| p.history = 1001, false),
            (|p| p.max_rooms = 0, false),
            (|p| p.max_rooms = 100_000, true),
        ];
        for (change, valid) in cases {
            let mut p = defaults();
            change(&mut p);
            let ok = p.invalid().count() == 0;
            assert_eq!(ok, valid);
        }
        Ok(())
    }
}
