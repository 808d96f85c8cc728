//! The response walker: finds where a server response ends by looking at packet headers and status flags only.
//!
//! The proxy feeds every backend frame to [`Walker::feed`] before forwarding it verbatim. Rows are never
//! decoded: only the first byte of each logical packet, the column count, OK/EOF status flags and the
//! prepare-OK counts are read. After each frame, [`Walker::packet`] tells what the packet was, so the caller
//! can read (or adjust) the status packets that carry session state.
//!
//! States and transitions of a result-set response (text or binary protocol), one method per state:
//! ```text
//! First --OK--> (MORE_RESULTS ? First : Done)      First --ERR--> Done
//! First --0xFB--> LOCAL INFILE (the proxy streams the client's file, then `after_local_infile` → First)
//! First --column count n--> Columns(n) --n defs--> (DEPRECATE_EOF ? Rows : ColumnsEof)
//! ColumnsEof --EOF--> (CURSOR_EXISTS ? Done : Rows)
//! Rows --row--> Rows    Rows --ERR--> Done    Rows --EOF/OK--> (MORE_RESULTS ? First : Done)
//! ```
//! A prepare response is `PrepareOk` + parameter definitions (+EOF) + column definitions (+EOF), or ERR.
//!
//! The status reported when a response ends is the last one the server sent in it: for an ERR that ends a
//! multi-result (`BEGIN; INSERT …; INSERT <duplicate>`), the status of the result before the error, which still
//! says whether a transaction is open.

use crate::packet::{self, EOF, ERR, LOCAL_INFILE, OK};
use crate::{Frame, StatusFlags, MAX_PAYLOAD};

/// What kind of response a command produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// COM_QUERY, COM_STMT_EXECUTE, COM_STMT_FETCH: OK, ERR, LOCAL INFILE or result sets.
    ResultSets,
    /// COM_STMT_FETCH: rows of an open cursor, then EOF (or ERR).
    Rows,
    /// COM_STMT_PREPARE.
    Prepare,
    /// COM_FIELD_LIST: column definitions up to EOF, or ERR.
    FieldList,
    /// A single OK, EOF or ERR packet (COM_PING, COM_INIT_DB, COM_SET_OPTION, COM_STMT_RESET, …).
    Single,
    /// COM_STATISTICS: one packet of text (or ERR).
    AnyOne,
}

/// Where a response stands after a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// More frames follow.
    More,
    /// The server asks for a LOCAL INFILE: the client's file data must be forwarded before more frames come.
    LocalInfile,
    /// The response is complete. `status` is the last status flags the server sent in it (for an ERR, those
    /// of an earlier result of the same response, if any), `error` tells whether it ended with an ERR packet.
    Done { status: Option<StatusFlags>, error: bool },
}

/// What the packet just fed was, as far as the walker had to tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packet {
    /// Anything the walker does not read further: column count and definitions, rows, prepare responses,
    /// continuation frames, statistics text.
    Data,
    /// An OK packet (header 0x00, or 0xFE ending a result set under `CLIENT_DEPRECATE_EOF`): status flags and
    /// possibly session-state information.
    Ok,
    /// A 5-byte EOF packet (warnings and status flags).
    Eof,
    /// An ERR packet.
    Err,
}

/// Errors: the backend sent something that cannot be a valid response to the command.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WalkError {
    /// A packet was shorter than its header says it must be, or a count did not parse.
    #[error("malformed {0} packet in server response")]
    Malformed(&'static str),
    /// A frame arrived after the response ended.
    #[error("frame after end of response")]
    AfterDone,
}

/// The walker's position in a response (see the module doc for the transitions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting the first packet of a result: OK, ERR, LOCAL INFILE request or a column count.
    First,
    /// Expecting this many more column definitions.
    Columns(u64),
    /// Expecting the EOF after the column definitions (no `CLIENT_DEPRECATE_EOF`).
    ColumnsEof,
    /// Expecting rows, then the terminator.
    Rows,
    /// Expecting the prepare-OK (or ERR).
    PrepareFirst,
    /// Expecting parameter, then column, definitions.
    PrepareDefs { params: u16, columns: u16 },
    /// Expecting the EOF after a block of prepare definitions; `columns` definitions follow it.
    PrepareEof { columns: u16 },
    /// Expecting column definitions up to EOF (COM_FIELD_LIST).
    FieldList,
    /// Expecting one OK, EOF or ERR.
    Single,
    /// Expecting any one packet.
    AnyOne,
    /// The response is complete.
    Done,
}

