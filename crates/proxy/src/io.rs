//! Buffered frame I/O over one TCP stream: one read buffer and one write buffer per connection.
//!
//! Commands and the proxy's own packets: frames are decoded with the wire crate's codec straight out of the
//! read buffer (`split_to`, no copy) and queued into the write buffer, flushed explicitly. Responses take a
//! shorter way: the pump walks them in the backend's read buffer ([`Wire::buffered_mut`]) and writes them
//! to the client from there ([`Wire::write_through`]), at most [`FLUSH_AT`] bytes at a time.
//!
//! Buffers start empty and grow on demand, and big ones are dropped once empty: what an idle connection
//! holds is what 10,000 of them cost.

use bytes::{Buf, BytesMut};
use rwsplit_wire::{Frame, FrameCodec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::Decoder;

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
    /// The socket.
    stream: TcpStream,
    /// Bytes read but not yet decoded into frames.
    rbuf: BytesMut,
    /// Frames queued for the next flush.
    wbuf: BytesMut,
    /// How much room a read asks for.
    read_chunk: usize,
}

impl Wire {
    /// Wraps a connected stream (sets TCP_NODELAY: every flush is a complete message). Buffers start empty
    /// and grow by `read_chunk` (see [`CLIENT_READ_CHUNK`], [`BACKEND_READ_CHUNK`]).
    pub fn new(stream: TcpStream, read_chunk: usize) -> Wire {
        let _ = stream.set_nodelay(true);
        Wire { stream, rbuf: BytesMut::new(), wbuf: BytesMut::new(), read_chunk }
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
            if self.stream.read_buf(&mut self.rbuf).await? == 0 {
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
        self.stream.read_buf(&mut self.rbuf).await
    }

    /// Like [`Wire::read_more`] without waiting: `Ok(None)` when nothing is known to be readable now (tokio's
    /// cached readiness says so without a system call).
    pub fn try_read_more(&mut self, room: usize) -> std::io::Result<Option<usize>> {
        self.reserve_read(room);
        match self.stream.try_read_buf(&mut self.rbuf) {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes `bytes` to the socket, after anything already queued.
    pub async fn write_through(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if !self.wbuf.is_empty() {
            self.wbuf.extend_from_slice(bytes);
            return self.flush().await;
        }
        self.stream.write_all(bytes).await
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
        while self.wbuf.has_remaining() {
            self.stream.write_all_buf(&mut self.wbuf).await?;
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

    /// Whether the peer has closed (or sent unexpected bytes on) an idle connection. Used when taking a
    /// connection from the pool: an idle backend connection must have nothing to read.
    pub fn is_stale(&self) -> bool {
        if !self.rbuf.is_empty() {
            return true;
        }
        let mut probe = [0u8; 1];
        !matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }

    /// The peer's address.
    pub fn peer(&self) -> Option<std::net::SocketAddr> {
        self.stream.peer_addr().ok()
    }
}
