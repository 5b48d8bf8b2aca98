# supervise: the recipes the README names. Run as root (the supervisor must be root).

set shell := ["bash", "-euo", "pipefail", "-c"]

# List the recipes.
default:
    @just --list

# Integration tests run real processes (and a real PostgreSQL on port 5432), so they
# are serialised; the build step makes the testbins they run.

# The whole test suite: fmt check, clippy, build everything, then the tests.
test:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings
    cargo build --workspace --all-targets
    cargo test --workspace -- --test-threads=1 2>&1 | tee target/test.log
    @awk '/^test result:/ { p += $4; f += $6; i += $8 } END { printf "summary: %d passed, %d failed, %d skipped\n", p, f, i; exit (f > 0 || p == 0) }' target/test.log

# PostgreSQL 15 under supervise: queries and a short pgbench over the tracked port.
demo:
    cargo build --release --workspace --bins
    scripts/demo.sh

# Benchmarks (prints, never asserts): ping-pong bare/floor/serviced, pgbench bare vs supervised.
bench:
    cargo build --release --workspace --bins
    scripts/bench.sh

# cargo-fuzz needs nightly; without one, stable with RUSTC_BOOTSTRAP=1. Each target starts
# from fuzz/seeds/<target> and grows fuzz/corpus/<target>; findings land in
# fuzz/artifacts/<target>/. Not run in CI.

# Fuzz each target (PostgreSQL framer, rule pipeline, keyring parsers and decision) for
# `seconds`.
fuzz seconds="60":
    #!/usr/bin/env bash
    set -euo pipefail
    command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
    if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
        cargo=(cargo +nightly)
    else
        echo "no nightly toolchain: using stable with RUSTC_BOOTSTRAP=1" >&2
        export RUSTC_BOOTSTRAP=1
        cargo=(cargo)
    fi
    cd fuzz
    failed=()
    for target in $("${cargo[@]}" fuzz list); do
        mkdir -p "corpus/$target"
        dirs=("corpus/$target")
        [[ -d "seeds/$target" ]] && dirs+=("seeds/$target")
        echo "== $target: {{seconds}} s"
        "${cargo[@]}" fuzz run "$target" "${dirs[@]}" -- -max_total_time={{seconds}} \
            || failed+=("$target")
    done
    if (( ${#failed[@]} )); then
        echo "fuzz: findings in ${failed[*]} (see fuzz/artifacts/)" >&2
        exit 1
    fi
