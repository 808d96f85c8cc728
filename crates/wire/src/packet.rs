//! Readers and builders for the few packets the proxy must understand or produce itself.
//!
//! Everything here works on borrowed payload slices and returns `None` on truncated input: a malformed
//! packet from the network is an error for its session, never a panic.

use bytes::{BufMut, BytesMut};

use crate::StatusFlags;

/// Command bytes (first byte of a client command payload).
pub mod com {
    pub const SLEEP: u8 = 0x00;
    pub const QUIT: u8 = 0x01;
    pub const INIT_DB: u8 = 0x02;
    pub const QUERY: u8 = 0x03;
    pub const FIELD_LIST: u8 = 0x04;
    pub const STATISTICS: u8 = 0x09;
    pub const PING: u8 = 0x0e;
    pub const CHANGE_USER: u8 = 0x11;
    pub const STMT_PREPARE: u8 = 0x16;
    pub const STMT_EXECUTE: u8 = 0x17;
    pub const STMT_SEND_LONG_DATA: u8 = 0x18;
    pub const STMT_CLOSE: u8 = 0x19;
    pub const STMT_RESET: u8 = 0x1a;
    pub const SET_OPTION: u8 = 0x1b;
    pub const STMT_FETCH: u8 = 0x1c;
    pub const RESET_CONNECTION: u8 = 0x1f;
}

/// First byte of an OK packet.
pub const OK: u8 = 0x00;
/// First byte of an ERR packet.
pub const ERR: u8 = 0xFF;
/// First byte of an EOF packet (and of an OK packet that ends a result set under `CLIENT_DEPRECATE_EOF`).
pub const EOF: u8 = 0xFE;
/// First byte of a LOCAL INFILE request.
pub const LOCAL_INFILE: u8 = 0xFB;
/// A NULL column value in a text-protocol row.
pub const NULL_VALUE: u8 = 0xFB;

/// Reads a length-encoded integer; returns it and the bytes consumed.
pub fn lenenc_int(buf: &[u8]) -> Option<(u64, usize)> {
    let first = *buf.first()?;
    let width = match first {
        0..=0xFA => return Some((u64::from(first), 1)),
        0xFC => 2,
        0xFD => 3,
        0xFE => 8,
        _ => return None, // 0xFB is NULL, 0xFF is not an integer
    };
    let bytes = buf.get(1..1 + width)?;
    let value = bytes.iter().rev().fold(0u64, |acc, b| acc << 8 | u64::from(*b));
    Some((value, 1 + width))
}

/// Appends a length-encoded integer.
pub fn put_lenenc_int(buf: &mut BytesMut, v: u64) {
    match v {
        0..=0xFA => buf.put_u8(v as u8),
        0xFB..=0xFFFF => {
            buf.put_u8(0xFC);
            buf.put_u16_le(v as u16);
        }
        0x1_0000..=0xFF_FFFF => {
            buf.put_u8(0xFD);
            buf.put_slice(&(v as u32).to_le_bytes()[..3]);
        }
        _ => {
            buf.put_u8(0xFE);
            buf.put_u64_le(v);
        }
    }
}

/// Status flags of an OK packet (header 0x00 or 0xFE) payload.
pub fn ok_status(payload: &[u8]) -> Option<StatusFlags> {
    let mut pos = 1;
    let (_, n) = lenenc_int(payload.get(pos..)?)?; // affected rows
    pos += n;
    let (_, n) = lenenc_int(payload.get(pos..)?)?; // last insert id
    pos += n;
    let raw = payload.get(pos..pos + 2)?;
    Some(StatusFlags::from_bits_retain(u16::from_le_bytes([raw[0], raw[1]])))
}

/// Status flags of an EOF packet payload (0xFE, warnings u16, status u16).
pub fn eof_status(payload: &[u8]) -> Option<StatusFlags> {
    let raw = payload.get(3..5)?;
    Some(StatusFlags::from_bits_retain(u16::from_le_bytes([raw[0], raw[1]])))
}

/// Status flags of the packet that ends a response step: an OK packet, or an EOF packet (a short 0xFE
/// packet is an EOF when it is 5 bytes long or less, else an OK packet with a 0xFE header).
pub fn terminal_status(payload: &[u8]) -> Option<StatusFlags> {
    match *payload.first()? {
        OK => ok_status(payload),
        EOF if payload.len() <= 5 => eof_status(payload),
        EOF => ok_status(payload),
        _ => None,
    }
}

