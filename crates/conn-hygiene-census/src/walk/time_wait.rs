//! The walks that count `TIME_WAIT` sockets rather than walk them: [`Walker::count_states`],
//! and [`Walker::walk_detailed_keeping_time_wait`], which asks the kernel for only the ones a
//! [`SocketFilter`] keeps.

use std::time::Duration;

use super::keep_way::Way;
use super::runs::{Runs, WalkItem};
use super::{Backend, Refusal, Visit, WalkStats, Walker};
use crate::filter::SocketFilter;
use crate::netlink::parse_inet_diag_msg;
use crate::peers::{parse_detail, RawDetail, SockDetail};
use crate::{CensusError, Family, SockInfo, StateCounts, StateSet, TcpState};

/// A walk that takes every `TIME_WAIT` socket tells how many the filter keeps from each of its
/// first this many...
const KEEP_LOOKED_AT_ALL: u64 = 1024;
/// ...then from one in this many.
const KEEP_SAMPLE: u64 = 16;

impl Walker {
    /// Counts sockets by state.
    ///
    /// `TIME_WAIT` sockets, often most of a busy host's, are not walked when the kernel's own
    /// count can stand in for them: over netlink, with both families and `TIME_WAIT` wanted,
    /// the dump asks for every other wanted state (the kernel passes over the rest without
    /// copying them out) and `TIME_WAIT` is the `tw` count of `sockstat` for the walking
    /// thread's network namespace, less the timewait sockets still in `FIN_WAIT2` (an orphaned
    /// connection whose peer has not closed), which `tw` also counts and the dump shows as
    /// `FIN_WAIT2` with the timewait timer. [`WalkStats::timewait_counted`] says when it did.
    /// Anything else walks every wanted socket.
    pub fn count_states(&mut self) -> Result<(StateCounts, WalkStats), CensusError> {
        if let Some(done) = self.count_states_with_tw_count()? {
            return Ok(done);
        }
        let mut counts = StateCounts::new();
        let stats = self.walk(|s| counts.record(s.state))?;
        Ok((counts, stats))
    }

    /// [`count_states`](Self::count_states) with `TIME_WAIT` from the kernel's count; `None`
    /// when that does not apply (then nothing was counted).
    fn count_states_with_tw_count(
        &mut self,
    ) -> Result<Option<(StateCounts, WalkStats)>, CensusError> {
        if !self.can_count_time_wait() {
            return Ok(None);
        }
        let mut counts = StateCounts::new();
        let mut record = |s: &SockInfo, _: Option<&[u8]>| counts.record(s.state);
        let (mut stats, timewait) = self.walk_all_but_time_wait(&mut record)?;
        match timewait {
            Some(n) => stats.timewait_counted = Some(n),
            // `/proc` stood in for netlink, or no count could be read: walk them after all.
            None => self.walk_time_wait_all(&mut stats, &mut record)?,
        }
        if let Some(n) = stats.timewait_counted {
            counts.set(TcpState::TimeWait, n);
        }
        Ok(Some((counts, stats)))
    }

    /// Whether `TIME_WAIT` can be counted rather than walked: over netlink, both families,
    /// `TIME_WAIT` wanted.
    fn can_count_time_wait(&self) -> bool {
        self.opts.backend != Backend::Proc
            && self.opts.ipv4
            && self.opts.ipv6
            && self.opts.states.contains(TcpState::TimeWait)
    }

    /// Every wanted socket but the `TIME_WAIT` ones, handed to `f`, in a dump that also asks
    /// for `FIN_WAIT2` (handed over only when wanted): the timewait sockets still in
    /// `FIN_WAIT2` (an orphaned connection whose peer has not closed) are counted by `tw` too,
    /// and the dump shows them as `FIN_WAIT2` with the timewait timer. Returns the walk's
    /// statistics and the number of `TIME_WAIT` sockets, `tw` less those; `None` when `/proc`
    /// stood in for netlink or `tw` could not be read.
    fn walk_all_but_time_wait<V: Visit>(
        &mut self,
        f: &mut V,
    ) -> Result<(WalkStats, Option<u64>), CensusError> {
        let wanted = self.opts.states;
        let mut asked = wanted.with(TcpState::FinWait2);
        asked.remove(TcpState::TimeWait);
        self.opts.states = asked;
        let mut but = AllButTimeWait {
            inner: f,
            wanted,
            timewait_fin_wait2: 0,
        };
        let walked = self.walk_raw(&mut but);
        let timewait_fin_wait2 = but.timewait_fin_wait2;
        self.opts.states = wanted;
        let stats = walked?;
        let tw = if stats.used_netlink_only() {
            read_tw_count()
        } else {
            None
        };
        Ok((stats, tw.map(|tw| tw.saturating_sub(timewait_fin_wait2))))
    }

