// SPDX-License-Identifier: GPL-2.0
//! The libc calls the load generator needs: the monotonic clock, a timerfd, its own CPU time
//! and the open-file limit. This is the only file with `unsafe`.

use std::{
    io,
    mem::MaybeUninit,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
};

/// Nanoseconds of `CLOCK_MONOTONIC`, the clock every timestamp in a payload uses.
///
/// The sender and the receivers are in one process on one machine, so the difference of two
/// readings is an end-to-end latency without any clock synchronisation.
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = MaybeUninit::<libc::timespec>::uninit();
    // SAFETY: `ts` is valid for writes of one `timespec`, which is all clock_gettime writes;
    // CLOCK_MONOTONIC exists on every Linux, so the call cannot fail.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, ts.as_mut_ptr()) };
    debug_assert_eq!(rc, 0);
    // SAFETY: clock_gettime returned 0, so it initialised `ts`.
    let ts = unsafe { ts.assume_init() };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// User plus system CPU time of this process (all threads), in seconds.
pub(crate) fn process_cpu_seconds() -> f64 {
    let mut ru = MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: `ru` is valid for writes of one `rusage`; RUSAGE_SELF is a valid `who`.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr()) };
    if rc != 0 {
        return 0.0;
    }
    // SAFETY: getrusage returned 0, so it filled `ru`.
    let ru = unsafe { ru.assume_init() };
    let secs = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    secs(ru.ru_utime) + secs(ru.ru_stime)
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns the new soft limit.
pub(crate) fn raise_nofile_limit() -> io::Result<u64> {
    let mut lim = MaybeUninit::<libc::rlimit>::uninit();
    // SAFETY: `lim` is valid for writes of one `rlimit`.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, lim.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: getrlimit returned 0, so it filled `lim`.
    let mut lim = unsafe { lim.assume_init() };
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: `lim` is an initialised `rlimit` that setrlimit only reads.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(lim.rlim_cur)
}

/// The unit of /proc/stat's CPU times (`USER_HZ`, nearly always 100).
pub(crate) fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no memory arguments; it returns -1 for an unknown name.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as u64
    } else {
        100
    }
}

/// A `timerfd` on `CLOCK_MONOTONIC`: the `--rate` schedule needs wake-ups finer than the
/// millisecond resolution of epoll_wait's timeout.
#[derive(Debug)]
pub(crate) struct Timer {
    fd: OwnedFd,
}

impl Timer {
    /// A disarmed, non-blocking timer.
    pub(crate) fn new() -> io::Result<Self> {
        // SAFETY: timerfd_create has no memory arguments; it returns a new fd or -1.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by timerfd_create, is open and owned by no one else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { fd })
    }

    /// Makes the timer readable at monotonic time `at_ns` (at once if that has passed).
    pub(crate) fn arm_at(&self, at_ns: u64) -> io::Result<()> {
        let at = at_ns.max(1); // An all-zero time would disarm the timer.
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: (at / 1_000_000_000) as libc::time_t,
                tv_nsec: (at % 1_000_000_000) as libc::c_long,
            },
        };
        // SAFETY: `self.fd` is an open timerfd (type invariant of OwnedFd from `new`); `spec`
        // is a valid itimerspec that the call only reads; the old value is not wanted (null).
        let rc = unsafe {
            libc::timerfd_settime(
                self.fd.as_raw_fd(),
                libc::TFD_TIMER_ABSTIME,
                &spec,
                std::ptr::null_mut(),
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Consumes the expiration so the timer is no longer readable.
    pub(crate) fn clear(&self) {
        let mut n = 0u64;
        // SAFETY: `self.fd` is an open timerfd and `n` is valid for writes of the 8 bytes a
        // timerfd read returns; EAGAIN (nothing expired) is fine and ignored.
        let _ = unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                (&raw mut n).cast::<libc::c_void>(),
                std::mem::size_of::<u64>(),
            )
        };
    }
}

impl AsRawFd for Timer {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks that the monotonic clock advances and that the process has used some CPU.
    #[test]
    fn clock_and_cpu() {
        let a = monotonic_ns();
        let mut x = 0u64;
        for i in 0..100_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(monotonic_ns() > a);
        assert!(process_cpu_seconds() >= 0.0);
        assert!(clock_ticks_per_second() > 0);
    }

    /// Checks that the timer becomes readable at the time it was armed for, not before.
    #[test]
    fn timer() {
        let t = Timer::new().unwrap();
        let mut n = 0u64;
        let read = |n: &mut u64| {
            // SAFETY: the fd is open and `n` is valid for writes of 8 bytes.
            unsafe { libc::read(t.as_raw_fd(), (n as *mut u64).cast(), 8) }
        };
        t.arm_at(monotonic_ns() + 2_000_000).unwrap();
        assert_eq!(read(&mut n), -1, "not yet expired");
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(read(&mut n), 8);
        assert_eq!(n, 1);
        t.arm_at(1).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1));
        t.clear();
        assert_eq!(read(&mut n), -1, "cleared");
    }
}
