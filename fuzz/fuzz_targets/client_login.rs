//! Client handshake response: parsed under several capability offers without panic; a login re-sent to a backend parses back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rwsplit_wire::auth::{self, BackendLogin, ServerGreeting};
use rwsplit_wire::CapabilityFlags as C;

/// The nonce of the backend greeting the re-sent login is scrambled for.
const NONCE: &[u8; 20] = b"0123456789abcdefghij";

fuzz_target!(|data: &[u8]| {
    let supported = auth::supported_capabilities();
    let offers = [
        supported,
        auth::client_offer(supported),
        auth::client_offer(C::from_bits_retain(0xF7FE)),
        C::CLIENT_PROTOCOL_41 | C::CLIENT_SECURE_CONNECTION,
        C::all(),
    ];
    for offered in offers {
        let Some(login) = auth::parse_client_login(data, offered) else { continue };
        assert_eq!(login.capabilities, login.requested & offered);
        assert!(login.capabilities.contains(C::CLIENT_PROTOCOL_41));
        assert!(login.database.as_ref().is_none_or(|d| !d.is_empty()));
        assert!(login.attributes.windows(2).all(|w| w[0] <= w[1]), "attributes are sorted");
        resend(&login);
    }
});

/// The proxy logs in to a backend with the client's account, database and attributes: that payload must
/// parse back to the same login, with a scramble the password verifies.
fn resend(login: &auth::ClientLogin) {
    for plugin in [auth::NATIVE, auth::CACHING_SHA2] {
        let greeting = ServerGreeting {
            version: "5.5.5-10.11.6-MariaDB".into(),
            capabilities: auth::supported_capabilities(),
            nonce: NONCE.to_vec(),
            plugin: plugin.into(),
            connection_id: 7,
        };
        let backend = BackendLogin {
            capabilities: login.capabilities,
            collation: login.collation,
            user: &login.user,
            password: b"apppw",
            database: login.database.as_deref(),
            attributes: &login.attributes,
        };
        let (payload, used) = auth::handshake_response(&greeting, &backend);
        assert_eq!(used, plugin);
        let back = auth::parse_client_login(&payload, auth::supported_capabilities())
            .unwrap_or_else(|| panic!("the proxy's own login does not parse: {payload:02x?}"));
        assert_eq!(back.user, login.user);
        assert_eq!(back.database, login.database);
        assert_eq!(back.collation, login.collation);
        assert_eq!(back.attributes, login.attributes);
        assert_eq!(back.plugin, plugin);
        assert!(auth::verify_scramble(plugin, NONCE, b"apppw", &back.auth_response));
    }
}
