//! The foundation: setup, sign-in, throttling, CSRF, roles, users, errors, configuration.
//! Runs on SQLite, and on PostgreSQL when TEST_DATABASE_URL is set.

mod common;

use actix_web::http::Method;
use common::{spawn, TestDb, PASSWORD};
use syncdesk::auth::model::Role;
use syncdesk::auth::service::{FREE_FAILURES_PER_ACCOUNT, MAX_FAILURES_PER_ADDRESS};

#[actix_web::test]
async fn first_run_setup_creates_the_admin_then_disappears() {
    let mut app = spawn().await;
    app.get("/").await.assert_redirect("/setup");
    app.get("/signin").await.assert_redirect("/setup");
    app.get("/setup")
        .await
        .assert_status(200)
        .assert_contains("Create the first admin");

    // Refused without the form's token, and nothing is created.
    app.post_raw(
        "/setup",
        &[
            ("email", "boss@example.org"),
            ("password", PASSWORD),
            ("password_confirmation", PASSWORD),
        ],
    )
    .await
    .assert_status(403);

    app.post(
        "/setup",
        &[
            ("email", "boss@example.org"),
            ("password", PASSWORD),
            ("password_confirmation", "something else"),
        ],
    )
    .await
    .assert_status(422)
    .assert_contains("confirmation differ");
    app.post(
        "/setup",
        &[
            ("email", "boss@example.org"),
            ("password", "short"),
            ("password_confirmation", "short"),
        ],
    )
    .await
    .assert_status(422)
    .assert_contains("at least 10 characters");
    app.post(
        "/setup",
        &[
            ("email", "not-an-email"),
            ("password", PASSWORD),
            ("password_confirmation", PASSWORD),
        ],
    )
    .await
    .assert_status(422)
    .assert_contains("not a valid email address");

    app.post(
        "/setup",
        &[
            ("email", " Boss@Example.org "),
            ("display_name", "The Boss"),
            ("password", PASSWORD),
            ("password_confirmation", PASSWORD),
        ],
    )
    .await
    .assert_redirect("/");
    app.get("/")
        .await
        .assert_status(200)
        .assert_contains("Hello, The Boss")
        .assert_contains("boss@example.org")
        .assert_contains("<strong>admin</strong>")
        .assert_contains("You are the first admin");

    app.get("/setup")
        .await
        .assert_status(404)
        .assert_contains("First-run setup is done");
    app.post(
        "/setup",
        &[
            ("email", "intruder@example.org"),
            ("password", PASSWORD),
            ("password_confirmation", PASSWORD),
        ],
    )
    .await
    .assert_status(404);
    // Whatever the form holds: the page is gone, not a malformed request.
    app.post("/setup", &[("email", "intruder@example.org")])
        .await
        .assert_status(404)
        .assert_contains("First-run setup is done");
    app.post("/setup", &[]).await.assert_status(404);
    let users = app
        .state
        .pool
        .get()
        .map(|mut c| syncdesk::auth::service::list_users(&mut c));
    let users = users.expect("connection").expect("users");
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].email, "boss@example.org");
    assert_eq!(users[0].role(), Role::Admin);
}

#[actix_web::test]
async fn sign_in_success_failure_and_return_to_the_asked_page() {
    let mut app = spawn().await;
    app.create_user("ada@example.org", Role::Admin);

    app.get("/users")
        .await
        .assert_redirect("/signin?next=%2Fusers");
    let before = app.get("/signin?next=/users").await;
    before
        .assert_status(200)
        .assert_contains("value=\"/users\"");
    let token_before = app.csrf.clone();

    app.post(
        "/signin",
        &[
            ("email", "ada@example.org"),
            ("password", "wrong password"),
            ("next", "/users"),
        ],
    )
    .await
    .assert_status(401)
    .assert_contains("The email or the password is wrong.");
    app.post(
        "/signin",
        &[("email", "nobody@example.org"), ("password", PASSWORD)],
    )
    .await
    .assert_status(401)
    .assert_contains("The email or the password is wrong.");

    app.post(
        "/signin",
        &[
            ("email", "ADA@example.org"),
            ("password", PASSWORD),
            ("next", "/users"),
        ],
    )
    .await
    .assert_redirect("/users");
    app.get("/users").await.assert_status(200);
    // A token from before sign-in is worthless after it.
    assert_ne!(token_before, app.csrf);
    let stale = token_before.unwrap_or_default();
    app.post_raw("/signout", &[("csrf_token", stale.as_str())])
        .await
        .assert_status(403);

    // An offsite `next` is ignored.
    app.sign_out().await;
    app.get("/signin").await;
    app.post(
        "/signin",
        &[
            ("email", "ada@example.org"),
            ("password", PASSWORD),
            ("next", "//evil.example/"),
        ],
    )
    .await
    .assert_redirect("/");
}

