#!/usr/bin/env bash
# Screenshots of every console page for docs/console.md, taken in headless Chromium (Debian's,
# driven over WebDriver) from a throwaway server seeded with the bundled catalogue.
#   scripts/screenshots.sh [OUT_DIR]   (default docs/console)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-docs/console}"
. scripts/services.sh
cargo run -j2 --example console_screenshots -- "$out"
