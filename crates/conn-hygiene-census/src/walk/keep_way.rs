//! How a walk that keeps some `TIME_WAIT` sockets asks the kernel for them: with its filter in
//! a second pass over the kernel's tables, or all of them in the one pass. Chosen by what
//! each way cost this thread lately.
//!
//! The second pass costs a pass over the kernel's tables (every bucket, every socket looked at
//! again, the filter run on each `TIME_WAIT` one); the one pass costs copying out and reading
//! every `TIME_WAIT` socket. Which is cheaper depends on how many are kept and on the machine
//! (on one, a pass over the tables cost about what copying out 40% of their sockets did; on
//! another, about what copying out all of them did). So both ways are timed: the first walk
//! takes the way the share of kept sockets suggests, the second the other, then each walk
//! the cheaper of the two lately (the least of each way's last three walks: what else the
//! machine does only ever adds to a walk's time), and now and then the other again, to notice when the host
//! changes: after [`RETRY_EVERY`] walks, then twice as many each time it is still the dearer,
//! up to [`MOST_RETRY_EVERY`] (a retry of a way that costs twice as much then adds under 1%).

use std::time::Duration;

/// The two ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Way {
    /// The kept ones asked for with the filter, in a second dump; the rest counted by the
    /// kernel.
    Filtered,
    /// All of them in the one dump.
    OnePass,
}

impl Way {
    fn index(self) -> usize {
        match self {
            Way::Filtered => 0,
            Way::OnePass => 1,
        }
    }

    fn other(self) -> Way {
        match self {
            Way::Filtered => Way::OnePass,
            Way::OnePass => Way::Filtered,
        }
    }
}

/// With more than this share kept, and no timing yet, a walk takes them all in one pass.
const KEEP_ALL_ABOVE: f64 = 0.5;
/// One walk in this many takes the way that cost more lately; after each retry that finds it
/// still dearer, one in twice as many, up to [`MOST_RETRY_EVERY`].
pub(super) const RETRY_EVERY: u32 = 16;
/// The longest interval between retries.
const MOST_RETRY_EVERY: u32 = 256;
/// A way's cost is the least of its last this many walks: what else the machine does only
/// ever adds to a walk's time, so one slow walk does not turn the choice.
const SAMPLES: usize = 3;

/// The choice, and what it is made from. Bounded: two numbers and a counter.
#[derive(Debug, Clone)]
pub(super) struct KeepWay {
    /// The kernel refused the filter program: one pass, from now on.
    refused: bool,
    /// What the share of kept sockets in the last walk suggests.
    by_share: Way,
    /// This thread's CPU time in the last walks of each way, the latest at `latest`; `None`
    /// before it was timed.
    samples: [[Option<Duration>; SAMPLES]; 2],
    latest: [usize; 2],
    /// Walks since the way that cost more lately was taken.
    since_retry: u32,
    /// Walks between two retries, now.
    retry_every: u32,
}

impl Default for KeepWay {
    fn default() -> Self {
        KeepWay {
            refused: false,
            by_share: Way::Filtered,
            samples: [[None; SAMPLES]; 2],
            latest: [0; 2],
            since_retry: 0,
            retry_every: RETRY_EVERY,
        }
    }
}

impl KeepWay {
    /// The way of the next walk.
    pub(super) fn next(&self) -> Way {
        if self.refused {
            return Way::OnePass;
        }
        match [self.cost(Way::Filtered), self.cost(Way::OnePass)] {
            [Some(_), Some(_)] => {
                let cheaper = self.cheaper();
                if self.since_retry + 1 >= self.retry_every {
                    cheaper.other()
                } else {
                    cheaper
                }
            }
            // Timed one way (the share's): the other, once.
            [Some(_), None] => Way::OnePass,
            [None, Some(_)] => Way::Filtered,
            [None, None] => self.by_share,
        }
    }

