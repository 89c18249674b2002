//! One internal macro for `syncline-sdk`: `wit_bindgen::generate!` needs the
//! WIT folder as a literal path, and a plugin crate using the SDK can live
//! anywhere, so this macro splices in the absolute path of the SDK's WIT.

use proc_macro::TokenStream;
use std::path::PathBuf;

/// `generate_bindings!({ world: "...", ... })` expands to
/// `::syncline_sdk::__private::wit_bindgen::generate!({ path: "<SDK WIT>", world: "...", ... })`.
#[proc_macro]
pub fn generate_bindings(input: TokenStream) -> TokenStream {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    // In the repository the WIT is two levels up; a packaged SDK carries a copy.
    let wit = [here.join("wit"), here.join("../wit"), here.join("../../wit")]
        .into_iter()
        .find(|p| p.join("plugin.wit").exists())
        .and_then(|p| p.canonicalize().ok());
    let Some(wit) = wit else {
        return r#"compile_error!("syncline-sdk-macros: cannot find the Syncline WIT folder (wit/plugin.wit)");"#
            .parse()
            .unwrap();
    };
    let options = input.to_string();
    let inner = options.trim().trim_start_matches('{').trim_end_matches('}');
    format!("::syncline_sdk::__private::wit_bindgen::generate!({{ path: {:?}, {inner} }});", wit.display().to_string())
        .parse()
        .unwrap()
}
