//! (pages in progress)

pub fn configure(_cfg: &mut actix_web::web::ServiceConfig) {}