/// Warning count of the packet that ends a response step (an OK packet or an EOF packet, as for
/// [`terminal_status`]).
pub fn terminal_warnings(payload: &[u8]) -> Option<u16> {
    let at = match *payload.first()? {
        EOF if payload.len() <= 5 => 1,
        OK | EOF => {
            let mut pos = 1;
            pos += lenenc_int(payload.get(pos..)?)?.1; // affected rows
            pos += lenenc_int(payload.get(pos..)?)?.1; // last insert id
            pos + 2 // after the status flags
        }
        _ => return None,
    };
    let raw = payload.get(at..at + 2)?;
    Some(u16::from_le_bytes([raw[0], raw[1]]))
}

/// A decoded ERR packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrPacket {
    /// MySQL error code, e.g. 1045.
    pub code: u16,
    /// Five-character SQLSTATE.
    pub state: [u8; 5],
    /// Human-readable message.
    pub message: String,
}

impl ErrPacket {
    /// Parses an ERR payload (protocol 4.1 form, with or without the SQLSTATE marker).
    pub fn parse(payload: &[u8]) -> Option<ErrPacket> {
        if payload.first() != Some(&ERR) {
            return None;
        }
        let code = u16::from_le_bytes([*payload.get(1)?, *payload.get(2)?]);
        let (state, msg) = match payload.get(3) {
            Some(b'#') => {
                let s = payload.get(4..9)?;
                ([s[0], s[1], s[2], s[3], s[4]], &payload[9..])
            }
            _ => (*b"HY000", payload.get(3..).unwrap_or_default()),
        };
        Some(ErrPacket { code, state, message: String::from_utf8_lossy(msg).into_owned() })
    }
}

impl std::fmt::Display for ErrPacket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ERROR {} ({}): {}", self.code, String::from_utf8_lossy(&self.state), self.message)
    }
}

/// Builds an ERR payload.
pub fn err_payload(code: u16, state: &[u8; 5], message: &str) -> BytesMut {
    let mut buf = BytesMut::with_capacity(9 + message.len());
    buf.put_u8(ERR);
    buf.put_u16_le(code);
    buf.put_u8(b'#');
    buf.put_slice(state);
    buf.put_slice(message.as_bytes());
    buf
}

/// Builds an OK payload (no session-state info).
pub fn ok_payload(affected_rows: u64, last_insert_id: u64, status: StatusFlags, warnings: u16) -> BytesMut {
    let mut buf = BytesMut::with_capacity(16);
    buf.put_u8(OK);
    put_lenenc_int(&mut buf, affected_rows);
    put_lenenc_int(&mut buf, last_insert_id);
    buf.put_u16_le(status.bits());
    buf.put_u16_le(warnings);
    buf
}

/// Reads a little-endian u32 at `pos`.
pub fn u32_at(buf: &[u8], pos: usize) -> Option<u32> {
    let b = buf.get(pos..pos + 4)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Reads a little-endian u16 at `pos`.
pub fn u16_at(buf: &[u8], pos: usize) -> Option<u16> {
    let b = buf.get(pos..pos + 2)?;
    Some(u16::from_le_bytes([b[0], b[1]]))
}

/// The first packet of a successful COM_STMT_PREPARE response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrepareOk {
    /// Statement id assigned by the server.
    pub stmt_id: u32,
    /// Number of result columns.
    pub columns: u16,
    /// Number of `?` parameters.
    pub params: u16,
}

impl PrepareOk {
    /// Parses the `COM_STMT_PREPARE_OK` payload.
    pub fn parse(payload: &[u8]) -> Option<PrepareOk> {
        if payload.first() != Some(&OK) || payload.len() < 9 {
            return None;
        }
        Some(PrepareOk { stmt_id: u32_at(payload, 1)?, columns: u16_at(payload, 5)?, params: u16_at(payload, 7)? })
    }
}

