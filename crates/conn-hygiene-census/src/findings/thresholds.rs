//! The limits findings are judged against: [`Thresholds`], its builder, and [`ThresholdError`].

use std::fmt;

/// A threshold setting was given a value that cannot work. Each variant names the setting
/// and carries the bad value.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ThresholdError {
    /// `time_wait`: the warning level is above the critical one.
    TimeWait {
        /// Given warning level.
        warning: u64,
        /// Given critical level.
        critical: u64,
    },
    /// `port_headroom_percent`: outside 0–100, or warning below critical.
    PortHeadroom {
        /// Given warning level.
        warning: f64,
        /// Given critical level.
        critical: f64,
    },
    /// `fd_usage_percent`: outside 0–100, or warning above critical.
    FdUsage {
        /// Given warning level.
        warning: f64,
        /// Given critical level.
        critical: f64,
    },
    /// `conntrack_percent`: outside 0–100, or warning above critical.
    Conntrack {
        /// Given warning level.
        warning: f64,
        /// Given critical level.
        critical: f64,
    },
    /// `min_port_range_width`: more ports than exist.
    MinPortRangeWidth(u32),
    /// `close_wait_age_secs`: the warning level is above the critical one.
    CloseWaitAge {
        /// Given warning level.
        warning: u64,
        /// Given critical level.
        critical: u64,
    },
}

impl fmt::Display for ThresholdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ThresholdError::TimeWait { warning, critical } => write!(
                f,
                "invalid thresholds: time_wait = warning {warning}, critical {critical}: expected \
                 warning at most critical"
            ),
            ThresholdError::PortHeadroom { warning, critical } => write!(
                f,
                "invalid thresholds: port_headroom_percent = warning {warning}, critical {critical}: \
                 expected both in 0..=100, warning at least critical"
            ),
            ThresholdError::CloseWaitAge { warning, critical } => write!(
                f,
                "invalid thresholds: close_wait_age_secs = warning {warning}, critical \
                 {critical}: expected warning at most critical"
            ),
            ThresholdError::FdUsage { warning, critical } => write!(
                f,
                "invalid thresholds: fd_usage_percent = warning {warning}, critical {critical}: \
                 expected both in 0..=100, warning at most critical"
            ),
            ThresholdError::Conntrack { warning, critical } => write!(
                f,
                "invalid thresholds: conntrack_percent = warning {warning}, critical {critical}: \
                 expected both in 0..=100, warning at most critical"
            ),
            ThresholdError::MinPortRangeWidth(v) => {
                write!(
                    f,
                    "invalid thresholds: min_port_range_width = {v}: expected at most 65536 ports"
                )
            }
        }
    }
}

impl std::error::Error for ThresholdError {}

/// The limits [`evaluate`](super::evaluate) judges against. [`Thresholds::default`] holds the
/// levels of field practice; change them with [`Thresholds::builder`].
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    time_wait_warning: u64,
    time_wait_critical: u64,
    close_wait_critical: u64,
    syn_recv_warning: u64,
    fin_wait2_warning: u64,
    port_headroom_warning: f64,
    port_headroom_critical: f64,
    fd_warning: f64,
    fd_critical: f64,
    conntrack_warning: f64,
    conntrack_critical: f64,
    min_somaxconn: u32,
    min_port_range_width: u32,
    max_fin_timeout: u32,
    max_keepalive_detect_secs: u64,
    close_wait_age_warning: u64,
    close_wait_age_critical: u64,
    max_idle_secs: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            time_wait_warning: 50_000,
            time_wait_critical: 100_000,
            close_wait_critical: 1_000,
            syn_recv_warning: 1_000,
            fin_wait2_warning: 500,
            port_headroom_warning: 20.0,
            port_headroom_critical: 5.0,
            fd_warning: 80.0,
            fd_critical: 95.0,
            conntrack_warning: 80.0,
            conntrack_critical: 95.0,
            min_somaxconn: 4096,
            min_port_range_width: 16_384,
            max_fin_timeout: 30,
            max_keepalive_detect_secs: 1_200,
            close_wait_age_warning: 60,
            close_wait_age_critical: 600,
            max_idle_secs: 240,
        }
    }
}

impl Thresholds {
    /// A builder starting from the defaults.
    pub fn builder() -> ThresholdsBuilder {
        ThresholdsBuilder {
            t: Thresholds::default(),
        }
    }

    /// `TIME_WAIT` sockets above which to warn, and to raise critical.
    pub fn time_wait(&self) -> (u64, u64) {
        (self.time_wait_warning, self.time_wait_critical)
    }

    /// `CLOSE_WAIT` sockets above which to raise critical.
    pub fn close_wait_critical(&self) -> u64 {
        self.close_wait_critical
    }

