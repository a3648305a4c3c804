//! Measurements for `make bench` that need the guest's kernel counters: memory per idle client.

use std::{
    net::TcpStream,
    time::{Duration, Instant},
};

use crate::{
    attack::shrink_slabs,
    module,
    util::{meminfo, start, stat, wait_clients},
};

/// The kmalloc size class an object of `size` bytes is allocated from.
fn kmalloc_class(size: u64) -> u64 {
    [
        8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192,
    ]
    .into_iter()
    .find(|&c| c >= size)
    .unwrap_or(size.next_power_of_two())
}

/// `kchat-vmtest --idle-memory N`: connects N idle clients to kchat and prints
/// `KCHAT-BENCH-MEM {json}`: kchat's own memory per idle client (its client object, in its
/// kmalloc class, plus its slot in the registry; an idle client has no buffers and an empty,
/// unallocated send queue), and the guest's slab and overall memory per connection (both
/// ends of the TCP connection are in the guest).
pub fn idle_memory(n: usize) -> Result<(), String> {
    start("notices=0 max_clients=20000 trace=0")?;
    shrink_slabs();
    let (slab0, avail0) = (meminfo("Slab")?, meminfo("MemAvailable")?);
    let t = Instant::now();
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        conns.push(TcpStream::connect(crate::util::ADDR).map_err(|e| format!("connect: {e}"))?);
    }
    wait_clients(n as u64, Duration::from_secs(300))?;
    let connect_s = t.elapsed().as_secs_f64();
    shrink_slabs();
    let (slab1, avail1) = (meminfo("Slab")?, meminfo("MemAvailable")?);
    let object = stat("client_object_bytes")?;
    let buffers = stat("buffer_bytes")?;
    // The registry holds one pointer per client, in a vector that at most doubles.
    let own = kmalloc_class(object) + 16 + buffers / n as u64;
    println!(
        "KCHAT-BENCH-MEM {{\"clients\": {n}, \"connect_s\": {connect_s:.1}, \"kchat_client_object_bytes\": {object}, \
         \"kchat_bytes_per_idle_client\": {own}, \"slab_bytes_per_connection\": {}, \"memory_bytes_per_connection\": {}}}",
        (slab1.saturating_sub(slab0)) * 1024 / n as u64,
        (avail0.saturating_sub(avail1)) * 1024 / n as u64
    );
    drop(conns);
    wait_clients(0, Duration::from_secs(300))?;
    module::unload().map_err(|e| format!("rmmod: {e}"))?;
    Ok(())
}
