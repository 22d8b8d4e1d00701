//! The version's build information (commit, profile) that hpkvctl's command line shows:
//! `hpkv_build_info`, as in hpkvctl's own build script.

fn main() {
    hpkv_build_info::emit();
}
