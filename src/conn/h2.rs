//! HTTP/2 frames followed on both sides of a connection (RFC 9113), without buffering them:
//! which request streams are open, when the first request head completed, our send windows
//! (so a response stalled on the peer's flow control is seen), GOAWAY and PING.
//!
//! The frames are not checked: the HTTP/2 stack does that and ends the connection on an error.
//! What is followed is bounded ([`MAX_STREAMS`] open streams); past that the connection is
//! taken to be never at a message boundary.

use std::collections::HashMap;

/// The client connection preface.
pub(crate) const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The most open streams followed; HTTP/2 stacks refuse far fewer concurrent streams.
pub(crate) const MAX_STREAMS: usize = 4096;

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;

const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;
const DEFAULT_WINDOW: i64 = 65_535;

/// Which side of the connection this one is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Requests are read, responses written.
    Server,
    /// Requests are written, responses read.
    Client,
}

/// Which way a frame travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    /// From the peer.
    Rx,
    /// Ours.
    Tx,
}

/// Frame headers and the few payload bytes that matter, collected across reads.
#[derive(Debug, Clone, Default)]
struct FrameReader {
    header: [u8; 9],
    have: u8,
    /// The frame whose payload is being read: (type, flags, stream).
    frame: Option<(u8, u8, u32)>,
    left: u32,
    /// Payload bytes collected: a settings entry, a window increment.
    part: [u8; 6],
    part_len: u8,
}

#[derive(Debug, Clone, Copy)]
struct Stream {
    /// Our send window.
    window: i64,
    /// We started its response (HEADERS or DATA without END_STREAM).
    responding: bool,
    /// Its request head is complete.
    head_done: bool,
}

/// Both directions of one HTTP/2 connection.
#[derive(Debug, Clone)]
pub(crate) struct H2 {
    role: Role,
    rx: FrameReader,
    tx: FrameReader,
    /// Bytes of the client preface still to skip on the requesting side.
    preface_left: u8,
    streams: HashMap<u32, Stream>,
    /// The highest request stream opened so far: a frame on a lower one never opens another.
    last_opened: u32,
    /// A HEADERS frame without END_HEADERS, per direction: its CONTINUATION frames follow.
    continuing: [Option<u32>; 2],
    initial_window: i64,
    conn_window: i64,
    overflow: bool,
    /// Request heads completed.
    pub(crate) request_heads: u64,
    /// Streams ended by a response's END_STREAM or a reset.
    pub(crate) streams_ended: u64,
    /// DATA payload bytes we sent.
    pub(crate) data_sent: u64,
    /// We sent GOAWAY.
    pub(crate) goaway_sent: bool,
    /// The peer sent GOAWAY.
    pub(crate) goaway_received: bool,
    /// The peer's GOAWAY came before ours: the peer started closing the connection.
    pub(crate) peer_goaway_first: bool,
    /// PING acknowledgements the peer sent.
    pub(crate) ping_acks: u64,
    /// Frames we started writing.
    tx_frames: u64,
}

impl H2 {
    /// A connection whose requesting side has not sent the client preface yet: a server reads
    /// it, a client writes it.
    pub(crate) fn new(role: Role) -> Self {
        Self {
            role,
            rx: FrameReader::default(),
            tx: FrameReader::default(),
            preface_left: PREFACE.len() as u8,
            streams: HashMap::new(),
            last_opened: 0,
            continuing: [None, None],
            initial_window: DEFAULT_WINDOW,
            conn_window: DEFAULT_WINDOW,
            overflow: false,
            request_heads: 0,
            streams_ended: 0,
            data_sent: 0,
            goaway_sent: false,
            goaway_received: false,
            peer_goaway_first: false,
            ping_acks: 0,
            tx_frames: 0,
        }
    }

    /// Follows bytes from the peer.
    pub(crate) fn received(&mut self, buf: &[u8]) {
        self.follow(Dir::Rx, buf);
    }

    /// Follows bytes we sent.
    pub(crate) fn sent(&mut self, buf: &[u8]) {
        self.follow(Dir::Tx, buf);
    }

