//! The last samples, for the page's charts: a ring of a fixed number of points, each a few
//! numbers, so its memory does not grow with time or with what peers do.

use std::collections::VecDeque;

use serde::Serialize;

use super::model::unix_seconds;
use crate::census::{CensusSnapshot, TcpState};

/// Upstreams charted for their ports in use: those using the most in the latest point.
pub(crate) const MAX_PORT_SERIES: usize = 6;

/// One sample's figures.
#[derive(Debug, Clone)]
struct Point {
    seq: u64,
    at: f64,
    host_time_wait: u64,
    host_close_wait: u64,
    leases_outstanding: u64,
    /// Ports in use by upstream (the worst destination and source pair), the most first, at
    /// most [`MAX_PORT_SERIES`].
    ports: Vec<(String, u64)>,
}

/// The ring of points.
#[derive(Debug)]
pub(crate) struct History {
    capacity: usize,
    points: VecDeque<Point>,
}

/// The history as the page draws and serializes it: one array per series, oldest first.
#[derive(Debug, Default, Serialize)]
pub(crate) struct HistoryData {
    /// Unix time of each sample, in seconds.
    pub(crate) at: Vec<f64>,
    pub(crate) host_time_wait: Vec<u64>,
    pub(crate) host_close_wait: Vec<u64>,
    pub(crate) leases_outstanding: Vec<u64>,
    /// Ports in use toward each of the busiest upstreams; `null` where an upstream was not
    /// among them.
    pub(crate) ports_in_use: Vec<Series>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Series {
    pub(crate) name: String,
    pub(crate) values: Vec<Option<u64>>,
}

impl History {
    pub(crate) fn new(capacity: usize) -> Self {
        History {
            capacity: capacity.max(1),
            points: VecDeque::with_capacity(capacity.clamp(1, 1024)),
        }
    }

    /// Adds the figures of `snap` (once per sample: a sample seen before is skipped), with
    /// the leases outstanding now.
    pub(crate) fn record(&mut self, snap: &CensusSnapshot, leases_outstanding: u64) {
        if self.points.back().is_some_and(|p| p.seq >= snap.seq) {
            return;
        }
        let mut ports: Vec<(String, u64)> = snap
            .upstreams
            .iter()
            .filter_map(|u| {
                u.ports
                    .iter()
                    .map(|p| p.used)
                    .max()
                    .map(|m| (u.name.clone(), m))
            })
            .collect();
        ports.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        ports.truncate(MAX_PORT_SERIES);
        if self.points.len() == self.capacity {
            self.points.pop_front();
        }
        self.points.push_back(Point {
            seq: snap.seq,
            at: snap.taken_at.map_or(0.0, unix_seconds),
            host_time_wait: snap.host.get(TcpState::TimeWait),
            host_close_wait: snap.host.get(TcpState::CloseWait),
            leases_outstanding,
            ports,
        });
    }

    /// Points held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.points.len()
    }

    /// The series, oldest first; the port series are those of the latest point's upstreams.
    pub(crate) fn data(&self) -> HistoryData {
        let names: Vec<&str> = self
            .points
            .back()
            .map(|p| p.ports.iter().map(|(n, _)| n.as_str()).collect())
            .unwrap_or_default();
        HistoryData {
            at: self.points.iter().map(|p| p.at).collect(),
            host_time_wait: self.points.iter().map(|p| p.host_time_wait).collect(),
            host_close_wait: self.points.iter().map(|p| p.host_close_wait).collect(),
            leases_outstanding: self.points.iter().map(|p| p.leases_outstanding).collect(),
            ports_in_use: names
                .iter()
                .map(|name| Series {
                    name: (*name).to_owned(),
                    values: self
                        .points
                        .iter()
                        .map(|p| p.ports.iter().find(|(n, _)| n == name).map(|(_, v)| *v))
                        .collect(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(seq: u64, time_wait: u64) -> CensusSnapshot {
        let mut s = CensusSnapshot {
            seq,
            ..Default::default()
        };
        s.host.set(TcpState::TimeWait, time_wait);
        s
    }

    #[test]
    fn keeps_the_last_points_once_per_sample() {
        let mut h = History::new(3);
        for seq in 0..5 {
            h.record(&snap(seq, seq * 10), seq);
        }
        // Seen before: skipped.
        h.record(&snap(4, 999), 0);
        assert_eq!(h.len(), 3);
        let d = h.data();
        assert_eq!(d.host_time_wait, [20, 30, 40]);
        assert_eq!(d.leases_outstanding, [2, 3, 4]);
        assert!(d.ports_in_use.is_empty());
    }
}
