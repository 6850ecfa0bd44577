//! PKI enrollment (commands.md §11): a would-be user submits an X.509
//! identity over the anonymous HTTP route (`pki_enrollment_submit`, then
//! polls `pki_enrollment_info`); an admin lists, rejects or accepts it, and
//! accepting creates the user and its first device as `user_create` does.
//!
//! Accepts: [`SubmitPkiEnrollment`], [`GetPkiEnrollment`],
//! [`ListPkiEnrollments`], [`RejectPkiEnrollment`], [`AcceptPkiEnrollment`].
//!
//! X.509 certificates and payload signatures are opaque to the server: it
//! only checks that the payloads decode (certificates.md §5) and, on accept,
//! the Parsec certificates. Nothing links the accept payload to the
//! certificates; the reference does not cross-check them either. Every
//! change emits `pki_enrollment.updated`, once stored.

use std::sync::Arc;

use actix::prelude::*;
use parsec_protocol::certif::{self, PkiEnrollmentAcceptPayload, PkiEnrollmentSubmitPayload};
use parsec_protocol::cmds;
use parsec_protocol::cmds::anonymous::{PkiEnrollmentInfo, PkiEnrollmentSubmit};
use parsec_protocol::cmds::authenticated::{PkiEnrollmentAccept, PkiEnrollmentReject};
use parsec_protocol::types::*;
use parsec_protocol::value::{self, Value};

use crate::backend::*;
use crate::client::AuthenticatedClient;
use crate::event::Event;
use crate::user::{NewUserCertificates, not_admin, validate_new_user};
use crate::{Actors, backend_handler};

/// Owns the PKI enrollment backend.
pub struct PkiActor {
    backend: Arc<dyn PkiBackend>,
}

impl PkiActor {
    pub fn new(backend: Arc<dyn PkiBackend>) -> Self {
        Self { backend }
    }
}

impl Actor for PkiActor {
    type Context = Context<Self>;
}

/// Records a submission (payload already decoded).
#[derive(Message)]
#[rtype(result = "Result<PkiEnrollmentSubmitted, PkiEnrollmentSubmitError>")]
pub struct SubmitPkiEnrollment {
    pub org: OrganizationId,
    pub submission: PkiEnrollmentSubmission,
}

/// Reads one enrollment.
#[derive(Message)]
#[rtype(result = "Result<PkiEnrollment, PkiEnrollmentLookupError>")]
pub struct GetPkiEnrollment {
    pub org: OrganizationId,
    pub enrollment_id: Uuid,
}

/// Pending enrollments.
#[derive(Message)]
#[rtype(result = "Result<Vec<PkiEnrollment>, Internal>")]
pub struct ListPkiEnrollments {
    pub org: OrganizationId,
}

/// Rejects a pending enrollment.
#[derive(Message)]
#[rtype(result = "Result<(), PkiEnrollmentRejectError>")]
pub struct RejectPkiEnrollment {
    pub org: OrganizationId,
    pub enrollment_id: Uuid,
    pub rejected_on: DateTime,
}

/// Accepts a pending enrollment by creating its user (certificates already checked).
#[derive(Message)]
#[rtype(result = "Result<(), PkiEnrollmentAcceptError>")]
pub struct AcceptPkiEnrollment {
    pub org: OrganizationId,
    pub acceptance: PkiEnrollmentAcceptance,
}

backend_handler!(PkiActor, SubmitPkiEnrollment, |b, m| b
    .submit(&m.org, m.submission)
    .await);
backend_handler!(PkiActor, GetPkiEnrollment, |b, m| b.info(&m.org, m.enrollment_id).await);
backend_handler!(PkiActor, ListPkiEnrollments, |b, m| b.list_submitted(&m.org).await);
backend_handler!(PkiActor, RejectPkiEnrollment, |b, m| b
    .reject(&m.org, m.enrollment_id, m.rejected_on)
    .await);
backend_handler!(PkiActor, AcceptPkiEnrollment, |b, m| b
    .accept(&m.org, m.acceptance)
    .await);

fn bare(status: &str) -> Value {
    cmds::status(status, vec![])
}

