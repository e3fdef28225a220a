//! Findings: a host's TCP sockets, counters and settings judged against thresholds.
//!
//! A [`HostSample`] is plain data: the state counts, the `CLOSE_WAIT` sockets each process
//! holds, how many local ports the connections toward each destination use, the kernel
//! counters, the sysctls, descriptor and connection-tracking usage, and the listeners.
//! [`evaluate`] compares one sample (and, for the checks that need a rate, the sample taken
//! before it) against [`Thresholds`] and returns a [`Report`]: one [`Finding`] per check or
//! per offending item, each with a [`Severity`], the measured value, the threshold, a message
//! and a concrete recommendation (the sysctl line to set, or the fix in the application).
//!
//! [`sample_host`] fills a sample from the live host with one socket walk. A sampler that
//! reads the counters more often than it walks takes the two steps apart:
//! [`read_host_counters`], and a [`HostWalk`] over its own walk (to which it may add its own
//! attribution of each socket), whose [`HostSockets`] fill the sample.
//!
//! The checks, by [`Check`] id, and their default thresholds:
//!
//! | check | warning | critical |
//! |---|---|---|
//! | `time_wait` | > 50 000 | > 100 000 |
//! | `close_wait` | | > 1 000 (names the process holding the most) |
//! | `close_wait_growing` | a process holds more than in the previous sample | |
//! | `syn_recv` | > 1 000 (possible SYN flood) | |
//! | `fin_wait2` | > 500 | |
//! | `local_port_headroom` | < 20 % of the port range left toward one destination | < 5 % |
//! | `listen_overflows`, `listen_drops`, `time_wait_overflow` | rose since the previous sample | |
//! | `process_fd_usage`, `system_file_nr` | > 80 % of the limit | > 95 % |
//! | `conntrack` | > 80 % of `nf_conntrack_max` | > 95 % |
//! | `listener_backlog` | accept queue capped by a `somaxconn` below 4 096 | |
//! | `accept_queue_full` | | accept queue at its maximum now |
//! | `sysctl_*` | setting works against what the sample shows | |
//!
//! Checks that compare two samples are left out when no previous sample is given.
//!
//! ```
//! use conn_hygiene_census::findings::{evaluate, Check, HostSample, Severity, Thresholds};
//! use conn_hygiene_census::TcpState;
//!
//! let mut sample = HostSample::default();
//! sample.states.set(TcpState::TimeWait, 60_000);
//! let report = evaluate(&sample, None, &Thresholds::default());
//! let tw = report.findings.iter().find(|f| f.check == Check::TimeWait).unwrap();
//! assert_eq!(tw.severity, Severity::Warning);
//! assert_eq!(tw.value.as_count(), Some(60_000));
//! assert_eq!(tw.threshold.as_count(), Some(50_000));
//! assert_eq!(report.status(), Severity::Warning);
//!
//! let strict = Thresholds::builder().time_wait(10_000, 20_000).build().unwrap();
//! assert_eq!(evaluate(&sample, None, &strict).status(), Severity::Critical);
//! assert!(Thresholds::builder().time_wait(9, 8).build().is_err());
//! ```

mod checks;
mod host;
mod host_walk;
mod report;
mod sample;
mod thresholds;

pub use self::checks::evaluate;
pub use self::host::{read_host_counters, sample_host};
pub use self::host_walk::{HostSockets, HostWalk, PortCount};
pub use self::report::{Check, Finding, Measure, Report, Severity};
pub use self::sample::{HostSample, PortUse, ProcessCount, ProcessFd};
pub use self::thresholds::{ThresholdError, Thresholds, ThresholdsBuilder};
