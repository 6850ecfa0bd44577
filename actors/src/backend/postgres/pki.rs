//! PostgreSQL PKI enrollments.
//!
//! Submission, rejection and acceptance lock the organization row first
//! ([`org_pk`] with `lock`, the user/device lock), so that their checks
//! against users and against the certificate's earlier enrollments cannot
//! race another instance, as the memory store's single lock makes them.
//! Every check runs before any write: a refused `force`d submission leaves
//! the pending enrollment alone.

use async_trait::async_trait;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bytea, Nullable, Text, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use parsec_protocol::types::*;
use parsec_schema::schema::{device, pki_enrollment, user_};

use super::{PgStore, device_pk, dt, internal_from_diesel, is_unique_violation, org_pk, parse_id, ts};
use crate::backend::*;

internal_from_diesel!(
    PkiEnrollmentSubmitError,
    PkiEnrollmentLookupError,
    PkiEnrollmentRejectError
);

/// Acceptance has no `Internal` of its own: storage failures are the user
/// creation's.
impl From<diesel::result::Error> for PkiEnrollmentAcceptError {
    fn from(e: diesel::result::Error) -> Self {
        PkiEnrollmentAcceptError::CreateUser(UserCreateError::Internal(e.into()))
    }
}

impl From<Internal> for PkiEnrollmentAcceptError {
    fn from(e: Internal) -> Self {
        PkiEnrollmentAcceptError::CreateUser(UserCreateError::Internal(e))
    }
}

fn vanished(org: &OrganizationId) -> Internal {
    Internal(anyhow::anyhow!("organization {org} vanished from the database"))
}

const SUBMITTED: &str = "SUBMITTED";
const ACCEPTED: &str = "ACCEPTED";
const REJECTED: &str = "REJECTED";
const CANCELLED: &str = "CANCELLED";

// ------------------------------------------------------------------ reads

/// An enrollment with the device ids its acceptance refers to.
#[derive(QueryableByName)]
struct EnrollmentRow {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    enrollment_id: Uuid,
    #[diesel(sql_type = Bytea)]
    submitter_der_x509_certificate: Vec<u8>,
    #[diesel(sql_type = Bytea)]
    submit_payload_signature: Vec<u8>,
    #[diesel(sql_type = Bytea)]
    submit_payload: Vec<u8>,
    #[diesel(sql_type = Timestamptz)]
    submitted_on: chrono::DateTime<chrono::Utc>,
    #[diesel(sql_type = Text)]
    enrollment_state: String,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    info_on: Option<chrono::DateTime<chrono::Utc>>,
    #[diesel(sql_type = Nullable<Bytea>)]
    accepter_der_x509_certificate: Option<Vec<u8>>,
    #[diesel(sql_type = Nullable<Bytea>)]
    accept_payload_signature: Option<Vec<u8>>,
    #[diesel(sql_type = Nullable<Bytea>)]
    accept_payload: Option<Vec<u8>>,
    /// The accepting admin's device id.
    #[diesel(sql_type = Nullable<Text>)]
    accepter: Option<String>,
    /// The device id the acceptance created.
    #[diesel(sql_type = Nullable<Text>)]
    accepted: Option<String>,
}

/// Followed by a condition on `p` (`$1` is the organization's row id).
const SELECT_ENROLLMENTS: &str = "\
    SELECT p.enrollment_id, p.submitter_der_x509_certificate, p.submit_payload_signature, \
           p.submit_payload, p.submitted_on, p.enrollment_state, p.info_on, \
           p.accepter_der_x509_certificate, p.accept_payload_signature, p.accept_payload, \
           a.device_id AS accepter, d.device_id AS accepted \
    FROM pki_enrollment p \
    LEFT JOIN device a ON a._id = p.accepter \
    LEFT JOIN device d ON d._id = p.submitter_accepted_device \
    WHERE p.organization = $1";

fn corrupt(what: &str, id: Uuid) -> Internal {
    Internal(anyhow::anyhow!("PKI enrollment {id}: {what} in database"))
}

