//! Imports: the decision logic (pure), file reading, the engine that applies a file through a
//! source's mapping (`engine` reads and plans, `write` writes a chunk, `missing` flags what a
//! full file lacks), run reports, dry runs, apply-plan and undo, the background jobs, and
//! automatic imports from watched folders.

pub mod claims;
pub mod csvfile;
pub mod decide;
pub mod engine;
pub mod error;
pub mod feed;
pub mod feed_routes;
pub mod jobs;
pub(crate) mod missing;
pub mod model;
pub mod plan;
pub mod report;
pub mod routes;
pub mod undo;
pub mod watch;
pub mod webhooks;
pub mod worker;
pub mod write;
