//! COM_CHANGE_USER payload: parsed under each capability combination without panic; what it parses re-encodes and parses back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rwsplit::session::{parse_change_user, ChangeUser};
use rwsplit_wire::CapabilityFlags as C;

fuzz_target!(|data: &[u8]| {
    // Selector byte: CLIENT_SECURE_CONNECTION (bit 0), CLIENT_PLUGIN_AUTH (bit 1), CLIENT_CONNECT_ATTRS (bit 2).
    let Some((&selector, payload)) = data.split_first() else { return };
    let mut caps = C::CLIENT_PROTOCOL_41;
    for (bit, flag) in [(1, C::CLIENT_SECURE_CONNECTION), (2, C::CLIENT_PLUGIN_AUTH), (4, C::CLIENT_CONNECT_ATTRS)] {
        if selector & bit != 0 {
            caps |= flag;
        }
    }
    let Some(cu) = parse_change_user(payload, caps) else { return };
    assert!(!cu.user.contains('\0') && !cu.plugin.contains('\0'));
    assert!(cu.database.as_ref().is_none_or(|d| !d.is_empty() && !d.contains('\0')));
    assert!(cu.auth_response.len() < payload.len());
    let again = parse_change_user(&encode(&cu, caps), caps).expect("a re-encoded COM_CHANGE_USER parses");
    assert_eq!(
        (&again.user, &again.auth_response, &again.database, again.collation, &again.plugin),
        (&cu.user, &cu.auth_response, &cu.database, cu.collation, &cu.plugin)
    );
});

/// The packet a client would send for these fields (the plugin name only after a collation, as clients do).
fn encode(cu: &ChangeUser, caps: C) -> Vec<u8> {
    let mut p = vec![0x11];
    p.extend_from_slice(cu.user.as_bytes());
    p.push(0);
    if caps.contains(C::CLIENT_SECURE_CONNECTION) {
        p.push(u8::try_from(cu.auth_response.len()).expect("a one-byte length"));
        p.extend_from_slice(&cu.auth_response);
    } else {
        p.extend_from_slice(&cu.auth_response);
        p.push(0);
    }
    p.extend_from_slice(cu.database.as_deref().unwrap_or_default().as_bytes());
    p.push(0);
    if let Some(collation) = cu.collation {
        p.extend_from_slice(&collation.to_le_bytes());
        if caps.contains(C::CLIENT_PLUGIN_AUTH) {
            p.extend_from_slice(cu.plugin.as_bytes());
            p.push(0);
        }
    }
    p
}
