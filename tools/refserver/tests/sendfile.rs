//! The sendfile engine's logs, seen from outside through the server's open memfds
//! (`/proc/PID/fd`): their memory stays bounded however much is relayed, a room's log goes
//! when the room empties, and a stalled client holds on to log memory only until it is
//! dropped as a slow consumer. (Its chat behaviour is checked with the other engines', see
//! `engine_tests!`.)

mod common;

use std::os::unix::fs::MetadataExt;

use common::{label, recv, Engine, Flood, Server};

/// The size of the engine's log segments (`SEGMENT_BYTES`), plus the frame that may end one
/// past it and a page of rounding.
const SEGMENT: u64 = 256 * 1024 + 4096 + 4096;

/// The server's log segments: how many memfds it has open, and the bytes they hold.
fn log_memory(srv: &Server) -> (usize, u64) {
    let mut files = 0;
    let mut bytes = 0;
    let fds = std::fs::read_dir(format!("/proc/{}/fd", srv.pid())).expect("/proc/PID/fd");
    for fd in fds.flatten() {
        // A descriptor may be closed between listing and looking at it.
        let Ok(target) = std::fs::read_link(fd.path()) else {
            continue;
        };
        if !target.to_string_lossy().starts_with("/memfd:kchat-log") {
            continue;
        }
        if let Ok(meta) = std::fs::metadata(fd.path()) {
            files += 1;
            bytes += meta.blocks() * 512;
        }
    }
    (files, bytes)
}

/// - 8 MB relayed through one room to two readers that keep up leave at most the segment
///   being written and one being let go: the log is trimmed as the readers pass it;
/// - the log is in memfds at all (some memory is seen), and every frame arrives intact.
#[test]
fn log_memory_stays_bounded() {
    let Some(srv) = Server::start(Engine::Sendfile, &["--notices", "0", "--max-msg-rate", "0"])
    else {
        return;
    };
    let mut sender = srv.join();
    let mut readers = [srv.join(), srv.join()];
    let ls = label(&sender);
    let (mut most, mut most_files) = (0, 0);
    let batch = 16;
    for first in (0..2048).step_by(batch) {
        for n in first..first + batch {
            sender.send(Flood::body(n).as_bytes()).unwrap();
        }
        for r in &mut readers {
            for n in first..first + batch {
                assert_eq!(recv(r), format!("{ls}: {}", Flood::body(n)));
            }
        }
        let (files, bytes) = log_memory(&srv);
        most = most.max(bytes);
        most_files = most_files.max(files);
    }
    assert!(
        most > 0,
        "no log memory seen: the frames did not go through a memfd"
    );
    assert!(
        most <= 2 * SEGMENT && most_files <= 2,
        "{most} bytes in {most_files} memfds at most, for 8 MB relayed"
    );
}

/// - forty rooms, each with a message relayed in it and then left by both its members,
///   leave no log behind.
#[test]
fn logs_go_with_their_rooms() {
    let Some(srv) = Server::start(Engine::Sendfile, &["--notices", "0"]) else {
        return;
    };
    let mut a = srv.join();
    let mut b = srv.join();
    let la = label(&a);
    for i in 0..40 {
        a.send(format!("/join #room{i}").as_bytes()).unwrap();
        assert!(recv(&mut a).starts_with(&format!("* now in #room{i} (1)")));
        b.send(format!("/join #room{i}").as_bytes()).unwrap();
        assert!(recv(&mut b).starts_with(&format!("* now in #room{i} (2)")));
        a.send(b"hi").unwrap();
        assert_eq!(recv(&mut b), format!("{la}: hi"));
        for c in [&mut a, &mut b] {
            c.send(b"/part").unwrap();
            assert!(recv(c).starts_with("* now in #lobby"));
        }
    }
    // The last member out took the log with it, and no queue points into it any more.
    assert_eq!(log_memory(&srv), (0, 0));
}

/// - a client that never reads is dropped as a slow consumer, as with epoll, once its
///   unsent bytes would pass --max-queue-bytes: the log segments it held stay few meanwhile;
/// - once it is gone, the log shrinks back to the segment being written while more is
///   relayed;
/// - what it got before is an intact, in-order prefix (sent from the log).
#[test]
fn stalled_client_holds_log_memory_until_dropped() {
    let args = ["--max-queue-bytes", "65536", "--max-msg-rate", "0"];
    let Some(srv) = Server::start(Engine::Sendfile, &args) else {
        return;
    };
    let mut flood = Flood::start(&srv);
    let mut most = 0;
    flood.until_slow_left(|| most = most.max(log_memory(&srv).1));
    // Its unsent range (at most 64 KiB) may span two segments, plus the one being written.
    assert!(
        most <= 3 * SEGMENT,
        "{most} bytes of log with a stalled client"
    );

    let lf = label(&flood.flooder);
    for n in flood.sent..flood.sent + 512 {
        flood.flooder.send(Flood::body(n).as_bytes()).unwrap();
        assert_eq!(recv(&mut flood.reader), format!("{lf}: {}", Flood::body(n)));
    }
    let (files, bytes) = log_memory(&srv);
    assert!(
        bytes <= 2 * SEGMENT && files <= 2,
        "{bytes} bytes in {files} memfds after the stalled client left"
    );
    flood.check_slow_prefix();
}
