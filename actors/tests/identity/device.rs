//! `device_create` (commands.md §3.4).

use parsec_protocol::certif::{self, DeviceCertificate};
use parsec_protocol::cmds::authenticated as req;
use parsec_protocol::types::*;
use parsec_protocol::value::Value;

use crate::common::*;

/// A new device `device_id`, certified by `author` at `t`; returns the
/// full and redacted contents.
fn new_device(author: &Dev, device_id: &str, t: DateTime) -> (DeviceCertificate, DeviceCertificate) {
    let full = DeviceCertificate {
        author: Some(author.device_id()),
        timestamp: t,
        device_id: DeviceId::parse(device_id).unwrap(),
        device_label: Some(DeviceLabel::parse("phone").unwrap()),
        verify_key: new_key().verifying_key().to_bytes(),
    };
    let redacted = DeviceCertificate {
        device_label: None,
        ..full.clone()
    };
    (full, redacted)
}

fn signed(by: &Dev, (full, redacted): &(DeviceCertificate, DeviceCertificate)) -> req::DeviceCreate {
    req::DeviceCreate {
        device_certificate: by.sign(certif::build::device(full)),
        redacted_device_certificate: by.sign(certif::build::device(redacted)),
    }
}

#[actix_web::test]
async fn any_profile_adds_devices_to_its_own_user() {
    let (env, alice) = Env::start().await;
    let otto = env
        .create_user(&alice, "otto@laptop", None, UserProfile::Outsider)
        .await;
    let key = new_key();
    let (mut full, mut redacted) = new_device(&otto, "otto@phone", now());
    full.verify_key = key.verifying_key().to_bytes();
    redacted.verify_key = full.verify_key;
    let r = signed(&otto, &(full, redacted));
    let rep = env.device_create(&otto, r.clone()).await;
    assert_eq!(rep, Value::Map(vec![(Value::from("status"), Value::from("ok"))]));

    let rep = env.user_get(&alice, &otto.user_id()).await;
    let devices = field(&rep, "device_certificates").as_array().unwrap();
    assert_eq!(devices.len(), 2);
    assert!(devices.contains(&Value::Binary(r.device_certificate.clone())));
    // otto@laptop certified otto@phone: alice's and otto's device certificates.
    let trustchain = field(&rep, "trustchain");
    assert_eq!(field(trustchain, "devices").as_array().unwrap().len(), 2);

    // The new device's key is the one trusted for it from now on.
    let phone = env.dev(DeviceId::parse("otto@phone").unwrap(), UserProfile::Outsider, key);
    let r2 = signed(&phone, &new_device(&phone, "otto@tablet", now()));
    assert_eq!(status(&env.device_create(&phone, r2).await), "ok");

    assert_reason(
        &env.device_create(&otto, r).await,
        "already_exists",
        "Device `otto@phone` already exists",
    );
}

#[actix_web::test]
async fn refusals_in_reference_order() {
    let (env, alice) = Env::start().await;
    let bob = env.create_user(&alice, "bob@laptop", None, UserProfile::Standard).await;

    // Signature, then author.
    let mut r = signed(&bob, &new_device(&bob, "bob@phone", now()));
    r.redacted_device_certificate = signed(&alice, &new_device(&bob, "bob@phone", now())).redacted_device_certificate;
    assert_reason(
        &env.device_create(&bob, r).await,
        "invalid_certification",
        "Invalid certification data (Signature was forged or corrupt).",
    );
    let r = signed(&bob, &new_device(&alice, "bob@phone", now()));
    assert_reason(
        &env.device_create(&bob, r).await,
        "invalid_certification",
        "Invalid certification data (Invalid author: expected `bob@laptop`, got `alice@dev1`).",
    );

    // Ballpark, before the user check.
    for t in [at(-71), at(51)] {
        let r = signed(&bob, &new_device(&bob, "alice@phone", t));
        assert_reason(
            &env.device_create(&bob, r).await,
            "invalid_certification",
            "Invalid timestamp in certification.",
        );
    }

    // Own user only, before the redacted checks.
    let (full, mut redacted) = new_device(&bob, "alice@phone", now());
    redacted.device_label = full.device_label.clone();
    let r = signed(&bob, &(full, redacted));
    assert_reason(
        &env.device_create(&bob, r).await,
        "bad_user_id",
        "Device must be handled by it own user.",
    );

    let (full, mut redacted) = new_device(&bob, "bob@phone", now());
    redacted.verify_key = [7; 32];
    assert_reason(
        &env.device_create(&bob, signed(&bob, &(full, redacted))).await,
        "invalid_data",
        "Redacted Device certificate differs from Device certificate.",
    );
    let (full, mut redacted) = new_device(&bob, "bob@phone", now());
    redacted.device_label = full.device_label.clone();
    assert_reason(
        &env.device_create(&bob, signed(&bob, &(full, redacted))).await,
        "invalid_data",
        "Redacted Device certificate must not contain a device_label field.",
    );

    // An existing device, even the requester's own.
    let r = signed(&bob, &new_device(&bob, "bob@laptop", now()));
    assert_reason(
        &env.device_create(&bob, r).await,
        "already_exists",
        "Device `bob@laptop` already exists",
    );
}
