//! Tells the tests whether a PostgreSQL server is named by `KITH_TEST_DATABASE_URL`. Without
//! one, the tests that need it are compiled as ignored, so a run reports them as skipped and
//! counts them ("N ignored") instead of passing them without running anything.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(kith_test_postgres)");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=KITH_TEST_DATABASE_URL");
    if std::env::var("KITH_TEST_DATABASE_URL").is_ok_and(|url| !url.trim().is_empty()) {
        println!("cargo::rustc-cfg=kith_test_postgres");
    }
}