    /// `SYN_RECV` sockets above which to warn.
    pub fn syn_recv_warning(&self) -> u64 {
        self.syn_recv_warning
    }

    /// `FIN_WAIT2` sockets above which to warn.
    pub fn fin_wait2_warning(&self) -> u64 {
        self.fin_wait2_warning
    }

    /// Per-destination port headroom, in percent, below which to warn and raise critical.
    pub fn port_headroom_percent(&self) -> (f64, f64) {
        (self.port_headroom_warning, self.port_headroom_critical)
    }

    /// Descriptor usage, in percent, above which to warn and raise critical.
    pub fn fd_usage_percent(&self) -> (f64, f64) {
        (self.fd_warning, self.fd_critical)
    }

    /// Connection-tracking usage, in percent, above which to warn and raise critical.
    pub fn conntrack_percent(&self) -> (f64, f64) {
        (self.conntrack_warning, self.conntrack_critical)
    }

    /// `net.core.somaxconn` below which a capped listener is a warning.
    pub fn min_somaxconn(&self) -> u32 {
        self.min_somaxconn
    }

    /// Width of `ip_local_port_range` below which to warn.
    pub fn min_port_range_width(&self) -> u32 {
        self.min_port_range_width
    }

    /// Largest `tcp_fin_timeout` recommended, in seconds.
    pub fn max_fin_timeout(&self) -> u32 {
        self.max_fin_timeout
    }

    /// Longest keepalive dead-peer detection recommended, in seconds.
    pub fn max_keepalive_detect_secs(&self) -> u64 {
        self.max_keepalive_detect_secs
    }

    /// Seconds a connection may sit in `CLOSE_WAIT` (since the peer's FIN) before a warning
    /// and a critical finding.
    pub fn close_wait_age_secs(&self) -> (u64, u64) {
        (self.close_wait_age_warning, self.close_wait_age_critical)
    }

    /// Seconds a connection may sit idle before it likely outlived what the peer and the
    /// middleboxes on the way keep.
    pub fn max_idle_secs(&self) -> u64 {
        self.max_idle_secs
    }
}

/// Builds [`Thresholds`]; [`ThresholdsBuilder::build`] checks them.
#[derive(Debug, Clone)]
pub struct ThresholdsBuilder {
    t: Thresholds,
}

impl ThresholdsBuilder {
    /// `TIME_WAIT` warning and critical levels (strictly above is reported).
    /// Default: 50 000 and 100 000. Warning must not exceed critical.
    pub fn time_wait(mut self, warning: u64, critical: u64) -> Self {
        self.t.time_wait_warning = warning;
        self.t.time_wait_critical = critical;
        self
    }

    /// `CLOSE_WAIT` critical level (strictly above is reported). Default: 1 000.
    pub fn close_wait_critical(mut self, critical: u64) -> Self {
        self.t.close_wait_critical = critical;
        self
    }

    /// `SYN_RECV` warning level. Default: 1 000.
    pub fn syn_recv_warning(mut self, warning: u64) -> Self {
        self.t.syn_recv_warning = warning;
        self
    }

    /// `FIN_WAIT2` warning level. Default: 500.
    pub fn fin_wait2_warning(mut self, warning: u64) -> Self {
        self.t.fin_wait2_warning = warning;
        self
    }

    /// Per-destination headroom, in percent of the port range, below which to warn and
    /// raise critical. Default: 20 and 5. Both in 0–100, warning not below critical.
    pub fn port_headroom_percent(mut self, warning: f64, critical: f64) -> Self {
        self.t.port_headroom_warning = warning;
        self.t.port_headroom_critical = critical;
        self
    }

    /// Descriptor usage (process and host), in percent, above which to warn and raise
    /// critical. Default: 80 and 95. Both in 0–100, warning not above critical.
    pub fn fd_usage_percent(mut self, warning: f64, critical: f64) -> Self {
        self.t.fd_warning = warning;
        self.t.fd_critical = critical;
        self
    }

    /// Connection-tracking usage, in percent. Default: 80 and 95, as
    /// [`fd_usage_percent`](Self::fd_usage_percent).
    pub fn conntrack_percent(mut self, warning: f64, critical: f64) -> Self {
        self.t.conntrack_warning = warning;
        self.t.conntrack_critical = critical;
        self
    }

    /// `net.core.somaxconn` below which a listener capped by it is a warning. Default: 4 096
    /// (the kernel default since 5.4).
    pub fn min_somaxconn(mut self, min: u32) -> Self {
        self.t.min_somaxconn = min;
        self
    }

    /// Width of `ip_local_port_range` below which to warn. Default: 16 384. At most 65 536.
    pub fn min_port_range_width(mut self, min: u32) -> Self {
        self.t.min_port_range_width = min;
        self
    }