    /// A walk took `way`, kept `kept` of the `all` `TIME_WAIT` sockets it looked at, and cost
    /// this thread `cpu` (`None` where it cannot be told).
    pub(super) fn walked(&mut self, way: Way, kept: u64, all: u64, cpu: Option<Duration>) {
        self.by_share = if all > 0 && kept as f64 > KEEP_ALL_ABOVE * all as f64 {
            Way::OnePass
        } else {
            Way::Filtered
        };
        let Some(cpu) = cpu else {
            // Nothing to time by: the share decides.
            self.samples = [[None; SAMPLES]; 2];
            return;
        };
        let timed = |k: &Self| k.cost(Way::Filtered).is_some() && k.cost(Way::OnePass).is_some();
        let before = timed(self).then(|| self.cheaper());
        let w = way.index();
        self.latest[w] = (self.latest[w] + 1) % SAMPLES;
        self.samples[w][self.latest[w]] = Some(cpu);
        match before {
            // The cheaper way changed (the host did): retry the other soon.
            Some(before) if before != self.cheaper() => {
                self.since_retry = 0;
                self.retry_every = RETRY_EVERY;
            }
            // A retry that found the other way still dearer: retry it half as often.
            Some(before) if before != way => {
                self.since_retry = 0;
                self.retry_every = (self.retry_every * 2).min(MOST_RETRY_EVERY);
            }
            _ => self.since_retry = self.since_retry.saturating_add(1),
        }
    }

    /// What `way` cost lately: the least of its last walks.
    fn cost(&self, way: Way) -> Option<Duration> {
        self.samples[way.index()].iter().flatten().min().copied()
    }

    /// The way that cost less lately (the filter on a tie, or before both were timed).
    fn cheaper(&self) -> Way {
        match (self.cost(Way::Filtered), self.cost(Way::OnePass)) {
            (Some(filtered), Some(one_pass)) if one_pass < filtered => Way::OnePass,
            _ => Way::Filtered,
        }
    }

    /// The kernel refused the filter program.
    pub(super) fn refuse(&mut self) {
        self.refused = true;
    }

    pub(super) fn is_refused(&self) -> bool {
        self.refused
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Option<Duration> {
        Some(Duration::from_millis(n))
    }

    /// The share's way first, the other second, then the cheaper, and the other again after
    /// `RETRY_EVERY` walks, then twice as many each time it is still dearer; a change in
    /// costs turns the choice, and retries come often again.
    #[test]
    fn the_cheaper_way_with_retries_of_the_other() {
        let mut k = KeepWay::default();
        assert_eq!(k.next(), Way::Filtered, "few kept, nothing timed");
        k.walked(Way::Filtered, 0, 1000, ms(30));
        assert_eq!(k.next(), Way::OnePass, "the other, once");
        k.walked(Way::OnePass, 0, 1000, ms(20));
        let walk = |k: &mut KeepWay, n: usize, filtered: u64, one_pass: u64| {
            let mut retries = Vec::new();
            for i in 0..n {
                let way = k.next();
                let cost = if way == Way::OnePass {
                    one_pass
                } else {
                    filtered
                };
                if way != k.cheaper() {
                    retries.push(i);
                }
                k.walked(way, 0, 1000, ms(cost));
            }
            retries
        };
        // The one pass stays cheaper: retries of the filter 16, 32, 64, 128, 256 walks apart,
        // then every 256.
        let retries = walk(&mut k, 1200, 30, 20);
        let gaps: Vec<usize> = retries.windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(gaps[..5], [32, 64, 128, 256, 256], "{retries:?}");
        // One slow walk of the one pass (the machine busy) does not turn the choice.
        assert_eq!(k.next(), Way::OnePass);
        k.walked(Way::OnePass, 0, 1000, ms(200));
        assert_eq!(k.next(), Way::OnePass);
        // The one pass grows dear (the host's TIME_WAIT sockets, others' now, multiply):
        // once its last walks all find it so (the slow one and two more, the second of them
        // turning), the filter, which stays, with the one pass retried 16 walks later.
        let retries = walk(&mut k, 40, 30, 90);
        assert_eq!(retries.first(), Some(&(1 + 16)), "{retries:?}");
        assert_eq!(k.next(), Way::Filtered);
    }

    /// Most kept, nothing timed: one pass first. Without a clock the share decides alone.
    #[test]
    fn the_share_decides_without_timing() {
        let mut k = KeepWay::default();
        k.walked(Way::Filtered, 900, 1000, None);
        assert_eq!(k.next(), Way::OnePass);
        k.walked(Way::OnePass, 100, 1000, None);
        assert_eq!(k.next(), Way::Filtered);
        k.walked(Way::Filtered, 0, 0, None);
        assert_eq!(k.next(), Way::Filtered, "none at all: nothing to copy out");
    }

    /// A refused program: one pass from then on, whatever the costs.
    #[test]
    fn refused_is_one_pass_for_good() {
        let mut k = KeepWay::default();
        k.refuse();
        for _ in 0..40 {
            assert_eq!(k.next(), Way::OnePass);
            k.walked(Way::OnePass, 0, 1000, ms(100));
        }
        assert!(k.is_refused());
    }
}