    /// Request streams open now (head seen, response not ended).
    pub(crate) fn open_streams(&self) -> usize {
        self.streams.len()
    }

    /// True when the requests' side has not completed a request head yet.
    pub(crate) fn awaiting_first_head(&self) -> bool {
        self.request_heads == 0
    }

    /// A frame can be written now: every frame written so far is whole, and at least one was
    /// (a server's first frame must be its SETTINGS).
    pub(crate) fn can_send_frame(&self) -> bool {
        self.tx_frames > 0 && self.tx.frame.is_none() && self.tx.have == 0
    }

    /// No request is open, no request head is in progress, and what is followed is complete.
    pub(crate) fn at_boundary(&self) -> bool {
        !self.overflow && self.streams.is_empty() && self.continuing == [None, None]
    }

    /// A stream whose response started has no send window left (its own or the
    /// connection's): its body can go on only when the peer opens the window.
    pub(crate) fn flow_blocked(&self) -> bool {
        self.streams
            .values()
            .any(|s| s.responding && (s.window <= 0 || self.conn_window <= 0))
    }

    fn requesting(&self) -> Dir {
        match self.role {
            Role::Server => Dir::Rx,
            Role::Client => Dir::Tx,
        }
    }

    fn follow(&mut self, dir: Dir, mut buf: &[u8]) {
        if dir == self.requesting() && self.preface_left > 0 {
            let n = buf.len().min(usize::from(self.preface_left));
            self.preface_left -= n as u8;
            buf = &buf[n..];
        }
        while !buf.is_empty() {
            let r = match dir {
                Dir::Rx => &mut self.rx,
                Dir::Tx => &mut self.tx,
            };
            match r.frame {
                None => {
                    let need = 9 - usize::from(r.have);
                    let n = need.min(buf.len());
                    r.header[usize::from(r.have)..usize::from(r.have) + n]
                        .copy_from_slice(&buf[..n]);
                    r.have += n as u8;
                    buf = &buf[n..];
                    if r.have == 9 {
                        r.have = 0;
                        let h = r.header;
                        let len = u32::from_be_bytes([0, h[0], h[1], h[2]]);
                        let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
                        let (ty, flags) = (h[3], h[4]);
                        r.left = len;
                        r.part_len = 0;
                        r.frame = Some((ty, flags, stream));
                        self.frame_start(dir, ty, flags, stream, len);
                        let r = self.reader(dir);
                        if r.left == 0 {
                            r.frame = None;
                            self.frame_end(dir, ty, flags, stream);
                        }
                    }
                }
                Some((ty, flags, stream)) => {
                    let n = (r.left as usize).min(buf.len());
                    let chunk = &buf[..n];
                    buf = &buf[n..];
                    r.left -= n as u32;
                    if matches!(ty, SETTINGS | WINDOW_UPDATE) {
                        self.payload(dir, ty, flags, stream, chunk);
                    }
                    let r = self.reader(dir);
                    if r.left == 0 {
                        r.frame = None;
                        self.frame_end(dir, ty, flags, stream);
                    }
                }
            }
        }
    }

    fn reader(&mut self, dir: Dir) -> &mut FrameReader {
        match dir {
            Dir::Rx => &mut self.rx,
            Dir::Tx => &mut self.tx,
        }
    }

    fn frame_start(&mut self, dir: Dir, ty: u8, flags: u8, stream: u32, len: u32) {
        if dir == Dir::Tx {
            self.tx_frames += 1;
        }
        if ty == DATA && dir == Dir::Tx {
            self.data_sent += u64::from(len);
            self.conn_window -= i64::from(len);
            if let Some(s) = self.streams.get_mut(&stream) {
                s.window -= i64::from(len);
                s.responding = true;
            }
        }
        let _ = flags;
    }