/// Browsers drop tabs and line breaks from a URL and read `\` as `/`: such a `next` would
/// leave the site, and control characters must not turn into a 500.
#[actix_web::test]
async fn next_never_leaves_the_site_or_fails() {
    let mut app = spawn().await;
    app.create_user("ada@example.org", Role::Admin);
    // Other control characters never reach `next`: the edge refuses them (400).
    for next in ["/%0b", "/%7f"] {
        app.get(&format!("/signin?next={next}"))
            .await
            .assert_status(400)
            .assert_contains("&#39;next&#39; holds a control character");
    }
    let hostile = [
        "/%09/evil.example",
        "/%0A/evil.example",
        "/%0D%0ALocation:%20https://evil.example",
        "/%5C/evil.example",
        "/%20/evil.example",
        "%2F%2Fevil.example",
    ];
    for next in hostile {
        // Signed out, the form carries nothing hostile.
        let page = app.get(&format!("/signin?next={next}")).await;
        page.assert_status(200);
        assert!(
            page.body.contains("name=\"next\" value=\"/\""),
            "{next}: {}",
            page.body
        );
    }
    for next in ["/\t/evil.example", "/\r\n//evil.example"] {
        app.get("/signin").await;
        app.post(
            "/signin",
            &[
                ("email", "ada@example.org"),
                ("password", PASSWORD),
                ("next", next),
            ],
        )
        .await
        .assert_redirect("/");
        // Signed in, the page itself redirects.
        for query in hostile {
            app.get(&format!("/signin?next={query}"))
                .await
                .assert_redirect("/");
        }
        app.get("/").await.assert_status(200);
        app.sign_out().await;
    }
}

#[actix_web::test]
async fn repeated_failures_throttle_the_account() {
    let mut app = spawn().await;
    app.create_user("ada@example.org", Role::Editor);
    app.create_user("bob@example.org", Role::Editor);
    for _ in 0..FREE_FAILURES_PER_ACCOUNT {
        app.sign_in("ada@example.org", "wrong password")
            .await
            .assert_status(401);
    }
    // The next try from this address waits, even with the right password.
    app.sign_in("ada@example.org", PASSWORD)
        .await
        .assert_status(429)
        .assert_contains("Too many failed sign-in attempts for this account from your address")
        // 15 seconds after the last failure (14 when a second has just turned).
        .assert_contains("Try again in 1")
        .assert_contains(" seconds.");
    // Another account from the same address is not affected.
    app.sign_in("bob@example.org", PASSWORD)
        .await
        .assert_redirect("/");
    // Nor the same account from elsewhere: nobody can lock the admin out.
    let mut elsewhere = app.fork();
    elsewhere.peer = "10.1.2.3:5000".parse().expect("address");
    elsewhere
        .sign_in("ada@example.org", PASSWORD)
        .await
        .assert_redirect("/");
}

/// Behind a trusted proxy, the client is the address the proxy saw; a client's own
/// `X-Forwarded-For` proves nothing.
#[actix_web::test]
async fn throttling_counts_clients_behind_a_trusted_proxy() {
    use actix_web::test::TestRequest;
    let mut app = spawn().await;
    app.create_user("ada@example.org", Role::Editor);
    app.peer = "127.0.0.9:443".parse().expect("proxy");
    let attempt = |client: &'static str, password: &'static str| {
        let mut app = app.fork();
        app.peer = "127.0.0.9:443".parse().expect("proxy");
        async move {
            app.get("/signin").await;
            let token = app.csrf.clone().unwrap_or_default();
            app.send(
                TestRequest::post()
                    .uri("/signin")
                    .insert_header(("x-forwarded-for", format!("6.6.6.6, {client}")))
                    .set_form([
                        ("csrf_token", token.as_str()),
                        ("email", "ada@example.org"),
                        ("password", password),
                    ]),
            )
            .await
            .status
            .as_u16()
        }
    };
    for _ in 0..FREE_FAILURES_PER_ACCOUNT {
        assert_eq!(attempt("198.51.100.7", "wrong password").await, 401);
    }
    assert_eq!(attempt("198.51.100.7", PASSWORD).await, 429);
    // Another client through the same proxy signs in.
    assert_eq!(attempt("198.51.100.8", PASSWORD).await, 303);
}

#[actix_web::test]
async fn repeated_failures_throttle_the_address() {
    let mut app = spawn().await;
    app.create_user("ada@example.org", Role::Viewer);
    for i in 0..MAX_FAILURES_PER_ADDRESS {
        let email = format!("guess{i}@example.org");
        app.sign_in(&email, "wrong password")
            .await
            .assert_status(401);
    }
    app.sign_in("ada@example.org", PASSWORD)
        .await
        .assert_status(429)
        .assert_contains("from your network address");
    // The same account from another address still signs in.
    app.peer = "10.1.2.3:5000".parse().expect("address");
    app.sign_in("ada@example.org", PASSWORD)
        .await
        .assert_redirect("/");
}

#[actix_web::test]
async fn sign_out_ends_the_session() {
    let mut app = spawn().await;
    app.signed_in_as("ada@example.org", Role::Editor).await;
    app.get("/").await.assert_status(200);
    app.post_raw("/signout", &[]).await.assert_status(403);
    app.get("/").await.assert_status(200);
    app.sign_out().await;
    app.get("/").await.assert_redirect("/signin?next=%2F");
    app.get("/account/password")
        .await
        .assert_redirect("/signin?next=%2Faccount%2Fpassword");
}