    /// [`walk_detailed`](Self::walk_detailed) for a caller that needs every wanted socket but,
    /// of the `TIME_WAIT` ones (often most of a busy host's), only those `keep` matches, with
    /// the number of all of them: the sockets of its own listeners and toward its own
    /// upstreams, say.
    ///
    /// Over netlink, with both families wanted, `TIME_WAIT` among them and `keep` within
    /// [`filter::MAX_CONDITIONS`](crate::filter::MAX_CONDITIONS), one dump asks for every
    /// other wanted state (and `FIN_WAIT2`, see [`count_states`](Self::count_states)); a
    /// second asks for the `TIME_WAIT` sockets `keep` matches, which the kernel picks out with
    /// the filter program, passing over the others without copying them out; and their
    /// number is the kernel's count, in [`WalkStats::timewait_counted`]. Then `f` is handed no
    /// `TIME_WAIT` socket `keep` does not match.
    ///
    /// Otherwise, and when taking all of them in the one pass costs less (a second pass over
    /// the kernel's tables can cost more than the rows it saves), every wanted socket is
    /// handed to `f`, all of them walked, and `timewait_counted` is `None`: the caller counts
    /// them itself, as from [`walk_detailed`](Self::walk_detailed). Either way each
    /// `TIME_WAIT` socket `keep` matches is handed to `f` exactly once.
    ///
    /// Which costs less depends on how many `keep` matches and on the machine, so the walker
    /// times both ways in this thread's CPU time: its first such walk asks with the filter,
    /// its second takes them all in one pass, then each walk takes the way that cost less
    /// lately, and now and then the other again (after 16 walks, then twice as many each time
    /// it is still the dearer, up to 256). Where no thread clock can be read, the last walk's
    /// share of kept sockets decides: more than half, one pass.
    pub fn walk_detailed_keeping_time_wait<F: FnMut(&SockInfo, Option<&SockDetail>)>(
        &mut self,
        keep: &SocketFilter,
        mut f: F,
    ) -> Result<WalkStats, CensusError> {
        self.keeping_time_wait(
            keep,
            keep.bytecode(),
            &mut |s: &SockInfo, p: Option<&[u8]>| {
                let detail = p.and_then(|p| parse_detail(p).ok());
                f(s, detail.as_ref())
            },
        )
    }

    /// [`walk_detailed_keeping_time_wait`](Self::walk_detailed_keeping_time_wait) with each
    /// socket's detail read only when `f` asks ([`RawDetail::parse`]): a caller that needs
    /// the detail of a few sockets (its own, say) passes over the others' without reading
    /// it.
    ///
    /// ```no_run
    /// use conn_hygiene_census::{SocketFilter, TcpState, WalkOptions, Walker};
    ///
    /// let mut walker = Walker::new(WalkOptions::new().tcp_info(true));
    /// let keep = SocketFilter::new().local_port(8080);
    /// let mut established_with_info = 0;
    /// walker.walk_keeping_time_wait(&keep, |s, raw| {
    ///     if s.state == TcpState::Established && raw.parse().is_some_and(|d| d.idle().is_some()) {
    ///         established_with_info += 1;
    ///     }
    /// })?;
    /// # Ok::<(), conn_hygiene_census::CensusError>(())
    /// ```
    pub fn walk_keeping_time_wait<F: FnMut(&SockInfo, RawDetail<'_>)>(
        &mut self,
        keep: &SocketFilter,
        mut f: F,
    ) -> Result<WalkStats, CensusError> {
        self.keeping_time_wait(
            keep,
            keep.bytecode(),
            &mut |s: &SockInfo, p: Option<&[u8]>| f(s, RawDetail::new(p)),
        )
    }

