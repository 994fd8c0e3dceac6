#!/usr/bin/env bash
# The performance benchmark (README, "Performance"): builds the release binary, then runs
# benches/stream.rs, which serves a local stream and times gptstream against curl -sN on it, and
# benches/reuse.rs, which times follow-up requests over TLS with and without connection reuse,
# and benches/mcp_start.rs, which times the first byte of an answer with and without --mcp.
# BENCH_QUICK=1 for a short run. Needs curl and util-linux script.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --quiet
cargo bench --locked --quiet --bench stream
cargo bench --locked --quiet --bench reuse
cargo bench --locked --quiet --bench mcp_start