#[actix_web::test]
async fn csrf_token_is_required_on_every_state_change() {
    let mut app = spawn().await;
    app.signed_in_as("root@example.org", Role::Admin).await;
    let form = [
        ("email", "new@example.org"),
        ("role", "viewer"),
        ("password", PASSWORD),
    ];
    app.post_raw("/users", &form)
        .await
        .assert_status(403)
        .assert_contains("security token");
    let mut wrong = form.to_vec();
    wrong.push(("csrf_token", "0000"));
    app.post_raw("/users", &wrong).await.assert_status(403);
    app.get("/users").await.assert_status(200);
    assert!(!app.get("/users").await.body.contains("new@example.org"));

    // The header htmx sends is accepted as well as the form field.
    let token = app.csrf.clone().unwrap_or_default();
    let body = serde_urlencoded::to_string(form).expect("form");
    app.send(
        actix_web::test::TestRequest::post()
            .uri("/users")
            .insert_header(("content-type", "application/x-www-form-urlencoded"))
            .insert_header(("X-CSRF-Token", token))
            .set_payload(body),
    )
    .await
    .assert_redirect("/users");
    app.get("/users")
        .await
        .assert_contains("new@example.org")
        .assert_contains("new@example.org can now sign in as viewer.");
}

#[actix_web::test]
async fn users_page_is_for_admins_only() {
    for (role, status) in [(Role::Admin, 200), (Role::Editor, 403), (Role::Viewer, 403)] {
        let mut app = spawn().await;
        let other = app.create_user("other@example.org", Role::Viewer);
        app.signed_in_as("me@example.org", role).await;
        let page = app.get("/users").await;
        page.assert_status(status);
        if status == 403 {
            page.assert_contains("This needs the admin role")
                .assert_contains("Not allowed");
            app.get("/users/new").await.assert_status(403);
            app.post(&format!("/users/{other}/role"), &[("role", "admin")])
                .await
                .assert_status(403);
            app.post(&format!("/users/{other}/active"), &[("active", "false")])
                .await
                .assert_status(403);
            app.post(
                "/users",
                &[
                    ("email", "x@example.org"),
                    ("role", "admin"),
                    ("password", PASSWORD),
                ],
            )
            .await
            .assert_status(403);
            // The navigation offers no Users entry to them.
            assert!(!app.get("/").await.body.contains("href=\"/users\""));
        } else {
            page.assert_contains("other@example.org");
            assert!(app.get("/").await.body.contains("href=\"/users\""));
        }
    }
    let mut anonymous = spawn().await;
    anonymous.create_user("someone@example.org", Role::Admin);
    anonymous
        .get("/users")
        .await
        .assert_redirect("/signin?next=%2Fusers");
}

#[actix_web::test]
async fn admin_creates_users_changes_roles_and_deactivates() {
    let mut app = spawn().await;
    app.signed_in_as("root@example.org", Role::Admin).await;
    app.get("/users/new").await.assert_status(200);
    app.post(
        "/users",
        &[
            ("email", "ed@example.org"),
            ("display_name", "Ed"),
            ("role", "editor"),
            ("password", PASSWORD),
        ],
    )
    .await
    .assert_redirect("/users");
    app.post(
        "/users",
        &[
            ("email", "ed@example.org"),
            ("role", "viewer"),
            ("password", PASSWORD),
        ],
    )
    .await
    .assert_status(409)
    .assert_contains("already exists");
    app.post(
        "/users",
        &[
            ("email", "x@example.org"),
            ("role", "owner"),
            ("password", PASSWORD),
        ],
    )
    .await
    .assert_status(422)
    .assert_contains("&#39;owner&#39; is not a role");

    let ed = find_user(&app, "ed@example.org");
    app.post(&format!("/users/{ed}/role"), &[("role", "viewer")])
        .await
        .assert_redirect("/users");
    app.get("/users")
        .await
        .assert_contains("ed@example.org is now viewer.");

    // Ed signs in in another browser, then is deactivated: his session ends at once.
    let mut ed_browser = app.fork();
    ed_browser
        .sign_in("ed@example.org", PASSWORD)
        .await
        .assert_redirect("/");
    app.post(&format!("/users/{ed}/active"), &[("active", "false")])
        .await
        .assert_redirect("/users");
    app.get("/users")
        .await
        .assert_contains("deactivated")
        .assert_contains("Reactivate");
    ed_browser
        .get("/")
        .await
        .assert_redirect("/signin?next=%2F");
    ed_browser
        .sign_in("ed@example.org", PASSWORD)
        .await
        .assert_status(401);

    app.post(&format!("/users/{ed}/active"), &[("active", "true")])
        .await
        .assert_redirect("/users");
    ed_browser
        .sign_in("ed@example.org", PASSWORD)
        .await
        .assert_redirect("/");
    app.post("/users/999999/role", &[("role", "viewer")])
        .await
        .assert_status(404);
}

#[actix_web::test]
async fn the_last_active_admin_can_be_neither_demoted_nor_deactivated() {
    let mut app = spawn().await;
    app.signed_in_as("root@example.org", Role::Admin).await;
    let root = find_user(&app, "root@example.org");
    app.get("/users").await.assert_contains("last active admin");
    app.post(&format!("/users/{root}/role"), &[("role", "editor")])
        .await
        .assert_status(409)
        .assert_contains("root@example.org is the last active admin");
    app.post(&format!("/users/{root}/active"), &[("active", "false")])
        .await
        .assert_status(409)
        .assert_contains("last active admin");
    // A deactivated admin does not count.
    let dormant = app.create_user("dormant@example.org", Role::Admin);
    app.post(&format!("/users/{dormant}/active"), &[("active", "false")])
        .await
        .assert_redirect("/users");
    app.post(&format!("/users/{root}/role"), &[("role", "viewer")])
        .await
        .assert_status(409);

    // With a second active admin, the first may step down.
    let second = app.create_user("second@example.org", Role::Admin);
    app.post(&format!("/users/{root}/role"), &[("role", "editor")])
        .await
        .assert_redirect("/");
    // Root is an editor now: the users page is closed to them.
    app.get("/users").await.assert_status(403);
    let mut conn = app.state.pool.get().expect("connection");
    let err = syncdesk::auth::service::set_role(&mut conn, second, Role::Viewer).unwrap_err();
    assert!(err.to_string().contains("last active admin"), "{err}");
}

