//! What the machine did while a phase ran: CPU time of the server, of this benchmark's
//! clients and of every other process, the hypervisor's steal, and the share of time
//! tasks stalled on I/O. A latency measured while any of these was high says more about the machine
//! than about the server.

use std::time::Instant;

/// Counters read at one moment (Linux `/proc`; `None` elsewhere).
pub struct MachineSample {
    at: Instant,
    cpu: CpuTicks,
    server_ticks: u64,
    own_ticks: u64,
    io_stall_us: Option<u64>,
}

/// Machine-wide jiffies from the first line of `/proc/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CpuTicks {
    /// Every state, steal included, summed over `cpus`.
    total: u64,
    /// Idle and waiting for I/O.
    idle: u64,
    steal: u64,
    /// The `cpuN` lines: the CPUs whose time `total` sums.
    cpus: u32,
}

/// What happened between two samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MachineLoad {
    /// Cores' worth of CPU used by the server process.
    pub server_cores: f64,
    /// Cores' worth of CPU used by this benchmark (the clients).
    pub own_cores: f64,
    /// Cores' worth of CPU used by processes other than the server and this benchmark.
    pub other_cores: f64,
    /// Share of all CPU time the hypervisor gave to other guests.
    pub steal_share: f64,
    /// Share of wall time at least one task stalled on I/O (PSI `some`), if known.
    pub io_stall_share: Option<f64>,
}

impl MachineSample {
    pub fn read(server_pid: u32) -> Option<Self> {
        let at = Instant::now();
        let cpu = parse_cpu_line(&std::fs::read_to_string("/proc/stat").ok()?)?;
        let server_ticks = parse_process_ticks(
            &std::fs::read_to_string(format!("/proc/{server_pid}/stat")).ok()?,
        )?;
        let own_ticks = parse_process_ticks(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
        let io_stall_us = std::fs::read_to_string("/proc/pressure/io")
            .ok()
            .and_then(|s| parse_psi_some_total(&s));
        Some(Self {
            at,
            cpu,
            server_ticks,
            own_ticks,
            io_stall_us,
        })
    }

    /// The load from `before` (read at the phase's start, if it could be) until now.
    pub fn load_since(before: Option<MachineSample>, server_pid: u32) -> Option<MachineLoad> {
        Some(Self::read(server_pid)?.since(&before?))
    }

    /// The load between `earlier` and this sample.
    pub fn since(&self, earlier: &MachineSample) -> MachineLoad {
        let total = self.cpu.total.saturating_sub(earlier.cpu.total).max(1);
        let idle = self.cpu.idle.saturating_sub(earlier.cpu.idle);
        let steal = self.cpu.steal.saturating_sub(earlier.cpu.steal);
        let server = self.server_ticks.saturating_sub(earlier.server_ticks);
        let own = self.own_ticks.saturating_sub(earlier.own_ticks);
        let ours = server + own;
        let other = total.saturating_sub(idle + steal + ours);
        let wall = self.at.duration_since(earlier.at).as_secs_f64().max(1e-9);
        // `total` spans every CPU for the interval, so a share of it times the CPUs is
        // cores' worth.
        let share_in_cores = |ticks: u64| ticks as f64 / total as f64 * f64::from(self.cpu.cpus);
        let io_stall_share = match (self.io_stall_us, earlier.io_stall_us) {
            (Some(now), Some(then)) => Some(now.saturating_sub(then) as f64 / (wall * 1e6)),
            _ => None,
        };
        MachineLoad {
            server_cores: share_in_cores(server),
            own_cores: share_in_cores(own),
            other_cores: share_in_cores(other),
            steal_share: steal as f64 / total as f64,
            io_stall_share,
        }
    }
}

impl std::fmt::Display for MachineLoad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "server {:.2} cores, clients {:.2}, other processes {:.2}, steal {:.1}%",
            self.server_cores,
            self.own_cores,
            self.other_cores,
            self.steal_share * 100.0
        )?;
        if let Some(io) = self.io_stall_share {
            write!(
                f,
                ", some task stalled on I/O {:.1}% of the time",
                io * 100.0
            )?;
        }
        Ok(())
    }
}