/// `not_found` and `no_longer_available` carry an empty reason (the
/// reference prints exceptions raised without a message).
fn empty_reason(status: &str) -> Value {
    cmds::status_reason(status, "")
}

fn updated(actors: &Actors, org: &OrganizationId) {
    actors.publish(Event::PkiEnrollmentUpdated { org: org.clone() });
}

/// `pki_enrollment_submit` (commands.md §11.1), on the anonymous route of `org`.
pub async fn submit(actors: &Actors, org: &OrganizationId, req: PkiEnrollmentSubmit) -> Result<Value, Internal> {
    if let Err(e) = certif::load_pki_payload::<PkiEnrollmentSubmitPayload>(&req.submit_payload) {
        return Ok(cmds::status_reason("invalid_payload_data", e.to_string()));
    }
    let submitted_on = DateTime::now();
    let submission = PkiEnrollmentSubmission {
        enrollment_id: req.enrollment_id,
        force: req.force,
        submitter_der_x509_certificate: req.submitter_der_x509_certificate,
        submitter_der_x509_certificate_email: req.submitter_der_x509_certificate_email,
        submit_payload_signature: req.submit_payload_signature,
        submit_payload: req.submit_payload,
        submitted_on,
    };
    use PkiEnrollmentSubmitError as E;
    Ok(
        match actors
            .pki
            .send(SubmitPkiEnrollment {
                org: org.clone(),
                submission,
            })
            .await?
        {
            Ok(done) => {
                // One event for the cancelled enrollment, one for the new one.
                if done.cancelled_previous {
                    updated(actors, org);
                }
                updated(actors, org);
                cmds::ok(vec![("submitted_on", submitted_on.to_value())])
            }
            Err(E::AlreadySubmitted(earlier)) => {
                cmds::status("already_submitted", vec![("submitted_on", earlier.to_value())])
            }
            Err(E::IdAlreadyUsed) => bare("enrollment_id_already_used"),
            Err(E::EmailAlreadyUsed) => bare("email_already_used"),
            Err(E::AlreadyEnrolled) => bare("already_enrolled"),
            Err(E::Internal(e)) => return Err(e),
        },
    )
}

/// `pki_enrollment_info` (commands.md §11.2), on the anonymous route of `org`.
pub async fn info(actors: &Actors, org: &OrganizationId, req: PkiEnrollmentInfo) -> Result<Value, Internal> {
    let msg = GetPkiEnrollment {
        org: org.clone(),
        enrollment_id: req.enrollment_id,
    };
    let e = match actors.pki.send(msg).await? {
        Ok(e) => e,
        Err(PkiEnrollmentLookupError::NotFound) => return Ok(empty_reason("not_found")),
        Err(PkiEnrollmentLookupError::Internal(e)) => return Err(e),
    };
    let (status, mut fields) = match e.state {
        PkiEnrollmentState::Submitted => (PkiEnrollmentStatus::Submitted, vec![]),
        PkiEnrollmentState::Accepted {
            accepted_on,
            accepter_der_x509_certificate,
            accept_payload_signature,
            accept_payload,
            ..
        } => (
            PkiEnrollmentStatus::Accepted,
            vec![
                ("accepted_on", accepted_on.to_value()),
                (
                    "accepter_der_x509_certificate",
                    Value::Binary(accepter_der_x509_certificate),
                ),
                ("accept_payload_signature", Value::Binary(accept_payload_signature)),
                ("accept_payload", Value::Binary(accept_payload)),
            ],
        ),
        PkiEnrollmentState::Rejected { rejected_on } => (
            PkiEnrollmentStatus::Rejected,
            vec![("rejected_on", rejected_on.to_value())],
        ),
        PkiEnrollmentState::Cancelled { cancelled_on } => (
            PkiEnrollmentStatus::Cancelled,
            vec![("cancelled_on", cancelled_on.to_value())],
        ),
    };
    let mut all = vec![
        ("enrollment_status", status.to_value()),
        ("submitted_on", e.submitted_on.to_value()),
    ];
    all.append(&mut fields);
    Ok(cmds::ok(all))
}

