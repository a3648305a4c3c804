//! The check of `make run CLUSTER=3`: the same guest script (three nodes, two
//! `nats-server`s, a bridge each, the forwarders) booted without a console, its nodes' native
//! ports forwarded to free host ports; two native clients on the host, on node-a and
//! node-b, must see each other and chat, as two terminals would.

use std::{
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use kchat_proto::Conn;

use crate::{build_image, cluster_script, qemu, Options, Outcome, RunFiles, GUEST_CHAT_PORT};

const NAME: &str =
    "host: make run CLUSTER=3: host clients on node-a and node-b chat through the forwarded ports";

/// Boots the cluster guest, chats across two nodes from the host, stops the guest.
pub fn check(o: &Options) -> Outcome {
    let fail = |detail: String| Outcome {
        ok: false,
        skipped: false,
        name: NAME.into(),
        detail,
    };
    if !Path::new(crate::NATS_SERVER).exists() {
        return Outcome {
            ok: true,
            skipped: true,
            name: NAME.into(),
            detail: "nats-server is not installed".into(),
        };
    }
    let out = o.out.join("cluster-run");
    let files = RunFiles::fresh(&out);
    let secret = 0x6b63_6861_7421_u64;
    let script = format!(
        "insmod /lib/modules/kchat.ko link_secret={secret} || echo 'insmod failed'\n{}sleep 100000\n",
        cluster_script(3, secret)
    );
    let sub = Options {
        out: out.clone(),
        ..o.clone()
    };
    let initrd = build_image(&sub, script);
    let ports: Vec<u16> = (0..3)
        .map(|_| {
            qemu::free_listener()
                .and_then(|l| l.local_addr())
                .map_or(0, |a| a.port())
        })
        .collect();
    if ports.contains(&0) {
        return fail("no free host port".into());
    }
    let forwards = ports
        .iter()
        .enumerate()
        .map(|(i, &p)| (p, GUEST_CHAT_PORT + 10 * i as u16))
        .collect();
    let guest = files.guest(o, &initrd, forwards);
    let mut child = match guest.command().stdin(Stdio::null()).spawn() {
        Ok(c) => c,
        Err(e) => return fail(format!("cannot start qemu: {e}")),
    };
    let result = chat(ports[0], ports[1]);
    let _ = child.kill();
    let _ = child.wait();
    match result {
        Ok(detail) => Outcome {
            ok: true,
            skipped: false,
            name: NAME.into(),
            detail,
        },
        Err(e) => fail(format!("{e}; guest console in {}", files.console.display())),
    }
}

/// Connects to a forwarded port, retrying while the guest boots.
fn connect(port: u16, deadline: Instant) -> Result<Conn, String> {
    loop {
        if let Ok(mut c) = Conn::connect(("127.0.0.1", port)) {
            // QEMU accepts on the host before the guest listens: a kchat answers `/who`.
            if c.send(b"/who").is_ok() {
                if let Ok(Some(_)) = c.recv_timeout(Duration::from_secs(2)) {
                    return Ok(c);
                }
            }
        }
        if Instant::now() > deadline {
            return Err(format!("nothing answers on 127.0.0.1:{port}"));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// alice on node-a and bob on node-b see each other in `/who`, then say hello both ways.
fn chat(a: u16, b: u16) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut alice = connect(a, deadline)?;
    let mut bob = connect(b, deadline)?;
    alice.send(b"/nick alice").map_err(|e| e.to_string())?;
    bob.send(b"/nick bob").map_err(|e| e.to_string())?;
    // Until each node's bridge has the other's member.
    let mut last = String::new();
    loop {
        alice.send(b"/who").map_err(|e| e.to_string())?;
        while let Ok(Some(f)) = alice.recv_timeout(Duration::from_millis(500)) {
            let f = String::from_utf8_lossy(&f).into_owned();
            if f.contains(" online in ") {
                last = f;
            }
        }
        if last.contains("bob@node-b") {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("node-a's /who is still {last:?}"));
        }
    }
    alice.send(b"hello bob").map_err(|e| e.to_string())?;
    wait_for(&mut bob, "alice@node-a: hello bob", deadline)?;
    bob.send(b"hello alice").map_err(|e| e.to_string())?;
    wait_for(&mut alice, "bob@node-b: hello alice", deadline)?;
    Ok(format!("{last}; hello both ways"))
}

fn wait_for(c: &mut Conn, want: &str, deadline: Instant) -> Result<(), String> {
    loop {
        match c.recv_timeout(Duration::from_millis(500)) {
            Ok(Some(f)) if f == want.as_bytes() => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(format!("waiting for {want:?}: {e}")),
        }
        if Instant::now() > deadline {
            return Err(format!("{want:?} never arrived"));
        }
    }
}