/// Walks one response. Create one per command with [`Walker::new`].
#[derive(Debug, Clone)]
pub struct Walker {
    /// Where the response stands.
    state: State,
    /// The connection negotiated `CLIENT_DEPRECATE_EOF`: result sets end with an OK packet, and column
    /// definitions are not followed by an EOF.
    deprecate_eof: bool,
    /// The previous frame was exactly MAX_PAYLOAD long, so this one continues a logical packet.
    in_continuation: bool,
    /// The last status flags the server sent in this response.
    status: Option<StatusFlags>,
    /// A packet that ends a result or the response reported warnings.
    warned: bool,
    /// What the last packet fed was.
    packet: Packet,
}

impl Walker {
    /// A walker for a response of kind `expect` on a connection that negotiated `CLIENT_DEPRECATE_EOF` or not.
    pub fn new(expect: Expect, deprecate_eof: bool) -> Walker {
        let state = match expect {
            Expect::ResultSets => State::First,
            Expect::Rows => State::Rows,
            Expect::Prepare => State::PrepareFirst,
            Expect::FieldList => State::FieldList,
            Expect::Single => State::Single,
            Expect::AnyOne => State::AnyOne,
        };
        Walker { state, deprecate_eof, in_continuation: false, status: None, warned: false, packet: Packet::Data }
    }

    /// Whether the response is complete.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// What the last packet fed was.
    pub fn packet(&self) -> Packet {
        self.packet
    }

    /// Called after the proxy forwarded the client's LOCAL INFILE data: the server now answers OK or ERR.
    pub fn after_local_infile(&mut self) {
        self.state = State::First;
    }

    /// Feeds one frame of the response.
    pub fn feed(&mut self, frame: &Frame) -> Result<Step, WalkError> {
        self.feed_payload(frame.payload())
    }

    /// Feeds the payload of one frame of the response (for callers that walk frames in their read buffer).
    pub fn feed_payload(&mut self, payload: &[u8]) -> Result<Step, WalkError> {
        let full_len = payload.len() == MAX_PAYLOAD;
        let continued = std::mem::replace(&mut self.in_continuation, full_len);
        self.packet = Packet::Data;
        if continued {
            // The middle or tail of a large logical packet: carries no header to read. Its last frame
            // completes the response if the packet's first frame ended it.
            let complete = !self.in_continuation && self.state == State::Done;
            return Ok(if complete { self.finished(false) } else { Step::More });
        }
        let step = match self.state {
            State::Done => return Err(WalkError::AfterDone),
            State::First => self.first(payload, full_len)?,
            State::Columns(n) => self.column(payload, n),
            State::ColumnsEof => self.columns_eof(payload)?,
            State::Rows => self.row(payload, full_len)?,
            State::PrepareFirst => self.prepare_ok(payload)?,
            State::PrepareDefs { params, columns } => self.prepare_def(params, columns),
            State::PrepareEof { columns } => self.prepare_eof(payload, columns)?,
            State::FieldList => self.field(payload, full_len),
            State::Single => self.single(payload)?,
            State::AnyOne => {
                let error = payload.first() == Some(&ERR);
                self.done(error)
            }
        };
        if full_len && matches!(step, Step::Done { .. }) {
            // The packet that ends the response is itself continued: wait for its tail.
            return Ok(Step::More);
        }
        Ok(step)
    }

    /// Ends the response (ERR or the last terminator).
    fn done(&mut self, error: bool) -> Step {
        self.state = State::Done;
        if error {
            self.packet = Packet::Err;
        }
        self.finished(error)
    }

    /// Whether any packet that ended a result of this response reported warnings (so `SHOW WARNINGS` must
    /// run on the connection that answered).
    pub fn warned(&self) -> bool {
        self.warned
    }

