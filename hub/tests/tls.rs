//! With `tls_cert_pem` and `tls_key_pem` the hub serves HTTPS itself
//! (rustls), tested with a self-signed certificate made by openssl; a client
//! that trusts it gets the same contract, and plain HTTP to it gets nothing.

mod support;

use std::sync::Arc;

use support::*;
use ureq::tls::{Certificate, RootCerts, TlsConfig};

#[test]
fn the_hub_serves_https_with_its_certificate_and_the_same_contract() {
    let keys = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(keys.path());
    let hub = TestHub::start_with(
        Backend::Redb,
        &format!(
            "tls_cert_pem = \"{}\"\ntls_key_pem = \"{}\"",
            cert.display(),
            key.display()
        ),
    );
    let trusted = Certificate::from_pem(&std::fs::read(&cert).unwrap()).unwrap();
    let trusting: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .tls_config(
            TlsConfig::builder()
                .root_certs(RootCerts::Specific(Arc::new(vec![trusted])))
                .build(),
        )
        .build()
        .into();

    assert!(hub.url.starts_with("https://127.0.0.1:"), "{}", hub.url);
    let health = answer(trusting.get(&format!("{}/health", hub.url)).call());
    let id = user_id(70);
    let created = answer(
        trusting
            .post(&format!("{}/users/{id}/CreateUser", hub.url))
            .header("Content-Type", "application/json")
            .header("Authorization", &format!("Bearer {}", acme_token()))
            .header("X-API-Key", ACME_KEY)
            .send(body(&id, "tls@example.com")),
    );
    let untrusting = agent().get(&format!("{}/health", hub.url)).call();
    let plain = agent().get(&hub.url.replace("https://", "http://")).call();

    assert_eq!(health.status, 200);
    assert_eq!(created.status, 201);
    assert!(
        untrusting.is_err(),
        "a client that does not trust the certificate must fail"
    );
    assert!(plain.is_err() || plain.unwrap().status() != 200);
}

#[test]
fn a_tls_config_with_a_missing_or_unreadable_pem_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let base = config_text(dir.path(), "");
    for (extra, key) in [
        (
            "tls_cert_pem = \"nowhere.pem\"\ntls_key_pem = \"nowhere.pem\"",
            "tls_cert_pem",
        ),
        ("tls_cert_pem = \"ed25519.pub.pem\"", "tls_key_pem"),
        (
            "tls_cert_pem = \"ed25519.pub.pem\"\ntls_key_pem = \"ed25519.pem\"",
            "tls_cert_pem",
        ),
    ] {
        let text = base.replacen(
            "data_dir = \"data\"\n",
            &format!("data_dir = \"data\"\n{extra}\n"),
            1,
        );
        match spkey_hub::config::Config::parse(&text, dir.path()) {
            Ok(_) => panic!("accepted: {extra}"),
            Err(error) => assert!(error.0.contains(key), "{key}: {}", error.0),
        }
    }
}