    /// [`walk_keeping_time_wait`](Self::walk_keeping_time_wait) for a caller that treats
    /// `TIME_WAIT` sockets toward one place alike: over netlink, those that differ only in
    /// their local port come together as one [`WalkItem::TimeWaitRun`], their messages
    /// compared as bytes and not read, the others one by one as [`WalkItem::Socket`] (as
    /// every socket read from the `/proc` tables does). A service's own `TIME_WAIT`
    /// sockets toward its upstreams (often most of a busy host's) make a few long runs. Which
    /// sockets are handed over is as in [`walk_keeping_time_wait`](Self::walk_keeping_time_wait),
    /// each once; the runs come when full, when another needs their room (at most
    /// [`MAX_RUNS`](WalkItem::MAX_RUNS) are open), and at the end of each dump. Memory: the
    /// open runs' ports, at most [`MAX_RUN`](WalkItem::MAX_RUN) each.
    ///
    /// ```no_run
    /// use conn_hygiene_census::walk::WalkItem;
    /// use conn_hygiene_census::{SocketFilter, TcpState, WalkOptions, Walker};
    ///
    /// let upstream = "10.0.0.5:5432".parse()?;
    /// let mut walker = Walker::new(WalkOptions::new());
    /// let keep = SocketFilter::new().remote(upstream);
    /// let mut toward_upstream = 0;
    /// walker.walk_runs_keeping_time_wait(&keep, |item| match item {
    ///     WalkItem::TimeWaitRun { like, local_ports } if like.remote == upstream => {
    ///         toward_upstream += local_ports.len()
    ///     }
    ///     WalkItem::Socket(s, _) if s.state == TcpState::TimeWait && s.remote == upstream => {
    ///         toward_upstream += 1
    ///     }
    ///     _ => {}
    /// })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn walk_runs_keeping_time_wait<F: FnMut(WalkItem<'_>)>(
        &mut self,
        keep: &SocketFilter,
        f: F,
    ) -> Result<WalkStats, CensusError> {
        self.keeping_time_wait(keep, keep.bytecode(), &mut Runs::new(f))
    }

    /// [`walk_keeping_time_wait`](Self::walk_keeping_time_wait) with the program given
    /// (`keep`'s, or in a test one the kernel refuses), each socket handed over with its
    /// payload as received.
    fn keeping_time_wait<V: Visit>(
        &mut self,
        keep: &SocketFilter,
        program: Option<Vec<u8>>,
        f: &mut V,
    ) -> Result<WalkStats, CensusError> {
        let eligible = self.can_count_time_wait() && !keep.overflowed();
        let way = match (eligible, &program) {
            (false, _) => Way::OnePass,
            // Nothing to keep: nothing to ask for, the cheapest walk there is.
            (true, None) => Way::Filtered,
            (true, Some(_)) => self.keep_way.next(),
        };
        // What each way costs is timed when there is a choice to make by it.
        let timed = eligible && program.is_some() && !self.keep_way.is_refused();
        let started = if timed {
            crate::sys::thread_cpu_time()
        } else {
            None
        };
        let cost = |started: Option<Duration>| {
            Some(crate::sys::thread_cpu_time()?.saturating_sub(started?))
        };
        if way == Way::OnePass {
            if !timed || started.is_some() {
                // Nothing to choose, or the costs choose: no share needed.
                let stats = self.walk_raw(f)?;
                if timed {
                    self.keep_way.walked(Way::OnePass, 0, 0, cost(started));
                }
                return Ok(stats);
            }
            // No thread clock: the share of kept sockets chooses the next walk's way, from
            // every socket up to `KEEP_LOOKED_AT_ALL`, then from one in `KEEP_SAMPLE` (an
            // estimate is enough to choose by, and a host with many looks at few).
            let mut sampled = Sampled {
                inner: f,
                keep,
                seen: 0,
                looked: 0,
                kept: 0,
            };
            let stats = self.walk_raw(&mut sampled)?;
            let (kept, looked) = (sampled.kept, sampled.looked);
            self.keep_way.walked(Way::OnePass, kept, looked, None);
            return Ok(stats);
        }

        // Every other wanted state; then the kept TIME_WAIT sockets.
        let (mut stats, timewait) = self.walk_all_but_time_wait(f)?;
        let Some(timewait) = timewait else {
            // `/proc` stood in for netlink, or no count could be read: walk them all.
            self.walk_time_wait_all(&mut stats, f)?;
            if timed {
                let all = stats.sockets;
                self.keep_way.walked(Way::Filtered, all, all, cost(started));
            }
            return Ok(stats);
        };
        let before = stats.sockets;
        let kept = match program {
            // Nothing to keep: nothing to ask for.
            None => 0,
            Some(bc) => match self.dump_time_wait_filtered(&bc, &mut stats, f) {
                Ok(kept) => kept,
                // Refused before any socket came: this kernel does not take the program.
                // Every TIME_WAIT socket then, now and from now on.
                Err(Refusal::Refused(_) | Refusal::Failed(_)) if stats.sockets == before => {
                    self.keep_way.refuse();
                    self.walk_time_wait_all(&mut stats, f)?;
                    return Ok(stats);
                }
                Err(Refusal::Refused(e) | Refusal::Failed(e)) => return Err(e),
            },
        };
        if timed {
            self.keep_way
                .walked(Way::Filtered, kept, timewait, cost(started));
        }
        stats.timewait_counted = Some(timewait);
        Ok(stats)
    }

    /// The `TIME_WAIT` sockets the program keeps, in one dump (one per family where the kernel
    /// refuses the older request). Returns how many came; on a refusal before any came,
    /// `stats.sockets` is as it was.
    fn dump_time_wait_filtered<V: Visit>(
        &mut self,
        bytecode: &[u8],
        stats: &mut WalkStats,
        f: &mut V,
    ) -> Result<u64, Refusal> {
        let wanted = self.opts.states;
        let mut part = WalkStats::default();
        self.opts.states = StateSet::only(TcpState::TimeWait);
        let families: &[Option<Family>] = if self.one_pass_refused {
            &[Some(Family::Ipv4), Some(Family::Ipv6)]
        } else {
            &[None]
        };
        let mut result = Ok(());
        for &family in families {
            result = self.netlink_dump_with(
                family,
                crate::netlink::Extensions::None,
                Some(bytecode),
                &mut part,
                f,
            );
            if result.is_err() {
                break;
            }
        }
        self.opts.states = wanted;
        if result.is_ok() || part.sockets > 0 {
            stats.sockets += part.sockets;
            stats.skipped += part.skipped;
            stats.datagrams += part.datagrams;
            stats.bytes += part.bytes;
            stats.interrupted |= part.interrupted;
        }
        result.map(|()| part.sockets)
    }

    /// Every `TIME_WAIT` socket, handed to `f`: what a walk does when the kernel cannot count
    /// or filter them.
    fn walk_time_wait_all<V: Visit>(
        &mut self,
        stats: &mut WalkStats,
        f: &mut V,
    ) -> Result<(), CensusError> {
        let wanted = self.opts.states;
        self.opts.states = StateSet::only(TcpState::TimeWait);
        let walked = self.walk_raw(f);
        self.opts.states = wanted;
        let more = walked?;
        stats.sockets += more.sockets;
        stats.skipped += more.skipped;
        stats.datagrams += more.datagrams;
        stats.bytes += more.bytes;
        stats.interrupted |= more.interrupted;
        stats.fallback = stats.fallback.take().or(more.fallback);
        Ok(())
    }
}

