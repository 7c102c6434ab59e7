// Embedded migrations are only re-read when cargo knows the folder changed.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
