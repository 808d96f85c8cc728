#!/usr/bin/env bash
# Installs the third-party drivers that tests/drivers.rs runs through rwsplit, at the versions pinned here:
#   - Node mysql2 (tests/drivers/package.json + package-lock.json) with `npm ci` into tests/drivers/node_modules;
#   - MySQL Connector/Python and PyMySQL (tests/drivers/requirements.txt) into a venv at target/drivers-venv.
# Idempotent: each part is skipped when it is already installed with the pinned versions (a stamp holding
# the hash of the lock/requirements file, and the installed version checked). Progress goes to stderr.
# Needs node and npm (18+), python3 with the venv module, and the npm registry and PyPI.
# Environment: PYTHON (default python3) creates the venv; DRIVERS_FORCE=1 reinstalls both parts.
set -euo pipefail

DRIVERS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$DRIVERS_DIR/../.." && pwd)"
VENV="$REPO_ROOT/target/drivers-venv"
PYTHON="${PYTHON:-python3}"
FORCE="${DRIVERS_FORCE:-0}"
STAMP=.rwsplit-install-stamp

log() { echo "tests/drivers/install.sh: $*" >&2; }
die() {
    echo "tests/drivers/install.sh: error: $*" >&2
    exit 1
}

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# --- Node: mysql2 ------------------------------------------------------------------------------------------

# Installs Debian packages when apt-get is there (a fresh machine without Node.js or the venv module).
apt_install() {
    command -v apt-get >/dev/null 2>&1 || return 1
    local sudo=""
    [[ "$(id -u)" -eq 0 ]] || sudo="sudo"
    log "installing $* with apt-get"
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

install_node() {
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        apt_install nodejs npm || true
    fi
    command -v node >/dev/null 2>&1 || die "node is not on PATH (mysql2 needs Node.js 18 or newer)"
    command -v npm >/dev/null 2>&1 || die "npm is not on PATH (it comes with Node.js)"
    local major
    major="$(node -p 'process.versions.node.split(".")[0]')" || die "cannot run node"
    ((major >= 18)) || die "node $(node --version) is too old: mysql2 needs Node.js 18 or newer"
    [[ -f "$DRIVERS_DIR/package-lock.json" ]] || die "$DRIVERS_DIR/package-lock.json is missing"

    local pinned want have=""
    pinned="$(node -p 'require(process.argv[1]).dependencies.mysql2' "$DRIVERS_DIR/package.json")" ||
        die "cannot read the mysql2 version from $DRIVERS_DIR/package.json"
    want="$(sha256_of "$DRIVERS_DIR/package-lock.json")"
    if [[ -f "$DRIVERS_DIR/node_modules/mysql2/package.json" ]]; then
        have="$(node -p 'require(process.argv[1]).version' "$DRIVERS_DIR/node_modules/mysql2/package.json" 2>/dev/null || true)"
    fi
    if [[ "$FORCE" != 1 && "$have" == "$pinned" && "$(cat "$DRIVERS_DIR/node_modules/$STAMP" 2>/dev/null)" == "$want" ]]; then
        log "mysql2 $pinned already installed in tests/drivers/node_modules (skipping npm ci)"
        return 0
    fi
    log "installing mysql2 $pinned with npm ci into tests/drivers/node_modules (npm $(npm --version), node $(node --version))"
    local started=$SECONDS
    # --ignore-scripts: none of the packages needs an install script; --no-audit/--no-fund: no extra requests.
    if ! (cd "$DRIVERS_DIR" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error 1>&2); then
        die "npm ci in $DRIVERS_DIR failed (is the npm registry reachable? see npm's messages above)"
    fi
    have="$(node -p 'require(process.argv[1]).version' "$DRIVERS_DIR/node_modules/mysql2/package.json" 2>/dev/null || true)"
    [[ "$have" == "$pinned" ]] || die "after npm ci, node_modules has mysql2 '${have:-none}', expected $pinned (package.json and package-lock.json disagree?)"
    echo "$want" >"$DRIVERS_DIR/node_modules/$STAMP"
    log "mysql2 $have installed in $((SECONDS - started)) s"
}

# --- Python: MySQL Connector/Python ------------------------------------------------------------------------

installed_connector_version() {
    "$VENV/bin/python" -c 'import mysql.connector; print(mysql.connector.__version__)' 2>/dev/null || true
}

install_python() {
    local req="$DRIVERS_DIR/requirements.txt" pinned want have=""
    [[ -f "$req" ]] || die "$req is missing"
    pinned="$(sed -n 's/^mysql-connector-python==\([^[:space:];#]*\).*/\1/p' "$req")"
    [[ -n "$pinned" ]] || die "$req does not pin mysql-connector-python==VERSION"
    want="$(sha256_of "$req")"
    if [[ -x "$VENV/bin/python" ]]; then
        have="$(installed_connector_version)"
    fi
    if [[ "$FORCE" != 1 && "$have" == "$pinned" && "$(cat "$VENV/$STAMP" 2>/dev/null)" == "$want" ]]; then
        log "mysql-connector-python $pinned already installed in target/drivers-venv (skipping pip)"
        return 0
    fi
    local started=$SECONDS
    # A venv whose interpreter no longer runs (its base Python was removed or upgraded) is rebuilt.
    if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1 || [[ "$FORCE" == 1 ]]; then
        command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON is not on PATH (set PYTHON to a Python 3.8+ interpreter)"
        log "creating the venv target/drivers-venv with $PYTHON ($("$PYTHON" --version 2>&1))"
        rm -rf "$VENV"
        mkdir -p "$(dirname "$VENV")"
        if ! "$PYTHON" -m venv "$VENV" 1>&2; then
            rm -rf "$VENV"
            die "'$PYTHON -m venv $VENV' failed: the venv module (with ensurepip) is missing; on Debian/Ubuntu install it with 'apt-get install python3-venv'"
        fi
    fi
    log "installing mysql-connector-python $pinned into target/drivers-venv with pip"
    if ! "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input --quiet -r "$req" 1>&2; then
        die "pip install -r $req into $VENV failed (is PyPI reachable? see pip's messages above)"
    fi
    have="$(installed_connector_version)"
    [[ "$have" == "$pinned" ]] || die "after pip install, the venv has mysql-connector-python '${have:-none}', expected $pinned"
    "$VENV/bin/python" -c 'import pymysql' || die "after pip install, the venv has no pymysql"
    echo "$want" >"$VENV/$STAMP"
    log "mysql-connector-python $have installed in $((SECONDS - started)) s"
}

install_node
install_python
log "drivers ready: tests/drivers/node_modules (mysql2), target/drivers-venv (mysql-connector-python, PyMySQL)"
