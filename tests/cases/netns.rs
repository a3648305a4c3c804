//! One kchat per network namespace: each namespace (alive at load or made later) has its own
//! listeners, rooms, nicks, history and stats view (`/sys/kernel/debug/kchat/net-INUM/`);
//! clients of one never see another's; a namespace dismantled stops its kchat cleanly, and
//! `rmmod` stops them all.
//!
//! A namespace here is made by a thread that `unshare`s its network namespace, brings its
//! loopback up and keeps a descriptor of it; clients are connected from threads that enter
//! it with `setns` (a socket stays in the namespace it was made in, whichever thread uses
//! it). Dropping the [`Netns`] and its clients dismantles it.

use std::{
    fs::File,
    os::fd::{AsRawFd, OwnedFd},
    os::unix::fs::MetadataExt,
    path::PathBuf,
    thread,
    time::{Duration, Instant},
};

use kchat_proto::Conn;

use crate::{
    attack::Memory,
    ensure,
    kmsg::Kmsg,
    module,
    util::{
        connect, expect_frame, expect_silence, label, start, stat, wait_clients, Context, STEP,
    },
    Case, CaseResult,
};

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "namespaces: each network namespace has its own kchat (nicks, rooms, history, stats); clients of one never see another's",
            run: separate_chats,
        },
        Case {
            name: "namespaces: a namespace dismantled under load stops its kchat (clients gone, view gone, memory back); the others carry on",
            run: dismantled_under_load,
        },
        Case {
            name: "namespaces: rmmod stops every namespace's kchat; insmod starts one in each namespace alive",
            run: rmmod_stops_all,
        },
        Case {
            name: "namespaces: 12 rounds of namespaces made and dismantled while their clients chat, with a reload among them; memory back",
            run: namespace_churn,
        },
    ]
}

/// A network namespace of the test's own, alive while this (or a socket in it) is.
pub struct Netns {
    fd: OwnedFd,
    /// The inode number of `/proc/PID/ns/net`, which names kchat's view of it.
    pub inum: u64,
}

impl Netns {
    /// A new namespace with its loopback up.
    pub fn new() -> Result<Self, String> {
        thread::spawn(|| -> Result<Self, String> {
            // SAFETY: unshare only changes this thread's namespaces; this thread ends soon.
            let r = unsafe { libc::unshare(libc::CLONE_NEWNET) };
            ensure!(
                r == 0,
                "unshare(CLONE_NEWNET): {}",
                std::io::Error::last_os_error()
            );
            loopback_up()?;
            let f = File::open("/proc/thread-self/ns/net").ctx("open /proc/thread-self/ns/net")?;
            let inum = f.metadata().ctx("stat the namespace")?.ino();
            Ok(Self { fd: f.into(), inum })
        })
        .join()
        .map_err(|_| "namespace thread panicked".to_string())?
    }

