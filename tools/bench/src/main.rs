// SPDX-License-Identifier: GPL-2.0
//! `kchat-bench`: the load generator for kchat, the reference servers, Redis pub/sub and IRC
//! servers.
//!
//! ```text
//! kchat-bench [--addr HOST:PORT] [--protocol kchat|resp|irc] [--clients C] [--senders S]
//!             [--rooms R] [--read-size N] ...
//! kchat-bench report --input FILE.json --markdown OUT.md --svg OUT.svg
//! ```
//!
//! A run connects the clients ([`event_loop`] threads, one epoll each; [`layout`] says who
//! is who and in which room; [`kchat`], [`redis`] and [`irc`] speak the protocols, all read
//! by [`recv`]), proves the server has registered them all (the barrier: sync messages, join
//! replies, subscription confirmations or IRC end-of-names), then lets every sender send
//! within its window while every receiver checks, times and accounts each delivery
//! ([`tracker`]).
//! The coordinator ([`run`]) samples CPU time around the measured interval and writes the
//! [`record`].

mod chart;
mod conn;
mod cpu;
mod event_loop;
mod irc;
mod kchat;
mod layout;
mod options;
mod payload;
mod record;
mod recv;
mod redis;
mod report;
mod resp;
mod run;
mod shared;
mod sys;
mod tracker;

use std::process::ExitCode;

use options::Command;

fn main() -> ExitCode {
    let cmd = match options::parse(std::env::args_os().skip(1)) {
        Ok(c) => c,
        // Usage errors exit with status 2, --help and --version with 0.
        Err(e) => e.exit(),
    };
    match cmd {
        Command::Report(r) => match report::run(&r) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("kchat-bench report: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Run(o) => bench(*o),
    }
}

/// Runs one benchmark (or, with `--not-run`, only records that it did not run): table row on
/// stdout, JSON record appended to `--json`.
fn bench(o: options::Options) -> ExitCode {
    let json = o.json.clone();
    let rec = match &o.not_run {
        Some(reason) => record::Record::not_run(&o, reason.clone()),
        None => run::run(o.clone()).unwrap_or_else(|e| record::Record::failed(&o, e)),
    };
    if let Some(reason) = &rec.abort_reason {
        eprintln!("kchat-bench: aborted: {reason}");
    }
    if let Some(reason) = &rec.not_run {
        eprintln!("kchat-bench: not run: {reason}");
    }
    println!("{}", record::Record::table_header());
    println!("{}", rec.table_row());
    if let Some(path) = json {
        if let Err(e) = rec.append_json(&path) {
            eprintln!("kchat-bench: writing {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    if rec.ok || rec.not_run.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
