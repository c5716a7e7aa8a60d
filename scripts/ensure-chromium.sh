#!/usr/bin/env bash
# Make sure headless Chromium and its WebDriver are there for the dashboard's browser tests
# (tests/test_dashboard.py) and benchmark (benchmarks/dashboard.py): Debian's `chromium` and
# `chromium-driver` packages, /usr/bin/chromium and /usr/bin/chromedriver.
# Installed: nothing to do. Missing: install both. No browser build is downloaded from anywhere else.
# ML_SERVER_TEST_CHROMIUM / ML_SERVER_TEST_CHROMEDRIVER name other executables; then nothing is installed.
set -euo pipefail

browser=${ML_SERVER_TEST_CHROMIUM:-/usr/bin/chromium}
driver=${ML_SERVER_TEST_CHROMEDRIVER:-/usr/bin/chromedriver}

if [ -x "$browser" ] && [ -x "$driver" ]; then
    exit 0
fi
if [ -n "${ML_SERVER_TEST_CHROMIUM:-}${ML_SERVER_TEST_CHROMEDRIVER:-}" ]; then
    echo "Chromium ($browser) or ChromeDriver ($driver) is not there, and they are not this script's to install" >&2
    exit 1
fi

echo "Chromium or ChromeDriver is not installed: installing Debian's chromium and chromium-driver packages" >&2
sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium chromium-driver
"$browser" --version >&2
