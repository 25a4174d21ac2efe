#!/usr/bin/env bash
# Property-based API testing of `autoglm serve` against its own OpenAPI document
# (development tool, not CI): schemathesis generates requests from /openapi.json —
# valid ones and, with negative testing, invalid ones — and checks every response
# against the document (status codes, content types, schemas) and for server errors.
#
# usage: scripts/schemathesis.sh [MAX_EXAMPLES]
# env: PY (python3 with venv support), PORT (18089), AUTOGLM (the binary).
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PORT=${PORT:-18089}
AUTOGLM=${AUTOGLM:-$ROOT/target/release/autoglm}
VENV=$ROOT/target/schemathesis-venv
[ -x "$VENV/bin/schemathesis" ] || { ${PY:-python3} -m venv "$VENV"; "$VENV/bin/pip" install --quiet "schemathesis>=4,<5"; }
[ -x "$AUTOGLM" ] || cargo build --release -p autoglm-cli --manifest-path "$ROOT/Cargo.toml"
WORK=$(mktemp -d)
cp -r "$ROOT/crates/autoglm-models/tests/fixtures/glm_gqa_bias" "$WORK/glm"
"$AUTOGLM" serve --model "$WORK/glm" --name glm --port "$PORT" > "$WORK/server.log" 2>&1 &
PID=$!
trap 'kill -INT $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 1 60); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.5; done
"$VENV/bin/schemathesis" --config-file "$ROOT/scripts/schemathesis.toml" \
  run "http://127.0.0.1:$PORT/openapi.json" --checks all --exclude-checks positive_data_acceptance --max-examples "${1:-100}" --phases examples,coverage,fuzzing \
  --mode all --request-timeout 30 --seed 1
kill -0 $PID || { echo "the server died"; tail -20 "$WORK/server.log"; exit 1; }
echo "server alive after the run"
