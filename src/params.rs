// SPDX-License-Identifier: GPL-2.0

//! Module parameters: their allowed ranges and their validation at load time.
//!
//! Rust-for-Linux 7.3 parameters are read once at load and are not visible in sysfs, so every
//! value is checked here before anything is set up, and `insmod` fails with `-EINVAL` and a
//! message naming the parameter and its range (DESIGN.md section 2).

use kernel::{
    fmt,
    prelude::*, //
};

/// Largest `max_msg_len` accepted: 1 MiB.
pub(crate) const MAX_MSG_LEN_LIMIT: u32 = 1 << 20;

/// The values in force, read once from the module parameters.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Params {
    /// TCP port to listen on, on 0.0.0.0.
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
}

/// An inclusive range one numeric parameter must lie in.
struct Range {
    name: &'static str,
    value: u64,
    min: u64,
    max: u64,
}

impl Params {
    /// The ranges of the numeric parameters, for validation and for the tests.
    fn ranges(&self) -> [Range; 7] {
        [
            Range {
                name: "port",
                value: self.port.into(),
                min: 1,
                max: u16::MAX.into(),
            },
            Range {
                name: "backlog",
                value: self.backlog.into(),
                min: 1,
                max: 65535,
            },
            Range {
                name: "max_clients",
                value: self.max_clients.into(),
                min: 1,
                max: 1_000_000,
            },
            Range {
                name: "max_msg_len",
                value: self.max_msg_len.into(),
                min: 1,
                max: MAX_MSG_LEN_LIMIT.into(),
            },
            Range {
                name: "max_queue_bytes",
                value: self.max_queue_bytes.into(),
                min: 4096,
                max: 1 << 30,
            },
            Range {
                name: "max_msg_rate",
                value: self.max_msg_rate.into(),
                min: 0,
                max: 1_000_000,
            },
            Range {
                name: "trace",
                value: self.trace.into(),
                min: 0,
                max: 2,
            },
        ]
    }

    /// The parameters whose value lies outside their range.
    fn invalid(&self) -> impl Iterator<Item = Range> {
        self.ranges()
            .into_iter()
            .filter(|r| r.value < r.min || r.value > r.max)
    }

    /// Checks every parameter, logging each one out of range.
    ///
    /// Returns `EINVAL` if any is out of range, so that `insmod` fails.
    pub(crate) fn validate(&self) -> Result {
        let mut result = Ok(());
        for r in self.invalid() {
            pr_err!(
                "invalid parameter {}={}: allowed range is {}..={}\n",
                r.name,
                r.value,
                r.min,
                r.max
            );
            result = Err(EINVAL);
        }
        result
    }
}

impl fmt::Display for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "backlog={} max_clients={} max_msg_len={} max_queue_bytes={} max_msg_rate={} \
             notices={} trace={}",
            self.backlog,
            self.max_clients,
            self.max_msg_len,
            self.max_queue_bytes,
            self.max_msg_rate,
            u8::from(self.notices),
            self.trace
        )
    }
}

#[kunit_tests(kchat_params)]
mod tests {
    use super::*;

    fn defaults() -> Params {
        Params {
            port: 10106,
            backlog: 512,
            max_clients: 10000,
            max_msg_len: 4096,
            max_queue_bytes: 262144,
            max_msg_rate: 1000,
            notices: true,
            trace: 1,
        }
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
        let cases: [(Change, bool); 10] = [
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