/// The pass of [`Walker::walk_all_but_time_wait`]: counts the timewait sockets still in
/// `FIN_WAIT2`, and hands over the wanted states only. Takes no message unread: every one is
/// looked at.
struct AllButTimeWait<'a, V> {
    inner: &'a mut V,
    wanted: StateSet,
    timewait_fin_wait2: u64,
}

impl<V: Visit> Visit for AllButTimeWait<'_, V> {
    fn socket(&mut self, s: &SockInfo, p: Option<&[u8]>) {
        // Byte 2 of `inet_diag_msg` is the timer; 3 is only ever a timewait socket's.
        if s.state == TcpState::FinWait2 && p.and_then(|p| p.get(2)) == Some(&3) {
            self.timewait_fin_wait2 += 1;
        }
        if self.wanted.contains(s.state) {
            self.inner.socket(s, p)
        }
    }

    fn flush(&mut self) {
        self.inner.flush()
    }
}

/// A walk that takes every `TIME_WAIT` socket, telling how many `keep` matches: of each of
/// the first [`KEEP_LOOKED_AT_ALL`], then of one in [`KEEP_SAMPLE`] (read for it when the
/// visitor took its message unread).
struct Sampled<'a, V> {
    inner: &'a mut V,
    keep: &'a SocketFilter,
    seen: u64,
    looked: u64,
    kept: u64,
}

impl<V> Sampled<'_, V> {
    /// Whether the next `TIME_WAIT` socket is looked at; counts it seen.
    #[inline(always)]
    fn look(&mut self) -> bool {
        let look = self.seen < KEEP_LOOKED_AT_ALL || self.seen % KEEP_SAMPLE == 0;
        self.seen += 1;
        self.looked += u64::from(look);
        look
    }
}

impl<V: Visit> Visit for Sampled<'_, V> {
    #[inline(always)]
    fn socket(&mut self, s: &SockInfo, p: Option<&[u8]>) {
        if s.state == TcpState::TimeWait && self.look() {
            self.kept += u64::from(self.keep.matches(s));
        }
        self.inner.socket(s, p)
    }

    #[inline(always)]
    fn take_raw(&mut self, p: &[u8]) -> bool {
        if !self.inner.take_raw(p) {
            return false;
        }
        // Only `TIME_WAIT` sockets are taken unread.
        if self.look() {
            if let Ok(Some(s)) = parse_inet_diag_msg(p) {
                self.kept += u64::from(self.keep.matches(&s));
            }
        }
        true
    }

    fn flush(&mut self) {
        self.inner.flush()
    }
}

