# tests/vm/bench/payload.sh — sourced by the bench scripts (run.sh, syscalls.sh): the binaries
# every bench payload holds. Needs common.sh sourced and the working directory at the repo.

# bench_payload DIR: empties DIR and puts in it hpkvd and hpkvctl (release), the floor CUSE
# server (tests/vm/bench/floor-server.c) and the timing client (devbench.c).
bench_payload() {
    local dir=$1 src
    src=$HPKV_REPO/tests/vm/bench
    rm -rf "$dir"
    mkdir -p "$dir"
    cargo build --release --quiet --bin hpkvd --bin hpkvctl
    cp target/release/hpkvd target/release/hpkvctl "$dir/"
    local cflags=(-O2 -Wall -Wextra -Werror -I uapi)
    # shellcheck disable=SC2046  # pkg-config prints several words
    gcc "${cflags[@]}" $(pkg-config --cflags fuse3) -o "$dir/hpkv-floor" \
        "$src/floor-server.c" $(pkg-config --libs fuse3) -lpthread
    gcc "${cflags[@]}" -o "$dir/hpkv-devbench" "$src/devbench.c" -lpthread
}
