//! What `/proc` says about the client process, every sampling period, and the targets on
//! those samples.

use std::path::Path;

/// One sample of the client process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Seconds since the streams started.
    pub t: f64,
    /// Resident memory, KiB (`VmRSS`).
    pub rss_kib: u64,
    /// Heap the process holds live (allocated and not yet freed through the global
    /// allocator), KiB: what RSS would be without the allocator's free but kept pages, so
    /// RSS growth with a flat heap is fragmentation, not a leak.
    pub heap_kib: u64,
    /// Open file descriptors (entries of `fd/`).
    pub fds: u64,
    /// Threads (entries of `task/`).
    pub threads: u64,
    /// Streams with a `200` connection open now.
    pub up: u64,
    /// Reconnects so far (`Disconnected` events).
    pub reconnects: u64,
    /// Messages received so far.
    pub messages: u64,
    /// User plus system CPU seconds so far.
    pub cpu: f64,
}

/// Reads `VmRSS`, `fd/`, `task/` and CPU time of process `pid` (`self` for this one).
pub fn read_proc(pid: &str) -> Result<(u64, u64, u64, f64), String> {
    let dir = Path::new("/proc").join(pid);
    let status = std::fs::read_to_string(dir.join("status"))
        .map_err(|e| format!("{}: {e}", dir.join("status").display()))?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or("no VmRSS in /proc status")?;
    let count = |sub: &str| {
        std::fs::read_dir(dir.join(sub))
            .map(|d| d.count() as u64)
            .map_err(|e| format!("{}: {e}", dir.join(sub).display()))
    };
    let stat = std::fs::read_to_string(dir.join("stat"))
        .map_err(|e| format!("{}: {e}", dir.join("stat").display()))?;
    // Fields after the command name (which may hold spaces, so split after its `)`):
    // state is field 3, utime 14 and stime 15, in clock ticks (100 a second on Linux).
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let cpu = (ticks(11) + ticks(12)) as f64 / 100.0;
    Ok((rss, count("fd")?, count("task")?, cpu))
}

/// The soft limit on open files of process `pid` (`Max open files` in `limits`), if
/// readable and not unlimited.
pub fn fd_limit(pid: &str) -> Option<u64> {
    let limits = std::fs::read_to_string(Path::new("/proc").join(pid).join("limits")).ok()?;
    parse_fd_limit(&limits)
}