    fn finished(&self, error: bool) -> Step {
        Step::Done { status: self.status, error }
    }

    /// Whether a 0xFE-headed packet ends a result set (rather than being a row starting with a 0xFE length).
    fn is_terminator(&self, p: &[u8], full_len: bool) -> bool {
        p.first() == Some(&EOF) && !full_len && (self.deprecate_eof || p.len() < 9)
    }

    /// The kind of a terminator packet (OK with a 0xFE header, or a short EOF).
    fn terminator_kind(p: &[u8]) -> Packet {
        if p.len() <= 5 {
            Packet::Eof
        } else {
            Packet::Ok
        }
    }

    /// The end of one result: more results follow, or the response is done.
    fn end_of_result(&mut self, p: &[u8]) -> Result<Step, WalkError> {
        let status = packet::terminal_status(p).ok_or(WalkError::Malformed("EOF/OK"))?;
        self.status = Some(status);
        self.warned |= packet::terminal_warnings(p).is_some_and(|w| w > 0);
        if status.contains(StatusFlags::SERVER_MORE_RESULTS_EXISTS) {
            self.state = State::First;
            Ok(Step::More)
        } else {
            Ok(self.done(false))
        }
    }

    /// [`State::First`]. A logical packet that continues is not complete yet, but its first byte decides.
    fn first(&mut self, p: &[u8], full_len: bool) -> Result<Step, WalkError> {
        match p.first() {
            Some(&OK) if !full_len => {
                self.packet = Packet::Ok;
                self.end_of_result(p)
            }
            Some(&ERR) => Ok(self.done(true)),
            Some(&LOCAL_INFILE) => Ok(Step::LocalInfile),
            Some(_) => {
                let (n, _) = packet::lenenc_int(p).ok_or(WalkError::Malformed("column count"))?;
                if n == 0 {
                    return Err(WalkError::Malformed("column count"));
                }
                self.state = State::Columns(n);
                Ok(Step::More)
            }
            None => Err(WalkError::Malformed("empty")),
        }
    }

    /// [`State::Columns`]: one column definition, `n` of them left including this one.
    fn column(&mut self, p: &[u8], n: u64) -> Step {
        if p.first() == Some(&ERR) {
            return self.done(true);
        }
        self.state = match (n - 1, self.deprecate_eof) {
            (0, true) => State::Rows,
            (0, false) => State::ColumnsEof,
            (left, _) => State::Columns(left),
        };
        Step::More
    }

    /// [`State::ColumnsEof`]: the EOF after the column definitions; an open cursor ends the response here.
    fn columns_eof(&mut self, p: &[u8]) -> Result<Step, WalkError> {
        if p.first() == Some(&ERR) {
            return Ok(self.done(true));
        }
        let status = packet::terminal_status(p).ok_or(WalkError::Malformed("EOF"))?;
        self.packet = Packet::Eof;
        self.status = Some(status);
        self.warned |= packet::terminal_warnings(p).is_some_and(|w| w > 0);
        if status.contains(StatusFlags::SERVER_STATUS_CURSOR_EXISTS) {
            Ok(self.done(false))
        } else {
            self.state = State::Rows;
            Ok(Step::More)
        }
    }

    /// [`State::Rows`]: a row, an ERR, or the terminator of the result set.
    fn row(&mut self, p: &[u8], full_len: bool) -> Result<Step, WalkError> {
        if p.first() == Some(&ERR) {
            Ok(self.done(true))
        } else if self.is_terminator(p, full_len) {
            self.packet = Self::terminator_kind(p);
            self.end_of_result(p)
        } else {
            Ok(Step::More)
        }
    }

    /// [`State::PrepareFirst`]: the prepare-OK (its counts say what follows) or ERR.
    fn prepare_ok(&mut self, p: &[u8]) -> Result<Step, WalkError> {
        match p.first() {
            Some(&ERR) => Ok(self.done(true)),
            Some(&OK) => {
                let ok = packet::PrepareOk::parse(p).ok_or(WalkError::Malformed("prepare OK"))?;
                Ok(self.prepare_defs(ok.params, ok.columns))
            }
            _ => Err(WalkError::Malformed("prepare OK")),
        }
    }

