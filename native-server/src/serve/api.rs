//! The HTTP API's JSON shapes live in the `lab-api` crate, shared with the browser lab (which is
//! wasm and cannot depend on this crate); re-exported here so the server code reads `api::…`.

pub use lab_api::*;