fn parse_fd_limit(limits: &str) -> Option<u64> {
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

/// The machine's one-minute load average (`/proc/loadavg`), if readable.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Whether an environment variable tunes the allocator in use: `_RJEM_MALLOC_CONF` for the
/// compiled-in (prefixed) jemalloc, glibc's tunables and `MALLOC_*` variables otherwise.
fn tunes(jemalloc: bool, key: &str) -> bool {
    if jemalloc {
        key == "_RJEM_MALLOC_CONF"
    } else {
        key.starts_with("MALLOC_") || key == "GLIBC_TUNABLES"
    }
}

/// Which allocator the client's memory figures describe: RSS depends on it as much as on the
/// client (glibc's malloc keeps freed pages that a decaying allocator such as jemalloc
/// returns), so a run says which one it measured. `jemalloc` is whether the soak was built
/// with jemalloc compiled in (its default `jemalloc` feature, like the `sitebucket` binary);
/// otherwise the process's environment says what replaced or tuned the system allocator.
pub fn allocator(jemalloc: bool, env: impl IntoIterator<Item = (String, String)>) -> String {
    let mut preload = None;
    let mut tuning = Vec::new();
    for (key, value) in env {
        if key == "LD_PRELOAD" && !value.trim().is_empty() {
            preload = Some(value);
        } else if tunes(jemalloc, &key) {
            tuning.push(format!("{key}={value}"));
        }
    }
    tuning.sort();
    let mut said = match (jemalloc, preload) {
        (true, _) => "jemalloc, compiled in as in the `sitebucket` binary".to_string(),
        (false, Some(preload)) => format!("LD_PRELOAD={preload} (the system allocator replaced)"),
        (false, None) => "the system allocator (glibc malloc on Linux)".to_string(),
    };
    if !tuning.is_empty() {
        said.push_str(", tuned by ");
        said.push_str(&tuning.join(" "));
    }
    said
}

/// The resource targets over a run's samples: after warm-up, RSS grows less than 5%, and
/// file descriptors and threads stay flat apart from the streams mid-reconnect.
#[derive(Debug, Clone, Default)]
pub struct ResourceVerdict {
    /// Each target missed, in words.
    pub failures: Vec<String>,
    /// Median RSS just after warm-up, and in the last quarter, KiB.
    pub rss: (u64, u64),
    /// RSS growth after warm-up, percent.
    pub rss_growth: f64,
    /// Median live heap just after warm-up, and in the last quarter, KiB.
    pub heap: (u64, u64),
    /// Live heap growth after warm-up, percent.
    pub heap_growth: f64,
    /// Fds above the streams' own sockets: (just after warm-up, highest later).
    pub fds: (u64, u64),
    /// Threads: (just after warm-up, highest later).
    pub threads: (u64, u64),
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

/// Checks the targets on `samples`, ignoring those before `warmup` seconds. `streams`
/// bounds how many fds and threads may come and go with connections: fds are counted
/// above the connected streams (`fds − up`), and may move by the streams not connected
/// (plus `slack`); threads may move by `slack` (the drivers' few helper threads, such as
/// name lookups, come and go).
pub fn resources(samples: &[Sample], warmup: f64, slack: u64) -> ResourceVerdict {
    let mut v = ResourceVerdict::default();
    let after: Vec<&Sample> = samples.iter().filter(|s| s.t >= warmup).collect();
    if after.len() < 4 {
        v.failures.push(format!(
            "only {} samples after the {warmup:.0} s warm-up: run longer to judge growth",
            after.len()
        ));
        return v;
    }
    let quarter = after.len().div_ceil(4);
    let first = &after[..quarter];
    let last = &after[after.len() - quarter..];
    let rss0 = median(first.iter().map(|s| s.rss_kib).collect());
    let rss1 = median(last.iter().map(|s| s.rss_kib).collect());
    v.rss = (rss0, rss1);
    v.rss_growth = (rss1 as f64 / rss0.max(1) as f64 - 1.0) * 100.0;
    let heap0 = median(first.iter().map(|s| s.heap_kib).collect());
    let heap1 = median(last.iter().map(|s| s.heap_kib).collect());
    v.heap = (heap0, heap1);
    v.heap_growth = (heap1 as f64 / heap0.max(1) as f64 - 1.0) * 100.0;
    if v.rss_growth >= 5.0 {
        v.failures.push(format!(
            "RSS grew {:.1}% after warm-up ({rss0} KiB → {rss1} KiB; target < 5%)",
            v.rss_growth
        ));
    }
    // Sockets of connected streams come and go; what is left must not grow.
    let base_fds = first
        .iter()
        .map(|s| s.fds.saturating_sub(s.up))
        .max()
        .unwrap_or(0);
    let max_fds = after
        .iter()
        .map(|s| s.fds.saturating_sub(s.up))
        .max()
        .unwrap_or(0);
    let down = after.iter().map(|s| s.up).max().unwrap_or(0)
        - after.iter().map(|s| s.up).min().unwrap_or(0);
    v.fds = (base_fds, max_fds);
    if max_fds > base_fds + down + slack {
        let s = after
            .iter()
            .max_by_key(|s| s.fds.saturating_sub(s.up))
            .copied();
        v.failures.push(format!(
            "open fds beyond the connected streams' grew from {base_fds} to {max_fds} (at {:.0} s; allowed {} for streams mid-reconnect and helpers)",
            s.map_or(0.0, |s| s.t),
            down + slack
        ));
    }
    let base_threads = first.iter().map(|s| s.threads).max().unwrap_or(0);
    let max_threads = after.iter().map(|s| s.threads).max().unwrap_or(0);
    v.threads = (base_threads, max_threads);
    if max_threads > base_threads + slack {
        v.failures.push(format!(
            "threads grew from {base_threads} to {max_threads} after warm-up (allowed {slack})"
        ));
    }
    v
}

/// A small SVG: RSS, live heap, fds and threads over time, each in its own panel with its range.
pub fn svg(samples: &[Sample], title: &str) -> String {
    let (w, panel, pad) = (720.0, 150.0, 40.0);
    let height = pad + 4.0 * (panel + pad);
    let t_max = samples.iter().map(|s| s.t).fold(1.0, f64::max);
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{pad}\" y=\"20\" font-size=\"14\">{}</text>\n",
        title.replace('&', "&amp;").replace('<', "&lt;")
    );
    type Value = fn(&Sample) -> f64;
    let series: [(&str, &str, Value); 4] = [
        ("RSS (MiB)", "#c0392b", |s| s.rss_kib as f64 / 1024.0),
        ("live heap (MiB)", "#8e44ad", |s| s.heap_kib as f64 / 1024.0),
        ("open fds", "#2471a3", |s| s.fds as f64),
        ("threads", "#229954", |s| s.threads as f64),
    ];
    for (i, (label, color, value)) in series.iter().enumerate() {
        let top = pad + i as f64 * (panel + pad);
        let values: Vec<f64> = samples.iter().map(value).collect();
        let lo = values
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min)
            .min(0.0);
        let hi = values.iter().copied().fold(0.0, f64::max).max(1.0) * 1.1;
        let x = |t: f64| 60.0 + (w - 80.0) * t / t_max;
        let y = |v: f64| top + panel - panel * (v - lo) / (hi - lo);
        out.push_str(&format!(
            "<rect x=\"60\" y=\"{top}\" width=\"{}\" height=\"{panel}\" fill=\"none\" stroke=\"#999\"/>\n<text x=\"62\" y=\"{}\">{label}</text>\n<text x=\"4\" y=\"{}\">{hi:.0}</text>\n<text x=\"4\" y=\"{}\">{lo:.0}</text>\n",
            w - 80.0,
            top + 14.0,
            top + 10.0,
            top + panel
        ));
        let points: Vec<String> = samples
            .iter()
            .zip(&values)
            .map(|(s, v)| format!("{:.1},{:.1}", x(s.t), y(*v)))
            .collect();
        out.push_str(&format!(
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>\n",
            points.join(" ")
        ));
    }
    out.push_str(&format!(
        "<text x=\"60\" y=\"{}\">0 s</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{t_max:.0} s</text>\n</svg>\n",
        height - 8.0,
        w - 20.0,
        height - 8.0
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An environment of these pairs, as `std::env::vars` gives it.
    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_allocator_line_names_a_preload_and_tuning() {
        assert_eq!(
            allocator(false, env(&[("HOME", "/root")])),
            "the system allocator (glibc malloc on Linux)"
        );
        assert_eq!(
            allocator(
                false,
                env(&[
                    ("MALLOC_ARENA_MAX", "1"),
                    ("LD_PRELOAD", "/usr/lib/libjemalloc.so.2"),
                    ("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=0"),
                ])
            ),
            "LD_PRELOAD=/usr/lib/libjemalloc.so.2 (the system allocator replaced), tuned by \
             GLIBC_TUNABLES=glibc.malloc.trim_threshold=0 MALLOC_ARENA_MAX=1"
        );
        assert_eq!(
            allocator(false, env(&[("LD_PRELOAD", " ")])),
            "the system allocator (glibc malloc on Linux)"
        );
    }

    #[test]
    fn the_allocator_line_names_compiled_in_jemalloc_and_only_its_tuning() {
        assert_eq!(
            allocator(
                true,
                env(&[
                    ("GLIBC_TUNABLES", "glibc.malloc.tcache_count=0"),
                    ("HOME", "/")
                ])
            ),
            "jemalloc, compiled in as in the `sitebucket` binary"
        );
        assert_eq!(
            allocator(true, env(&[("_RJEM_MALLOC_CONF", "narenas:1")])),
            "jemalloc, compiled in as in the `sitebucket` binary, tuned by \
             _RJEM_MALLOC_CONF=narenas:1"
        );
    }

    fn run(rss: impl Fn(u64) -> u64, fds: impl Fn(u64) -> u64, threads: u64) -> ResourceVerdict {
        let samples: Vec<Sample> = (0..20)
            .map(|i| Sample {
                t: i as f64 * 10.0,
                rss_kib: rss(i),
                heap_kib: rss(i) / 2,
                fds: fds(i) + 90 + (i % 3),
                threads,
                up: 90 + (i % 3),
                reconnects: i * 10,
                messages: i * 1000,
                cpu: i as f64,
            })
            .collect();
        resources(&samples, 30.0, 8)
    }

    #[test]
    fn flat_resources_pass_and_growth_or_leaks_fail() {
        let flat = run(|i| 50_000 + (i % 2) * 100, |_| 20, 6);
        assert!(flat.failures.is_empty(), "{:?}", flat.failures);
        let creeping = run(|i| 50_000 + i * 400, |_| 20, 6);
        assert!(creeping.failures.iter().any(|f| f.contains("RSS grew")));
        let leaking = run(|_| 50_000, |i| 20 + i * 3, 6);
        assert!(
            leaking.failures.iter().any(|f| f.contains("fds")),
            "{:?}",
            leaking.failures
        );
        let threads = run(|_| 50_000, |_| 20, 6);
        assert!(threads.failures.is_empty());
        let svg = svg(&[], "empty");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
    }

    #[test]
    fn this_process_can_be_read() {
        let (rss, fds, threads, _) = read_proc("self").unwrap();
        assert!(rss > 0 && fds >= 3 && threads >= 1);
        assert!(fd_limit("self").is_none_or(|l| l >= fds));
        assert!(load_average().is_some_and(|l| l >= 0.0));
    }

    #[test]
    fn the_fd_limit_is_read_from_limits() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \nMax cpu time              unlimited            unlimited            seconds   \nMax open files            1024                 524288               files     \n";
        assert_eq!(parse_fd_limit(limits), Some(1024));
        let unlimited = limits.replace("1024 ", "unlimited ");
        assert_eq!(parse_fd_limit(&unlimited), None);
        assert_eq!(parse_fd_limit("nothing here"), None);
    }
}
