//! Guest bindings for the `sdk` world (every import and the shared types),
//! and the moves between them and the `syncline_model` types.

#[allow(missing_docs, clippy::all)]
pub mod generated {
    wit_bindgen::generate!({
        path: "../wit",
        world: "syncline:plugin/sdk",
        generate_all,
    });
}

pub mod convert {
    use super::generated::syncline::canonical::types as wit;
    syncline_model::wit_conversions!(wit);
}
