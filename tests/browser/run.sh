#!/usr/bin/env bash
# Starts the console on a fresh SQLite database, runs the browser smoke test, stops the console.
# Usage: tests/browser/run.sh [path to the syncdesk binary] (default: target/debug/syncdesk)
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${1:-target/debug/syncdesk}
port=${BROWSER_TEST_PORT:-18090}
data=$(mktemp -d)
[ -x "$bin" ] || cargo build --bin syncdesk
SYNCDESK_DATA_DIR="$data" DATABASE_URL="sqlite://$data/syncdesk.db" "$bin" serve --bind "127.0.0.1:$port" > "$data/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 1 50); do
  curl -fsS "http://127.0.0.1:$port/healthz" > /dev/null 2>&1 && break
  sleep 0.2
done
if ! curl -fsS "http://127.0.0.1:$port/healthz" > /dev/null; then
  echo "the console did not start:"; cat "$data/server.log"; exit 1
fi
(cd tests/browser && { [ -d node_modules/playwright-core ] || npm ci --no-audit --no-fund; })
if ! BASE_URL="http://127.0.0.1:$port" SCREENSHOT_DIR="$PWD/target/browser" node tests/browser/smoke.mjs; then
  echo "--- server log ---"; cat "$data/server.log"; exit 1
fi
