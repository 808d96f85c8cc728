//! Server packets for scripted responses, shared by the tests' scripted backends (`tests/dribble.rs`,
//! `tests/mysql_dialect.rs`, the scripted MySQL server of `tests/consistency.rs`) and the wire benchmark
//! (`benches/wire.rs`, which includes this file by path).

use bytes::{BufMut, BytesMut};
use rwsplit_wire::packet::{ok_payload, put_lenenc_int};
use rwsplit_wire::{Frame, StatusFlags};

/// Appends a length-encoded string.
pub fn lenenc_str(buf: &mut BytesMut, s: &[u8]) {
    put_lenenc_int(buf, s.len() as u64);
    buf.put_slice(s);
}

/// A column definition (Protocol::ColumnDefinition41) as MariaDB sends it for a column of sysbench's table.
pub fn column_def(name: &str) -> BytesMut {
    let mut p = BytesMut::new();
    for s in ["def", "app", "sbtest1", "sbtest1", name, name] {
        lenenc_str(&mut p, s.as_bytes());
    }
    p.put_u8(0x0c);
    p.put_u16_le(45); // utf8mb4_general_ci
    p.put_u32_le(480);
    p.put_u8(0xfe); // MYSQL_TYPE_STRING
    p.put_u16_le(0x1001);
    p.put_u8(0);
    p.put_u16_le(0);
    p
}

/// An EOF packet (autocommit, no warnings): after column definitions without `CLIENT_DEPRECATE_EOF`, and at
/// the end of rows.
pub fn eof() -> BytesMut {
    let mut e = BytesMut::new();
    e.put_u8(0xfe);
    e.put_u16_le(0);
    e.put_u16_le(StatusFlags::SERVER_STATUS_AUTOCOMMIT.bits());
    e
}

/// What ends the rows of a result set: an EOF, or under `CLIENT_DEPRECATE_EOF` an OK with the 0xFE header.
pub fn end_of_rows(deprecate_eof: bool) -> BytesMut {
    if !deprecate_eof {
        return eof();
    }
    let mut ok = ok_payload(0, 0, StatusFlags::SERVER_STATUS_AUTOCOMMIT, 0);
    ok[0] = 0xfe;
    ok
}

/// The payloads as the frames of one response: sequence ids from 1, wrapping after 255.
pub fn frames<P: AsRef<[u8]>>(payloads: &[P]) -> Vec<Frame> {
    payloads.iter().enumerate().map(|(i, p)| Frame::new((i + 1) as u8, p.as_ref())).collect()
}

/// The payloads as one response on the wire (the bytes of [`frames`]).
pub fn wire_bytes<P: AsRef<[u8]>>(payloads: &[P]) -> Vec<u8> {
    frames(payloads).iter().flat_map(|f| f.as_bytes().to_vec()).collect()
}

/// A text result set on the wire: string columns named `columns`, then `rows`.
pub fn text_result(columns: &[&str], rows: &[Vec<&str>], deprecate_eof: bool) -> Vec<u8> {
    let mut payloads = vec![BytesMut::from(&[columns.len() as u8][..])];
    payloads.extend(columns.iter().map(|c| column_def(c)));
    if !deprecate_eof {
        payloads.push(eof());
    }
    for row in rows {
        let mut p = BytesMut::new();
        for v in row {
            lenenc_str(&mut p, v.as_bytes());
        }
        payloads.push(p);
    }
    payloads.push(end_of_rows(deprecate_eof));
    wire_bytes(&payloads)
}
