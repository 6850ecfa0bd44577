//! PostgreSQL: organizations (creation, settings, bootstrap, stats).

use async_trait::async_trait;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use parsec_protocol::types::*;
use parsec_schema::schema::{organization, user_};

use super::*;
use crate::backend::*;

internal_from_diesel!(
    OrganizationCreateError,
    OrganizationLookupError,
    OrganizationBootstrapError
);

#[derive(Queryable)]
struct OrgRow {
    organization_id: String,
    bootstrap_token: String,
    root_verify_key: Option<Vec<u8>>,
    is_expired: bool,
    active_users_limit: Option<i64>,
    user_profile_outsider_allowed: bool,
}

impl OrgRow {
    fn into_organization(self) -> Result<Organization, Internal> {
        Ok(Organization {
            id: parse_id(&self.organization_id)?,
            bootstrap_token: self.bootstrap_token,
            root_verify_key: self.root_verify_key.as_deref().map(key32).transpose()?,
            is_expired: self.is_expired,
            active_users_limit: self.active_users_limit.map(|l| l.max(0) as u64),
            user_profile_outsider_allowed: self.user_profile_outsider_allowed,
        })
    }
}

fn limit_column(limit: Option<u64>) -> Option<i64> {
    limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX))
}

#[async_trait]
impl OrganizationBackend for PgStore {
    async fn create(
        &self,
        id: &OrganizationId,
        bootstrap_token: &str,
        active_users_limit: Option<u64>,
        user_profile_outsider_allowed: bool,
        now: DateTime,
    ) -> Result<(), OrganizationCreateError> {
        let mut conn = self.conn().await?;
        // Insert, or overwrite a not-yet-bootstrapped organization; a
        // bootstrapped one is left alone and no row comes back.
        let written: Option<i64> = diesel::sql_query(
            "INSERT INTO organization (organization_id, bootstrap_token, active_users_limit, \
             user_profile_outsider_allowed, created_on) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (organization_id) DO UPDATE SET bootstrap_token = EXCLUDED.bootstrap_token, \
             active_users_limit = EXCLUDED.active_users_limit, \
             user_profile_outsider_allowed = EXCLUDED.user_profile_outsider_allowed, \
             is_expired = FALSE, expired_on = NULL, created_on = EXCLUDED.created_on \
             WHERE organization.root_verify_key IS NULL RETURNING _id",
        )
        .bind::<diesel::sql_types::Text, _>(id.as_str())
        .bind::<diesel::sql_types::Text, _>(bootstrap_token)
        .bind::<diesel::sql_types::Nullable<diesel::sql_types::BigInt>, _>(limit_column(active_users_limit))
        .bind::<diesel::sql_types::Bool, _>(user_profile_outsider_allowed)
        .bind::<diesel::sql_types::Timestamptz, _>(ts(now))
        .get_result::<IdRow>(&mut conn)
        .await
        .optional()?
        .map(|r| r._id);
        match written {
            Some(_) => Ok(()),
            None => Err(OrganizationCreateError::AlreadyExists),
        }
    }

    async fn get(&self, id: &OrganizationId) -> Result<Organization, OrganizationLookupError> {
        let mut conn = self.conn().await?;
        let row: Option<OrgRow> = organization::table
            .filter(organization::organization_id.eq(id.as_str()))
            .select((
                organization::organization_id,
                organization::bootstrap_token,
                organization::root_verify_key,
                organization::is_expired,
                organization::active_users_limit,
                organization::user_profile_outsider_allowed,
            ))
            .first(&mut conn)
            .await
            .optional()?;
        Ok(row.ok_or(OrganizationLookupError::NotFound)?.into_organization()?)
    }

    async fn update(&self, id: &OrganizationId, patch: &OrganizationPatch) -> Result<(), OrganizationLookupError> {
        let mut conn = self.conn().await?;
        let now = ts(DateTime::now());
        let target = organization::table.filter(organization::organization_id.eq(id.as_str()));
        let updated = diesel::update(target)
            .set((
                patch.is_expired.map(|e| organization::is_expired.eq(e)),
                patch.is_expired.map(|e| organization::expired_on.eq(e.then_some(now))),
                patch
                    .user_profile_outsider_allowed
                    .map(|v| organization::user_profile_outsider_allowed.eq(v)),
                patch
                    .active_users_limit
                    .map(|l| organization::active_users_limit.eq(limit_column(l))),
                // Keeps the statement valid when the patch is empty.
                organization::organization_id.eq(organization::organization_id),
            ))
            .execute(&mut conn)
            .await?;
        if updated == 0 {
            return Err(OrganizationLookupError::NotFound);
        }
        Ok(())
    }

