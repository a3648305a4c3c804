//! Measurements for `make bench` that need the guest's kernel counters: memory per idle client.

use std::{
    io::{Read, Write},
    net::TcpStream,
    thread,
    time::{Duration, Instant},
};

use kchat_proto::encode;

use crate::{
    attack::shrink_slabs,
    module,
    scenarios::RefServer,
    util::{meminfo, start, stat, wait_clients, Context, ADDR},
};

/// Bytes in use in the kmalloc caches (`/proc/slabinfo`: active objects times object size),
/// where everything kchat allocates per client lives; the sockets have caches of their own.
fn kmalloc_bytes() -> Result<u64, String> {
    let text = std::fs::read_to_string("/proc/slabinfo").ctx("read /proc/slabinfo")?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with("kmalloc-"))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let active: u64 = f.get(1)?.parse().ok()?;
            let size: u64 = f.get(3)?.parse().ok()?;
            Some(active * size)
        })
        .sum())
}

/// kmalloc bytes, and all slab in KiB, after shrinking every cache.
fn memory() -> Result<(u64, u64), String> {
    shrink_slabs();
    Ok((kmalloc_bytes()?, meminfo("Slab")?))
}

/// Connects `n` idle clients to whatever listens, waits until `ready` says the server has
/// them all, and returns the growth of kmalloc bytes and of slab (bytes) with them connected.
fn grow_by(n: usize, ready: impl Fn(usize) -> Result<(), String>) -> Result<(u64, u64), String> {
    let (k0, s0) = memory()?;
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        conns.push(TcpStream::connect(ADDR).ctx("connect")?);
    }
    ready(n)?;
    let (k1, s1) = memory()?;
    drop(conns);
    Ok((k1.saturating_sub(k0), s1.saturating_sub(s0) * 1024))
}

/// Waits until a server's `/who` counts `n` clients besides the asker.
fn reference_has(n: usize) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(300);
    let want = format!("* {} online", n + 1);
    loop {
        let mut c = TcpStream::connect(ADDR).ctx("connect")?;
        c.set_read_timeout(Some(Duration::from_secs(20)))
            .ctx("timeout")?;
        c.write_all(&encode(b"/who")).ctx("send /who")?;
        let mut header = [0u8; 4];
        c.read_exact(&mut header).ctx("read /who")?;
        let mut text = vec![0u8; u32::from_le_bytes(header) as usize];
        c.read_exact(&mut text).ctx("read /who")?;
        if String::from_utf8_lossy(&text).starts_with(&want) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("the reference server never had {n} clients"));
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// `kchat-vmtest --idle-memory N`: measures what N idle clients cost, and prints
/// `KCHAT-BENCH-MEM {json}`.
///
/// kchat's own memory per idle client is measured, not computed: the growth of the kmalloc
/// caches with N idle clients of kchat, less their growth with N idle clients of the epoll
/// reference server (the same N loopback connections, whose per-client state lives in user
/// space), divided by N. The guest's slab per connection (both ends are in the guest) and
/// kchat's own counters are printed beside it.
pub fn idle_memory(n: usize) -> Result<(), String> {
    start("notices=0 max_clients=20000 trace=0 history=0")?;
    let t = Instant::now();
    let (kchat_kmalloc, kchat_slab) =
        grow_by(n, |n| wait_clients(n as u64, Duration::from_secs(300)))?;
    let connect_s = t.elapsed().as_secs_f64();
    let object = stat("client_object_bytes")?;
    let buffers = stat("buffer_bytes")?;
    wait_clients(0, Duration::from_secs(300))?;
    module::unload().map_err(|e| format!("rmmod: {e}"))?;

    let reference = RefServer::start(&["epoll", "--port", "10106", "--history", "0"])?;
    let (ref_kmalloc, ref_slab) = grow_by(n, reference_has)?;
    drop(reference);

    let per = |b: u64| b / n as u64;
    println!(
        "KCHAT-BENCH-MEM {{\"clients\": {n}, \"connect_s\": {connect_s:.1}, \
         \"kchat_client_object_bytes\": {object}, \"kchat_buffer_bytes\": {buffers}, \
         \"kchat_bytes_per_idle_client\": {}, \"kmalloc_bytes_per_connection_kchat\": {}, \
         \"kmalloc_bytes_per_connection_reference\": {}, \"slab_bytes_per_connection\": {}, \
         \"slab_bytes_per_connection_reference\": {}}}",
        per(kchat_kmalloc.saturating_sub(ref_kmalloc)),
        per(kchat_kmalloc),
        per(ref_kmalloc),
        per(kchat_slab),
        per(ref_slab),
    );
    Ok(())
}
