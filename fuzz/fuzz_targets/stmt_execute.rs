//! COM_STMT_EXECUTE parameters: the proxy's type insertion never panics, and what it sends carries the types it says.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use rwsplit::session::with_param_types;

fuzz_target!(|data: &[u8]| {
    // Header: parameter count (u16), mode (bit 0: the proxy knows types from an earlier execute, which follow,
    // 2 bytes each; bits 1-2: what the backend last saw: nothing, those types, or others); then the packet.
    let (Some(count), Some(&mode)) = (data.get(..2), data.get(2)) else { return };
    let params = u16::from_le_bytes([count[0], count[1]]);
    let mut rest = &data[3..];
    let known = if mode & 1 != 0 && rest.len() >= 2 * usize::from(params) {
        let (types, after) = rest.split_at(2 * usize::from(params));
        rest = after;
        Some(Bytes::copy_from_slice(types))
    } else {
        None
    };
    let seen = match (mode >> 1) & 3 {
        1 => known.clone(),
        2 => known.as_ref().map(|k| k.iter().map(|b| !b).collect::<Bytes>()),
        _ => None,
    };
    let payload = rest;
    let flag_pos = 10 + usize::from(params).div_ceil(8);
    match with_param_types(payload, params, known.as_ref(), seen.as_ref()) {
        Ok((out, types)) => {
            let bound = payload[flag_pos];
            if bound == 1 {
                assert_eq!(&out[..], payload);
                let sent = &payload[flag_pos + 1..flag_pos + 1 + 2 * usize::from(params)];
                assert_eq!(types.as_deref(), Some(sent));
            } else if let Some(k) = known.as_ref().filter(|k| seen.as_ref() != Some(*k)) {
                assert_eq!(out.len(), payload.len() + k.len());
                assert_eq!(types.as_ref(), Some(k));
                // What the proxy sends now says the types are bound, and carries them.
                let (again, carried) = with_param_types(&out, params, None, None).expect("the packet the proxy built");
                assert_eq!((&again[..], carried.as_ref()), (&out[..], Some(k)));
            } else {
                assert_eq!((&out[..], types), (payload, None));
            }
        }
        Err(e) => {
            assert_eq!(e.code, 1210);
            let short = payload.len() <= flag_pos;
            assert!(short || payload[flag_pos] == 1, "refused a packet that needs no types");
        }
    }
});