    /// Largest `tcp_fin_timeout` recommended, in seconds. Default: 30.
    pub fn max_fin_timeout(mut self, secs: u32) -> Self {
        self.t.max_fin_timeout = secs;
        self
    }

    /// Longest keepalive dead-peer detection (`time + intvl × probes`) recommended, in
    /// seconds. Default: 1 200.
    pub fn max_keepalive_detect_secs(mut self, secs: u64) -> Self {
        self.t.max_keepalive_detect_secs = secs;
        self
    }

    /// Seconds in `CLOSE_WAIT` (since the peer's FIN, which the kernel dates by the last
    /// acknowledgement received) above which one of a process's connections is a warning and
    /// a critical finding. Default: 60 and 600: a connection the application did not close
    /// within a minute of its peer's close is most likely leaked. Warning not above critical.
    pub fn close_wait_age_secs(mut self, warning: u64, critical: u64) -> Self {
        self.t.close_wait_age_warning = warning;
        self.t.close_wait_age_critical = critical;
        self
    }

    /// Seconds of idleness above which a connection likely outlived the idle timeout of its
    /// peer or of a middlebox on the way (a load balancer or NAT drops the flow silently, and
    /// the next request waits for a retransmission timeout or a reset). Default: 240, the
    /// shortest common one (a cloud load balancer's 4 minutes; a NAT gateway's 350 s).
    pub fn max_idle_secs(mut self, secs: u64) -> Self {
        self.t.max_idle_secs = secs;
        self
    }

    /// Checks the settings.
    pub fn build(self) -> Result<Thresholds, ThresholdError> {
        let t = self.t;
        if t.close_wait_age_warning > t.close_wait_age_critical {
            return Err(ThresholdError::CloseWaitAge {
                warning: t.close_wait_age_warning,
                critical: t.close_wait_age_critical,
            });
        }
        let pct = |p: f64| (0.0..=100.0).contains(&p);
        if t.time_wait_warning > t.time_wait_critical {
            return Err(ThresholdError::TimeWait {
                warning: t.time_wait_warning,
                critical: t.time_wait_critical,
            });
        }
        let (w, c) = (t.port_headroom_warning, t.port_headroom_critical);
        if !(pct(w) && pct(c) && w >= c) {
            return Err(ThresholdError::PortHeadroom {
                warning: w,
                critical: c,
            });
        }
        let (w, c) = (t.fd_warning, t.fd_critical);
        if !(pct(w) && pct(c) && w <= c) {
            return Err(ThresholdError::FdUsage {
                warning: w,
                critical: c,
            });
        }
        let (w, c) = (t.conntrack_warning, t.conntrack_critical);
        if !(pct(w) && pct(c) && w <= c) {
            return Err(ThresholdError::Conntrack {
                warning: w,
                critical: c,
            });
        }
        if t.min_port_range_width > 65_536 {
            return Err(ThresholdError::MinPortRangeWidth(t.min_port_range_width));
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_validation_names_the_setting() {
        let e = Thresholds::builder().time_wait(10, 9).build().unwrap_err();
        assert_eq!(
            e,
            ThresholdError::TimeWait {
                warning: 10,
                critical: 9
            }
        );
        assert!(e.to_string().contains(": time_wait = "), "{e}");
        assert!(Thresholds::builder().time_wait(9, 9).build().is_ok());
        let e = Thresholds::builder()
            .port_headroom_percent(5.0, 20.0)
            .build()
            .unwrap_err();
        assert!(e.to_string().contains(": port_headroom_percent = "), "{e}");
        let e = Thresholds::builder()
            .fd_usage_percent(80.0, 101.0)
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("fd_usage_percent") && e.to_string().contains("101"));
        let e = Thresholds::builder()
            .conntrack_percent(f64::NAN, 90.0)
            .build()
            .unwrap_err();
        assert!(matches!(e, ThresholdError::Conntrack { .. }));
        let e = Thresholds::builder()
            .min_port_range_width(70_000)
            .build()
            .unwrap_err();
        assert_eq!(e, ThresholdError::MinPortRangeWidth(70_000));
        let t = Thresholds::builder()
            .close_wait_critical(5)
            .syn_recv_warning(6)
            .fin_wait2_warning(7)
            .min_somaxconn(8)
            .max_fin_timeout(9)
            .max_keepalive_detect_secs(10)
            .build()
            .unwrap();
        assert_eq!(
            (
                t.close_wait_critical(),
                t.syn_recv_warning(),
                t.fin_wait2_warning(),
                t.min_somaxconn(),
                t.max_fin_timeout(),
                t.max_keepalive_detect_secs()
            ),
            (5, 6, 7, 8, 9, 10)
        );
        let t = Thresholds::default();
        assert_eq!(t.time_wait(), (50_000, 100_000));
        assert_eq!(t.port_headroom_percent(), (20.0, 5.0));
    }
}
