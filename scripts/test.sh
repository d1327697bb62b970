#!/usr/bin/env bash
# The test command of the README and of CI (.ci/run): one script, so that both run the same.
#
#   scripts/test.sh [PYTEST ARGS...]      e.g. scripts/test.sh tests/data -x
#
# 1. creates .venv (with $PYTHON, default python3) and installs hrseg with its [dev] extra
#    (pinned by constraints.txt when the repository has one);
# 2. as root on a Debian-like system, installs chromium + chromedriver for the browser test
#    when they are missing (otherwise that test skips, and step 4 says so);
# 3. runs pytest;
# 4. lists every skipped test with its reason.
# Exit status: pytest's (non-zero when a test fails; 5, with a message, when no test was collected).
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
venv=.venv
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
constraints=()
[ -f constraints.txt ] && constraints=(-c constraints.txt)
"$venv/bin/python" -m pip install -q -e '.[dev]' "${constraints[@]}"

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
  && ! { [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; }; then
  echo "installing chromium + chromedriver for tests/test_ui_browser.py (apt-get)" >&2
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver; } >/dev/null 2>&1 \
    || echo "note: could not install chromium + chromium-driver; tests/test_ui_browser.py will skip" >&2
fi

report=$(mktemp -t hrseg-junit.XXXXXX.xml)
trap 'rm -f "$report"' EXIT
status=0
"$venv/bin/python" -m pytest --junitxml="$report" "$@" || status=$?

"$venv/bin/python" scripts/skipped_tests.py "$report" || true

if [ "$status" = 5 ]; then
  echo "error: pytest collected no tests (check the paths and -k/-m filters given: $*)" >&2
fi
exit "$status"
