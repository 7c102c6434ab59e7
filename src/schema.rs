// Written by hand: one schema for both backends (see migrations/sqlite and migrations/postgres).

diesel::table! {
    users (id) {
        id -> BigInt,
        email -> Text,
        display_name -> Text,
        password_hash -> Text,
        role -> Text,
        active -> Bool,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        must_change_password -> Bool,
    }
}

diesel::table! {
    user_sessions (id) {
        id -> BigInt,
        user_id -> BigInt,
        token_hash -> Text,
        created_at -> Timestamp,
        last_seen_at -> Timestamp,
        ended_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    login_failures (id) {
        id -> BigInt,
        email -> Text,
        address -> Text,
        failed_at -> Timestamp,
    }
}

diesel::table! {
    field_defs (id) {
        id -> BigInt,
        kind -> Text,
        key -> Text,
        label -> Text,
        field_type -> Text,
        options -> Text,
        builtin -> Bool,
        position -> Integer,
        archived -> Bool,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    sources (id) {
        id -> BigInt,
        name -> Text,
        kind -> Text,
        id_column -> Text,
        mode -> Text,
        status -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        on_invalid -> Text,
        match_by -> Text,
        country -> Text,
        watch_dir -> Text,
        query_sql -> Text,
        query_url_env -> Text,
        query_url_secret -> Text,
        query_every_minutes -> BigInt,
        query_last_at -> Nullable<Timestamp>,
        carries -> Text,
        contacts_from -> Nullable<BigInt>,
        activity_type -> Text,
    }
}

diesel::table! {
    source_fields (id) {
        id -> BigInt,
        source_id -> BigInt,
        column_name -> Text,
        field_key -> Text,
        to_record -> Text,
        to_source -> Text,
        blanks_clear -> Bool,
    }
}

diesel::table! {
    records (id) {
        id -> BigInt,
        kind -> Text,
        name -> Text,
        email -> Text,
        phone -> Text,
        registration_number -> Text,
        address -> Text,
        name_norm -> Text,
        email_norm -> Text,
        phone_norm -> Text,
        company_id -> Nullable<BigInt>,
        owner_source_id -> Nullable<BigInt>,
        forced_manual -> Bool,
        missing_from_source -> Bool,
        archived -> Bool,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    record_values (record_id, field_id) {
        record_id -> BigInt,
        field_id -> BigInt,
        value -> Text,
        number -> Nullable<Double>,
    }
}

diesel::table! {
    record_links (id) {
        id -> BigInt,
        record_id -> BigInt,
        source_id -> BigInt,
        external_id -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    record_history (id) {
        id -> BigInt,
        record_id -> BigInt,
        field_key -> Text,
        old_value -> Nullable<Text>,
        new_value -> Nullable<Text>,
        origin -> Text,
        origin_id -> Nullable<BigInt>,
        actor_id -> Nullable<BigInt>,
        actor_label -> Text,
        changed_at -> Timestamp,
    }
}

diesel::table! {
    documents (id) {
        id -> BigInt,
        sha256 -> Text,
        filename -> Text,
        content_type -> Text,
        size -> BigInt,
        uploaded_by -> Nullable<BigInt>,
        created_at -> Timestamp,
    }
}

diesel::joinable!(user_sessions -> users (user_id));
diesel::joinable!(source_fields -> sources (source_id));
diesel::joinable!(record_values -> records (record_id));
diesel::joinable!(record_values -> field_defs (field_id));
diesel::joinable!(record_links -> records (record_id));
diesel::joinable!(record_links -> sources (source_id));
diesel::joinable!(record_history -> records (record_id));

diesel::table! {
    import_runs (id) {
        id -> BigInt,
        source_id -> BigInt,
        status -> Text,
        dry_run -> Bool,
        mode -> Text,
        file_name -> Text,
        file_sha256 -> Text,
        encoding -> Text,
        delimiter -> Text,
        plan_of -> Nullable<BigInt>,
        started_by -> Nullable<BigInt>,
        started_by_label -> Text,
        rows_total -> BigInt,
        rows_done -> BigInt,
        counts -> Text,
        error -> Nullable<Text>,
        undo_report -> Nullable<Text>,
        undone_at -> Nullable<Timestamp>,
        created_at -> Timestamp,
        started_at -> Nullable<Timestamp>,
        heartbeat_at -> Nullable<Timestamp>,
        finished_at -> Nullable<Timestamp>,
        undo_status -> Nullable<Text>,
        undo_by -> Nullable<BigInt>,
        undo_by_label -> Nullable<Text>,
        undo_rows_done -> BigInt,
        undo_cursor_line -> Nullable<BigInt>,
        undo_cursor_id -> Nullable<BigInt>,
        undo_error -> Nullable<Text>,
        undo_heartbeat_at -> Nullable<Timestamp>,
        notice -> Nullable<Text>,
        flag_confirmed -> Bool,
    }
}

diesel::table! {
    /// `import_runs` again, for columns past the 32 one declaration may have: which process
    /// holds a run, and the phone country chosen for its upload.
    #[sql_name = "import_runs"]
    import_run_claims (id) {
        id -> BigInt,
        status -> Text,
        claimed_by -> Nullable<Text>,
        country -> Text,
    }
}

diesel::table! {
    import_rows (id) {
        id -> BigInt,
        run_id -> BigInt,
        line -> BigInt,
        external_id -> Text,
        outcome -> Text,
        record_id -> Nullable<BigInt>,
        reason -> Text,
        changes -> Text,
        candidates -> Text,
        row_values -> Text,
        record_created -> Bool,
        link_added -> Bool,
        previous_owner -> Nullable<BigInt>,
        owner_changed -> Bool,
        record_updated_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    proposals (id) {
        id -> BigInt,
        record_id -> BigInt,
        field_key -> Text,
        current_value -> Text,
        proposed_value -> Text,
        origin -> Text,
        origin_id -> Nullable<BigInt>,
        origin_label -> Text,
        status -> Text,
        decided_by -> Nullable<Text>,
        decided_at -> Nullable<Timestamp>,
        created_at -> Timestamp,
        record_kind -> Text,
        source_id -> Nullable<BigInt>,
        process_id -> Nullable<BigInt>,
        decided_value -> Nullable<Text>,
    }
}

diesel::joinable!(import_runs -> sources (source_id));
diesel::joinable!(import_rows -> import_runs (run_id));
diesel::joinable!(proposals -> records (record_id));

diesel::table! {
    processes (id) {
        id -> BigInt,
        name -> Text,
        kind -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    process_steps (id) {
        id -> BigInt,
        process_id -> BigInt,
        position -> Integer,
        title -> Text,
        per_stakeholder -> Bool,
    }
}

diesel::table! {
    process_items (id) {
        id -> BigInt,
        process_id -> BigInt,
        step_id -> BigInt,
        position -> Integer,
        key -> Text,
        label -> Text,
        item_type -> Text,
        required -> Bool,
        options -> Text,
    }
}

diesel::table! {
    applications (id) {
        id -> BigInt,
        process_id -> BigInt,
        record_id -> BigInt,
        status -> Text,
        created_by -> Nullable<BigInt>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        submitted_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    application_stakeholders (id) {
        id -> BigInt,
        application_id -> BigInt,
        contact_id -> BigInt,
        role -> Text,
    }
}

diesel::table! {
    application_answers (id) {
        id -> BigInt,
        application_id -> BigInt,
        item_id -> BigInt,
        stakeholder_id -> BigInt,
        value -> Text,
        origin -> Text,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    application_step_states (id) {
        id -> BigInt,
        application_id -> BigInt,
        step_id -> BigInt,
        submitted_at -> Timestamp,
    }
}

diesel::table! {
    data_links (id) {
        id -> BigInt,
        process_id -> BigInt,
        direction -> Text,
        record_kind -> Text,
        data_kind -> Text,
        item_id -> BigInt,
        field_key -> Text,
        roles -> Text,
        to_record -> Text,
        created_at -> Timestamp,
    }
}

diesel::joinable!(process_steps -> processes (process_id));
diesel::joinable!(process_items -> process_steps (step_id));
diesel::joinable!(applications -> processes (process_id));
diesel::joinable!(application_stakeholders -> applications (application_id));
diesel::joinable!(application_answers -> applications (application_id));
diesel::joinable!(data_links -> process_items (item_id));

diesel::table! {
    api_tokens (id) {
        id -> BigInt,
        name -> Text,
        prefix -> Text,
        secret_hash -> Text,
        scopes -> Text,
        source_id -> Nullable<BigInt>,
        created_by -> Nullable<BigInt>,
        created_at -> Timestamp,
        last_used_at -> Nullable<Timestamp>,
        revoked_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    api_idempotency (token_id, request_path, idempotency_key) {
        token_id -> BigInt,
        request_path -> Text,
        idempotency_key -> Text,
        body_sha256 -> Text,
        status_code -> Integer,
        response_body -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    source_changes (id) {
        id -> BigInt,
        seq -> Nullable<BigInt>,
        source_id -> BigInt,
        record_id -> BigInt,
        external_id -> Text,
        event -> Text,
        column_name -> Nullable<Text>,
        field_key -> Nullable<Text>,
        old_value -> Nullable<Text>,
        new_value -> Nullable<Text>,
        origin -> Text,
        origin_id -> Nullable<BigInt>,
        actor_label -> Text,
        changed_at -> Timestamp,
        status -> Text,
        decided_by -> Nullable<Text>,
        decided_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    source_webhooks (source_id) {
        source_id -> BigInt,
        url -> Text,
        secret -> Text,
        cursor -> BigInt,
        created_at -> Timestamp,
    }
}

diesel::table! {
    webhook_deliveries (id) {
        id -> BigInt,
        source_id -> BigInt,
        url -> Text,
        first_cursor -> BigInt,
        last_cursor -> BigInt,
        changes -> Integer,
        body -> Text,
        status -> Text,
        attempts -> Integer,
        next_attempt_at -> Nullable<Timestamp>,
        last_status_code -> Nullable<Integer>,
        last_error -> Nullable<Text>,
        created_at -> Timestamp,
        finished_at -> Nullable<Timestamp>,
    }
}

// PostgreSQL's shape; on SQLite it is an FTS5 table written with SQL of its own
// (`records::search`).
diesel::table! {
    record_search (record_id) {
        record_id -> BigInt,
        tokens -> Text,
    }
}

// PostgreSQL only: the name words of the search index in a B-tree (`records::search`).
diesel::table! {
    record_search_names (word, record_id) {
        word -> Text,
        record_id -> BigInt,
    }
}

diesel::table! {
    record_counts (id) {
        id -> BigInt,
        kind -> Text,
        archived -> Bool,
        owner_source_id -> Nullable<BigInt>,
        forced_manual -> Bool,
        missing_from_source -> Bool,
        records -> BigInt,
    }
}

diesel::table! {
    desync_counts (id) {
        id -> BigInt,
        record_kind -> Text,
        records -> BigInt,
        fields -> BigInt,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    activities,
    activity_mappings,
    followup_templates,
    activity_types,
    api_tokens,
    api_idempotency,
    source_changes,
    record_search,
    record_counts,
    desync_counts,
    source_webhooks,
    webhook_deliveries,
    user_sessions,
    users,
    login_failures,
    field_defs,
    sources,
    source_fields,
    records,
    record_values,
    record_links,
    record_history,
    documents,
    import_runs,
    import_rows,
    proposals,
    processes,
    process_steps,
    process_items,
    applications,
    application_stakeholders,
    application_answers,
    application_step_states,
    data_links,
);

diesel::joinable!(activities -> records (record_id));
diesel::joinable!(activity_mappings -> sources (source_id));

diesel::table! {
    activity_types (key) {
        key -> Text,
        label -> Text,
        builtin -> Bool,
        created_at -> Timestamp,
    }
}

diesel::table! {
    activities (id) {
        id -> BigInt,
        record_id -> BigInt,
        activity_type -> Text,
        occurred_at -> Timestamp,
        subject -> Text,
        body -> Text,
        attributes -> Text,
        outcome -> Text,
        source_id -> Nullable<BigInt>,
        sender -> Text,
        external_id -> Text,
        user_id -> Nullable<BigInt>,
        origin -> Text,
        origin_label -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    followup_templates (id) {
        id -> BigInt,
        name -> Text,
        kind -> Text,
        subject -> Text,
        body -> Text,
        html -> Bool,
        locked -> Bool,
        updated_by -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    activity_mappings (id) {
        id -> BigInt,
        source_id -> BigInt,
        activity_type -> Text,
        subject -> Text,
        body -> Text,
        field_updates -> Text,
        updated_at -> Timestamp,
    }
}
