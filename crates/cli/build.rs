//! The version's build information (commit, profile): `hpkv_build_info`.

fn main() {
    hpkv_build_info::emit();
}