/// `cpu  user nice system idle iowait irq softirq steal ...`
fn parse_cpu_line(stat: &str) -> Option<CpuTicks> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    if fields.len() < 8 {
        return None;
    }
    // guest and guest_nice (fields 9 and 10) are already inside user and nice.
    let total = fields[..8].iter().sum();
    let cpus = stat
        .lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count();
    Some(CpuTicks {
        total,
        idle: fields[3] + fields[4],
        steal: fields[7],
        cpus: u32::try_from(cpus).ok()?.max(1),
    })
}

/// utime + stime of `/proc/PID/stat`; the command name may hold spaces and parentheses,
/// so the fields are counted from the last `)`.
fn parse_process_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field 3 (state) is the first after the name; utime and stime are fields 14 and 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The `total` (microseconds) of the `some` line of a PSI file.
fn parse_psi_some_total(psi: &str) -> Option<u64> {
    psi.lines()
        .find(|l| l.starts_with("some "))?
        .split_whitespace()
        .find_map(|f| f.strip_prefix("total="))?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_line_counts_idle_with_iowait_and_steal_apart() {
        let stat = "cpu  100 5 20 300 7 1 2 9 4 0\ncpu0 50 2 10 150 3 0 1 4 2 0\ncpu1 50 3 10 150 4 1 1 5 2 0\nintr 1 2\n";
        assert_eq!(
            parse_cpu_line(stat),
            Some(CpuTicks {
                total: 100 + 5 + 20 + 300 + 7 + 1 + 2 + 9,
                idle: 307,
                steal: 9,
                cpus: 2,
            })
        );
        assert_eq!(parse_cpu_line("cpu  1 2 3\n"), None);
    }

    #[test]
    fn process_ticks_are_read_after_a_name_with_spaces_and_parentheses() {
        let stat = "4242 (tokio (rt) x) S 1 4242 4242 0 -1 4194560 900 0 0 0 1234 567 0 0 20 0 9 0 100 0 0";
        assert_eq!(parse_process_ticks(stat), Some(1234 + 567));
        assert_eq!(parse_process_ticks("4242 (short) S 1"), None);
    }

    #[test]
    fn psi_some_total_is_read_and_full_ignored() {
        let psi = "some avg10=0.00 avg60=0.03 avg300=0.22 total=2541772\nfull avg10=0.00 avg60=0.01 avg300=0.15 total=1782750\n";
        assert_eq!(parse_psi_some_total(psi), Some(2_541_772));
        assert_eq!(parse_psi_some_total("full total=5\n"), None);
    }

    #[test]
    fn other_processes_are_what_is_left_of_the_busy_time() {
        let start = Instant::now();
        let ticks = |total, idle, steal| CpuTicks {
            total,
            idle,
            steal,
            cpus: 4,
        };
        let earlier = MachineSample {
            at: start,
            cpu: ticks(1_000, 500, 0),
            server_ticks: 100,
            own_ticks: 50,
            io_stall_us: Some(0),
        };
        // One second later, 100 jiffies on each of the 4 CPUs: 40 idle, 10 stolen, 30 the
        // server's, 10 the benchmark's, and 10 other processes'.
        let later = MachineSample {
            at: start + std::time::Duration::from_secs(1),
            cpu: ticks(1_400, 660, 40),
            server_ticks: 220,
            own_ticks: 90,
            io_stall_us: Some(250_000),
        };
        let load = later.since(&earlier);
        let close = |got: f64, want: f64| (got - want).abs() < 1e-9;
        assert!(close(load.server_cores, 1.2), "{load:?}");
        assert!(close(load.own_cores, 0.4), "{load:?}");
        assert!(close(load.other_cores, 0.4), "{load:?}");
        assert!(close(load.steal_share, 0.1), "{load:?}");
        assert_eq!(load.io_stall_share, Some(0.25));
    }
}
