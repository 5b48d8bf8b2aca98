#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs `just` when it is missing (the
# tests install postgresql-15 themselves when they need it), then runs `just test`:
# fmt check, clippy -D warnings, build, unit and integration tests (serialised: they
# run real processes and a real PostgreSQL on port 5432). Needs root.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="${CARGO_HOME:-${HOME:-/root}/.cargo}/bin:$PATH"
command -v just >/dev/null || cargo install --locked just
exec just test