    /// [`State::PrepareDefs`]: one parameter definition (while any are left), else one column definition.
    fn prepare_def(&mut self, params: u16, columns: u16) -> Step {
        if params > 0 {
            let left = params - 1;
            if left == 0 && !self.deprecate_eof {
                self.state = State::PrepareEof { columns };
                Step::More
            } else if left == 0 {
                self.prepare_defs(0, columns)
            } else {
                self.state = State::PrepareDefs { params: left, columns };
                Step::More
            }
        } else {
            let left = columns - 1;
            if left == 0 && !self.deprecate_eof {
                self.state = State::PrepareEof { columns: 0 };
                Step::More
            } else {
                self.prepare_defs(0, left)
            }
        }
    }

    /// [`State::PrepareEof`]: the EOF closing a block of definitions.
    fn prepare_eof(&mut self, p: &[u8], columns: u16) -> Result<Step, WalkError> {
        if p.first() != Some(&EOF) {
            return Err(WalkError::Malformed("prepare EOF"));
        }
        Ok(self.prepare_defs(0, columns))
    }

    fn prepare_defs(&mut self, params: u16, columns: u16) -> Step {
        if params == 0 && columns == 0 {
            self.done(false)
        } else {
            self.state = State::PrepareDefs { params, columns };
            Step::More
        }
    }

    /// [`State::FieldList`]: a column definition, ERR, or the EOF that ends the list.
    fn field(&mut self, p: &[u8], full_len: bool) -> Step {
        if p.first() == Some(&ERR) {
            self.done(true)
        } else if self.is_terminator(p, full_len) {
            self.packet = Self::terminator_kind(p);
            self.status = packet::terminal_status(p);
            self.warned |= packet::terminal_warnings(p).is_some_and(|w| w > 0);
            self.done(false)
        } else {
            Step::More
        }
    }

