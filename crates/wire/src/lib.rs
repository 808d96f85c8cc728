//! MySQL wire protocol pieces for rwsplit. This crate has no policy: it knows packets, not routing.
//!
//! - [`frame`]: the `tokio-util` codec. One physical packet (≤ 16 MiB payload) per [`Frame`], kept with its
//!   4-byte header so the proxy can forward it verbatim; continuation and sequence handling live here.
//! - [`packet`]: small readers and builders for the packets the proxy itself must understand or produce
//!   (OK / ERR / EOF status, command bytes, length-encoded integers).
//! - [`walk`]: the response walker. It finds the end of any response (result sets, multi-results, prepare
//!   responses, cursors, LOCAL INFILE) from packet headers and status flags only, never decoding rows.
//! - [`auth`]: scrambles and verification for `mysql_native_password` and `caching_sha2_password`, the
//!   server greeting the proxy sends, and the client side of a backend handshake.
//! - [`compress`]: the compressed protocol (`CLIENT_COMPRESS`, zlib), a pure codec between the socket's bytes
//!   and the ordinary packet stream.
//!
//! Packet types, scrambles and RSA come from `mysql_common`; the codec is ours because the proxy needs raw,
//! unassembled frames with their headers (mysql_common's `PacketCodec` reassembles payloads and would force a
//! decode/re-encode on the data path).
#![forbid(unsafe_code)]

pub mod auth;
pub mod compress;
pub mod frame;
pub mod packet;
pub mod walk;

pub use frame::{Frame, FrameCodec, MAX_PAYLOAD};
pub use mysql_common::constants::{CapabilityFlags, StatusFlags};
