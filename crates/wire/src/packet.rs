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

    #[test]
    fn err_round_trip() {
        let p = err_payload(1045, b"28000", "Access denied");
        let e = ErrPacket::parse(&p).unwrap();
        assert_eq!((e.code, &e.state, e.message.as_str()), (1045, b"28000", "Access denied"));
        assert_eq!(ErrPacket::parse(&[ERR, 1]), None);
    }
}
