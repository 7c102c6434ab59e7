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

diesel::allow_tables_to_appear_in_same_query!(users, login_failures);
