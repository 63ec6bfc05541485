//! What the operating system says about this process: CPU time, resident memory, file
//! descriptor limits.

use std::time::Duration;

/// User plus system CPU time of this whole process (every thread), from `getrusage`.
pub fn cpu_time() -> Duration {
    let (user, system) = cpu_times();
    user + system
}

/// User and system CPU time of this whole process (every thread), apart, from `getrusage`.
#[allow(unsafe_code)]
pub fn cpu_times() -> (Duration, Duration) {
    // SAFETY: `getrusage` writes a `rusage` into the zeroed struct we own and pass by
    // pointer; RUSAGE_SELF is always a valid `who`.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return (Duration::ZERO, Duration::ZERO);
        }
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
    (tv(usage.ru_utime), tv(usage.ru_stime))
}

/// The CPU time of every thread of process `pid` so far, in nanoseconds by thread id: the
/// first field of `/proc/<pid>/task/<tid>/schedstat`, time on a CPU, user and system
/// together, to the nanosecond (`/proc/<pid>/stat` counts in clock ticks, 10 ms here). `None`
/// when the process is gone.
pub fn thread_cpu_ns(pid: u32) -> Option<std::collections::HashMap<u32, u64>> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut threads = std::collections::HashMap::new();
    for task in tasks.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        // A thread that ends meanwhile is simply not counted in this sample.
        let Ok(stat) = std::fs::read_to_string(task.path().join("schedstat")) else {
            continue;
        };
        if let Some(ns) = stat.split_whitespace().next().and_then(|n| n.parse().ok()) {
            threads.insert(tid, ns);
        }
    }
    Some(threads)
}

/// The CPU a process used between two [`thread_cpu_ns`] samples: what each thread added,
/// threads started in between counted whole, threads ended in between not at all (only
/// what they used after the first sample is lost, not what they had used before it).
pub fn cpu_between(
    before: &std::collections::HashMap<u32, u64>,
    after: &std::collections::HashMap<u32, u64>,
) -> Duration {
    let ns: u64 = after
        .iter()
        .map(|(tid, ns)| ns.saturating_sub(before.get(tid).copied().unwrap_or(0)))
        .sum();
    Duration::from_nanos(ns)
}

/// The process's resident set size in KiB (`VmRSS` of `/proc/self/status`).
pub fn vm_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status_field_kib(&status, "VmRSS:")
}

/// A `kB` field of a `/proc/<pid>/status` text.
pub fn status_field_kib(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..].split_whitespace().next()?.parse().ok()
}

/// Raises the soft limit on open files towards `want` (up to the hard limit); returns the
/// soft limit in force afterwards.
#[allow(unsafe_code)]
pub fn raise_fd_limit(want: u64) -> u64 {
    // SAFETY: get/setrlimit read and write the `rlimit` we own; RLIMIT_NOFILE is valid.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        let target = (want as libc::rlim_t).min(limit.rlim_max);
        if limit.rlim_cur < target {
            let raised = libc::rlimit {
                rlim_cur: target,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit.rlim_cur = target;
            }
        }
        limit.rlim_cur as u64
    }
}

/// Sets `TCP_NOTSENT_LOWAT` on a TCP socket: the kernel then holds at most `bytes` of data
/// not yet sent beyond the peer's window, and a blocking write waits until less is queued.
#[allow(unsafe_code)]
pub fn set_notsent_lowat(socket: &impl std::os::fd::AsRawFd, bytes: u32) -> std::io::Result<()> {
    let value = bytes.min(i32::MAX as u32) as libc::c_int;
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from the `c_int` we pass by
    // pointer; the descriptor is a live socket borrowed for the call.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NOTSENT_LOWAT,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_grows_with_work() {
        // Spin until the process has used 20 ms of CPU: on a loaded machine that takes longer
        // in wall time, so the bound is generous and only a clock that never moves fails it.
        let before = cpu_time();
        let mut x = 0u64;
        let start = std::time::Instant::now();
        let mut spent = Duration::ZERO;
        while spent < Duration::from_millis(20) && start.elapsed() < Duration::from_secs(20) {
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
            spent = cpu_time().saturating_sub(before);
        }
        assert!(
            spent >= Duration::from_millis(20),
            "{spent:?} of CPU in 20 s of spinning"
        );
    }

    #[test]
    fn rss_is_read_and_grows_with_touched_memory() {
        let before = vm_rss_kib().expect("Linux has /proc/self/status");
        // Large next to what other tests running in parallel may free meanwhile.
        let block = vec![1u8; 256 << 20];
        let after = vm_rss_kib().unwrap();
        assert!(after >= before + 128 * 1024, "{before} -> {after}");
        drop(std::hint::black_box(block));
        assert_eq!(
            status_field_kib("Name:\tx\nVmRSS:\t  1234 kB\n", "VmRSS:"),
            Some(1234)
        );
        assert_eq!(status_field_kib("VmHWM: 1 kB\n", "VmRSS:"), None);
    }

    #[test]
    fn thread_cpu_counts_this_process_and_differences_are_per_thread() {
        let pid = std::process::id();
        let before = thread_cpu_ns(pid).expect("Linux has /proc/<pid>/task");
        assert!(before.contains_key(&pid), "the main thread is a task");
        // A thread that spins for at least 20 ms of CPU, then ends.
        std::thread::spawn(|| {
            let start = cpu_time();
            let mut x = 0u64;
            let wall = std::time::Instant::now();
            while cpu_time().saturating_sub(start) < Duration::from_millis(20)
                && wall.elapsed() < Duration::from_secs(20)
            {
                for _ in 0..10_000 {
                    x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                }
            }
        })
        .join()
        .unwrap();
        let after = thread_cpu_ns(pid).unwrap();
        assert!(after[&pid] >= before[&pid]);
        let mut fake_after = after.clone();
        fake_after.insert(u32::MAX, 5_000);
        let base = cpu_between(&before, &after);
        assert_eq!(
            cpu_between(&before, &fake_after),
            base + Duration::from_nanos(5_000),
            "a new thread counts whole"
        );
        let mut fake_before = before.clone();
        fake_before.insert(u32::MAX - 1, 1_000_000_000);
        assert_eq!(
            cpu_between(&fake_before, &after),
            base,
            "an ended thread subtracts nothing"
        );
        assert_eq!(thread_cpu_ns(u32::MAX), None);
    }

    #[test]
    fn the_fd_limit_can_be_read() {
        assert!(raise_fd_limit(256) >= 256);
    }
}