    /// Runs `f` on a thread inside the namespace.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> Result<T, String> + Send) -> Result<T, String> {
        let fd = self.fd.as_raw_fd();
        thread::scope(|s| {
            s.spawn(move || {
                // SAFETY: `fd` is a namespace descriptor that `self` keeps open for the scope;
                // setns only changes this thread's namespace.
                let r = unsafe { libc::setns(fd, libc::CLONE_NEWNET) };
                ensure!(r == 0, "setns: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .map_err(|_| "thread in the namespace panicked".to_string())?
        })
    }

    /// A path to the namespace another process can open (`/proc/PID/fd/FD` of this one).
    pub fn path(&self) -> String {
        format!("/proc/{}/fd/{}", std::process::id(), self.fd.as_raw_fd())
    }

    /// A native client of this namespace's kchat.
    pub fn connect(&self) -> Result<Conn, String> {
        self.run(connect)
    }

    /// This namespace's kchat view (`stats`, `clients`, `rooms`).
    pub fn view(&self) -> PathBuf {
        PathBuf::from(format!("/sys/kernel/debug/kchat/net-{}", self.inum))
    }

    /// A counter of this namespace's kchat.
    pub fn stat(&self, name: &str) -> Result<u64, String> {
        let path = self.view().join("stats");
        let text = std::fs::read_to_string(&path).ctx(&format!("read {}", path.display()))?;
        text.lines()
            .filter_map(|l| l.split_once(": "))
            .find(|(k, _)| *k == name)
            .and_then(|(_, v)| v.trim().parse().ok())
            .ok_or_else(|| format!("no {name} in {}", path.display()))
    }

    /// Waits until this namespace's kchat counts `n` clients.
    pub fn wait_clients(&self, n: u64) -> CaseResult {
        let deadline = Instant::now() + STEP;
        loop {
            let now = self.stat("clients_now")?;
            if now == n {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "net-{}: clients_now is {now}, expected {n}",
                self.inum
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Brings `lo` up in the calling thread's namespace (a new namespace's loopback is down).
fn loopback_up() -> CaseResult {
    // SAFETY: A plain datagram socket for the interface ioctls, closed below.
    let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) };
    ensure!(s >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: `ifreq` is plain data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, b) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *d = *b as libc::c_char;
    }
    // SAFETY: `req` names an interface and has room for the flags; `s` is a socket.
    let mut r = unsafe { libc::ioctl(s, libc::SIOCGIFFLAGS, &mut req) };
    if r == 0 {
        // SAFETY: SIOCGIFFLAGS filled in the flags member of the union.
        unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
        // SAFETY: As above.
        r = unsafe { libc::ioctl(s, libc::SIOCSIFFLAGS, &mut req) };
    }
    let err = std::io::Error::last_os_error();
    // SAFETY: `s` is ours.
    unsafe { libc::close(s) };
    ensure!(r == 0, "bringing lo up: {err}");
    Ok(())
}

/// Waits until kchat's view of `inum` is gone (the namespace was dismantled: that runs in
/// the kernel's cleanup work, some time after the last reference went).
fn wait_view_gone(inum: u64) -> CaseResult {
    let path = PathBuf::from(format!("/sys/kernel/debug/kchat/net-{inum}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while path.exists() {
        ensure!(
            Instant::now() < deadline,
            "{} still there 60 s after the namespace's last reference went",
            path.display()
        );
        thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Sets the nick of `c` (a success is silent to the asker) and checks it with `/who`.
fn nick(c: &mut Conn, name: &str) -> CaseResult {
    c.send(format!("/nick {name}").as_bytes())
        .ctx("send /nick")?;
    c.send(b"/who").ctx("send /who")?;
    let got = c.recv_text(STEP).ctx("answer to /nick and /who")?;
    ensure!(
        got.starts_with("* ") && got.contains(name),
        "/nick {name} then /who got {got:?}"
    );
    Ok(())
}

/// - a namespace made before the load and one made after it each get a kchat, with the
///   start line naming it and a view of its own;
/// - the same nick is taken in each namespace at once (separate nick spaces);
/// - a message in one namespace's `#lobby` reaches its other member and nobody in the
///   other namespace or the initial one; each namespace's history holds only its own;
/// - rooms are separate: `/rooms` in one lists only its own.
fn separate_chats() -> CaseResult {
    let before = Netns::new()?;
    let mut log = start("notices=0 history=5")?;
    log.wait_contains(&format!("kchat: net {}: listening on", before.inum), STEP)?;
    let mut log = Kmsg::from_now().ctx("open /dev/kmsg")?;
    let after = Netns::new()?;
    log.wait_contains(&format!("kchat: net {}: listening on", after.inum), STEP)?;

    let mut home = connect()?;
    let (mut a1, mut a2) = (before.connect()?, before.connect()?);
    let (mut b1, mut b2) = (after.connect()?, after.connect()?);
    wait_clients(1, STEP)?;
    before.wait_clients(2)?;
    after.wait_clients(2)?;
    // History replays (empty rooms): nothing but the history header may come; drain it.
    for c in [&mut home, &mut a1, &mut a2, &mut b1, &mut b2] {
        while c
            .recv_timeout(Duration::from_millis(300))
            .ctx("drain")?
            .is_some()
        {}
    }
    nick(&mut a1, "alice")?;
    nick(&mut b1, "alice")?;
    nick(&mut home, "alice")?;
    a1.send(b"/join #ns").ctx("join")?;
    let got = a1.recv_text(STEP).ctx("join answer")?;
    ensure!(
        got.starts_with("* ") && got.contains("#ns"),
        "/join #ns got {got:?}"
    );

    a2.send(b"/join #ns").ctx("join")?;
    let _ = a2.recv_text(STEP).ctx("join answer")?;
    a2.send(b"hello from before").ctx("say")?;
    expect_frame(&mut a1, &format!("{}: hello from before", label(&a2)))?;
    b2.send(b"hello from after").ctx("say")?;
    expect_frame(&mut b1, &format!("{}: hello from after", label(&b2)))?;
    for c in [&mut home, &mut b1, &mut b2] {
        expect_silence(c, Duration::from_millis(500))?;
    }
    expect_silence(&mut a1, Duration::from_millis(200))?;

    // Rooms: #ns exists only in the first namespace.
    b1.send(b"/rooms").ctx("rooms")?;
    expect_frame(&mut b1, "* 1 rooms: #lobby (2)")?;
    home.send(b"/rooms").ctx("rooms")?;
    expect_frame(&mut home, "* 1 rooms: #lobby (1)")?;
    // History: a newcomer of the second namespace's #lobby gets only its message.
    let mut b3 = after.connect()?;
    expect_frame(&mut b3, "* last 1 messages of #lobby:")?;
    expect_frame(&mut b3, &format!("{}: hello from after", label(&b2)))?;
    // Stats: each counts its own.
    ensure!(
        before.stat("messages_relayed")? == 1 && after.stat("messages_relayed")? == 1,
        "messages_relayed: before {}, after {} (expected 1 each)",
        before.stat("messages_relayed")?,
        after.stat("messages_relayed")?
    );
    ensure!(
        stat("messages_relayed")? == 0,
        "the initial namespace relayed something"
    );
    // IRC listens in each namespace too.
    after
        .run(|| std::net::TcpStream::connect("127.0.0.1:6667").ctx("IRC port in the namespace"))
        .map(drop)?;
    Ok(())
}

/// - 3 namespaces, 20 clients each chatting in `#lobby` (60 flooding the first);
/// - the first namespace is dismantled while its clients flood: kchat's start and stop lines
///   name it, its view goes, kchat's memory is back to the baseline taken before any
///   namespace existed (module-wide counters), and the other two chat on unaffected.
fn dismantled_under_load() -> CaseResult {
    const PARAMS: &str = "notices=1 max_msg_rate=0";
    let mut log = start(PARAMS)?;
    let base = Memory::baseline(PARAMS)?;
    let nets = [Netns::new()?, Netns::new()?, Netns::new()?];
    for n in &nets {
        log.wait_contains(&format!("kchat: net {}: listening on", n.inum), STEP)?;
    }
    let mut clients: Vec<Vec<Conn>> = Vec::new();
    for n in &nets {
        let mut v = Vec::new();
        for _ in 0..20 {
            v.push(n.connect()?);
        }
        n.wait_clients(20)?;
        clients.push(v);
    }
    // The first namespace's clients flood from threads; the case drops everything at once.
    let doomed = clients.remove(0);
    let doomed_inum = nets[0].inum;
    let flooders: Vec<_> = doomed
        .into_iter()
        .map(|mut c| {
            thread::spawn(move || {
                let _ = c.stream().set_nonblocking(true);
                let payload = [b'x'; 300];
                let until = Instant::now() + Duration::from_millis(1500);
                while Instant::now() < until {
                    let _ = c.send(&payload);
                    let mut sink = [0u8; 8192];
                    let _ = std::io::Read::read(&mut c.stream(), &mut sink);
                }
                drop(c);
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(500));
    let [first, second, third] = nets;
    drop(first);
    for f in flooders {
        f.join().map_err(|_| "flooder panicked".to_string())?;
    }
    log.wait_contains(
        &format!("kchat: net {doomed_inum}: stopped listening"),
        Duration::from_secs(60),
    )?;
    wait_view_gone(doomed_inum)?;
    // The others chat on.
    for (n, v) in [&second, &third].iter().zip(clients.iter_mut()) {
        n.wait_clients(20)?;
        let speaker = label(&v[0]);
        v[0].send(b"still here").ctx("say")?;
        let want = format!("{speaker}: still here");
        for c in v.iter_mut().skip(1) {
            crate::util::recv_until(c, "the message after the dismantling", |f| f == want)?;
        }
    }
    drop(clients);
    drop((second, third));
    // Memory with every namespace gone: their instances' stops freed everything (the slab
    // tolerance covers the namespaces' own structures, freed by the kernel's cleanup work).
    base.expect_back(4096)?;
    Ok(())
}

/// - clients in the initial namespace and in two others; `rmmod` ends every connection and
///   removes every view;
/// - the namespaces outlive the module; `insmod` starts a kchat in each (the registration
///   runs for namespaces alive), and their clients connect again.
fn rmmod_stops_all() -> CaseResult {
    let nets = [Netns::new()?, Netns::new()?];
    let mut log = start("notices=0")?;
    for n in &nets {
        log.wait_contains(&format!("kchat: net {}: listening on", n.inum), STEP)?;
    }
    let mut all = vec![connect()?];
    for n in &nets {
        all.push(n.connect()?);
        all.push(n.connect()?);
        n.wait_clients(2)?;
    }
    module::unload().ctx("rmmod")?;
    for c in all.iter_mut() {
        c.expect_close(STEP).ctx("a client after rmmod")?;
    }
    ensure!(
        !PathBuf::from("/sys/kernel/debug/kchat").exists(),
        "the kchat debugfs directory outlived the module"
    );
    let mut log = start("notices=0")?;
    for n in &nets {
        log.wait_contains(&format!("kchat: net {}: listening on", n.inum), STEP)?;
        let mut c = n.connect()?;
        n.wait_clients(1)?;
        c.send(b"/who").ctx("who")?;
        let got = c.recv_text(STEP).ctx("who answer")?;
        ensure!(
            got.starts_with("* 1 online"),
            "/who after reload got {got:?}"
        );
    }
    Ok(())
}

/// - 12 rounds: 3 namespaces made at once (from 3 threads), 5 clients in each chatting in
///   `#lobby` (each message checked at one other member), then everything dropped while the
///   last messages are in flight; at round 6 kchat is reloaded while the round's namespaces
///   and clients are alive (their instances stop, then start again at the load);
/// - at the end every namespace's view is gone and kchat's memory is back to the baseline.
fn namespace_churn() -> CaseResult {
    const PARAMS: &str = "notices=1 max_msg_rate=0";
    let mut log = start(PARAMS)?;
    let base = Memory::baseline(PARAMS)?;
    let mut seen = Vec::new();
    for round in 0..12 {
        let nets: Vec<Netns> = thread::scope(|s| {
            let made: Vec<_> = (0..3).map(|_| s.spawn(Netns::new)).collect();
            made.into_iter()
                .map(|h| {
                    h.join()
                        .map_err(|_| "namespace maker panicked".to_string())?
                })
                .collect::<Result<_, String>>()
        })?;
        for n in &nets {
            log.wait_contains(&format!("kchat: net {}: listening on", n.inum), STEP)?;
            seen.push(n.inum);
        }
        if round == 6 {
            module::unload().ctx("rmmod among the namespaces")?;
            log = start(PARAMS)?;
            for n in &nets {
                log.wait_contains(&format!("kchat: net {}: listening on", n.inum), STEP)?;
            }
        }
        let mut clients = Vec::new();
        for n in &nets {
            let mut v = Vec::new();
            for _ in 0..5 {
                v.push(n.connect()?);
            }
            n.wait_clients(5)?;
            let speaker = label(&v[0]);
            v[0].send(format!("round {round}").as_bytes()).ctx("say")?;
            let want = format!("{speaker}: round {round}");
            crate::util::recv_until(&mut v[4], "the round's message", |f| f == want)?;
            for c in v.iter_mut() {
                c.send(b"parting words").ctx("say")?;
            }
            clients.push(v);
        }
        drop(clients);
        drop(nets);
    }
    seen.dedup();
    for inum in seen {
        wait_view_gone(inum)?;
    }
    base.expect_back(4096)?;
    Ok(())
}
