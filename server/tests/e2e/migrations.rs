//! `parsec-server migrate` and the schema check of `run`, on a real database
//! (PostgreSQL pass of the tests only).

use std::process::Command;

use parsec_actors::backend::postgres::test_database_url;

fn server(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_parsec-server"))
        .args(args)
        .output()
        .expect("run parsec-server")
}

/// A fresh, empty database next to the test one (same cluster).
fn empty_database(test_db_url: &str) -> String {
    let (cluster, _) = test_db_url.rsplit_once('/').expect("database URL");
    let name = format!("parsec_empty_{}", hex::encode(rand::random::<[u8; 6]>()));
    let created = Command::new("psql")
        .args([
            "-q",
            &format!("{cluster}/postgres"),
            "-c",
            &format!("CREATE DATABASE {name}"),
        ])
        .status();
    assert!(created.is_ok_and(|s| s.success()));
    format!("{cluster}/{name}")
}

#[actix_web::test]
async fn migrate_applies_once_and_run_refuses_an_unmigrated_or_newer_database() {
    let Some(test_db) = test_database_url().await else {
        return;
    };
    let db = empty_database(&test_db);

    // `run` on an unmigrated database: a clear one-line refusal, no retry loop.
    let out = server(&[
        "run",
        "--dev",
        "-P",
        "0",
        "--db",
        &db,
        "--maximum-database-connection-attempts",
        "0",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not migrated") && err.contains("parsec-server migrate"),
        "{err}"
    );

    // Dry run lists, applies nothing; a real run applies; a second is a no-op.
    let out = server(&["migrate", "--db", &db, "--dry-run"]);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("dry run"));
    let out = server(&["migrate", "--db", &db]);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains('\u{2714}'));
    let out = server(&["migrate", "--db", &db]);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("up to date"));

    // A database migrated by a newer binary is refused by both commands.
    let newer = Command::new("psql")
        .args([
            "-q",
            &db,
            "-c",
            "INSERT INTO __diesel_schema_migrations (version) VALUES ('29991231000000')",
        ])
        .status();
    assert!(newer.is_ok_and(|s| s.success()));
    for args in [
        vec!["migrate", "--db", &db],
        vec!["run", "--dev", "-P", "0", "--db", &db],
    ] {
        let out = server(&args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("newer than this server"), "{args:?}: {err}");
    }
}

#[actix_web::test]
async fn two_concurrent_migrations_apply_each_migration_once() {
    let Some(test_db) = test_database_url().await else {
        return;
    };
    let db = empty_database(&test_db);
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_parsec-server"))
            .args(["migrate", "--db", &db])
            .output()
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(spawn);
        let b = s.spawn(spawn);
        (
            a.join().expect("thread").expect("run"),
            b.join().expect("thread").expect("run"),
        )
    });
    assert!(a.status.success() && b.status.success());
    let applied = [a, b]
        .iter()
        .filter(|o| String::from_utf8_lossy(&o.stdout).contains('\u{2714}'))
        .count();
    assert_eq!(applied, 1, "exactly one of the two applied the migration");
}
