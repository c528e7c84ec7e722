# shellcheck shell=bash
# Shared helpers for the ci/ scripts. Source it; do not run it.
#
# Everything downloaded or unpacked lives under $SAFFRON_TARGET (default: <repo>/target), so
# nothing on the host is replaced. Set SAFFRON_TARGET to keep the caches outside a fresh clone
# (e.g. SAFFRON_TARGET=/var/cache/saffron in CI) so later runs reuse them.
#
# The apt helpers run the host's apt-get with a private configuration (own sources.list,
# preferences, lists, package cache and an EMPTY dpkg status) under $SAFFRON_TARGET/apt/<name>/:
# the host's /etc/apt sources and /var/lib/dpkg are never touched.

# The repository root is the parent of ci/, wherever the caller's cwd is.
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
SAFFRON_TARGET="${SAFFRON_TARGET:-$REPO_ROOT/target}"
mkdir -p "$SAFFRON_TARGET"
SAFFRON_TARGET="$(cd "$SAFFRON_TARGET" && pwd -P)"

DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
HOST_KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

# Progress goes to stderr: stdout is kept for the paths a script hands back.
log() { printf '%s: %s\n' "${CI_NAME:-ci}" "$*" >&2; }
die() { printf '%s: ERROR: %s\n' "${CI_NAME:-ci}" "$*" >&2; exit 1; }

# Seconds since $1 (a value of $SECONDS), for the timing lines.
since() { echo "$((SECONDS - $1))s"; }

# need_host_tool COMMAND DEBIAN_PACKAGE: install the package with the host's apt only if the
# command is missing (a fresh CI machine has little beyond the base system).
_host_apt_updated=
need_host_tool() {
    local cmd="$1" pkg="$2"
    command -v "$cmd" >/dev/null 2>&1 && return 0
    log "host: installing $pkg (for $cmd)"
    if [[ -z "$_host_apt_updated" ]]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
        _host_apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$pkg" >&2
    command -v "$cmd" >/dev/null 2>&1 || die "installing $pkg did not provide $cmd"
}

