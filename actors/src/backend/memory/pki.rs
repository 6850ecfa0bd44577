//! The `MOCKED` store's PKI enrollments.
//!
//! Enrollments live in their organization's state, under the same lock as
//! users, so that submission (which looks at users) and acceptance (which
//! creates one) are atomic with the user checks, as PG's user/device
//! advisory lock makes them. Every operation checks everything before
//! writing anything: a refused `force`d submission does not cancel the
//! pending one (PG rolls the cancellation back).

use async_trait::async_trait;
use parsec_protocol::types::*;

use super::{MemoryStore, OrgState, vanished};
use crate::backend::*;

fn find_mut(o: &mut OrgState, id: Uuid) -> Option<&mut PkiEnrollment> {
    o.pki.iter_mut().rev().find(|e| e.enrollment_id == id)
}

#[async_trait]
impl PkiBackend for MemoryStore {
    async fn submit(
        &self,
        org: &OrganizationId,
        s: PkiEnrollmentSubmission,
    ) -> Result<PkiEnrollmentSubmitted, PkiEnrollmentSubmitError> {
        use PkiEnrollmentSubmitError as E;
        let mut orgs = self.lock();
        let o = orgs.get_mut(org).ok_or_else(vanished)?;
        if o.pki.iter().any(|e| e.enrollment_id == s.enrollment_id) {
            return Err(E::IdAlreadyUsed);
        }
        // Only the certificate's latest enrollment tells its current state.
        let latest = o
            .pki
            .iter()
            .rposition(|e| e.submitter_der_x509_certificate == s.submitter_der_x509_certificate);
        let mut cancel = None;
        if let Some(i) = latest {
            match &o.pki[i].state {
                PkiEnrollmentState::Submitted if s.force => cancel = Some(i),
                PkiEnrollmentState::Submitted => return Err(E::AlreadySubmitted(o.pki[i].submitted_on)),
                PkiEnrollmentState::Rejected { .. } | PkiEnrollmentState::Cancelled { .. } => {}
                PkiEnrollmentState::Accepted { accepted, .. } => {
                    // Enrolled again only once that user has a revocation
                    // (even one taking effect later, as PG checks it).
                    let revoked = o.users.get(&accepted.user_id()).is_none_or(|u| u.revoked_on.is_some());
                    if !revoked {
                        return Err(E::AlreadyEnrolled);
                    }
                }
            }
        }
        // Clients older than 2.8.3 send no e-mail. PG compares it exactly
        // with the e-mails of users without any revocation.
        if let Some(email) = s
            .submitter_der_x509_certificate_email
            .as_deref()
            .filter(|e| !e.is_empty())
        {
            let used = o
                .users
                .values()
                .any(|u| u.revoked_on.is_none() && u.human_handle.as_ref().is_some_and(|h| h.email == email));
            if used {
                return Err(E::EmailAlreadyUsed);
            }
        }
        if let Some(i) = cancel {
            o.pki[i].state = PkiEnrollmentState::Cancelled {
                cancelled_on: s.submitted_on,
            };
        }
        o.pki.push(PkiEnrollment {
            enrollment_id: s.enrollment_id,
            submitter_der_x509_certificate: s.submitter_der_x509_certificate,
            submit_payload_signature: s.submit_payload_signature,
            submit_payload: s.submit_payload,
            submitted_on: s.submitted_on,
            state: PkiEnrollmentState::Submitted,
        });
        Ok(PkiEnrollmentSubmitted {
            cancelled_previous: cancel.is_some(),
        })
    }

    async fn info(&self, org: &OrganizationId, enrollment_id: Uuid) -> Result<PkiEnrollment, PkiEnrollmentLookupError> {
        let orgs = self.lock();
        let o = orgs.get(org).ok_or(PkiEnrollmentLookupError::NotFound)?;
        o.pki
            .iter()
            .find(|e| e.enrollment_id == enrollment_id)
            .cloned()
            .ok_or(PkiEnrollmentLookupError::NotFound)
    }

    async fn list_submitted(&self, org: &OrganizationId) -> Result<Vec<PkiEnrollment>, Internal> {
        let orgs = self.lock();
        let o = orgs.get(org).ok_or_else(vanished)?;
        Ok(o.pki
            .iter()
            .filter(|e| e.state == PkiEnrollmentState::Submitted)
            .cloned()
            .collect())
    }

    async fn reject(
        &self,
        org: &OrganizationId,
        enrollment_id: Uuid,
        rejected_on: DateTime,
    ) -> Result<(), PkiEnrollmentRejectError> {
        let mut orgs = self.lock();
        let o = orgs.get_mut(org).ok_or_else(vanished)?;
        let e = find_mut(o, enrollment_id).ok_or(PkiEnrollmentRejectError::NotFound)?;
        if e.state != PkiEnrollmentState::Submitted {
            return Err(PkiEnrollmentRejectError::NoLongerAvailable);
        }
        e.state = PkiEnrollmentState::Rejected { rejected_on };
        Ok(())
    }

    async fn accept(&self, org: &OrganizationId, a: PkiEnrollmentAcceptance) -> Result<(), PkiEnrollmentAcceptError> {
        use PkiEnrollmentAcceptError as E;
        let mut orgs = self.lock();
        let o = orgs.get_mut(org).ok_or_else(|| E::CreateUser(vanished().into()))?;
        match o.pki.iter().rev().find(|e| e.enrollment_id == a.enrollment_id) {
            None => return Err(E::NotFound),
            Some(e) if e.state != PkiEnrollmentState::Submitted => return Err(E::NoLongerAvailable),
            Some(_) => {}
        }
        let accepted = a.first_device.device_id.clone();
        super::user::create_user(o, a.user, a.first_device, a.accepted_on).map_err(E::CreateUser)?;
        if let Some(e) = find_mut(o, a.enrollment_id) {
            e.state = PkiEnrollmentState::Accepted {
                accepted_on: a.accepted_on,
                accepter_der_x509_certificate: a.accepter_der_x509_certificate,
                accept_payload_signature: a.accept_payload_signature,
                accept_payload: a.accept_payload,
                accepter: a.accepter,
                accepted,
            };
        }
        Ok(())
    }
}