    async fn stats(&self, id: &OrganizationId) -> Result<OrganizationStats, OrganizationLookupError> {
        let mut conn = self.conn().await?;
        let org = org_pk(&mut conn, id, false)
            .await?
            .ok_or(OrganizationLookupError::NotFound)?;
        let now = ts(DateTime::now());
        let users: Vec<(String, Option<chrono::DateTime<chrono::Utc>>)> = user_::table
            .filter(user_::organization.eq(org))
            .select((user_::profile, user_::revoked_on))
            .load(&mut conn)
            .await?;
        let users_per_profile_detail = UserProfile::ALL
            .iter()
            .map(|&profile| {
                let of_profile = users.iter().filter(|(p, _)| p == profile.as_str());
                let revoked = of_profile.clone().filter(|(_, r)| r.is_some_and(|r| r <= now)).count() as u64;
                ProfileCount {
                    profile,
                    active: of_profile.count() as u64 - revoked,
                    revoked,
                }
            })
            .collect();
        let active_users = users.iter().filter(|(_, r)| !r.is_some_and(|r| r <= now)).count() as u64;
        let data: DataStats = diesel::sql_query(
            "SELECT (SELECT COUNT(*) FROM realm WHERE organization = $1) AS realms, \
             (SELECT COALESCE(SUM(size), 0)::BIGINT FROM block WHERE organization = $1) AS data_size, \
             (SELECT COALESCE(SUM(a.size), 0)::BIGINT FROM vlob_atom a JOIN vlob v ON a.vlob = v._id \
              WHERE v.organization = $1) AS metadata_size",
        )
        .bind::<diesel::sql_types::BigInt, _>(org)
        .get_result(&mut conn)
        .await?;
        Ok(OrganizationStats {
            data_size: data.data_size.max(0) as u64,
            metadata_size: data.metadata_size.max(0) as u64,
            realms: data.realms.max(0) as u64,
            users: users.len() as u64,
            active_users,
            users_per_profile_detail,
        })
    }

    async fn bootstrap(&self, id: &OrganizationId, data: BootstrapData) -> Result<(), OrganizationBootstrapError> {
        let mut conn = self.conn().await?;
        conn.transaction::<_, OrganizationBootstrapError, _>(async |c| {
            // The organization row lock makes the bootstrap happen once.
            let row: Option<(i64, String, Option<Vec<u8>>)> = organization::table
                .filter(organization::organization_id.eq(id.as_str()))
                .select((
                    organization::_id,
                    organization::bootstrap_token,
                    organization::root_verify_key,
                ))
                .for_no_key_update()
                .first(c)
                .await
                .optional()?;
            let (org, token, rvk) = row.ok_or(OrganizationBootstrapError::NotFound)?;
            if rvk.is_some() {
                return Err(OrganizationBootstrapError::AlreadyBootstrapped);
            }
            if token != data.bootstrap_token {
                return Err(OrganizationBootstrapError::NotFound);
            }
            match super::user::insert_user_and_device(c, org, &data.user, &data.first_device, data.now).await {
                Ok(()) => {}
                Err(UserCreateError::ActiveUsersLimitReached) => {
                    return Err(OrganizationBootstrapError::ActiveUsersLimitReached);
                }
                Err(UserCreateError::Internal(e)) => return Err(e.into()),
                Err(e) => return Err(Internal(anyhow::anyhow!("bootstrap of an empty organization: {e}")).into()),
            }
            diesel::update(organization::table.filter(organization::_id.eq(org)))
                .set((
                    organization::root_verify_key.eq(data.root_verify_key.to_vec()),
                    organization::bootstrapped_on.eq(ts(data.now)),
                ))
                .execute(c)
                .await?;
            Ok(())
        })
        .await
    }

    async fn ping(&self) -> Result<(), Internal> {
        let mut conn = self.conn().await?;
        diesel::sql_query("SELECT 1").execute(&mut conn).await?;
        Ok(())
    }
}

/// One `_id` column.
#[derive(QueryableByName)]
pub(crate) struct IdRow {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub _id: i64,
}

/// Sizes for the organization stats (PG counts every stored vlob atom,
/// re-encrypted copies included, as the reference does).
#[derive(QueryableByName)]
struct DataStats {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    realms: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    data_size: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    metadata_size: i64,
}
