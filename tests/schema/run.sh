#!/usr/bin/env bash
# Schema fuzzing of the JSON API with schemathesis (PyPI) against the served OpenAPI document:
# a console on SQLite with a source and a token, then every operation with generated inputs.
# Fails on any server error, or any response that breaks the document (body, status code,
# content type). Usage: tests/schema/run.sh [path/to/syncdesk]
set -euo pipefail
BIN=$(realpath "${1:-target/debug/syncdesk}")
WORK=$(mktemp -d)
PORT=${SCHEMA_PORT:-18090}
cleanup() {
  [ -n "${PID:-}" ] && kill "$PID" 2> /dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

python3 -m venv "$WORK/venv"
"$WORK/venv/bin/pip" install -q 'schemathesis==4.32.5'

export SYNCDESK_DATA_DIR="$WORK/data" SYNCDESK_API_REQUESTS_PER_MINUTE=1000000
unset DATABASE_URL SYNCDESK_CONFIG
"$BIN" migrate > /dev/null
"$BIN" source add CRM --kind contact --id-column "External Id" --mode delta \
  --map 'Name=name:always:always' --map 'Email=email:fill_blanks:review' > /dev/null
TOKEN=$("$BIN" token create --name schemathesis --scope records:read --scope rows:write \
  --scope changes:read --scope activities:write 2> /dev/null)
"$BIN" serve --bind "127.0.0.1:$PORT" > "$WORK/serve.log" 2>&1 &
PID=$!
python3 - "$PORT" << 'PY'
import sys, time, urllib.request
for _ in range(100):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/healthz", timeout=1)
        sys.exit(0)
    except Exception:
        time.sleep(0.2)
sys.exit("the console did not start")
PY
"$WORK/venv/bin/st" run "http://127.0.0.1:$PORT/api/v1/openapi.json" \
  --url "http://127.0.0.1:$PORT" \
  -H "Authorization: Bearer $TOKEN" \
  --checks not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance \
  --max-examples 100 --seed 1