    fn payload(&mut self, dir: Dir, ty: u8, flags: u8, stream: u32, mut chunk: &[u8]) {
        // Only the peer's settings and window updates change our send windows.
        if dir != Dir::Rx || (ty == SETTINGS && flags & ACK != 0) {
            return;
        }
        let unit = if ty == SETTINGS { 6 } else { 4 };
        while !chunk.is_empty() {
            let r = &mut self.rx;
            let have = usize::from(r.part_len);
            let n = (unit - have).min(chunk.len());
            r.part[have..have + n].copy_from_slice(&chunk[..n]);
            r.part_len += n as u8;
            chunk = &chunk[n..];
            if usize::from(r.part_len) < unit {
                return;
            }
            r.part_len = 0;
            let p = r.part;
            if ty == SETTINGS {
                let id = u16::from_be_bytes([p[0], p[1]]);
                let value = i64::from(u32::from_be_bytes([p[2], p[3], p[4], p[5]]));
                if id == SETTINGS_INITIAL_WINDOW_SIZE {
                    let delta = value - self.initial_window;
                    self.initial_window = value;
                    for s in self.streams.values_mut() {
                        s.window += delta;
                    }
                }
            } else {
                let inc = i64::from(u32::from_be_bytes([p[0], p[1], p[2], p[3]]) & 0x7fff_ffff);
                if stream == 0 {
                    self.conn_window += inc;
                } else if let Some(s) = self.streams.get_mut(&stream) {
                    s.window += inc;
                }
                // Only one increment per frame.
                return;
            }
        }
    }

    fn frame_end(&mut self, dir: Dir, ty: u8, flags: u8, stream: u32) {
        let slot = dir as usize;
        match ty {
            HEADERS | CONTINUATION => {
                if ty == HEADERS && dir == self.requesting() && stream > self.last_opened {
                    self.last_opened = stream;
                    if self.streams.len() < MAX_STREAMS {
                        self.streams.insert(
                            stream,
                            Stream {
                                window: self.initial_window,
                                responding: false,
                                head_done: false,
                            },
                        );
                    } else {
                        self.overflow = true;
                    }
                }
                if flags & END_HEADERS != 0 {
                    self.continuing[slot] = None;
                    if dir == self.requesting() {
                        if let Some(s) = self.streams.get_mut(&stream) {
                            if !s.head_done {
                                s.head_done = true;
                                self.request_heads += 1;
                            }
                        }
                    }
                } else {
                    self.continuing[slot] = Some(stream);
                }
                if ty == HEADERS && dir != self.requesting() {
                    if flags & END_STREAM != 0 {
                        self.end_stream(stream);
                    } else if let Some(s) = self.streams.get_mut(&stream) {
                        s.responding = true;
                    }
                }
            }
            DATA if flags & END_STREAM != 0 && dir != self.requesting() => self.end_stream(stream),
            RST_STREAM => self.end_stream(stream),
            GOAWAY => match dir {
                Dir::Tx => self.goaway_sent = true,
                Dir::Rx => {
                    self.peer_goaway_first |= !self.goaway_sent;
                    self.goaway_received = true;
                }
            },
            PING if dir == Dir::Rx && flags & ACK != 0 => self.ping_acks += 1,
            _ => {}
        }
    }

