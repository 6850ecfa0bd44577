-- The Parsec server's metadata. Every public identifier is unique within its
-- organization only; rows reference each other through bigint surrogate keys.
-- Invariants that must hold across server instances are constraints here, not
-- in-process checks.

CREATE TABLE organization (
    _id BIGSERIAL PRIMARY KEY,
    organization_id VARCHAR(32) NOT NULL UNIQUE,
    bootstrap_token TEXT NOT NULL,
    root_verify_key BYTEA CHECK (octet_length(root_verify_key) = 32),
    is_expired BOOLEAN NOT NULL DEFAULT FALSE,
    expired_on TIMESTAMPTZ,
    user_profile_outsider_allowed BOOLEAN NOT NULL,
    active_users_limit BIGINT CHECK (active_users_limit >= 0),
    created_on TIMESTAMPTZ NOT NULL,
    bootstrapped_on TIMESTAMPTZ,
    -- Bootstrapped exactly once: the root key and its date come together.
    CHECK ((root_verify_key IS NULL) = (bootstrapped_on IS NULL))
);

CREATE TABLE user_ (
    _id BIGSERIAL PRIMARY KEY,
    organization BIGINT NOT NULL REFERENCES organization (_id) ON DELETE CASCADE,
    user_id VARCHAR(32) NOT NULL,
    profile TEXT NOT NULL CHECK (profile IN ('ADMIN', 'STANDARD', 'OUTSIDER')),
    human_email VARCHAR(254),
    human_label VARCHAR(254),
    user_certificate BYTEA NOT NULL,
    redacted_user_certificate BYTEA NOT NULL,
    user_certifier BIGINT,
    created_on TIMESTAMPTZ NOT NULL,
    revoked_on TIMESTAMPTZ,
    revoked_user_certificate BYTEA,
    revoked_user_certifier BIGINT,
    -- Next index of the user's message inbox; the row lock orders deliveries.
    messages_count BIGINT NOT NULL DEFAULT 0,
    UNIQUE (organization, user_id),
    CHECK ((human_email IS NULL) = (human_label IS NULL)),
    CHECK ((revoked_on IS NULL) = (revoked_user_certificate IS NULL))
);
-- At most one non-revoked user per human e-mail.
CREATE UNIQUE INDEX user_active_human ON user_ (organization, human_email)
    WHERE human_email IS NOT NULL AND revoked_on IS NULL;

CREATE TABLE device (
    _id BIGSERIAL PRIMARY KEY,
    organization BIGINT NOT NULL REFERENCES organization (_id) ON DELETE CASCADE,
    user_ BIGINT NOT NULL REFERENCES user_ (_id),
    device_id VARCHAR(65) NOT NULL,
    device_label TEXT,
    verify_key BYTEA NOT NULL CHECK (octet_length(verify_key) = 32),
    device_certificate BYTEA NOT NULL,
    redacted_device_certificate BYTEA NOT NULL,
    device_certifier BIGINT REFERENCES device (_id),
    created_on TIMESTAMPTZ NOT NULL,
    UNIQUE (organization, device_id)
);
CREATE INDEX device_user ON device (user_);

ALTER TABLE user_ ADD FOREIGN KEY (user_certifier) REFERENCES device (_id);
ALTER TABLE user_ ADD FOREIGN KEY (revoked_user_certifier) REFERENCES device (_id);

CREATE TABLE invitation (
    _id BIGSERIAL PRIMARY KEY,
    organization BIGINT NOT NULL REFERENCES organization (_id) ON DELETE CASCADE,
    token UUID NOT NULL,
    type TEXT NOT NULL CHECK (type IN ('USER', 'DEVICE')),
    greeter BIGINT NOT NULL REFERENCES user_ (_id),
    claimer_email TEXT,
    created_on TIMESTAMPTZ NOT NULL,
    deleted_on TIMESTAMPTZ,
    deleted_reason TEXT CHECK (deleted_reason IN ('FINISHED', 'CANCELLED', 'ROTTEN')),
    conduit_state TEXT NOT NULL DEFAULT '1_WAIT_PEERS',
    conduit_greeter_payload BYTEA,
    conduit_claimer_payload BYTEA,
    -- Claimer connections currently open, on any server instance.
    claimer_connections INTEGER NOT NULL DEFAULT 0 CHECK (claimer_connections >= 0),
    UNIQUE (organization, token),
    CHECK ((type = 'USER') = (claimer_email IS NOT NULL)),
    CHECK ((deleted_on IS NULL) = (deleted_reason IS NULL))
);
CREATE INDEX invitation_greeter ON invitation (greeter) WHERE deleted_on IS NULL;

CREATE TABLE pki_enrollment (
    _id BIGSERIAL PRIMARY KEY,
    organization BIGINT NOT NULL REFERENCES organization (_id) ON DELETE CASCADE,
    enrollment_id UUID NOT NULL,
    submitter_der_x509_certificate BYTEA NOT NULL,
    submitter_der_x509_certificate_sha1 BYTEA NOT NULL,
    submit_payload_signature BYTEA NOT NULL,
    submit_payload BYTEA NOT NULL,
    submitted_on TIMESTAMPTZ NOT NULL,
    enrollment_state TEXT NOT NULL
        CHECK (enrollment_state IN ('SUBMITTED', 'ACCEPTED', 'REJECTED', 'CANCELLED')),
    info_on TIMESTAMPTZ,
    accepter_der_x509_certificate BYTEA,
    accept_payload_signature BYTEA,
    accept_payload BYTEA,
    accepter BIGINT REFERENCES device (_id),
    submitter_accepted_device BIGINT REFERENCES device (_id),
    UNIQUE (organization, enrollment_id)
);
CREATE INDEX pki_enrollment_submitter ON pki_enrollment (organization, submitter_der_x509_certificate_sha1);

