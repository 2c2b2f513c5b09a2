#!/usr/bin/env bash
# Run a peer's real-parity suite against drivemr's fake Drive.
#
# google-drive-mock (npm, by pubkey) ships vitest tests that its authors also run against
# real Google Drive (TEST_TARGET=real). With USE_SHARED_MOCK=true they talk to any server
# at http://localhost:$PORT, so we point them at `drivemr fake-drive` and count what
# passes. The package is fetched into a temporary folder (never committed) with npm;
# its dev dependencies are installed with --ignore-scripts (no browser downloads).
#
#   scripts/peer_parity.sh                 # the v3 test files (as the package's `npm test`)
#   PEER_VERSION=1.2.0 PYTHON=python3 scripts/peer_parity.sh
#
# Needs node >= 20 and npm (registry access). Prints passed/failed per file, then each
# failing test with whether it calls Drive API v2 (which the fake does not model: drivemr
# uses v3 only). Exit status: 0 when every failing test is a v2 one, 1 otherwise.
set -euo pipefail

PEER_VERSION="${PEER_VERSION:-1.2.0}"
PYTHON="${PYTHON:-python}"
HERE="$(cd "$(dirname "$0")/.." && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/drivemr-peer.XXXXXX")"
FAKE_PID=""
cleanup() {
    if [ -n "$FAKE_PID" ]; then kill "$FAKE_PID" 2>/dev/null || true; wait "$FAKE_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

cd "$WORK"
npm pack --silent "google-drive-mock@${PEER_VERSION}" >/dev/null
tar xzf "google-drive-mock-${PEER_VERSION}.tgz"
cd package
npm install --ignore-scripts --no-audit --no-fund --silent >/dev/null

# The fake, on a free port; its first line says where it listens.
PYTHONPATH="$HERE${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m drivemr.cli fake-drive --port 0 \
    >"$WORK/fake.log" 2>&1 &
FAKE_PID=$!
for _ in $(seq 1 100); do
    grep -q "listening at" "$WORK/fake.log" 2>/dev/null && break
    sleep 0.1
done
PORT="$(sed -n 's#.*listening at http://[^:]*:\([0-9]*\)/.*#\1#p' "$WORK/fake.log" | head -1)"
[ -n "$PORT" ] || { cat "$WORK/fake.log"; echo "the fake did not start" >&2; exit 2; }

PORT="$PORT" TEST_TARGET=mock USE_SHARED_MOCK=true npx vitest run --fileParallelism=false \
    --exclude "**/v2_*.test.ts" --exclude "**/check_empty.test.ts" \
    --reporter=json --outputFile="$WORK/result.json" >"$WORK/vitest.log" 2>&1 || true
[ -s "$WORK/result.json" ] || { tail -40 "$WORK/vitest.log"; exit 2; }

"$PYTHON" - "$WORK/result.json" "$WORK/package/test" <<'EOF'
import json, re, sys
from pathlib import Path

result, tests = json.load(open(sys.argv[1])), Path(sys.argv[2])
print(f"google-drive-mock tests against drivemr's fake: {result['numTotalTests']} run, "
      f"{result['numPassedTests']} passed, {result['numFailedTests']} failed")
non_v2 = 0
for f in sorted(result["testResults"], key=lambda f: f["name"]):
    cases = f["assertionResults"]
    failed = [c for c in cases if c["status"] == "failed"]
    print(f"  {Path(f['name']).name}: {len(cases) - len(failed)}/{len(cases)} passed")
    source = Path(f["name"]).read_text(encoding="utf-8")
    for c in failed:
        # The test's body: from its title to the next `it(` (good enough to spot v2 calls).
        start = source.find(c["title"])
        body = source[start : source.find("\n    it(", start + 1) if start >= 0 else None]
        v2 = bool(re.search(r"/drive/v2/|drive/v2", body))
        non_v2 += not v2
        first = (c["failureMessages"] or [""])[0].splitlines()[0][:150]
        print(f"    FAILED {'[uses API v2] ' if v2 else ''}{c['title']}: {first}")
print("every failure calls Drive API v2, which the fake does not model" if not non_v2
      else f"{non_v2} failure(s) without a v2 call")
sys.exit(1 if non_v2 else 0)
EOF
