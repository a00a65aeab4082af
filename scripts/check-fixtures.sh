#!/usr/bin/env bash
# The tests read tests/fixtures, the repository's copy of the shared fixtures. When the shared
# folder sits beside the checkout (../shared/fixtures), the copy must still match it.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -d ../shared/fixtures ]; then
  diff -r tests/fixtures ../shared/fixtures
  echo "tests/fixtures matches ../shared/fixtures"
else
  echo "no ../shared/fixtures beside the checkout; using tests/fixtures as it is"
fi