impl EnrollmentRow {
    fn enrollment(self) -> Result<PkiEnrollment, Internal> {
        let id = self.enrollment_id;
        let on = || self.info_on.map(dt).ok_or_else(|| corrupt("state without date", id));
        let state = match self.enrollment_state.as_str() {
            SUBMITTED => PkiEnrollmentState::Submitted,
            REJECTED => PkiEnrollmentState::Rejected { rejected_on: on()? },
            CANCELLED => PkiEnrollmentState::Cancelled { cancelled_on: on()? },
            ACCEPTED => {
                let missing = || corrupt("incomplete acceptance", id);
                PkiEnrollmentState::Accepted {
                    accepted_on: on()?,
                    accepter_der_x509_certificate: self.accepter_der_x509_certificate.ok_or_else(missing)?,
                    accept_payload_signature: self.accept_payload_signature.ok_or_else(missing)?,
                    accept_payload: self.accept_payload.ok_or_else(missing)?,
                    accepter: parse_id(&self.accepter.ok_or_else(missing)?)?,
                    accepted: parse_id(&self.accepted.ok_or_else(missing)?)?,
                }
            }
            other => return Err(corrupt(&format!("state `{other}`"), id)),
        };
        Ok(PkiEnrollment {
            enrollment_id: id,
            submitter_der_x509_certificate: self.submitter_der_x509_certificate,
            submit_payload_signature: self.submit_payload_signature,
            submit_payload: self.submit_payload,
            submitted_on: dt(self.submitted_on),
            state,
        })
    }
}

/// The state of enrollment `id` and its row id, if any.
async fn state_of(conn: &mut AsyncPgConnection, org_pk: i64, id: Uuid) -> QueryResult<Option<(i64, String)>> {
    use pki_enrollment::dsl as p;
    p::pki_enrollment
        .filter(p::organization.eq(org_pk))
        .filter(p::enrollment_id.eq(id))
        .select((p::_id, p::enrollment_state))
        .first(conn)
        .await
        .optional()
}

/// The row id of a device that must exist (the requester's, or one just created).
async fn device_row(conn: &mut AsyncPgConnection, org_pk: i64, id: &DeviceId) -> Result<i64, Internal> {
    let (pk, _) = device_pk(conn, org_pk, id)
        .await?
        .ok_or_else(|| Internal(anyhow::anyhow!("device {id} not found")))?;
    Ok(pk)
}

// ------------------------------------------------------------------- trait