/// `pki_enrollment_list` (commands.md §11.3). ADMIN only.
pub async fn list(actors: &Actors, client: &AuthenticatedClient) -> Result<Value, Internal> {
    if client.profile != UserProfile::Admin {
        return Ok(not_admin(client));
    }
    let pending = actors
        .pki
        .send(ListPkiEnrollments {
            org: client.org.clone(),
        })
        .await??;
    let enrollments = pending
        .into_iter()
        .map(|e| {
            value::map([
                ("enrollment_id", uuid_value(e.enrollment_id)),
                ("submitted_on", e.submitted_on.to_value()),
                (
                    "submitter_der_x509_certificate",
                    Value::Binary(e.submitter_der_x509_certificate),
                ),
                ("submit_payload_signature", Value::Binary(e.submit_payload_signature)),
                ("submit_payload", Value::Binary(e.submit_payload)),
            ])
        })
        .collect();
    Ok(cmds::ok(vec![("enrollments", Value::Array(enrollments))]))
}

/// `pki_enrollment_reject` (commands.md §11.4). ADMIN only.
pub async fn reject(
    actors: &Actors,
    client: &AuthenticatedClient,
    req: PkiEnrollmentReject,
) -> Result<Value, Internal> {
    if client.profile != UserProfile::Admin {
        return Ok(not_admin(client));
    }
    let msg = RejectPkiEnrollment {
        org: client.org.clone(),
        enrollment_id: req.enrollment_id,
        rejected_on: DateTime::now(),
    };
    Ok(match actors.pki.send(msg).await? {
        Ok(()) => {
            updated(actors, &client.org);
            cmds::ok(vec![])
        }
        Err(PkiEnrollmentRejectError::NotFound) => empty_reason("not_found"),
        Err(PkiEnrollmentRejectError::NoLongerAvailable) => empty_reason("no_longer_available"),
        Err(PkiEnrollmentRejectError::Internal(e)) => return Err(e),
    })
}

/// `pki_enrollment_accept` (commands.md §11.5). ADMIN only.
pub async fn accept(
    actors: &Actors,
    client: &AuthenticatedClient,
    req: PkiEnrollmentAccept,
) -> Result<Value, Internal> {
    if client.profile != UserProfile::Admin {
        return Ok(not_admin(client));
    }
    if let Err(e) = certif::load_pki_payload::<PkiEnrollmentAcceptPayload>(&req.accept_payload) {
        return Ok(cmds::status_reason("invalid_payload_data", e.to_string()));
    }
    let certs = NewUserCertificates {
        user_certificate: req.user_certificate,
        device_certificate: req.device_certificate,
        redacted_user_certificate: req.redacted_user_certificate,
        redacted_device_certificate: req.redacted_device_certificate,
    };
    let now = DateTime::now();
    let (user, first_device) = match validate_new_user(client, certs, now) {
        Ok(checked) => checked,
        Err(rep) => return Ok(rep),
    };
    let acceptance = PkiEnrollmentAcceptance {
        enrollment_id: req.enrollment_id,
        accepter_der_x509_certificate: req.accepter_der_x509_certificate,
        accept_payload_signature: req.accept_payload_signature,
        accept_payload: req.accept_payload,
        accepted_on: now,
        accepter: client.device_id.clone(),
        user,
        first_device,
    };
    use PkiEnrollmentAcceptError as E;
    Ok(
        match actors
            .pki
            .send(AcceptPkiEnrollment {
                org: client.org.clone(),
                acceptance,
            })
            .await?
        {
            Ok(()) => {
                updated(actors, &client.org);
                cmds::ok(vec![])
            }
            Err(E::NotFound) => empty_reason("not_found"),
            Err(E::NoLongerAvailable) => empty_reason("no_longer_available"),
            Err(E::CreateUser(UserCreateError::ActiveUsersLimitReached)) => bare("active_users_limit_reached"),
            // Unlike `user_create`, the reference gives no reason here.
            Err(E::CreateUser(UserCreateError::UserAlreadyExists(_) | UserCreateError::HumanAlreadyExists(_))) => {
                empty_reason("already_exists")
            }
            Err(E::CreateUser(UserCreateError::Internal(e))) => return Err(e),
        },
    )
}