#[actix_web::test]
async fn a_user_changes_their_own_password() {
    let mut app = spawn().await;
    app.signed_in_as("ada@example.org", Role::Viewer).await;
    app.get("/account/password").await.assert_status(200);
    let new_password = "a much longer secret";
    app.post(
        "/account/password",
        &[
            ("current_password", "wrong"),
            ("new_password", new_password),
            ("new_password_confirmation", new_password),
        ],
    )
    .await
    .assert_status(422)
    .assert_contains("current password is wrong");
    app.post(
        "/account/password",
        &[
            ("current_password", PASSWORD),
            ("new_password", new_password),
            ("new_password_confirmation", "different"),
        ],
    )
    .await
    .assert_status(422)
    .assert_contains("differ");
    app.post(
        "/account/password",
        &[
            ("current_password", PASSWORD),
            ("new_password", new_password),
            ("new_password_confirmation", new_password),
        ],
    )
    .await
    .assert_redirect("/");
    app.get("/")
        .await
        .assert_contains("Your password has been changed.");
    app.sign_out().await;
    app.sign_in("ada@example.org", PASSWORD)
        .await
        .assert_status(401);
    app.sign_in("ada@example.org", new_password)
        .await
        .assert_redirect("/");
}

#[actix_web::test]
async fn errors_are_pages_or_htmx_fragments_and_every_response_has_security_headers() {
    let mut app = spawn().await;
    app.signed_in_as("ada@example.org", Role::Viewer).await;

    let page = app.get("/no/such/page").await;
    page.assert_status(404)
        .assert_contains("<!doctype html>")
        .assert_contains("There is no page at /no/such/page.");

    let fragment = app.htmx(Method::GET, "/users").await;
    fragment
        .assert_status(403)
        .assert_contains("This needs the admin role");
    assert!(
        !fragment.body.contains("<!doctype html>"),
        "{}",
        fragment.body
    );
    assert_eq!(fragment.header("HX-Retarget"), Some("#messages"));

    for path in [
        "/",
        "/no/such/page",
        "/static/app.css",
        "/healthz",
        "/signin",
    ] {
        let res = app.get(path).await;
        let csp = res.header("content-security-policy").unwrap_or_default();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{path}: {csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"), "{path}");
        assert_eq!(res.header("x-frame-options"), Some("DENY"), "{path}");
        assert_eq!(
            res.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(res.header("referrer-policy"), Some("same-origin"), "{path}");
    }

    // An htmx request from a signed-out browser is sent to sign-in by htmx itself.
    app.sign_out().await;
    let res = app.htmx(Method::GET, "/users").await;
    res.assert_status(204);
    assert_eq!(res.header("HX-Redirect"), Some("/signin"));
}

#[actix_web::test]
async fn session_cookie_is_http_only_and_same_site() {
    let mut app = spawn().await;
    let res = app.get("/setup").await;
    let cookie = res.header("set-cookie").unwrap_or_default().to_string();
    assert!(cookie.starts_with("syncdesk_session="), "{cookie}");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(
        !cookie.contains("Secure"),
        "secure cookies are off by default: {cookie}"
    );
}

#[actix_web::test]
async fn names_are_escaped_in_pages() {
    let mut app = spawn().await;
    app.signed_in_as("root@example.org", Role::Admin).await;
    app.post(
        "/users",
        &[
            ("email", "x@example.org"),
            ("display_name", "<script>alert(1)</script>"),
            ("role", "viewer"),
            ("password", PASSWORD),
        ],
    )
    .await
    .assert_redirect("/users");
    let page = app.get("/users").await;
    page.assert_contains("&#60;script&#62;alert(1)&#60;/script&#62;");
    assert!(!page.body.contains("<script>alert(1)"));
}

#[actix_web::test]
async fn health_check_reports_the_database() {
    let mut app = spawn().await;
    let res = app.get("/healthz").await;
    res.assert_status(200).assert_contains("\"status\":\"ok\"");
}

#[actix_web::test]
async fn concurrent_writes_do_not_lock_each_other_out() {
    let app = spawn().await;
    let pool = app.state.pool.clone();
    let handles: Vec<_> = (0..16)
        .map(|i| {
            let pool = pool.clone();
            std::thread::spawn(move || {
                let mut conn = pool.get().expect("connection");
                syncdesk::auth::service::create_user(
                    &mut conn,
                    &syncdesk::auth::service::NewUser {
                        email: format!("user{i}@example.org"),
                        display_name: String::new(),
                        password: PASSWORD.into(),
                        role: Role::Viewer,
                    },
                )
                .map(|_| ())
                .map_err(|e| e.to_string())
            })
        })
        .collect();
    for handle in handles {
        handle.join().expect("thread").expect("user created");
    }
    let mut conn = pool.get().expect("connection");
    assert_eq!(
        syncdesk::auth::service::user_count(&mut conn).expect("count"),
        16
    );
}

#[core::prelude::v1::test]
fn unknown_database_scheme_gives_a_clear_message() {
    let db = TestDb::new();
    let mut config = db.config();
    config.database_url = "mysql://root@localhost/syncdesk".into();
    let err = syncdesk::AppState::open(config)
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("unsupported database URL scheme 'mysql://'"),
        "{err}"
    );
    assert!(err.contains("postgres://"), "{err}");

    let mut config = db.config();
    config.database_url = ":memory:".into();
    let err = syncdesk::AppState::open(config)
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("in-memory SQLite"), "{err}");
}

