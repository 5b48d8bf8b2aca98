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

# Fuzz the framers and rules (issue 3 adds the targets).
fuzz:
    @echo "no fuzz targets yet"
