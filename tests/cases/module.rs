//! Loading and unloading kchat.ko with the module syscalls, so that a test sees the exact
//! errno `insmod` would report.

use std::{ffi::CString, fs::File, io, os::fd::AsRawFd, thread, time::Duration};

/// The module's path in the guest image.
pub const MODULE_PATH: &str = "/lib/modules/kchat.ko";

/// Loads kchat.ko with `params` (space-separated `name=value`); the error is the errno.
pub fn load(params: &str) -> io::Result<()> {
    let file = File::open(MODULE_PATH)?;
    let params = CString::new(params).map_err(io::Error::other)?;
    // SAFETY: `file` is an open descriptor and `params` a NUL-terminated string, both alive
    // for the duration of the call.
    let r = unsafe { libc::syscall(libc::SYS_finit_module, file.as_raw_fd(), params.as_ptr(), 0) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Unloads kchat, retrying while it is busy for up to `timeout`.
pub fn unload_within(timeout: Duration) -> io::Result<()> {
    let name = CString::new("kchat").expect("no NUL");
    let deadline = std::time::Instant::now() + timeout;
    loop {
        // SAFETY: `name` is a NUL-terminated string alive for the call.
        let r = unsafe { libc::syscall(libc::SYS_delete_module, name.as_ptr(), libc::O_NONBLOCK) };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EAGAIN) && e.raw_os_error() != Some(libc::EBUSY)
            || std::time::Instant::now() > deadline
        {
            return Err(e);
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Unloads kchat.
pub fn unload() -> io::Result<()> {
    unload_within(Duration::from_secs(30))
}

/// Whether kchat is loaded now.
pub fn is_loaded() -> bool {
    std::fs::read_to_string("/proc/modules")
        .map(|m| m.lines().any(|l| l.starts_with("kchat ")))
        .unwrap_or(false)
}