#[core::prelude::v1::test]
fn command_line_refuses_bad_configuration() {
    let dir = tempfile::tempdir().expect("dir");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_syncdesk"))
        .arg("migrate")
        .env("SYNCDESK_DATA_DIR", dir.path())
        .env("DATABASE_URL", "mongodb://localhost/x")
        .output()
        .expect("run syncdesk");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("DATABASE_URL is invalid"), "{stderr}");
    assert!(stderr.contains("'mongodb://'"), "{stderr}");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_syncdesk"))
        .arg("migrate")
        .env("SYNCDESK_DATA_DIR", dir.path())
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
        .output()
        .expect("run syncdesk");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot connect to the database"),
        "{stderr}"
    );
    assert!(stderr.contains("(PostgreSQL)"), "{stderr}");
}

#[actix_web::test]
async fn command_line_migrates_and_creates_users_on_the_same_configuration() {
    use std::io::Write;
    let mut app = spawn().await;
    let config = app.db.config();
    let run = |args: &[&str], stdin: &str| {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_syncdesk"))
            .args(args)
            .env("SYNCDESK_DATA_DIR", &config.data_dir)
            .env("DATABASE_URL", &config.database_url)
            .env_remove("SYNCDESK_CONFIG")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run syncdesk");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write stdin");
        child.wait_with_output().expect("output")
    };
    let out = run(&["migrate"], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("up to date"));

    let out = run(
        &[
            "user",
            "create",
            "--email",
            "cli@example.org",
            "--role",
            "editor",
        ],
        &format!("{PASSWORD}\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Created cli@example.org (editor)"));

    let out = run(
        &[
            "user",
            "create",
            "--email",
            "cli@example.org",
            "--role",
            "editor",
        ],
        &format!("{PASSWORD}\n"),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));

    let out = run(
        &[
            "user",
            "create",
            "--email",
            "weak@example.org",
            "--role",
            "viewer",
        ],
        "short\n",
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 10 characters"));

    app.sign_in("cli@example.org", PASSWORD)
        .await
        .assert_redirect("/");
    app.get("/")
        .await
        .assert_contains("<strong>editor</strong>");
}

fn find_user<S>(app: &common::TestApp<S>, email: &str) -> i64 {
    let mut conn = app.state.pool.get().expect("connection");
    syncdesk::auth::service::list_users(&mut conn)
        .expect("users")
        .into_iter()
        .find(|u| u.email == email)
        .map(|u| u.id)
        .expect("user exists")
}

/// Both migration sets must give the same tables, columns, type classes and nullability.
/// Uses TEST_DATABASE_URL, or the local PostgreSQL every machine of this kind runs.
#[core::prelude::v1::test]
fn sqlite_and_postgres_migrations_give_the_same_schema() {
    let Some(pg_admin) = common::pg_admin_url() else {
        return;
    };
    let sqlite = TestDb::sqlite();
    let pg = TestDb::postgres(&pg_admin);
    let describe = |db: &TestDb| {
        let pool = syncdesk::db::connect(&db.url).expect("connect");
        let mut conn = pool.get().expect("connection");
        syncdesk::db::run_migrations(&mut conn).expect("migrate");
        syncdesk::db::describe_schema(&mut conn).expect("describe")
    };
    let sqlite_schema = describe(&sqlite);
    let pg_schema = describe(&pg);
    assert!(sqlite_schema
        .iter()
        .any(|c| c.table == "users" && c.column == "email"));
    let only_sqlite: Vec<_> = sqlite_schema
        .iter()
        .filter(|c| !pg_schema.contains(c))
        .collect();
    let only_pg: Vec<_> = pg_schema
        .iter()
        .filter(|c| !sqlite_schema.contains(c))
        .collect();
    assert!(
        only_sqlite.is_empty() && only_pg.is_empty(),
        "schemas differ\nonly in SQLite: {only_sqlite:#?}\nonly in PostgreSQL: {only_pg:#?}"
    );
}