    /// [`State::Single`]: one OK, EOF or ERR.
    fn single(&mut self, p: &[u8]) -> Result<Step, WalkError> {
        match p.first() {
            Some(&ERR) => Ok(self.done(true)),
            Some(&OK) => {
                self.packet = Packet::Ok;
                self.status = packet::terminal_status(p);
                self.warned |= packet::terminal_warnings(p).is_some_and(|w| w > 0);
                Ok(self.done(false))
            }
            Some(&EOF) => {
                self.packet = Self::terminator_kind(p);
                self.status = packet::terminal_status(p);
                self.warned |= packet::terminal_warnings(p).is_some_and(|w| w > 0);
                Ok(self.done(false))
            }
            _ => Err(WalkError::Malformed("OK")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::ok_payload;

    fn run(expect: Expect, deprecate_eof: bool, frames: &[Vec<u8>]) -> Vec<Step> {
        let mut w = Walker::new(expect, deprecate_eof);
        frames.iter().enumerate().map(|(i, p)| w.feed(&Frame::new(i as u8 + 1, p)).unwrap()).collect()
    }

    fn eof(status: u16) -> Vec<u8> {
        let s = status.to_le_bytes();
        vec![EOF, 0, 0, s[0], s[1]]
    }

    fn ok(status: u16) -> Vec<u8> {
        ok_payload(0, 0, StatusFlags::from_bits_retain(status), 0).to_vec()
    }

    fn ok_eof_header(status: u16) -> Vec<u8> {
        let mut p = ok(status);
        p[0] = EOF;
        p
    }

    const AC: u16 = 0x0002;
    const MORE: u16 = 0x0008;
    const CURSOR: u16 = 0x0040;

    fn done(status: u16) -> Step {
        Step::Done { status: Some(StatusFlags::from_bits_retain(status)), error: false }
    }

    #[test]
    fn warnings_anywhere_in_a_response_are_noted() {
        let walk = |deprecate_eof: bool, frames: &[Vec<u8>]| {
            let mut w = Walker::new(Expect::ResultSets, deprecate_eof);
            for (i, p) in frames.iter().enumerate() {
                w.feed(&Frame::new(i as u8 + 1, p)).unwrap();
            }
            w.warned()
        };
        let warned_eof = |status: u16| {
            let s = status.to_le_bytes();
            vec![EOF, 1, 0, s[0], s[1]]
        };
        let set = |end: Vec<u8>| vec![vec![1], b"c".to_vec(), eof(AC), b"\x01a".to_vec(), end];
        assert!(!walk(false, &set(eof(AC))));
        assert!(walk(false, &set(warned_eof(AC))));
        // The first of two results warned, the second did not.
        let mut two = set(warned_eof(AC | MORE));
        two.extend(set(eof(AC)));
        assert!(walk(false, &two));
        // An OK packet's warnings (after affected rows, insert id and status), with and without DEPRECATE_EOF.
        let mut warned_ok = ok(AC);
        warned_ok[5] = 2;
        assert!(walk(false, &[warned_ok.clone()]));
        assert!(!walk(false, &[ok(AC)]));
        let mut ended = ok_eof_header(AC);
        ended[5] = 1;
        assert!(walk(true, &[vec![1], b"c".to_vec(), b"\x01a".to_vec(), ended]));
        assert_eq!(crate::packet::terminal_warnings(&warned_ok), Some(2));
        assert_eq!(crate::packet::terminal_warnings(&[OK, 0xfc]), None);
    }

    #[test]
    fn text_result_set_with_eof() {
        let frames = vec![vec![2], b"col1".to_vec(), b"col2".to_vec(), eof(AC), b"\x01a\x01b".to_vec(), eof(AC)];
        let steps = run(Expect::ResultSets, false, &frames);
        assert_eq!(steps.last(), Some(&done(AC)));
        assert!(steps[..5].iter().all(|s| *s == Step::More));
    }

    #[test]
    fn row_starting_with_fe_is_not_a_terminator() {
        // A text row whose first column is a lenenc string with an 8-byte length header.
        let mut row = vec![EOF, 9, 0, 0, 0, 0, 0, 0, 0];
        row.extend_from_slice(b"123456789");
        let frames = vec![vec![1], b"c".to_vec(), eof(AC), row, eof(AC)];
        let steps = run(Expect::ResultSets, false, &frames);
        assert_eq!(steps[3], Step::More);
        assert_eq!(steps[4], done(AC));
    }

    #[test]
    fn multi_results_and_deprecate_eof() {
        let frames = vec![
            vec![1],
            b"c".to_vec(),
            b"\x011".to_vec(),
            ok_eof_header(AC | MORE),
            ok(AC | MORE),
            vec![1],
            b"c".to_vec(),
            ok_eof_header(AC),
        ];
        let steps = run(Expect::ResultSets, true, &frames);
        assert!(steps[..7].iter().all(|s| *s == Step::More), "{steps:?}");
        assert_eq!(steps[7], done(AC));
    }

    #[test]
    fn error_mid_rows_and_first() {
        let err = packet::err_payload(1317, b"70100", "interrupted").to_vec();
        let steps = run(Expect::ResultSets, false, &[vec![1], b"c".to_vec(), eof(AC), b"\x011".to_vec(), err.clone()]);
        // The status of the column EOF is the last one the server sent.
        assert_eq!(steps[4], Step::Done { status: Some(StatusFlags::from_bits_retain(AC)), error: true });
        assert_eq!(run(Expect::ResultSets, false, &[err])[0], Step::Done { status: None, error: true });
    }

    #[test]
    fn an_error_after_earlier_results_keeps_their_status() {
        // BEGIN; INSERT …; INSERT <duplicate>: the transaction the first results opened is still open.
        const IN_TRANS: u16 = 0x0001;
        let err = packet::err_payload(1062, b"23000", "Duplicate entry").to_vec();
        let steps = run(Expect::ResultSets, true, &[ok(IN_TRANS | MORE), ok(IN_TRANS | MORE), err]);
        assert_eq!(steps[2], Step::Done { status: Some(StatusFlags::from_bits_retain(IN_TRANS | MORE)), error: true });
    }

    #[test]
    fn packet_kinds_are_reported() {
        let mut w = Walker::new(Expect::ResultSets, false);
        let kinds: Vec<Packet> = [vec![1], b"c".to_vec(), eof(AC | MORE), b"\x011".to_vec(), eof(AC | MORE), ok(AC)]
            .iter()
            .map(|p| {
                w.feed_payload(p).unwrap();
                w.packet()
            })
            .collect();
        use Packet::*;
        assert_eq!(kinds, [Data, Data, Eof, Data, Eof, Ok]);
        let mut w = Walker::new(Expect::ResultSets, true);
        w.feed_payload(&[1]).unwrap();
        w.feed_payload(b"c").unwrap();
        w.feed_payload(&ok_eof_header(AC)).unwrap();
        assert_eq!(w.packet(), Ok, "0xFE OK terminator");
    }

    #[test]
    fn cursor_open_ends_after_metadata() {
        let steps = run(Expect::ResultSets, false, &[vec![1], b"c".to_vec(), eof(AC | CURSOR)]);
        assert_eq!(steps[2], done(AC | CURSOR));
        let steps = run(Expect::ResultSets, true, &[vec![1], b"c".to_vec(), ok_eof_header(AC | CURSOR)]);
        assert_eq!(steps[2], done(AC | CURSOR));
    }

    #[test]
    fn prepare_responses() {
        let prep = |params: u16, cols: u16| {
            let mut p = vec![OK, 7, 0, 0, 0];
            p.extend_from_slice(&cols.to_le_bytes());
            p.extend_from_slice(&params.to_le_bytes());
            p.extend_from_slice(&[0, 0, 0]);
            p
        };
        let d = b"def".to_vec();
        let steps = run(Expect::Prepare, false, &[prep(2, 1), d.clone(), d.clone(), eof(AC), d.clone(), eof(AC)]);
        assert!(steps[..5].iter().all(|s| *s == Step::More));
        assert_eq!(steps[5], done(0).with_status(None));
        let steps = run(Expect::Prepare, true, &[prep(2, 1), d.clone(), d.clone(), d.clone()]);
        assert_eq!(steps[3], done(0).with_status(None));
        assert_eq!(run(Expect::Prepare, false, &[prep(0, 0)])[0], done(0).with_status(None));
        let steps = run(Expect::Prepare, false, &[prep(0, 1), d.clone(), eof(AC)]);
        assert_eq!(steps[2], done(0).with_status(None));
    }

    #[test]
    fn local_infile_then_ok() {
        let mut w = Walker::new(Expect::ResultSets, false);
        assert_eq!(w.feed(&Frame::new(1, b"\xfbfile.csv")).unwrap(), Step::LocalInfile);
        w.after_local_infile();
        assert_eq!(w.feed(&Frame::new(3, &ok(AC))).unwrap(), done(AC));
    }

    #[test]
    fn continued_row_packet_is_skipped() {
        let mut w = Walker::new(Expect::ResultSets, false);
        for p in [vec![1], b"c".to_vec(), eof(AC)] {
            w.feed(&Frame::new(1, &p)).unwrap();
        }
        let big = vec![EOF; MAX_PAYLOAD];
        assert_eq!(w.feed(&Frame::new(4, &big)).unwrap(), Step::More);
        // The tail of the large row looks like an EOF packet but is not one.
        assert_eq!(w.feed(&Frame::new(5, &eof(AC))).unwrap(), Step::More);
        assert_eq!(w.feed(&Frame::new(6, &eof(AC))).unwrap(), done(AC));
        assert_eq!(w.feed(&Frame::new(7, &eof(AC))), Err(WalkError::AfterDone));
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let mut w = Walker::new(Expect::ResultSets, false);
        assert!(w.feed(&Frame::new(1, &[])).is_err());
        let mut w = Walker::new(Expect::Prepare, false);
        assert!(w.feed(&Frame::new(1, &[OK, 1])).is_err());
        let mut w = Walker::new(Expect::ResultSets, false);
        assert!(w.feed(&Frame::new(1, &[OK, 0xFE])).is_err());
    }

    impl Step {
        fn with_status(self, status: Option<StatusFlags>) -> Step {
            match self {
                Step::Done { error, .. } => Step::Done { status, error },
                s => s,
            }
        }
    }
}