    fn end_stream(&mut self, stream: u32) {
        if self.streams.remove(&stream).is_some() {
            self.streams_ended += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut v = len.to_be_bytes()[1..].to_vec();
        v.push(ty);
        v.push(flags);
        v.extend_from_slice(&stream.to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    fn client_start() -> Vec<u8> {
        let mut v = PREFACE.to_vec();
        v.extend(frame(SETTINGS, 0, 0, &[]));
        v
    }

    #[test]
    fn a_request_is_open_from_its_head_until_the_response_ends() {
        let mut h = H2::new(Role::Server);
        let start = client_start();
        // Byte by byte: nothing depends on how reads split the frames.
        for b in &start {
            h.received(std::slice::from_ref(b));
        }
        assert!(h.awaiting_first_head());
        assert!(h.at_boundary());
        let headers = frame(HEADERS, END_STREAM, 1, &[0x82; 10]);
        h.received(&headers[..5]);
        assert!(h.awaiting_first_head());
        h.received(&headers[5..]);
        assert!(h.awaiting_first_head(), "no END_HEADERS yet");
        assert!(!h.at_boundary());
        h.received(&frame(CONTINUATION, END_HEADERS, 1, &[0x84]));
        assert!(!h.awaiting_first_head());
        assert_eq!(h.open_streams(), 1);
        h.sent(&frame(HEADERS, END_HEADERS, 1, &[0x88]));
        assert_eq!(h.open_streams(), 1);
        h.sent(&frame(DATA, END_STREAM, 1, b"hello"));
        assert_eq!(h.open_streams(), 0);
        assert!(h.at_boundary());
        assert_eq!((h.request_heads, h.streams_ended, h.data_sent), (1, 1, 5));
    }

    #[test]
    fn a_response_stalled_on_the_peers_window_is_flow_blocked_until_it_opens() {
        let mut h = H2::new(Role::Server);
        h.received(&client_start());
        // The peer sets a zero initial window.
        h.received(&frame(
            SETTINGS,
            0,
            0,
            &[
                0, 4, 0, 0, 0, 0, /* max frame size, ignored */ 0, 5, 0, 0, 64, 0,
            ],
        ));
        h.received(&frame(HEADERS, END_HEADERS | END_STREAM, 3, &[0x82]));
        assert!(!h.flow_blocked(), "no response yet");
        h.sent(&frame(HEADERS, END_HEADERS, 3, &[0x88]));
        assert!(h.flow_blocked(), "its body has no window");
        h.received(&frame(WINDOW_UPDATE, 0, 3, &100u32.to_be_bytes()));
        assert!(!h.flow_blocked());
        h.sent(&frame(DATA, 0, 3, &[0; 100]));
        assert!(h.flow_blocked());
        // A reset ends the stream, blocked or not.
        h.received(&frame(RST_STREAM, 0, 3, &8u32.to_be_bytes()));
        assert!(!h.flow_blocked());
        assert!(h.at_boundary());
    }

    #[test]
    fn the_connection_window_blocks_every_stream_that_sent_data() {
        let mut h = H2::new(Role::Server);
        h.received(&client_start());
        h.received(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &[0x82]));
        h.received(&frame(HEADERS, END_HEADERS | END_STREAM, 3, &[0x82]));
        h.sent(&frame(DATA, 0, 1, &vec![0; 65_535]));
        assert!(h.flow_blocked());
        h.received(&frame(WINDOW_UPDATE, 0, 0, &1000u32.to_be_bytes()));
        assert!(h.flow_blocked(), "the stream's own window is still empty");
        h.received(&frame(WINDOW_UPDATE, 0, 1, &1000u32.to_be_bytes()));
        assert!(!h.flow_blocked(), "stream 3 has not started its response");
    }

    #[test]
    fn late_frames_of_an_ended_stream_open_nothing_and_goaway_and_ping_are_seen() {
        let mut h = H2::new(Role::Server);
        h.received(&client_start());
        h.received(&frame(HEADERS, END_HEADERS, 5, &[0x83]));
        h.sent(&frame(HEADERS, END_HEADERS | END_STREAM, 5, &[0x88]));
        assert!(h.at_boundary());
        // The request's trailers arrive after the response ended.
        h.received(&frame(HEADERS, END_HEADERS | END_STREAM, 5, &[0x40]));
        assert!(h.at_boundary());
        h.sent(&frame(GOAWAY, 0, 0, &[0; 8]));
        h.sent(&frame(PING, 0, 0, &[0; 8]));
        h.received(&frame(PING, ACK, 0, &[0; 8]));
        assert!(h.goaway_sent && !h.goaway_received);
        assert_eq!(h.ping_acks, 1);
    }

    #[test]
    fn open_streams_are_bounded() {
        let mut h = H2::new(Role::Server);
        h.received(&client_start());
        for i in 0..=MAX_STREAMS as u32 {
            h.received(&frame(HEADERS, END_HEADERS, 2 * i + 1, &[0x82]));
        }
        assert_eq!(h.open_streams(), MAX_STREAMS);
        assert!(!h.at_boundary());
    }

    #[test]
    fn a_client_opens_streams_by_writing() {
        let mut h = H2::new(Role::Client);
        h.sent(&client_start());
        h.sent(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &[0x82]));
        assert_eq!(h.open_streams(), 1);
        h.received(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &[0x88]));
        assert!(h.at_boundary());
    }
}
