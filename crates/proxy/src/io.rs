//! Buffered frame I/O over one TCP stream: one read buffer and one write buffer per connection.
//!
//! Commands and the proxy's own packets: frames are decoded with the wire crate's codec straight out of the
//! read buffer (`split_to`, no copy) and queued into the write buffer, flushed explicitly. Responses take a
//! shorter way: the pump walks them in the backend's read buffer ([`Wire::buffered_mut`]) and writes them
//! to the client from there ([`Wire::write_through`]), at most [`FLUSH_AT`] bytes at a time.
//!
//! Buffers start empty and grow on demand, and big ones are dropped once empty: what an idle connection
//! holds is what 10,000 of them cost.
//!
//! A client connection that negotiated `CLIENT_COMPRESS` ([`Wire::enable_compression`]) has a compression
//! layer under the same interface: what arrives is decompressed into the read buffer (so frames are walked
//! exactly as without it), and everything written is compressed on the way out. Compressed sequence ids
//! continue from the client's: the response to a command starts at the id after the client's last
//! compressed packet, as a server numbers it.

use bytes::{Buf, BytesMut};
use rwsplit_wire::compress::{CompressError, Compressor, Decompressor};
use rwsplit_wire::{Frame, FrameCodec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::Decoder;

use crate::stream::{Rewind, Stream};

/// Bytes of a response walked and held before they are written out even mid-response.
pub const FLUSH_AT: usize = 64 * 1024;

/// Read-buffer growth step on a client connection: commands are small, and an idle client's buffers are
/// what 10,000 idle connections cost (allocated, not just touched, bytes: freed buffers are reused at other
/// offsets, so over time every allocated page becomes resident).
pub const CLIENT_READ_CHUNK: usize = 2 * 1024;

/// Read-buffer growth step on a backend connection: results stream through it.
pub const BACKEND_READ_CHUNK: usize = 16 * 1024;

/// A buffer this large is given back once empty, so one big packet does not pin its memory for the
/// connection's lifetime.
const SHRINK_ABOVE: usize = 4 * FLUSH_AT;

/// A framed, buffered MySQL connection (either side).
#[derive(Debug)]
pub struct Wire {
    /// The socket (TCP, or TLS over it).
    stream: Stream,
    /// Bytes read (decompressed, with compression) but not yet decoded into frames.
    rbuf: BytesMut,
    /// Frames queued for the next flush.
    wbuf: BytesMut,
    /// How much room a read asks for.
    read_chunk: usize,
    /// The compression layer, once the client negotiated it.
    compression: Option<Box<Compression>>,
}

/// The compressed protocol's state on one connection.
#[derive(Debug, Default)]
struct Compression {
    /// Compressed bytes read from the socket and not yet decoded.
    raw: BytesMut,
    /// Compressed packets to write.
    out: BytesMut,
    /// Decodes what arrives.
    decompressor: Decompressor,
    /// Encodes what leaves.
    compressor: Compressor,
    /// The sequence id of the next compressed packet sent (the last one received + 1).
    seq: u8,
}

fn invalid(e: CompressError) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e)
}

impl Wire {
    /// Wraps a connected stream (sets TCP_NODELAY: every flush is a complete message). Buffers start empty
    /// and grow by `read_chunk` (see [`CLIENT_READ_CHUNK`], [`BACKEND_READ_CHUNK`]).
    pub fn new(stream: TcpStream, read_chunk: usize) -> Wire {
        let _ = stream.set_nodelay(true);
        let stream = Stream::Plain(stream);
        Wire { stream, rbuf: BytesMut::new(), wbuf: BytesMut::new(), read_chunk, compression: None }
    }

