//! Checks of a whole guest kernel log: kernel splats and KUnit results.
//!
//! A message counts as a splat only when its text *starts* with one of the kernel's report
//! headers. kchat prefixes everything it logs with `kchat: ` and escapes client text, so a
//! client cannot forge a report by chatting "BUG: ...".

/// Report headers of the kernel's own checkers (WARN/BUG, lockdep, KASAN, kmemleak,
/// debugobjects, RCU, the watchdogs, UBSAN, list debugging).
const SPLAT_PREFIXES: &[&str] = &[
    "BUG:",
    "BUG ",
    "WARNING:",
    "Oops",
    "kernel BUG",
    "general protection fault",
    "Unable to handle",
    "------------[ cut here ]------------",
    "INFO: possible",
    "INFO: task",
    "INFO: trying to register",
    "INFO: lockdep",
    "INFO: rcu",
    "rcu: INFO",
    "Kernel panic",
    "UBSAN:",
    "ODEBUG:",
    "==================================================================",
    "watchdog: BUG",
    "list_add corruption",
    "list_del corruption",
    "kmemleak: Found object",
    "unreferenced object",
    "DEBUG_LOCKS_WARN_ON",
];

/// One finding in a kernel log.
#[derive(Debug, PartialEq, Eq)]
pub struct Finding {
    /// 1-based line number in the log.
    pub line: usize,
    /// The message text.
    pub text: String,
}

/// Result of scanning one log.
#[derive(Debug, Default)]
pub struct Scan {
    /// Kernel reports (splats).
    pub splats: Vec<Finding>,
    /// KTAP `not ok` lines from any KUnit suite.
    pub ktap_failures: Vec<Finding>,
    /// KTAP `ok` lines of top-level suites (`ok N suite_name`).
    pub ktap_suites_ok: Vec<String>,
}

/// Message text of one log line, in either of the two formats the harness records:
/// `/dev/kmsg` records (`prio,seq,usec,flags;text`) or console lines (`[   1.234] text`).
/// Continuation lines of kmsg records (starting with a space, `KEY=value`) yield `None`.
pub fn message_text(line: &str) -> Option<&str> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.starts_with(' ') {
        return None;
    }
    if let Some(rest) = line.strip_prefix('[') {
        // Console format: "[    1.234567] text".
        return rest.split_once("] ").map(|(_, t)| t);
    }
    if let Some((head, text)) = line.split_once(';') {
        if head.split(',').count() >= 3 && head.split(',').all(|f| !f.is_empty()) {
            return Some(text);
        }
    }
    Some(line)
}

/// Scans a kernel log for splats and KUnit results.
pub fn scan(log: &str) -> Scan {
    let mut scan = Scan::default();
    for (i, line) in log.lines().enumerate() {
        let Some(text) = message_text(line) else {
            continue;
        };
        let finding = || Finding {
            line: i + 1,
            text: text.to_string(),
        };
        if SPLAT_PREFIXES.iter().any(|p| text.starts_with(p)) {
            scan.splats.push(finding());
        }
        let trimmed = text.trim_start();
        if trimmed.starts_with("not ok ") {
            scan.ktap_failures.push(finding());
        } else if let Some(rest) = text.strip_prefix("ok ") {
            // Top-level suite results are not indented: "ok 3 kchat_frame".
            if let Some(name) = rest.split_whitespace().nth(1) {
                scan.ktap_suites_ok.push(name.to_string());
            }
        }
    }
    scan
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kmsg_and_console_formats() {
        assert_eq!(
            message_text("6,123,456789,-;kchat: started"),
            Some("kchat: started")
        );
        assert_eq!(message_text("[    1.234567] BUG: oops"), Some("BUG: oops"));
        assert_eq!(message_text(" SUBSYSTEM=net"), None);
    }

    #[test]
    fn finds_splats_but_not_client_text() {
        let log = "4,1,1,-;WARNING: CPU: 0 PID: 1 at foo.c:1 bar\n\
                   6,2,2,-;kchat: Client Say: BUG: forged\n\
                   3,3,3,-;BUG: KASAN: slab-use-after-free in x\n\
                   4,4,4,-;WARNING: possible circular locking dependency detected\n";
        let s = scan(log);
        let lines: Vec<usize> = s.splats.iter().map(|f| f.line).collect();
        assert_eq!(lines, vec![1, 3, 4]);
    }

    #[test]
    fn ktap_results() {
        let log = "6,1,1,-;KTAP version 1\n\
                   6,2,2,-;    ok 1 defaults_are_valid\n\
                   6,3,3,-;    not ok 2 boundaries\n\
                   6,4,4,-;not ok 1 kchat_params\n\
                   6,5,5,-;ok 2 kchat_frame\n";
        let s = scan(log);
        assert_eq!(s.ktap_failures.len(), 2);
        assert_eq!(s.ktap_suites_ok, vec!["kchat_frame".to_string()]);
    }
}
