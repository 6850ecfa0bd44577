// @generated automatically by Diesel CLI.

diesel::table! {
    block (_id) {
        _id -> Int8,
        organization -> Int8,
        block_id -> Uuid,
        realm -> Int8,
        author -> Int8,
        size -> Int4,
        created_on -> Timestamptz,
    }
}

diesel::table! {
    block_data (_id) {
        _id -> Int8,
        #[max_length = 32]
        organization_id -> Varchar,
        block_id -> Uuid,
        data -> Bytea,
    }
}

diesel::table! {
    device (_id) {
        _id -> Int8,
        organization -> Int8,
        user_ -> Int8,
        #[max_length = 65]
        device_id -> Varchar,
        device_label -> Nullable<Text>,
        verify_key -> Bytea,
        device_certificate -> Bytea,
        redacted_device_certificate -> Bytea,
        device_certifier -> Nullable<Int8>,
        created_on -> Timestamptz,
    }
}

diesel::table! {
    event_log (_id) {
        _id -> Int8,
        #[max_length = 32]
        organization_id -> Varchar,
        payload -> Bytea,
        created_on -> Timestamptz,
    }
}

diesel::table! {
    invitation (_id) {
        _id -> Int8,
        organization -> Int8,
        token -> Uuid,
        #[sql_name = "type"]
        type_ -> Text,
        greeter -> Int8,
        claimer_email -> Nullable<Text>,
        created_on -> Timestamptz,
        deleted_on -> Nullable<Timestamptz>,
        deleted_reason -> Nullable<Text>,
        conduit_state -> Text,
        conduit_greeter_payload -> Nullable<Bytea>,
        conduit_claimer_payload -> Nullable<Bytea>,
        claimer_connections -> Int4,
    }
}

diesel::table! {
    message (_id) {
        _id -> Int8,
        organization -> Int8,
        recipient -> Int8,
        index -> Int8,
        sender -> Int8,
        timestamp -> Timestamptz,
        body -> Bytea,
    }
}

diesel::table! {
    organization (_id) {
        _id -> Int8,
        #[max_length = 32]
        organization_id -> Varchar,
        bootstrap_token -> Text,
        root_verify_key -> Nullable<Bytea>,
        is_expired -> Bool,
        expired_on -> Nullable<Timestamptz>,
        user_profile_outsider_allowed -> Bool,
        active_users_limit -> Nullable<Int8>,
        created_on -> Timestamptz,
        bootstrapped_on -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    pki_enrollment (_id) {
        _id -> Int8,
        organization -> Int8,
        enrollment_id -> Uuid,
        submitter_der_x509_certificate -> Bytea,
        submitter_der_x509_certificate_sha1 -> Bytea,
        submit_payload_signature -> Bytea,
        submit_payload -> Bytea,
        submitted_on -> Timestamptz,
        enrollment_state -> Text,
        info_on -> Nullable<Timestamptz>,
        accepter_der_x509_certificate -> Nullable<Bytea>,
        accept_payload_signature -> Nullable<Bytea>,
        accept_payload -> Nullable<Bytea>,
        accepter -> Nullable<Int8>,
        submitter_accepted_device -> Nullable<Int8>,
    }
}

diesel::table! {
    realm (_id) {
        _id -> Int8,
        organization -> Int8,
        realm_id -> Uuid,
        encryption_revision -> Int4,
        maintenance_type -> Nullable<Text>,
        maintenance_started_by -> Nullable<Int8>,
        maintenance_started_on -> Nullable<Timestamptz>,
        checkpoint -> Int8,
    }
}

diesel::table! {
    realm_user_change (realm, user_) {
        realm -> Int8,
        user_ -> Int8,
        last_role_change -> Nullable<Timestamptz>,
        last_vlob_update -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    realm_user_role (_id) {
        _id -> Int8,
        realm -> Int8,
        user_ -> Int8,
        role -> Nullable<Text>,
        certificate -> Bytea,
        certified_by -> Int8,
        certified_on -> Timestamptz,
    }
}

diesel::table! {
    realm_vlob_update (_id) {
        _id -> Int8,
        realm -> Int8,
        index -> Int8,
        vlob_atom -> Int8,
    }
}

diesel::table! {
    user_ (_id) {
        _id -> Int8,
        organization -> Int8,
        #[max_length = 32]
        user_id -> Varchar,
        profile -> Text,
        #[max_length = 254]
        human_email -> Nullable<Varchar>,
        #[max_length = 254]
        human_label -> Nullable<Varchar>,
        user_certificate -> Bytea,
        redacted_user_certificate -> Bytea,
        user_certifier -> Nullable<Int8>,
        created_on -> Timestamptz,
        revoked_on -> Nullable<Timestamptz>,
        revoked_user_certificate -> Nullable<Bytea>,
        revoked_user_certifier -> Nullable<Int8>,
        messages_count -> Int8,
    }
}

diesel::table! {
    vlob (_id) {
        _id -> Int8,
        organization -> Int8,
        realm -> Int8,
        vlob_id -> Uuid,
    }
}

diesel::table! {
    vlob_atom (_id) {
        _id -> Int8,
        vlob -> Int8,
        encryption_revision -> Int4,
        version -> Int4,
        blob -> Bytea,
        size -> Int4,
        author -> Int8,
        created_on -> Timestamptz,
    }
}

diesel::joinable!(block -> organization (organization));
diesel::joinable!(device -> organization (organization));
diesel::joinable!(invitation -> organization (organization));
diesel::joinable!(invitation -> user_ (greeter));
diesel::joinable!(message -> device (sender));
diesel::joinable!(message -> organization (organization));
diesel::joinable!(message -> user_ (recipient));
diesel::joinable!(pki_enrollment -> organization (organization));
diesel::joinable!(realm -> device (maintenance_started_by));
diesel::joinable!(realm -> organization (organization));
diesel::joinable!(realm_user_change -> realm (realm));
diesel::joinable!(realm_user_change -> user_ (user_));
diesel::joinable!(realm_user_role -> device (certified_by));
diesel::joinable!(realm_user_role -> realm (realm));
diesel::joinable!(realm_user_role -> user_ (user_));
diesel::joinable!(user_ -> organization (organization));
diesel::joinable!(vlob -> organization (organization));

diesel::allow_tables_to_appear_in_same_query!(
    block,
    block_data,
    device,
    event_log,
    invitation,
    message,
    organization,
    pki_enrollment,
    realm,
    realm_user_change,
    realm_user_role,
    realm_vlob_update,
    user_,
    vlob,
    vlob_atom,
);