    /// Accepts TLS on a client connection whose SSLRequest was just read: whatever the client sent after it
    /// (already in the read buffer) is the start of its TLS handshake.
    pub async fn accept_tls(&mut self, acceptor: &tokio_rustls::TlsAcceptor) -> std::io::Result<()> {
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Closed) else {
            return Err(std::io::Error::other("TLS requested twice"));
        };
        let prefix = std::mem::take(&mut self.rbuf).freeze();
        let tls = acceptor.accept(Rewind::new(prefix, tcp)).await?;
        self.stream = Stream::Tls(Box::new(tls));
        Ok(())
    }

    /// Starts TLS on a backend connection after its SSLRequest was sent (the server sends nothing before the
    /// handshake, so nothing is buffered). The certificate is verified for `name` by `connector`.
    pub async fn connect_tls(
        &mut self,
        connector: &tokio_rustls::TlsConnector,
        name: rustls_pki_types::ServerName<'static>,
    ) -> std::io::Result<()> {
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Closed) else {
            return Err(std::io::Error::other("TLS started twice"));
        };
        if !self.rbuf.is_empty() {
            return Err(std::io::Error::other("the server sent data before the TLS handshake"));
        }
        let tls = connector.connect(name, tcp).await?;
        self.stream = Stream::TlsClient(Box::new(tls));
        Ok(())
    }

    /// Whether the connection is TLS.
    pub fn is_tls(&self) -> bool {
        self.stream.is_tls()
    }

    /// Switches the connection to the compressed protocol (after the login OK was sent uncompressed).
    pub fn enable_compression(&mut self) {
        let mut c = Box::<Compression>::default();
        // Bytes the client sent after its login packet are already compressed.
        c.raw = std::mem::take(&mut self.rbuf);
        self.compression = Some(c);
    }

    /// With compression, the sequence id a response's first MySQL packet carries (the server numbers it from
    /// the client's last compressed packet); `None` without compression.
    pub fn compressed_seq(&self) -> Option<u8> {
        self.compression.as_ref().map(|c| c.seq)
    }

    /// Reads from the socket into the read buffer (decompressing, with compression); 0 when the peer closed.
    async fn fill(&mut self) -> std::io::Result<usize> {
        let Some(c) = self.compression.as_mut() else {
            return self.stream.read_buf(&mut self.rbuf).await;
        };
        loop {
            // One compressed packet at a time: the response to a command is numbered from the compressed
            // packet that carried it, not from a later one a pipelining client already sent.
            if let Some(seq) = c.decompressor.decode_packet(&mut c.raw, &mut self.rbuf).map_err(invalid)? {
                c.seq = seq.wrapping_add(1);
                return Ok(1);
            }
            if c.raw.capacity() - c.raw.len() < self.read_chunk / 4 {
                c.raw.reserve(self.read_chunk);
            }
            if self.stream.read_buf(&mut c.raw).await? == 0 {
                return Ok(0);
            }
        }
    }

    /// Makes room for a read of at least `room` bytes (and at least a read chunk).
    fn reserve_read(&mut self, room: usize) {
        if self.rbuf.is_empty() && self.rbuf.capacity() > SHRINK_ABOVE {
            self.rbuf = BytesMut::new();
        }
        let room = room.max(self.read_chunk / 4);
        if self.rbuf.capacity() - self.rbuf.len() < room {
            self.rbuf.reserve(room.max(self.read_chunk));
        }
    }

    /// Reads the next frame. `Ok(None)` when the peer closed the connection cleanly between frames.
    pub async fn read_frame(&mut self) -> std::io::Result<Option<Frame>> {
        loop {
            if let Some(frame) = FrameCodec.decode(&mut self.rbuf)? {
                return Ok(Some(frame));
            }
            self.reserve_read(0);
            if self.fill().await? == 0 {
                return if self.rbuf.is_empty() {
                    Ok(None)
                } else {
                    Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed mid-packet"))
                };
            }
        }
    }

    /// The bytes read and not yet consumed, for walking frames in place: the response pump renumbers frames
    /// in this buffer and writes them to the client straight from it (no copy), then [`Wire::consume`]s them.
    pub fn buffered_mut(&mut self) -> &mut [u8] {
        &mut self.rbuf
    }

    /// Drops the first `n` buffered bytes (forwarded elsewhere).
    pub fn consume(&mut self, n: usize) {
        self.rbuf.advance(n);
    }

    /// Reads more bytes into the read buffer, first making room for at least `room` more. Returns how many
    /// bytes arrived (0: the peer closed).
    pub async fn read_more(&mut self, room: usize) -> std::io::Result<usize> {
        self.reserve_read(room);
        self.fill().await
    }

    /// Like [`Wire::read_more`] without waiting: `Ok(None)` when nothing is known to be readable now (tokio's
    /// cached readiness says so without a system call).
    pub fn try_read_more(&mut self, room: usize) -> std::io::Result<Option<usize>> {
        if self.compression.is_some() {
            // The compression layer decodes whole packets only; the caller waits with `read_more`.
            return Ok(None);
        }
        self.reserve_read(room);
        match self.stream.try_read_buf(&mut self.rbuf) {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes `bytes` to the socket, after anything already queued.
    pub async fn write_through(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if !self.wbuf.is_empty() || self.compression.is_some() {
            self.wbuf.extend_from_slice(bytes);
            return self.flush().await;
        }
        self.stream.write_all(bytes).await?;
        if self.stream.is_tls() {
            self.stream.flush().await?;
        }
        Ok(())
    }

    /// Replaces the `len` bytes at `at` in the read buffer with `new` (at most as long), shifting what follows:
    /// a status packet rewritten in place before it is forwarded.
    pub fn splice(&mut self, at: usize, len: usize, new: &[u8]) {
        debug_assert!(new.len() <= len && at + len <= self.rbuf.len());
        self.rbuf[at..at + new.len()].copy_from_slice(new);
        let gap = len - new.len();
        if gap > 0 {
            self.rbuf.copy_within(at + len.., at + new.len());
            let keep = self.rbuf.len() - gap;
            self.rbuf.truncate(keep);
        }
    }

    /// Completes when the socket has something to read (data, or the peer's close).
    pub async fn readable(&self) -> std::io::Result<()> {
        self.stream.readable().await
    }

    /// Reads the next frame, refusing one whose header announces a payload over `max` before buffering it
    /// (for packets before login: a peer that has not authenticated must not make the proxy hold 16 MiB).
    pub async fn expect_frame_within(&mut self, max: usize) -> std::io::Result<Frame> {
        loop {
            if let Some(len) = rwsplit_wire::frame::frame_len(&self.rbuf) {
                if len - 4 > max {
                    let msg = format!("a {} byte packet before login (at most {max})", len - 4);
                    return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, msg));
                }
            }
            if let Some(frame) = FrameCodec.decode(&mut self.rbuf)? {
                return Ok(frame);
            }
            self.reserve_read(0);
            if self.fill().await? == 0 {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed"));
            }
        }
    }

    /// Reads the next frame, treating a clean close as an error.
    pub async fn expect_frame(&mut self) -> std::io::Result<Frame> {
        self.read_frame()
            .await?
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed"))
    }

    /// Queues a frame for the next flush.
    pub fn queue(&mut self, frame: &Frame) {
        self.wbuf.extend_from_slice(frame.as_bytes());
    }

    /// Queues a logical payload as one or more frames starting at `seq`; returns the next sequence id.
    pub fn queue_payload(&mut self, seq: u8, payload: &[u8]) -> u8 {
        rwsplit_wire::frame::encode_payload(&mut self.wbuf, seq, payload)
    }

    /// Bytes queued and not yet flushed.
    pub fn pending(&self) -> usize {
        self.wbuf.len()
    }

    /// Drops queued frames that were not written yet (a response being retried elsewhere).
    pub fn discard_pending(&mut self) {
        self.wbuf.clear();
    }

    /// Writes out everything queued.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        if let Some(c) = self.compression.as_mut() {
            if !self.wbuf.is_empty() {
                c.seq = c.compressor.compress(&mut c.out, c.seq, &self.wbuf);
                self.wbuf.clear();
            }
            while c.out.has_remaining() {
                self.stream.write_all_buf(&mut c.out).await?;
            }
            if c.out.capacity() > SHRINK_ABOVE {
                c.out = BytesMut::new();
            }
        }
        while self.wbuf.has_remaining() {
            self.stream.write_all_buf(&mut self.wbuf).await?;
        }
        if self.stream.is_tls() {
            self.stream.flush().await?;
        }
        if self.wbuf.capacity() > SHRINK_ABOVE {
            self.wbuf = BytesMut::new();
        }
        Ok(())
    }

    /// Queues a payload and flushes.
    pub async fn send(&mut self, seq: u8, payload: &[u8]) -> std::io::Result<u8> {
        let next = self.queue_payload(seq, payload);
        self.flush().await?;
        Ok(next)
    }

    /// Whether the peer has closed (or sent unexpected bytes on) an idle connection. Used before sending on a
    /// connection that sat idle (pooled, or between a session's commands): it must have nothing to read.
    pub fn is_stale(&mut self) -> bool {
        if !self.rbuf.is_empty() {
            return true;
        }
        // Anything that arrives is kept in the read buffer, for `unsolicited`. Without a readiness event
        // tokio answers WouldBlock without a system call.
        self.reserve_read(0);
        !matches!(self.stream.try_read_buf(&mut self.rbuf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }

    /// The ERR packet a server sent unasked on an idle connection before closing it (MySQL sends ERR 4031 on
    /// `wait_timeout`), if one is in the read buffer. Call after [`Wire::is_stale`] said so.
    pub fn unsolicited(&mut self) -> Option<rwsplit_wire::packet::ErrPacket> {
        let frame = FrameCodec.decode(&mut self.rbuf).ok()??;
        rwsplit_wire::packet::ErrPacket::parse(frame.payload())
    }

    /// The peer's address.
    pub fn peer(&self) -> Option<std::net::SocketAddr> {
        self.stream.peer_addr()
    }
}