/// Connections are not pinged before each use: one the server dropped fails one query, is
/// replaced, and the pool serves again. Uses TEST_DATABASE_URL, or the local PostgreSQL.
#[core::prelude::v1::test]
fn connections_the_server_dropped_are_replaced() {
    use diesel::{Connection, RunQueryDsl};
    let Some(pg_admin) = common::pg_admin_url() else {
        return;
    };
    let mut admin = diesel::PgConnection::establish(&pg_admin).expect("admin connection");
    let db = TestDb::postgres(&pg_admin);
    let pool = syncdesk::db::connect(&db.url).expect("connect");
    let size = pool.max_size() as usize;
    // Every connection of the pool opened and used once.
    let held: Vec<_> = (0..size).map(|_| pool.get().expect("connection")).collect();
    drop(held);
    let name = db.pg_database().expect("a PostgreSQL database");
    let dropped = diesel::sql_query(format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
    ))
    .execute(&mut admin)
    .expect("terminate");
    assert!(dropped >= size, "{dropped} of {size} connections dropped");
    let outcomes: Vec<bool> = (0..3 * size)
        .map(|_| {
            let mut conn = pool.get().expect("a connection, new or old");
            diesel::sql_query("SELECT 1").execute(&mut *conn).is_ok()
        })
        .collect();
    let failed = outcomes.iter().filter(|ok| !**ok).count();
    assert!(
        failed <= size,
        "{failed} failures for {size} dropped connections"
    );
    assert!(
        outcomes[2 * size..].iter().all(|ok| *ok),
        "the pool serves again: {outcomes:?}"
    );
}

/// A session ends on the server: a cookie copied before sign-out, or before a password change
/// elsewhere, or before deactivation or "sign out everywhere", opens nothing afterwards; a
/// session idle longer than the idle limit ends too.
#[actix_web::test]
async fn sessions_end_everywhere_they_should() {
    let mut app = spawn().await;
    app.signed_in_as("boss@example.org", Role::Admin).await;
    let ed_id = app.create_user("ed@example.org", Role::Editor);

    // Sign-out: the copied cookie is refused.
    let mut ed = app.fork();
    ed.sign_in("ed@example.org", PASSWORD)
        .await
        .assert_redirect("/");
    let mut copied = ed.copy_cookies();
    copied.get("/contacts").await.assert_status(200);
    ed.get("/").await;
    ed.sign_out().await;
    copied
        .get("/contacts")
        .await
        .assert_redirect("/signin?next=%2Fcontacts");

    // A password change signs out the other sessions, not the one that made it.
    let mut laptop = app.fork();
    laptop.sign_in("ed@example.org", PASSWORD).await;
    let mut phone = app.fork();
    phone.sign_in("ed@example.org", PASSWORD).await;
    laptop.get("/account/password").await.assert_status(200);
    let new_password = "another long passphrase";
    laptop
        .post(
            "/account/password",
            &[
                ("current_password", PASSWORD),
                ("new_password", new_password),
                ("new_password_confirmation", new_password),
            ],
        )
        .await
        .assert_redirect("/");
    laptop
        .get("/")
        .await
        .assert_status(200)
        .assert_contains("1 other session(s) were signed out");
    phone.get("/contacts").await.assert_status(303);

    // Sign out everywhere, by an admin.
    let mut again = app.fork();
    again.sign_in("ed@example.org", new_password).await;
    again.get("/contacts").await.assert_status(200);
    app.get("/users")
        .await
        .assert_contains("Sign out everywhere");
    app.post(&format!("/users/{ed_id}/signout-everywhere"), &[])
        .await
        .assert_redirect("/users");
    again.get("/contacts").await.assert_status(303);
    laptop.get("/contacts").await.assert_status(303);

    // Deactivation.
    let mut last = app.fork();
    last.sign_in("ed@example.org", new_password).await;
    let mut stolen = last.copy_cookies();
    app.get("/users").await;
    app.post(&format!("/users/{ed_id}/active"), &[("active", "false")])
        .await
        .assert_redirect("/users");
    stolen.get("/contacts").await.assert_status(303);

    // Idle for longer than the limit (8 hours by default).
    let mut idle = app.copy_cookies();
    idle.get("/contacts").await.assert_status(200);
    {
        use diesel::prelude::*;
        use syncdesk::schema::user_sessions;
        let mut conn = app.state.pool.get().expect("connection");
        diesel::update(user_sessions::table)
            .set(user_sessions::last_seen_at.eq(syncdesk::db::now() - chrono::Duration::hours(9)))
            .execute(&mut conn)
            .expect("age the sessions");
    }
    idle.get("/contacts").await.assert_status(303);
    app.get("/contacts").await.assert_status(303);
}

