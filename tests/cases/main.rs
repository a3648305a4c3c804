//! `kchat-vmtest`: the test cases that run inside the guest against the real module.
//!
//! Each case loads kchat.ko with the parameters it needs, drives it with real TCP clients on
//! loopback, checks the kernel log, and unloads it. Output is one `ok N name # detail` or
//! `not ok N name # reason` line per case; the host harness (`kchat-vm`) adds the whole-log checks
//! and prints the summary.

mod attack;
mod chat;
mod cluster;
mod commands;
mod disconnect;
mod forward;
mod hostile;
mod irc;
mod irc_host;
mod kmsg;
mod lifecycle;
mod limits;
mod link;
#[path = "../harness/logcheck.rs"]
#[allow(dead_code)]
mod logcheck;
mod measure;
mod module;
mod netns;
mod rooms;
mod scenarios;
mod util;
mod zerocopy;

use std::{
    panic::{self, AssertUnwindSafe},
    time::Instant,
};

/// What a case returns: `Err` carries the reason it failed.
pub type CaseResult = Result<(), String>;

/// One test case.
pub struct Case {
    pub name: &'static str,
    pub run: fn() -> CaseResult,
}

/// The cases of `make test`, in order.
fn test_suite() -> Vec<Case> {
    let mut cases = Vec::new();
    cases.extend(lifecycle::cases());
    cases.extend(chat::cases());
    cases.extend(commands::cases());
    cases.extend(irc_host::cases());
    cases.extend(rooms::cases());
    cases.extend(irc::cases());
    cases.extend(limits::cases());
    cases.extend(zerocopy::cases());
    cases.extend(netns::cases());
    cases.extend(link::cases());
    cases.extend(cluster::cases());
    cases.extend(disconnect::cases());
    cases.extend(scenarios::cases());
    cases.extend(hostile::cases(false));
    cases.push(kmemleak_case());
    cases
}

/// The cases of `make stress`: the full hostile suite.
fn stress_suite() -> Vec<Case> {
    let mut cases = hostile::cases(true);
    cases.push(kmemleak_case());
    cases
}

/// Last in every suite: everything before it has loaded and unloaded the module.
fn kmemleak_case() -> Case {
    Case {
        name: "kmemleak reports no leak after the suite",
        run: disconnect::kmemleak_clean,
    }
}

/// A failure reason as one readable line: control characters escaped, cut at 400 characters
/// (a reason may quote what a fuzzer sent).
fn printable(reason: &str) -> String {
    let mut out: String = reason.escape_debug().take(400).collect();
    if reason.escape_debug().nth(400).is_some() {
        out.push_str("...");
    }
    out
}

/// Kernel reports (splats) among the log records a case produced.
fn splats(records: &[String]) -> Vec<String> {
    let text: String = records.iter().map(|r| format!("{r}\n")).collect();
    logcheck::scan(&text)
        .splats
        .into_iter()
        .map(|f| f.text)
        .collect()
}

fn main() {
    let mut suite = String::from("test");
    let mut filter = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--suite" => suite = args.next().unwrap_or_default(),
            "--filter" => filter = args.next(),
            "--idle-memory" => {
                let n = args.next().and_then(|v| v.parse().ok()).unwrap_or(10_000);
                if let Err(e) = measure::idle_memory(n) {
                    println!("KCHAT-BENCH-ERROR idle memory: {e}");
                    let _ = module::unload();
                }
                std::process::exit(0);
            }
            "--forward" => {
                let (listen, netns, target) = (
                    args.next().unwrap_or_default(),
                    args.next().unwrap_or_default(),
                    args.next().unwrap_or_default(),
                );
                if let Err(e) = forward::main(&listen, &netns, &target) {
                    eprintln!("kchat-vmtest --forward {listen}: {e}");
                }
                std::process::exit(1);
            }
            "--hog" => {
                let mib = args.next().and_then(|v| v.parse().ok()).unwrap_or(0);
                attack::hog_main(mib);
            }
            "--module" => {
                // The image always installs it at module::MODULE_PATH.
                args.next();
            }
            other => {
                eprintln!("kchat-vmtest: unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    let cases = match suite.as_str() {
        "test" => test_suite(),
        "stress" => stress_suite(),
        other => {
            eprintln!("kchat-vmtest: unknown suite {other}");
            std::process::exit(2);
        }
    };
    disconnect::kmemleak_clear();
    // Failed assertions are reported as results, not as panic noise.
    panic::set_hook(Box::new(|_| {}));
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    let mut n = 0;
    // --filter a,b runs the cases whose name contains a or b.
    let wanted = |c: &&Case| {
        filter
            .as_ref()
            .is_none_or(|f| f.split(',').any(|f| c.name.contains(f)))
    };
    for case in cases.iter().filter(wanted) {
        n += 1;
        let mut log = kmsg::Kmsg::from_now().ok();
        let start = Instant::now();
        let result = panic::catch_unwind(AssertUnwindSafe(case.run)).unwrap_or_else(|p| {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panicked".into());
            Err(format!("panic: {msg}"))
        });
        // Every case leaves the module unloaded, whatever happened.
        let cleanup = if module::is_loaded() {
            module::unload().map_err(|e| format!("rmmod after the case failed: {e}"))
        } else {
            Ok(())
        };
        let secs = start.elapsed().as_secs_f64();
        // Attribute any kernel report during the case to it (the host checks the whole log
        // again at the end).
        let reported = log
            .as_mut()
            .map(|l| splats(&l.records()))
            .unwrap_or_default();
        let clean = if reported.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "kernel report during the case: {}",
                reported.join(" | ")
            ))
        };
        // A case that cannot run says `Err("SKIPPED: why")`: reported as TAP's skip (which the
        // harness counts as skipped), unless the cleanup or the kernel log fail it.
        let skip = match &result {
            Err(r) => r.strip_prefix("SKIPPED: ").map(str::to_string),
            Ok(()) => None,
        };
        let result = if skip.is_some() { Ok(()) } else { result };
        match result.and(cleanup).and(clean) {
            Ok(()) if skip.is_some() => {
                skipped += 1;
                let why = skip.unwrap_or_default();
                println!("ok {n} {} # SKIP {}", case.name, printable(&why));
            }
            Ok(()) => {
                passed += 1;
                println!("ok {n} {} # {secs:.1} s", case.name);
            }
            Err(reason) => {
                failed += 1;
                println!("not ok {n} {} # {}", case.name, printable(&reason));
            }
        }
    }
    println!("# guest: {passed} passed, {failed} failed, {skipped} skipped");
    std::process::exit(i32::from(failed != 0));
}
