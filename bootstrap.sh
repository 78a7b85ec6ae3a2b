#!/usr/bin/env bash
# Set up a fresh Debian machine for runctrace, then run one of its jobs.
#
#   ./bootstrap.sh demo    install, record a burst of real containers, report them
#   ./bootstrap.sh test    install, run the whole test suite
#   ./bootstrap.sh setup   install only
#
# Installs (as root): runc, containerd, busybox-static, BCC's Python bindings and
# kernel headers from Debian's packages; a venv in .venv with the project (editable).
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$PWD
VENV=${RUNCTRACE_VENV:-$ROOT/.venv}
PY=${PYTHON:-python3}

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

need_root() {
    if [ "$(id -u)" != 0 ]; then
        echo "bootstrap.sh: must run as root (it installs packages and traces the kernel)" >&2
        exit 1
    fi
}

install_debs() {
    local pkgs=(runc containerd busybox-static python3-bpfcc)
    local missing=()
    for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    if [ ${#missing[@]} -gt 0 ]; then
        log "apt-get install ${missing[*]}"
        apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

install_headers() {
    # BCC compiles its programs at run time against /lib/modules/$(uname -r)/build.
    # A machine with real headers keeps them; otherwise link Debian's nearest
    # headers (see ../shared/PLATFORM.md: the probes read only tracepoint args, so a
    # header/kernel mismatch is harmless for them).
    local mod=/lib/modules/$(uname -r)
    if [ -e "$mod/build/include/linux/kconfig.h" ] || [ -e "$mod/build/Makefile" ]; then
        return
    fi
    if ! ls -d /usr/src/linux-headers-*-cloud-amd64 >/dev/null 2>&1 && ! ls -d /usr/src/linux-headers-*-amd64 >/dev/null 2>&1; then
        log "apt-get install linux-headers-cloud-amd64 (kernel headers for BCC)"
        apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends linux-headers-cloud-amd64 >/dev/null \
          || DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends linux-headers-amd64 >/dev/null
    fi
    local build common
    build=$(ls -d /usr/src/linux-headers-*-cloud-amd64 /usr/src/linux-headers-*-amd64 2>/dev/null | sort -V | tail -1)
    common=${build%-*-amd64}-common
    [ -d "$common" ] || common=$(ls -d /usr/src/linux-headers-*-common 2>/dev/null | sort -V | tail -1)
    log "linking $mod/build -> $build"
    mkdir -p "$mod"
    ln -sfn "$build" "$mod/build"
    ln -sfn "$common" "$mod/source"
}

mount_tracefs() {
    if [ ! -e /sys/kernel/tracing/events ]; then
        mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null || true
    fi
}

install_venv() {
    if [ ! -x "$VENV/bin/python" ]; then
        log "creating venv $VENV"
        "$PY" -m venv "$VENV"
    fi
    log "pip install -e .[test,plot]"
    "$VENV/bin/pip" install -q --disable-pip-version-check -e ".[test,plot]" 2>&1 | grep -v "^WARNING: Location" || true
    "$VENV/bin/python" -c "import runctrace" || { echo "bootstrap.sh: pip install failed" >&2; exit 1; }
    # BCC's bindings live in Debian's dist-packages. Link just that one package into
    # the venv rather than putting all of dist-packages on the path.
    local site
    site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    if [ -d /usr/lib/python3/dist-packages/bcc ]; then
        ln -sfn /usr/lib/python3/dist-packages/bcc "$site/bcc"
    fi
}

setup() {
    need_root
    install_debs
    install_headers
    mount_tracefs
    install_venv
}

case "${1:-}" in
    setup)
        setup ;;
    demo)
        setup
        log "recording a burst of real containers"
        exec "$VENV/bin/python" -m runctrace.workload.demo ;;
    test)
        setup
        log "running the test suite"
        shift
        exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@" ;;
    *)
        sed -n '2,9p' "$0" >&2; exit 2 ;;
esac