#[async_trait]
impl PkiBackend for PgStore {
    async fn submit(
        &self,
        org: &OrganizationId,
        s: PkiEnrollmentSubmission,
    ) -> Result<PkiEnrollmentSubmitted, PkiEnrollmentSubmitError> {
        use PkiEnrollmentSubmitError as E;
        use pki_enrollment::dsl as p;
        let der_sha1 = sha1(&s.submitter_der_x509_certificate).to_vec();
        let mut conn = self.conn().await?;
        conn.transaction::<_, E, _>(async |c| {
            let org_pk = org_pk(c, org, true).await?.ok_or_else(|| vanished(org))?;
            if state_of(c, org_pk, s.enrollment_id).await?.is_some() {
                return Err(E::IdAlreadyUsed);
            }
            // Only the certificate's latest enrollment tells its current
            // state. The hash finds it; the certificate itself decides.
            let latest = p::pki_enrollment
                .filter(p::organization.eq(org_pk))
                .filter(p::submitter_der_x509_certificate_sha1.eq(&der_sha1))
                .filter(p::submitter_der_x509_certificate.eq(&s.submitter_der_x509_certificate))
                .order(p::_id.desc())
                .select((
                    p::_id,
                    p::enrollment_state,
                    p::submitted_on,
                    p::submitter_accepted_device,
                ))
                .first::<(i64, String, chrono::DateTime<chrono::Utc>, Option<i64>)>(c)
                .await
                .optional()?;
            let mut cancel = None;
            if let Some((row, state, submitted_on, accepted_device)) = latest {
                match state.as_str() {
                    SUBMITTED if s.force => cancel = Some(row),
                    SUBMITTED => return Err(E::AlreadySubmitted(dt(submitted_on))),
                    ACCEPTED => {
                        // Enrolled again only once that user has a
                        // revocation (even one taking effect later).
                        let revoked = match accepted_device {
                            None => true,
                            Some(accepted) => device::table
                                .inner_join(user_::table.on(user_::_id.eq(device::user_)))
                                .filter(device::_id.eq(accepted))
                                .select(user_::revoked_on.is_not_null())
                                .first::<bool>(c)
                                .await
                                .optional()?
                                .unwrap_or(true),
                        };
                        if !revoked {
                            return Err(E::AlreadyEnrolled);
                        }
                    }
                    _ => {}
                }
            }
            // Clients older than 2.8.3 send no e-mail; an empty one is none.
            // Compared exactly with the e-mails of users without revocation.
            if let Some(email) = s
                .submitter_der_x509_certificate_email
                .as_deref()
                .filter(|e| !e.is_empty())
            {
                let holders = user_::table
                    .filter(user_::organization.eq(org_pk))
                    .filter(user_::human_email.eq(email))
                    .filter(user_::revoked_on.is_null());
                if diesel::select(diesel::dsl::exists(holders))
                    .get_result::<bool>(c)
                    .await?
                {
                    return Err(E::EmailAlreadyUsed);
                }
            }
            if let Some(row) = cancel {
                diesel::update(p::pki_enrollment.find(row))
                    .set((p::enrollment_state.eq(CANCELLED), p::info_on.eq(ts(s.submitted_on))))
                    .execute(c)
                    .await?;
            }
            let inserted = diesel::insert_into(p::pki_enrollment)
                .values((
                    p::organization.eq(org_pk),
                    p::enrollment_id.eq(s.enrollment_id),
                    p::submitter_der_x509_certificate.eq(&s.submitter_der_x509_certificate),
                    p::submitter_der_x509_certificate_sha1.eq(&der_sha1),
                    p::submit_payload_signature.eq(&s.submit_payload_signature),
                    p::submit_payload.eq(&s.submit_payload),
                    p::submitted_on.eq(ts(s.submitted_on)),
                    p::enrollment_state.eq(SUBMITTED),
                ))
                .execute(c)
                .await;
            match inserted {
                Ok(_) => Ok(PkiEnrollmentSubmitted {
                    cancelled_previous: cancel.is_some(),
                }),
                // Checked above under the lock; the constraint backs it up.
                Err(e) if is_unique_violation(&e) => Err(E::IdAlreadyUsed),
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    async fn info(&self, org: &OrganizationId, enrollment_id: Uuid) -> Result<PkiEnrollment, PkiEnrollmentLookupError> {
        let mut conn = self.conn().await?;
        conn.transaction::<_, PkiEnrollmentLookupError, _>(async |c| {
            let org_pk = org_pk(c, org, false).await?.ok_or(PkiEnrollmentLookupError::NotFound)?;
            let row = diesel::sql_query(format!("{SELECT_ENROLLMENTS} AND p.enrollment_id = $2"))
                .bind::<BigInt, _>(org_pk)
                .bind::<diesel::sql_types::Uuid, _>(enrollment_id)
                .get_result::<EnrollmentRow>(c)
                .await
                .optional()?
                .ok_or(PkiEnrollmentLookupError::NotFound)?;
            Ok(row.enrollment()?)
        })
        .await
    }

    async fn list_submitted(&self, org: &OrganizationId) -> Result<Vec<PkiEnrollment>, Internal> {
        let mut conn = self.conn().await?;
        conn.transaction::<_, Internal, _>(async |c| {
            let org_pk = org_pk(c, org, false).await?.ok_or_else(|| vanished(org))?;
            let rows = diesel::sql_query(format!(
                "{SELECT_ENROLLMENTS} AND p.enrollment_state = '{SUBMITTED}' ORDER BY p._id"
            ))
            .bind::<BigInt, _>(org_pk)
            .load::<EnrollmentRow>(c)
            .await?;
            rows.into_iter().map(EnrollmentRow::enrollment).collect()
        })
        .await
    }

    async fn reject(
        &self,
        org: &OrganizationId,
        enrollment_id: Uuid,
        rejected_on: DateTime,
    ) -> Result<(), PkiEnrollmentRejectError> {
        use pki_enrollment::dsl as p;
        let mut conn = self.conn().await?;
        conn.transaction::<_, PkiEnrollmentRejectError, _>(async |c| {
            let org_pk = org_pk(c, org, true).await?.ok_or_else(|| vanished(org))?;
            let (row, state) = state_of(c, org_pk, enrollment_id)
                .await?
                .ok_or(PkiEnrollmentRejectError::NotFound)?;
            if state != SUBMITTED {
                return Err(PkiEnrollmentRejectError::NoLongerAvailable);
            }
            diesel::update(p::pki_enrollment.find(row))
                .set((p::enrollment_state.eq(REJECTED), p::info_on.eq(ts(rejected_on))))
                .execute(c)
                .await?;
            Ok(())
        })
        .await
    }

    async fn accept(&self, org: &OrganizationId, a: PkiEnrollmentAcceptance) -> Result<(), PkiEnrollmentAcceptError> {
        use PkiEnrollmentAcceptError as E;
        use pki_enrollment::dsl as p;
        let mut conn = self.conn().await?;
        conn.transaction::<_, E, _>(async |c| {
            let org_pk = org_pk(c, org, true).await?.ok_or_else(|| vanished(org))?;
            let (row, state) = state_of(c, org_pk, a.enrollment_id).await?.ok_or(E::NotFound)?;
            if state != SUBMITTED {
                return Err(E::NoLongerAvailable);
            }
            super::user::insert_user_and_device(c, org_pk, &a.user, &a.first_device, a.accepted_on)
                .await
                .map_err(E::CreateUser)?;
            let accepter = device_row(c, org_pk, &a.accepter).await?;
            let accepted = device_row(c, org_pk, &a.first_device.device_id).await?;
            diesel::update(p::pki_enrollment.find(row))
                .set((
                    p::enrollment_state.eq(ACCEPTED),
                    p::info_on.eq(ts(a.accepted_on)),
                    p::accepter_der_x509_certificate.eq(&a.accepter_der_x509_certificate),
                    p::accept_payload_signature.eq(&a.accept_payload_signature),
                    p::accept_payload.eq(&a.accept_payload),
                    p::accepter.eq(accepter),
                    p::submitter_accepted_device.eq(accepted),
                ))
                .execute(c)
                .await?;
            Ok(())
        })
        .await
    }
}

// ------------------------------------------------------------------- SHA-1

/// SHA-1 (FIPS 180-4) of a certificate: the lookup key of its earlier
/// enrollments, never trusted alone (the certificate is compared too), so
/// this is an index, not security.
fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x6745_2301, 0xEFCD_AB89, 0x98BA_DCFE, 0x1032_5476, 0xC3D2_E1F0];
    let bits = (data.len() as u64).wrapping_mul(8);
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bits.to_be_bytes());
    for block in msg.chunks_exact(64) {
        let mut w = [0u32; 80];
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..20 => ((b & c) | (!b & d), 0x5A82_7999),
                20..40 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..60 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            (e, d, c, b, a) = (d, c, b.rotate_left(30), a, t);
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 20];
    for (chunk, x) in out.chunks_exact_mut(4).zip(h) {
        chunk.copy_from_slice(&x.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::sha1;

    #[test]
    fn sha1_known_answers() {
        let hex = |d: &[u8]| hex::encode(sha1(d));
        assert_eq!(hex(b""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(hex(b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(
            hex(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
        );
        assert_eq!(hex(&[b'a'; 1_000_000]), "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
    }
}
