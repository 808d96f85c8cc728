//! Server greeting and auth-switch request: parsed without panic; the proxy's own greeting, login and auth switch built from them parse back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rwsplit_classify::Dialect;
use rwsplit_wire::auth::{self, BackendLogin};
use rwsplit_wire::CapabilityFlags as C;

fuzz_target!(|data: &[u8]| {
    if let Some(g) = auth::parse_greeting(data) {
        assert!(g.nonce.len() <= 20);
        // The proxy reads the backend's version for the classifier's dialect.
        let _ = Dialect::for_server(&g.version);
        // What the proxy offers clients, in the greeting it sends them.
        let offered = auth::client_offer(g.capabilities);
        assert!((auth::supported_capabilities() | C::CLIENT_COMPRESS).contains(offered));
        let scramble = auth::new_scramble();
        let ours = auth::greeting(&g.version, g.connection_id, &scramble, 45, offered);
        let back = auth::parse_greeting(&ours).expect("the proxy's own greeting parses");
        assert_eq!(
            (back.version.as_str(), back.connection_id, back.capabilities),
            (g.version.as_str(), g.connection_id, offered)
        );
        if offered.contains(C::CLIENT_SECURE_CONNECTION) {
            assert_eq!(back.nonce, scramble);
        }
        // The proxy's login to this backend parses as a login and verifies against its nonce.
        let attrs = vec![("_client_name".to_string(), "fuzz".to_string())];
        let login = BackendLogin {
            capabilities: auth::supported_capabilities(),
            collation: 45,
            user: "app",
            password: b"apppw",
            database: Some("shop"),
            attributes: &attrs,
        };
        let (payload, plugin) = auth::handshake_response(&g, &login);
        let parsed = auth::parse_client_login(&payload, auth::supported_capabilities())
            .unwrap_or_else(|| panic!("the proxy's login does not parse: {payload:02x?}"));
        assert_eq!((parsed.user.as_str(), parsed.database.as_deref()), ("app", Some("shop")));
        assert!(auth::verify_scramble(&plugin, &g.nonce, b"apppw", &parsed.auth_response));
    }
    if let Some((plugin, nonce)) = auth::parse_auth_switch(data) {
        assert!(!plugin.contains('\0'));
        let _ = auth::expected_scramble(&plugin, &nonce, b"apppw");
        if let Ok(nonce) = <[u8; 20]>::try_from(&nonce[..]) {
            let request = auth::auth_switch_request(&plugin, &nonce);
            assert_eq!(auth::parse_auth_switch(&request), Some((plugin, nonce.to_vec())));
        }
    }
});
