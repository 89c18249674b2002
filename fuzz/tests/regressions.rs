//! Every seed and every kept regression input of each fuzz target runs
//! through the real parsers without a panic or a broken round trip.

use std::path::Path;

use syncline_fuzz::{replay, Target};

#[test]
fn seeds_and_kept_regressions_run_clean() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    for t in Target::ALL {
        assert!(t.seeds(root).len() >= 3, "{} has too few seeds", t.name());
        let failed = replay(t, root);
        assert!(failed.is_empty(), "{}: {failed:#?}", t.name());
    }
}