CREATE TABLE message (
    _id BIGSERIAL PRIMARY KEY,
    organization BIGINT NOT NULL REFERENCES organization (_id) ON DELETE CASCADE,
    recipient BIGINT NOT NULL REFERENCES user_ (_id),
    index BIGINT NOT NULL CHECK (index >= 1),
    sender BIGINT NOT NULL REFERENCES device (_id),
    timestamp TIMESTAMPTZ NOT NULL,
    body BYTEA NOT NULL,
    UNIQUE (recipient, index)
);

CREATE TABLE realm (
    _id BIGSERIAL PRIMARY KEY,
    organization BIGINT NOT NULL REFERENCES organization (_id) ON DELETE CASCADE,
    realm_id UUID NOT NULL,
    encryption_revision INTEGER NOT NULL DEFAULT 1 CHECK (encryption_revision >= 1),
    maintenance_type TEXT CHECK (maintenance_type IN ('REENCRYPTION', 'GARBAGE_COLLECTION')),
    maintenance_started_by BIGINT REFERENCES device (_id),
    maintenance_started_on TIMESTAMPTZ,
    -- Last checkpoint handed out; the realm row lock orders concurrent writers.
    checkpoint BIGINT NOT NULL DEFAULT 0,
    UNIQUE (organization, realm_id)
);

-- Append-only role history; the current role is the latest certificate.
CREATE TABLE realm_user_role (
    _id BIGSERIAL PRIMARY KEY,
    realm BIGINT NOT NULL REFERENCES realm (_id),
    user_ BIGINT NOT NULL REFERENCES user_ (_id),
    role TEXT CHECK (role IN ('OWNER', 'MANAGER', 'CONTRIBUTOR', 'READER')),
    certificate BYTEA NOT NULL,
    certified_by BIGINT NOT NULL REFERENCES device (_id),
    certified_on TIMESTAMPTZ NOT NULL,
    UNIQUE (realm, user_, certified_on)
);
CREATE INDEX realm_user_role_current ON realm_user_role (realm, user_, certified_on DESC);
CREATE INDEX realm_user_role_user ON realm_user_role (user_);

CREATE TABLE realm_user_change (
    realm BIGINT NOT NULL REFERENCES realm (_id),
    user_ BIGINT NOT NULL REFERENCES user_ (_id),
    last_role_change TIMESTAMPTZ,
    last_vlob_update TIMESTAMPTZ,
    PRIMARY KEY (realm, user_)
);

-- A vlob belongs to one realm; its id is unique per organization.
CREATE TABLE vlob (
    _id BIGSERIAL PRIMARY KEY,
    organization BIGINT NOT NULL REFERENCES organization (_id) ON DELETE CASCADE,
    realm BIGINT NOT NULL REFERENCES realm (_id),
    vlob_id UUID NOT NULL,
    UNIQUE (organization, vlob_id)
);
CREATE INDEX vlob_realm ON vlob (realm);

-- One version of a vlob at one encryption revision.
CREATE TABLE vlob_atom (
    _id BIGSERIAL PRIMARY KEY,
    vlob BIGINT NOT NULL REFERENCES vlob (_id),
    encryption_revision INTEGER NOT NULL,
    version INTEGER NOT NULL CHECK (version >= 1),
    blob BYTEA NOT NULL,
    size INTEGER NOT NULL,
    author BIGINT NOT NULL REFERENCES device (_id),
    created_on TIMESTAMPTZ NOT NULL,
    UNIQUE (vlob, encryption_revision, version)
);

-- The realm's change log: one row per vlob_create / vlob_update.
CREATE TABLE realm_vlob_update (
    _id BIGSERIAL PRIMARY KEY,
    realm BIGINT NOT NULL REFERENCES realm (_id),
    index BIGINT NOT NULL CHECK (index >= 1),
    vlob_atom BIGINT NOT NULL REFERENCES vlob_atom (_id),
    UNIQUE (realm, index)
);

CREATE TABLE block (
    _id BIGSERIAL PRIMARY KEY,
    organization BIGINT NOT NULL REFERENCES organization (_id) ON DELETE CASCADE,
    block_id UUID NOT NULL,
    realm BIGINT NOT NULL REFERENCES realm (_id),
    author BIGINT NOT NULL REFERENCES device (_id),
    size INTEGER NOT NULL,
    created_on TIMESTAMPTZ NOT NULL,
    UNIQUE (organization, block_id)
);

-- The POSTGRESQL blockstore: keyed by the organization's public id, on
-- purpose independent of the metadata tables.
CREATE TABLE block_data (
    _id BIGSERIAL PRIMARY KEY,
    organization_id VARCHAR(32) NOT NULL,
    block_id UUID NOT NULL,
    data BYTEA NOT NULL,
    UNIQUE (organization_id, block_id)
);

-- Durable, ordered record of events, read by every instance. NOTIFY only
-- wakes the readers up; a missed or coalesced notification loses nothing.
CREATE TABLE event_log (
    _id BIGSERIAL PRIMARY KEY,
    organization_id VARCHAR(32) NOT NULL,
    payload BYTEA NOT NULL,
    created_on TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX event_log_created_on ON event_log (created_on);