/// Small ones: a wrong-role POST is refused for its role before its body is read; upload forms
/// keep their token out of the URL; an upload to a source that does not exist stores nothing.
#[actix_web::test]
async fn roles_before_bodies_and_tokens_out_of_urls() {
    let mut app = spawn().await;
    app.create_user("boss@example.org", Role::Admin);
    app.signed_in_as("vera@example.org", Role::Viewer).await;
    app.get("/").await;
    // Malformed for the handler (no `role` field), and the wrong role: the role answers.
    app.post("/users/1/role", &[("nonsense", "x")])
        .await
        .assert_status(403);
    app.post("/sources", &[("name", "")])
        .await
        .assert_status(403);

    let mut admin = app.fork();
    admin.sign_in("boss@example.org", PASSWORD).await;
    admin
        .post(
            "/sources",
            &[
                ("name", "Practice"),
                ("kind", "contact"),
                ("id_column", "Id"),
                ("mode", "delta"),
            ],
        )
        .await;
    let page = admin.get("/sources/1").await;
    page.assert_status(200);
    assert!(page.body.contains("enctype=\"multipart/form-data\""));
    assert!(!page.body.contains("?csrf_token="), "{}", page.body);
    // Without the token field, an upload is refused.
    admin
        .upload("/sources/1/imports", "a.csv", b"Id,Name\n1,Ann\n", false)
        .await
        .assert_status(403);
    // To a source that does not exist: 404, and nothing kept.
    admin
        .upload("/sources/999/imports", "a.csv", b"Id,Name\n1,Ann\n", true)
        .await
        .assert_status(404);
    let stored = std::fs::read_dir(admin.state.config.data_dir.join("imports"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(stored, 0);
}

/// An admin resets a password: the user's sessions end, the temporary password signs in, and
/// nothing but the password page opens until they choose their own.
#[actix_web::test]
async fn an_admin_resets_a_password_to_be_changed_at_next_sign_in() {
    let mut admin = spawn().await;
    admin.signed_in_as("boss@example.org", Role::Admin).await;
    let ed_id = admin.create_user("ed@example.org", Role::Editor);
    let mut ed = admin.fork();
    ed.sign_in("ed@example.org", PASSWORD)
        .await
        .assert_redirect("/");

    admin.get("/users").await.assert_contains("Reset password");
    admin
        .post(
            &format!("/users/{ed_id}/password"),
            &[("password", "short")],
        )
        .await
        .assert_redirect("/users");
    admin
        .get("/users")
        .await
        .assert_contains("The password was not reset");
    let temporary = "temporary passphrase 1";
    admin
        .post(
            &format!("/users/{ed_id}/password"),
            &[("password", temporary)],
        )
        .await
        .assert_redirect("/users");
    ed.get("/contacts").await.assert_status(303);

    let mut ed = admin.fork();
    ed.sign_in("ed@example.org", PASSWORD)
        .await
        .assert_status(401);
    ed.sign_in("ed@example.org", temporary)
        .await
        .assert_redirect("/");
    ed.get("/contacts")
        .await
        .assert_redirect("/account/password");
    ed.get("/account/password")
        .await
        .assert_status(200)
        .assert_contains("An admin has reset your password");
    let own = "my own long passphrase";
    ed.post(
        "/account/password",
        &[
            ("current_password", temporary),
            ("new_password", own),
            ("new_password_confirmation", own),
        ],
    )
    .await
    .assert_redirect("/");
    ed.get("/contacts").await.assert_status(200);
}

/// NUL and the other control characters (but tab and line breaks) are refused where the
/// request comes in, once for every route: 400 with the parameter named, never a 500 from a
/// database that cannot hold them (PostgreSQL) or a download cut short.
#[actix_web::test]
async fn control_characters_are_refused_at_the_edge() {
    let mut app = spawn().await;
    app.create_user("ada@example.org", Role::Admin);
    // Signed out: the sign-in form.
    app.get("/signin").await;
    app.post("/signin", &[("email", "a\0@x"), ("password", PASSWORD)])
        .await
        .assert_status(400)
        .assert_contains("<!doctype html>")
        .assert_contains("&#39;email&#39; holds a control character");
    // Tab and line breaks are text (forms have textareas): the usual answer.
    app.post(
        "/signin",
        &[("email", "ada@example.org"), ("password", "a\tb\r\nc")],
    )
    .await
    .assert_status(401);

    app.sign_in("ada@example.org", PASSWORD)
        .await
        .assert_redirect("/");
    for (path, parameter) in [
        ("/contacts?cf_tag1=%00", "cf_tag1"),
        ("/activities?outcome=%00", "outcome"),
        ("/companies/suggest?company=%00", "company"),
        ("/activities/export.csv?outcome=%00", "outcome"),
        ("/contacts?q=x%7Fy", "q"),
        ("/contacts?q=%C2%85", "q"),
        ("/contacts?q%01=x", "q\\u{1}"),
    ] {
        app.get(path)
            .await
            .assert_status(400)
            .assert_contains(&format!("&#39;{parameter}&#39; holds a control character"));
    }
    app.get("/records/1%00")
        .await
        .assert_status(400)
        .assert_contains("The address holds a control character");
    // An htmx request gets the message as a fragment.
    let fragment = app.htmx(Method::GET, "/contacts?q=%00").await;
    fragment
        .assert_status(400)
        .assert_contains("control character");
    assert!(
        !fragment.body.contains("<!doctype html>"),
        "{}",
        fragment.body
    );
    // Tab and line breaks in a query are left to the page.
    app.get("/contacts?q=a%09b%0A").await.assert_status(200);
    // A form past the forms' limit is refused before it is read whole.
    let long = "x".repeat(300 * 1024);
    app.post("/users", &[("display_name", long.as_str())])
        .await
        .assert_status(413);
    // Uploads are the import reader's to judge, byte by byte: the edge lets them through.
    app.get("/").await;
    app.upload("/sources/999/imports", "a.csv", b"Id,Name\n1,A\0n\n", true)
        .await
        .assert_status(404);
}

/// The API answers a control character with a 422 problem naming the parameter: in the path,
/// the query string or anywhere in a JSON body, whatever its content type says.
#[actix_web::test]
async fn control_characters_in_the_api_are_422_problems() {
    use actix_web::test::TestRequest;
    use syncdesk::api::model::Scope;
    let mut app = spawn().await;
    let secret = {
        let mut conn = app.state.pool.get().expect("connection");
        syncdesk::api::service::create(
            &mut conn,
            &syncdesk::api::service::NewToken {
                name: "probe".into(),
                scopes: vec![Scope::RecordsRead, Scope::ActivitiesWrite],
                source_id: None,
                created_by: None,
            },
        )
        .expect("token")
        .1
    };
    let bearer = ("Authorization", format!("Bearer {secret}"));
    let problem = |res: &common::Response, needle: &str| {
        res.assert_status(422).assert_contains(needle);
        assert_eq!(
            res.header("content-type"),
            Some("application/problem+json"),
            "{}",
            res.body
        );
        let doc: serde_json::Value = serde_json::from_str(&res.body).expect("problem");
        assert_eq!(doc["status"], 422);
    };
    for (uri, needle) in [
        (
            "/api/v1/sources/1/records/%00",
            "The address holds a control character",
        ),
        (
            "/api/v1/records?kind=%00",
            "'kind' holds a control character",
        ),
    ] {
        let res = app
            .send(TestRequest::get().uri(uri).insert_header(bearer.clone()))
            .await;
        problem(&res, needle);
    }
    let activity = |subject: &str, outcome: &str| {
        serde_json::json!({
            "contact": {"email": "nobody@example.org"},
            "type": "call",
            "subject": subject,
            "attributes": {"outcome": outcome},
        })
    };
    let res = app
        .send(
            TestRequest::post()
                .uri("/api/v1/activities")
                .insert_header(bearer.clone())
                .set_json(activity("Call\u{0}", "answered")),
        )
        .await;
    problem(&res, "'subject' holds a control character");
    let res = app
        .send(
            TestRequest::post()
                .uri("/api/v1/activities")
                .insert_header(bearer.clone())
                .set_json(activity("Call", "\u{1b}[31m")),
        )
        .await;
    problem(&res, "'attributes.outcome' holds a control character");
    // Sent as text/plain, the body is still JSON to the handler, and still checked.
    let res = app
        .send(
            TestRequest::post()
                .uri("/api/v1/activities")
                .insert_header(bearer.clone())
                .insert_header(("content-type", "text/plain"))
                .set_payload(r#"{"contact": {"id": 1}, "type": "call", "subject": "a\u0000"}"#),
        )
        .await;
    problem(&res, "'subject' holds a control character");
    // A backslash before `u0000` is text, and tab and line breaks are too: the handler answers.
    let res = app
        .send(
            TestRequest::post()
                .uri("/api/v1/activities")
                .insert_header(bearer.clone())
                .set_json(activity("C:\\u0000\tline\r\nnext", "answered")),
        )
        .await;
    res.assert_status(422)
        .assert_contains("There is no contact with the email");
}

/// A panic in database work answers 500, and the connection it held is not handed out again
/// in the middle of its transaction: the next write goes through at once.
#[actix_web::test]
async fn a_panic_in_database_work_is_a_500_and_the_pool_keeps_serving() {
    let mut app = spawn().await;
    for _ in 0..3 {
        let failed = app
            .state
            .db(|conn| {
                syncdesk::db::write_tx(conn, |conn| -> Result<(), syncdesk::error::AppError> {
                    syncdesk::auth::service::user_count(conn)?;
                    panic!("a bug in the middle of a write")
                })
            })
            .await;
        assert!(
            matches!(failed, Err(syncdesk::error::AppError::Internal(_))),
            "{failed:?}"
        );
    }
    let started = std::time::Instant::now();
    app.create_user("after@example.org", Role::Viewer);
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    app.get("/healthz").await.assert_status(200);
}

/// The data folder and what the console writes in it are its user's alone: the folder, the
/// SQLite database and its WAL files, the session key, stored imports and documents.
#[cfg(unix)]
#[actix_web::test]
async fn the_data_folder_is_created_private() {
    use std::os::unix::fs::PermissionsExt;
    let db = TestDb::sqlite();
    let mut config = db.config();
    config.database_url = format!("sqlite://{}", config.data_dir.join("syncdesk.db").display());
    config.session_key = None;
    let data_dir = config.data_dir.clone();
    let state = syncdesk::AppState::open(config).expect("app state");
    {
        let mut conn = state.pool.get().expect("connection");
        syncdesk::auth::service::user_count(&mut conn).expect("count");
        syncdesk::sync::jobs::store_file(&data_dir, &b"Id,Name\n1,Ann\n"[..], 1024)
            .expect("import file");
        syncdesk::records::documents::store(&mut conn, &data_dir, "note.txt", b"hello", 1024, None)
            .expect("document");
        let mut names = Vec::new();
        let mut stack = vec![data_dir.clone()];
        while let Some(path) = stack.pop() {
            let meta = std::fs::metadata(&path).expect("metadata");
            let mode = meta.permissions().mode() & 0o777;
            assert_eq!(mode & 0o077, 0, "{} is {mode:o}", path.display());
            if meta.is_dir() {
                for entry in std::fs::read_dir(&path).expect("folder") {
                    stack.push(entry.expect("entry").path());
                }
            }
            names.push(
                path.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
            );
        }
        for expected in [
            "syncdesk.db",
            "syncdesk.db-wal",
            "syncdesk.db-shm",
            "session.key",
            "imports",
            "documents",
        ] {
            assert!(names.iter().any(|n| n == expected), "{expected}: {names:?}");
        }
    }
}