/// Reads a length-encoded string; returns it and the bytes consumed.
pub fn lenenc_str(buf: &[u8]) -> Option<(&[u8], usize)> {
    let (len, n) = lenenc_int(buf)?;
    let len = usize::try_from(len).ok()?;
    let s = buf.get(n..n.checked_add(len)?)?;
    Some((s, n + len))
}

/// `SERVER_SESSION_STATE_CHANGED`: the OK packet carries session-state information.
pub const SESSION_STATE_CHANGED: u16 = 0x4000;

/// An OK packet (header 0x00, or 0xFE when it ends a result set under `CLIENT_DEPRECATE_EOF`), borrowed.
///
/// Layout: header, affected rows, last insert id (length-encoded), status flags, warnings (u16 each), then
/// the info message as a length-encoded string (servers always encode it so; an OK without message or state
/// ends after the warnings), then, with `CLIENT_SESSION_TRACK` and `SESSION_STATE_CHANGED` set, the
/// session-state block: a length-encoded run of entries (type byte + length-encoded data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OkPacket<'a> {
    /// 0x00 or 0xFE.
    pub header: u8,
    /// The raw length-encoded affected-rows and last-insert-id fields, as sent.
    pub counts: &'a [u8],
    /// Status flags.
    pub status: StatusFlags,
    /// Warning count.
    pub warnings: u16,
    /// The info message (empty when absent).
    pub info: &'a [u8],
    /// The session-state entries (the block's content, without its length), if the packet carries any.
    pub state: Option<&'a [u8]>,
}

impl<'a> OkPacket<'a> {
    /// Parses an OK payload received on a connection that negotiated `CLIENT_SESSION_TRACK` (`session_track`)
    /// or not. `None` when it is not a well-formed OK packet.
    pub fn parse(p: &'a [u8], session_track: bool) -> Option<OkPacket<'a>> {
        let header = *p.first()?;
        if header != OK && header != EOF {
            return None;
        }
        let (_, a) = lenenc_int(p.get(1..)?)?;
        let (_, b) = lenenc_int(p.get(1 + a..)?)?;
        let counts = &p[1..1 + a + b];
        let pos = 1 + a + b;
        let status = StatusFlags::from_bits_retain(u16_at(p, pos)?);
        let warnings = u16_at(p, pos + 2)?;
        let rest = &p[pos + 4..];
        if rest.is_empty() {
            return Some(OkPacket { header, counts, status, warnings, info: &[], state: None });
        }
        let (info, n) = lenenc_str(rest)?;
        let rest = &rest[n..];
        let state = if session_track && status.bits() & SESSION_STATE_CHANGED != 0 && !rest.is_empty() {
            let (block, _) = lenenc_str(rest)?;
            Some(block)
        } else {
            None
        };
        Some(OkPacket { header, counts, status, warnings, info, state })
    }

    /// The session-state entries.
    pub fn changes(&self) -> StateChanges<'a> {
        StateChanges { rest: self.state.unwrap_or_default() }
    }

