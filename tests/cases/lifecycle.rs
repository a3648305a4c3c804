//! Loading and unloading the module, and its parameter validation.

use std::time::Duration;

use crate::{kmsg::Kmsg, module, Case, CaseResult};

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "module loads with defaults, logs start and exit, twice",
            run: load_unload_twice,
        },
        Case {
            name: "out-of-range parameters fail insmod with EINVAL and a message",
            run: bad_params_refused,
        },
    ]
}

const T: Duration = Duration::from_secs(10);

/// - `insmod kchat.ko` with no parameters succeeds and logs the start line with the values in
///   force;
/// - `rmmod` succeeds and logs the exit line;
/// - a second cycle works the same (nothing left behind by the first).
fn load_unload_twice() -> CaseResult {
    for round in 1..=2 {
        let mut log = Kmsg::from_now().map_err(|e| e.to_string())?;
        module::load("").map_err(|e| format!("round {round}: insmod failed: {e}"))?;
        let start = log.wait_contains("kchat: listening on 0.0.0.0:10106", T)?;
        for value in [
            "backlog=512",
            "max_clients=10000",
            "max_msg_len=4096",
            "notices=1",
            "trace=1",
        ] {
            if !start.contains(value) {
                return Err(format!("start line {start:?} lacks {value}"));
            }
        }
        module::unload().map_err(|e| format!("round {round}: rmmod failed: {e}"))?;
        log.wait_contains("kchat: stopped", T)?;
    }
    Ok(())
}

/// Every out-of-range value fails `insmod` with EINVAL and a `pr_err` naming the parameter
/// and its allowed range, and leaves the module unloaded.
fn bad_params_refused() -> CaseResult {
    let cases = [
        (
            "port=0",
            "invalid parameter port=0: allowed range is 1..=65535",
        ),
        (
            "max_msg_len=0",
            "invalid parameter max_msg_len=0: allowed range is 1..=1048576",
        ),
        (
            "max_msg_len=1048577",
            "invalid parameter max_msg_len=1048577: allowed range is 1..=1048576",
        ),
        (
            "max_clients=0",
            "invalid parameter max_clients=0: allowed range is 1..=1000000",
        ),
        (
            "trace=9",
            "invalid parameter trace=9: allowed range is 0..=2",
        ),
        (
            "backlog=0",
            "invalid parameter backlog=0: allowed range is 1..=65535",
        ),
        (
            "max_queue_bytes=100",
            "invalid parameter max_queue_bytes=100: allowed range is 4096..=1073741824",
        ),
        (
            "max_msg_rate=2000000",
            "invalid parameter max_msg_rate=2000000: allowed range is 0..=1000000",
        ),
    ];
    for (params, message) in cases {
        let mut log = Kmsg::from_now().map_err(|e| e.to_string())?;
        match module::load(params) {
            Ok(()) => return Err(format!("insmod kchat.ko {params} succeeded")),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            Err(e) => return Err(format!("insmod kchat.ko {params}: {e}, expected EINVAL")),
        }
        log.wait_contains(&format!("kchat: {message}"), T)
            .map_err(|e| format!("{params}: {e}"))?;
        if module::is_loaded() {
            return Err(format!("kchat is loaded after insmod {params} failed"));
        }
    }
    Ok(())
}