# need_host_pkg DEBIAN_PACKAGE: installs a package that provides neither a command nor a
# pkg-config library to look for (e.g. GStreamer plugins), unless dpkg has it already.
need_host_pkg() {
    local pkg="$1"
    [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" == "install ok installed" ]] && return 0
    log "host: installing $pkg"
    if [[ -z "$_host_apt_updated" ]]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
        _host_apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$pkg" >&2
}

# need_host_lib PKG_CONFIG_NAME DEBIAN_PACKAGE: like need_host_tool, for a library the build
# links (found with pkg-config).
need_host_lib() {
    local name="$1" pkg="$2"
    need_host_tool pkg-config pkg-config
    pkg-config --exists "$name" && return 0
    log "host: installing $pkg (for the $name library)"
    if [[ -z "$_host_apt_updated" ]]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
        _host_apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$pkg" >&2
    pkg-config --exists "$name" || die "installing $pkg did not provide $name"
}

# The keyring the private sources are verified with. The host's debian-archive-keyring knows
# trixie's keys from 2023.3+deb12u2 on; an older host gets bookworm's current
# debian-archive-keyring (downloaded through the host's own, verified apt sources, unpacked
# under $SAFFRON_TARGET, the host package untouched).
apt_keyring() {
    local kdir="$SAFFRON_TARGET/apt/keyring"
    if [[ -s "$kdir/debian-archive-keyring.gpg" ]]; then
        echo "$kdir/debian-archive-keyring.gpg"
    elif [[ "${_APT_FALLBACK_KEYRING:-}" == 1 ]]; then
        log "apt: the host keyring lacks keys; fetching bookworm's debian-archive-keyring"
        rm -rf "$kdir" && mkdir -p "$kdir/x"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
        (cd "$kdir" && apt-get download -qq -o APT::Sandbox::User=root debian-archive-keyring >&2)
        dpkg -x "$kdir"/debian-archive-keyring_*.deb "$kdir/x"
        cp "$kdir/x/usr/share/keyrings/debian-archive-keyring.gpg" "$kdir/"
        rm -rf "$kdir/x" "$kdir"/*.deb
        echo "$kdir/debian-archive-keyring.gpg"
    else
        echo "$HOST_KEYRING"
    fi
}

# apt_dir NAME: the private apt directory for one set of suites.
apt_dir() { echo "$SAFFRON_TARGET/apt/$1"; }

# papt NAME apt-get-args... / pcache NAME apt-cache-args...: apt with the private configuration
# NAME. Only the package indices are fetched (no translations, no DEP-11 metadata that a host
# appstream install may have enabled).
_papt_opts() {
    local d
    d="$(apt_dir "$1")"
    _PAPT_OPTS=(
        -o Dir::Etc::sourcelist="$d/sources.list"
        -o Dir::Etc::sourceparts="$d/empty.d"
        -o Dir::Etc::preferences="$d/preferences"
        -o Dir::Etc::preferencesparts="$d/empty.d"
        -o Dir::State="$d/state"
        -o Dir::State::status="$d/state/status"
        -o Dir::Cache="$d/cache"
        -o Dir::Log="$d/log"
        -o APT::Architecture=amd64
        -o APT::Architectures=amd64
        -o APT::Install-Recommends=false
        -o APT::Install-Suggests=false
        -o APT::Sandbox::User=root
        -o Acquire::Languages=none
        -o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false
        -o Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false
        -o Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false
        -o Acquire::IndexTargets::deb::DEP-11-icons-hidpi::DefaultEnabled=false
        -o Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled=false
        -o Acquire::Retries=3
    )
}
papt() {
    _papt_opts "$1"
    shift
    DEBIAN_FRONTEND=noninteractive apt-get "${_PAPT_OPTS[@]}" "$@"
}
pcache() {
    _papt_opts "$1"
    shift
    apt-cache "${_PAPT_OPTS[@]}" "$@"
}

# apt_setup NAME SUITE... : write the private sources for the given suites (main only) and
# run `apt-get update` on them. Preferences: every suite at priority 500, backports included
# (they default to 100, NotAutomatic), so the newest version wins, which for qemu-* is the
# trixie-backports one. Runs the update every time it is called: callers call it only when
# their own cache is missing.
apt_setup() {
    local name="$1" d keyring suite
    shift
    d="$(apt_dir "$name")"
    mkdir -p "$d/state/lists/partial" "$d/cache/archives/partial" "$d/log" "$d/empty.d"
    : >"$d/state/status" # empty dpkg status: resolve the whole dependency closure
    keyring="$(apt_keyring)"
    {
        for suite in "$@"; do
            echo "deb [signed-by=$keyring] $DEBIAN_MIRROR $suite main"
        done
    } >"$d/sources.list"
    {
        for suite in "$@"; do
            printf 'Package: *\nPin: release n=%s\nPin-Priority: 500\n\n' "$suite"
        done
    } >"$d/preferences"
    log "apt[$name]: update ($*)"
    if ! papt "$name" update -qq >&2 2>"$d/update.err"; then
        cat "$d/update.err" >&2
        if [[ "${_APT_FALLBACK_KEYRING:-}" != 1 ]] && grep -qE 'NO_PUBKEY|not signed|EXPKEYSIG' "$d/update.err"; then
            _APT_FALLBACK_KEYRING=1
            apt_setup "$name" "$@"
            return
        fi
        die "apt-get update failed for $name"
    fi
    # apt-get update exits 0 on some signature problems: they are only warnings then.
    if grep -qE 'NO_PUBKEY|not signed|EXPKEYSIG' "$d/update.err"; then
        cat "$d/update.err" >&2
        if [[ "${_APT_FALLBACK_KEYRING:-}" != 1 ]]; then
            _APT_FALLBACK_KEYRING=1
            apt_setup "$name" "$@"
            return
        fi
        die "apt: cannot verify the $* archives"
    fi
}

# apt_fetch_closure NAME DEST PACKAGE...: download PACKAGE... and their whole dependency
# closure (Depends + Pre-Depends, no Recommends) as resolved against the empty dpkg status,
# into DEST (emptied first). Prints nothing; DEST/*.deb is the result.
apt_fetch_closure() {
    local name="$1" dest="$2" d
    shift 2
    d="$(apt_dir "$name")"
    rm -rf "$dest" && mkdir -p "$dest/partial"
    papt "$name" install -y -qq --download-only \
        -o Dir::Cache::archives="$dest" "$@" >&2 ||
        die "apt: could not download $* and their dependencies"
    rm -rf "$dest/partial" "$dest/lock"
}

# apt_fetch_only NAME DEST PACKAGE...: download exactly these packages (no dependencies).
apt_fetch_only() {
    local name="$1" dest="$2"
    shift 2
    mkdir -p "$dest"
    (cd "$dest" && papt "$name" download -qq "$@" >&2) || die "apt: could not download $*"
}

# apt_depends NAME PACKAGE: the first Depends of PACKAGE (e.g. linux-image-amd64 -> the
# versioned image package), as apt's candidate resolution sees it.
apt_first_depends() {
    pcache "$1" depends "$2" 2>/dev/null |
        awk '/^ *(\|)?Depends:/ { print $2; exit }'
}