    /// Writes this OK packet as a server would for a client that negotiated `CLIENT_SESSION_TRACK`
    /// (`session_track`) or not, keeping only the session-state entries `keep` accepts: without any, the
    /// `SESSION_STATE_CHANGED` flag is cleared and the block left out (and the info message too, when empty),
    /// as the server does when nothing it tracks for the client changed.
    pub fn write(&self, out: &mut BytesMut, session_track: bool, mut keep: impl FnMut(&StateChange<'_>) -> bool) {
        let mut block = BytesMut::new();
        if session_track {
            let mut rest = self.state.unwrap_or_default();
            while let Some((change, raw, len)) = StateChange::next(rest) {
                if keep(&change) {
                    block.extend_from_slice(raw);
                }
                rest = &rest[len..];
            }
        }
        let mut status = self.status.bits() & !SESSION_STATE_CHANGED;
        if !block.is_empty() {
            status |= SESSION_STATE_CHANGED;
        }
        out.put_u8(self.header);
        out.put_slice(self.counts);
        out.put_u16_le(status);
        out.put_u16_le(self.warnings);
        if !block.is_empty() || !self.info.is_empty() {
            put_lenenc_int(out, self.info.len() as u64);
            out.put_slice(self.info);
        }
        if !block.is_empty() {
            put_lenenc_int(out, block.len() as u64);
            out.put_slice(&block);
        }
    }
}

/// Session-state entry types (`enum_session_state_type`).
pub mod state_type {
    /// A system variable changed: name and new value.
    pub const SYSTEM_VARIABLES: u8 = 0;
    /// The current schema changed.
    pub const SCHEMA: u8 = 1;
    /// Some session state changed (`session_track_state_change`).
    pub const STATE_CHANGE: u8 = 2;
    /// GTIDs (MySQL `session_track_gtids`).
    pub const GTIDS: u8 = 3;
    /// Transaction characteristics (`session_track_transaction_info = CHARACTERISTICS`).
    pub const TRANSACTION_CHARACTERISTICS: u8 = 4;
    /// Transaction state (`session_track_transaction_info = STATE`).
    pub const TRANSACTION_STATE: u8 = 5;
}

/// One session-state entry of an OK packet, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateChange<'a> {
    /// A system variable and its new value (as text).
    SystemVariable {
        /// Its name, as the server spells it (lower case).
        name: &'a [u8],
        /// Its new value.
        value: &'a [u8],
    },
    /// The new current schema (empty: none).
    Schema(&'a [u8]),
    /// Session state changed (`1`).
    StateChanged,
    /// The transaction state string (8 characters: `T`/`I`, `r`, `R`, `w`, `W`, `s`, `S`, `L`, or `_`).
    TransactionState(&'a [u8]),
    /// MySQL's GTIDs of the transactions the session committed (`session_track_gtids = OWN_GTID`), as a
    /// GTID set in text.
    Gtids(&'a [u8]),
    /// Any other entry (transaction characteristics, future types): its type and data.
    Other(u8, &'a [u8]),
}

impl<'a> StateChange<'a> {
    /// The entry at the start of `rest`, its raw bytes and their length. `None` at the end or on malformed
    /// data (the rest is then ignored).
    fn next(rest: &'a [u8]) -> Option<(StateChange<'a>, &'a [u8], usize)> {
        let kind = *rest.first()?;
        let (data, n) = lenenc_str(rest.get(1..)?)?;
        let change = match kind {
            state_type::SYSTEM_VARIABLES => {
                let (name, a) = lenenc_str(data)?;
                let (value, _) = lenenc_str(data.get(a..)?)?;
                StateChange::SystemVariable { name, value }
            }
            state_type::SCHEMA => StateChange::Schema(lenenc_str(data)?.0),
            state_type::STATE_CHANGE => StateChange::StateChanged,
            state_type::TRANSACTION_STATE => StateChange::TransactionState(lenenc_str(data)?.0),
            // One byte of encoding specification (0: a text GTID set), then the set.
            state_type::GTIDS if data.first() == Some(&0) => StateChange::Gtids(lenenc_str(data.get(1..)?)?.0),
            other => StateChange::Other(other, data),
        };
        Some((change, &rest[..1 + n], 1 + n))
    }
}

/// The session-state entries of an OK packet.
#[derive(Debug, Clone)]
pub struct StateChanges<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for StateChanges<'a> {
    type Item = StateChange<'a>;

    fn next(&mut self) -> Option<StateChange<'a>> {
        let (change, _, len) = StateChange::next(self.rest)?;
        self.rest = &self.rest[len..];
        Some(change)
    }
}

/// Offset of the status flags in a 5-byte EOF packet.
pub const EOF_STATUS_OFFSET: usize = 3;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenenc_round_trip() {
        for v in [0, 250, 251, 0xFFFF, 0x1_0000, 0xFF_FFFF, 0x100_0000, u64::MAX] {
            let mut b = BytesMut::new();
            put_lenenc_int(&mut b, v);
            assert_eq!(lenenc_int(&b), Some((v, b.len())));
        }
        assert_eq!(lenenc_int(&[0xFC, 1]), None);
        assert_eq!(lenenc_int(&[]), None);
    }

    #[test]
    fn ok_and_eof_status() {
        let ok = ok_payload(3, 1000, StatusFlags::SERVER_STATUS_IN_TRANS, 0);
        assert_eq!(ok_status(&ok), Some(StatusFlags::SERVER_STATUS_IN_TRANS));
        let eof = [EOF, 0, 0, 0x0A, 0];
        assert_eq!(
            terminal_status(&eof),
            Some(StatusFlags::SERVER_STATUS_AUTOCOMMIT | StatusFlags::SERVER_MORE_RESULTS_EXISTS)
        );
        assert_eq!(ok_status(&[OK, 0xFC]), None);
    }

    /// Session-state OK packets as MariaDB 10.11 sends them (captured from a real server).
    #[test]
    fn ok_with_session_state() {
        // SET time_zone='+01:00' with session_track_system_variables='*' and state_change on.
        let p = b"\x00\x00\x00\x02\x40\x00\x00\x00\x16\x00\x11\x09time_zone\x06+01:00\x02\x01\x31";
        let ok = OkPacket::parse(p, true).unwrap();
        assert_eq!(ok.status.bits(), 0x4002);
        let changes: Vec<StateChange<'_>> = ok.changes().collect();
        assert_eq!(
            changes,
            [StateChange::SystemVariable { name: b"time_zone", value: b"+01:00" }, StateChange::StateChanged]
        );
        // Rewritten for a client that tracks time_zone but not state changes.
        let mut out = BytesMut::new();
        ok.write(&mut out, true, |c| matches!(c, StateChange::SystemVariable { .. }));
        assert_eq!(&out[..], b"\x00\x00\x00\x02\x40\x00\x00\x00\x13\x00\x11\x09time_zone\x06+01:00");
        // For a client without CLIENT_SESSION_TRACK: no flag, no block.
        let mut out = BytesMut::new();
        ok.write(&mut out, false, |_| true);
        assert_eq!(&out[..], b"\x00\x00\x00\x02\x00\x00\x00");
        // UPDATE with a message and last_gtid: the message stays.
        let p = b"\x00\x02\x00\x22\x40\x00\x00\x07Rows: 2\x13\x00\x11\x09last_gtid\x060-1-16";
        let ok = OkPacket::parse(p, true).unwrap();
        assert_eq!(ok.info, b"Rows: 2");
        let mut out = BytesMut::new();
        ok.write(&mut out, true, |_| false);
        assert_eq!(&out[..], b"\x00\x02\x00\x22\x00\x00\x00\x07Rows: 2");
        // Unchanged when everything is kept.
        let mut out = BytesMut::new();
        ok.write(&mut out, true, |_| true);
        assert_eq!(&out[..], &p[..]);
        // Transaction state and schema entries.
        let p = b"\x00\x00\x00\x03\x40\x00\x00\x00\x13\x05\x09\x08T___W___\x01\x03\x02e1\x02\x01\x31";
        let changes: Vec<StateChange<'_>> = OkPacket::parse(p, true).unwrap().changes().collect();
        assert_eq!(
            changes,
            [StateChange::TransactionState(b"T___W___"), StateChange::Schema(b"e1"), StateChange::StateChanged]
        );
        // MySQL's session_track_gtids = OWN_GTID: type 3, encoding 0, then the set.
        let gtid = b"3e11fa47-71ca-11e1-9e33-c80aa9429562:23";
        let mut entry = vec![0u8, gtid.len() as u8];
        entry.extend_from_slice(gtid);
        let mut p = b"\x00\x01\x00\x02\x40\x00\x00\x00".to_vec();
        p.push(2 + entry.len() as u8);
        p.push(state_type::GTIDS);
        p.push(entry.len() as u8);
        p.extend_from_slice(&entry);
        let changes: Vec<StateChange<'_>> = OkPacket::parse(&p, true).unwrap().changes().collect();
        assert_eq!(changes, [StateChange::Gtids(gtid)]);
        // Truncated or foreign packets do not parse.
        let p = b"\x00\x00\x00\x03\x40\x00\x00\x00\x13\x05\x09\x08T___W___\x01\x03\x02e1\x02\x01\x31";
        assert!(OkPacket::parse(&p[..5], true).is_none());
        assert!(OkPacket::parse(b"\xff\x00", true).is_none());
    }

    #[test]
    fn err_round_trip() {
        let p = err_payload(1045, b"28000", "Access denied");
        let e = ErrPacket::parse(&p).unwrap();
        assert_eq!((e.code, &e.state, e.message.as_str()), (1045, b"28000", "Access denied"));
        assert_eq!(ErrPacket::parse(&[ERR, 1]), None);
    }
}
