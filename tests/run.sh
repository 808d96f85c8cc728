#!/usr/bin/env bash
# The whole test suite: unit tests of every crate and the end-to-end tests against a real replicated
# MariaDB 10.11 (started by the tests themselves on free loopback ports). Installs what it needs:
# Debian's mariadb-server and mariadb-client (via apt-get) when mariadbd is missing, and the driver
# packages the driver tests use (tests/drivers/install.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# openssl checks the caching_sha2_password RSA path in crates/proxy/tests/backend_auth.rs.
if { ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ]; } || ! command -v openssl >/dev/null 2>&1; then
    echo "tests/run.sh: installing mariadb-server, mariadb-client and openssl" >&2
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mariadb-server mariadb-client openssl >/dev/null
fi

# Third-party drivers the suite runs through rwsplit (tests/drivers.rs): Node mysql2 (npm) and MySQL
# Connector/Python (PyPI), pinned, installed into tests/drivers/node_modules and target/drivers-venv.
bash tests/drivers/install.sh

# One test binary at a time (each starts its own topology); tests inside a binary run in parallel.
cargo test --workspace --locked "$@"

# Fuzzing smoke (benches/fuzz.sh; installs g++ and cargo-fuzz if missing): every committed seed and every
# input that ever found a bug replayed, then 10 s of fuzzing per target. A finding fails the run.
FUZZ_SMOKE_SECONDS=10 bash benches/fuzz.sh --smoke

# Deployment files (Dockerfile, compose, Kubernetes, systemd, dashboard): everything checkable without a
# container engine. The image-build emulation is skipped here (it is a second release build); run
# `bash deploy/check.sh` for it.
RWSPLIT_BIN="$PWD/target/debug/rwsplit" CHECK_SKIP_IMAGE_BUILD=1 bash deploy/check.sh