/// The `tw` count of `/proc/thread-self/net/sockstat`: the walking thread's network namespace,
/// as the netlink socket it opened.
fn read_tw_count() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/net/sockstat")
        .or_else(|_| std::fs::read_to_string("/proc/self/net/sockstat"))
        .ok()?;
    crate::counters::parse_sockstat(&text, None)
        .ok()
        .map(|s| s.tcp_tw)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::net::{TcpListener, TcpStream};

    use super::*;
    use crate::WalkOptions;

    /// Where no thread clock can be read, a walk in one pass tells how many `TIME_WAIT`
    /// sockets the filter keeps: of each of the first 1024, then of one in 16, those a walk by
    /// runs takes unread among them; and it hands each socket over once.
    #[test]
    fn a_walk_without_a_clock_tells_the_share_kept() {
        use crate::netlink::parse_messages_with;
        use crate::walk::runs::tests::{addr, message, Sink};

        let (ours, theirs) = (addr("10.0.0.5:5432"), addr("10.0.0.6:6379"));
        let keep = SocketFilter::new().remote(ours);
        let mut datagram = Vec::new();
        // 3000 toward ours, then 1000 toward theirs; an established socket between.
        for n in 0..4000u32 {
            let remote = if n < 3000 { ours } else { theirs };
            let local = addr(&format!("10.0.0.1:{}", 1024 + n));
            datagram.extend(message(6, local, remote, 0, n));
            if n == 2000 {
                datagram.extend(message(1, local, remote, 9, n));
            }
        }
        let mut handed = 0usize;
        let mut runs = Runs::new(|item: WalkItem<'_>| handed += item.len());
        let mut sampled = Sampled {
            inner: &mut runs,
            keep: &keep,
            seen: 0,
            looked: 0,
            kept: 0,
        };
        let summary =
            parse_messages_with(&datagram, Some(1), "t", &mut Sink(&mut sampled)).unwrap();
        sampled.flush();
        let (seen, looked, kept) = (sampled.seen, sampled.looked, sampled.kept);
        drop(runs);
        assert_eq!(summary.sockets, 4001);
        assert_eq!(handed, 4001);
        assert_eq!(seen, 4000);
        // The first 1024, then one in 16 of the other 2976 (seen 1024, 1040, ...).
        assert_eq!(
            looked,
            1024 + (1024..4000).filter(|i| i % 16 == 0).count() as u64
        );
        assert_eq!(
            kept,
            1024 + (1024..3000).filter(|i| i % 16 == 0).count() as u64
        );
    }

    /// A kernel that refuses the program: the walk hands over every TIME_WAIT socket instead
    /// (and counts none), then and from then on.
    #[test]
    fn a_refused_program_gives_every_time_wait_socket() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // Closed client first: the client's end stays in TIME_WAIT.
        let client = TcpStream::connect(addr).unwrap();
        let local = client.local_addr().unwrap();
        let (server, _) = listener.accept().unwrap();
        drop(client);
        drop(server);
        let mut walker = Walker::new(WalkOptions::new().backend(Backend::Netlink));
        let keep = SocketFilter::new().remote(addr);
        let is_ours = |s: &SockInfo| s.state == TcpState::TimeWait && s.local == local;
        match walker.walk(|_| ()) {
            Ok(_) => {}
            // No netlink here (a container without it): nothing to test.
            Err(e) if e.netlink_refused() || e.is_unsupported() => return,
            Err(e) => panic!("{e}"),
        }
        conn_hygiene_test_support::wait_until(
            "our TIME_WAIT socket",
            std::time::Duration::from_secs(10),
            || {
                let mut seen = false;
                walker.walk(|s| seen |= is_ours(s)).unwrap();
                seen
            },
        );
        // An op code the kernel does not know: its audit refuses the whole program.
        let refused = vec![200u8, 4, 8, 0];
        for program in [Some(refused), keep.bytecode()] {
            let mut ours = 0;
            let stats = walker
                .keeping_time_wait(&keep, program, &mut |s: &SockInfo, _: Option<&[u8]>| {
                    ours += u32::from(is_ours(s))
                })
                .unwrap();
            assert_eq!(ours, 1, "our TIME_WAIT socket, once");
            assert_eq!(stats.timewait_counted, None, "all walked, none counted");
            assert!(walker.keep_way.is_refused());
        }
        drop(listener);
    }
}
