#!/usr/bin/env bash
# Builds a Zeta Visor release on a Debian machine (as root it installs what it needs):
#
#   dist/visor-VERSION-x86_64-linux-musl.tar.gz   static visor, man pages, systemd unit,
#                                                 sysusers.d and tmpfiles.d entries, shell
#                                                 completions, LICENSE, README.md, CHANGELOG.md
#   dist/zeta-visor_VERSION-1_amd64.deb            the same, installed in their system places
#   dist/SHA256SUMS                                the SHA-256 of both
#   dist/SHA256SUMS.minisig                        its minisign signature, when a key is given
#
# The build is reproducible: the same commit built with the same Rust toolchain and
# cargo-deb gives the same bytes, in whatever folder it is built. No path of the build
# machine is embedded (sources, $CARGO_HOME and the toolchain are remapped, and checked
# for), the commit is stamped (visor version), and every timestamp is the commit's
# (SOURCE_DATE_EPOCH). Verify a build with: (cd dist && sha256sum -c SHA256SUMS).
#
# Usage: release/build.sh [--no-deb] [--no-install | --tools-only]
#   --no-deb      build the tarball only (no cargo-deb needed)
#   --no-install  install nothing; fail if a tool is missing
#   --tools-only  install what the build needs, then stop
# Environment: VISOR_ALLOW_DIRTY=1 builds from a tree with uncommitted changes (the stamped
# commit then does not describe the binary; never for a published release).
# VISOR_MINISIGN_KEY=/path/to/minisign.key signs SHA256SUMS with that minisign secret key
# (the maintainers' release key, kept outside the source tree and never committed; CI uses a
# throwaway password-less one): minisign -S -t "visor VERSION". The signature is not listed in
# SHA256SUMS, so the build stays reproducible.
set -euo pipefail

target=x86_64-unknown-linux-musl
# The cargo-deb the .deb is reproducible with; another version may lay out the archive
# differently.
cargo_deb_version=3.8.0
with_deb=1
install=1
tools_only=0
for arg in "$@"; do
  case $arg in
    --no-deb) with_deb=0 ;;
    --no-install) install=0 ;;
    --tools-only) tools_only=1 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "release/build.sh: unknown argument $arg (try --help)" >&2; exit 2 ;;
  esac
done

src=$(cd "$(dirname "$0")/.." && pwd -P)
cd "$src"
say() { printf '==> %s\n' "$*"; }
die() { printf 'release/build.sh: %s\n' "$*" >&2; exit 1; }

# --- tools -------------------------------------------------------------------------------
if [ "$install" = 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  missing=()
  command -v musl-gcc >/dev/null || missing+=(musl-tools)
  command -v git >/dev/null || missing+=(git)
  command -v cc >/dev/null || missing+=(gcc)
  command -v file >/dev/null || missing+=(file)
  if [ -n "${VISOR_MINISIGN_KEY:-}" ]; then command -v minisign >/dev/null || missing+=(minisign); fi
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" >/dev/null
  fi
fi
command -v musl-gcc >/dev/null || die "musl-gcc is missing: apt-get install musl-tools"
if ! rustup target list --installed | grep -qx "$target"; then
  [ "$install" = 1 ] || die "the Rust target $target is missing: rustup target add $target"
  rustup target add "$target"
fi
if [ "$with_deb" = 1 ]; then
  installed=$(cargo deb --version 2>/dev/null | awk '{print $NF}' || true)
  if [ "${installed#v}" != "$cargo_deb_version" ]; then
    [ "$install" = 1 ] ||
      die "cargo-deb $cargo_deb_version is missing: cargo install cargo-deb --locked --version $cargo_deb_version"
    say "installing cargo-deb $cargo_deb_version"
    cargo install cargo-deb --locked --version "$cargo_deb_version"
  fi
fi

if [ -n "${VISOR_MINISIGN_KEY:-}" ]; then
  command -v minisign >/dev/null || die "VISOR_MINISIGN_KEY is set but minisign is missing: apt-get install minisign"
  [ -f "$VISOR_MINISIGN_KEY" ] || die "VISOR_MINISIGN_KEY=$VISOR_MINISIGN_KEY: no such file"
  case $(realpath "$VISOR_MINISIGN_KEY") in
    "$src"/*) die "VISOR_MINISIGN_KEY is inside the source tree; keep the secret key elsewhere" ;;
  esac
fi

[ "$tools_only" = 0 ] || exit 0

# --- what is built -----------------------------------------------------------------------
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
[ -n "$version" ] || die "no version in Cargo.toml"
if git rev-parse --show-toplevel >/dev/null 2>&1 &&
  [ "$(git rev-parse --show-toplevel)" = "$src" ]; then
  commit=$(git rev-parse HEAD)
  epoch=$(git log -1 --format=%ct HEAD)
  if [ -n "$(git status --porcelain --untracked-files=no)" ] && [ "${VISOR_ALLOW_DIRTY:-0}" != 1 ]; then
    die "uncommitted changes; commit them (or set VISOR_ALLOW_DIRTY=1 for a test build)"
  fi
else
  commit=unknown
  epoch=${SOURCE_DATE_EPOCH:-$(stat -c %Y Cargo.toml)}
fi
export VISOR_COMMIT=$commit SOURCE_DATE_EPOCH=$epoch
name=visor-$version-x86_64-linux-musl
say "visor $version, commit $commit, SOURCE_DATE_EPOCH=$epoch"
say "$(rustc --version); $(cargo --version)"

# --- the static binary -------------------------------------------------------------------
cargo_home=$(cd "${CARGO_HOME:-$HOME/.cargo}" && pwd -P)
toolchain=$(rustc --print sysroot)
export CARGO_TARGET_DIR="$src/target"
unset CARGO_ENCODED_RUSTFLAGS
# Later mappings win, so the more specific ones come last.
export RUSTFLAGS="--remap-path-prefix=$src=. --remap-path-prefix=$cargo_home=/cargo --remap-path-prefix=$toolchain=/rust"
export CC_x86_64_unknown_linux_musl=musl-gcc
export CFLAGS_x86_64_unknown_linux_musl="-ffile-prefix-map=$src=. -ffile-prefix-map=$cargo_home=/cargo"
say "building $target (release)"
cargo build --locked --release --target "$target" --bin visor
bin=$CARGO_TARGET_DIR/$target/release/visor
if command -v file >/dev/null; then
  file "$bin" | grep -Eq 'statically linked|static-pie linked' || die "$bin is not static"
fi
for path in "$src" "$cargo_home" "$toolchain" "$HOME"; do
  if [ "$path" != / ] && grep -q -a -F "$path" "$bin"; then
    die "$bin embeds the build machine's path $path"
  fi
done
stamped=$("$bin" version --output json)
case $stamped in
  *"\"hash\":\"$commit\""*"\"version\":\"$version\""*) ;;
  *) die "visor version says $stamped, expected commit $commit and version $version" ;;
esac

# --- the tarball -------------------------------------------------------------------------
dist=$src/dist
mkdir -p "$dist"
rm -f "$dist/SHA256SUMS" "$dist/SHA256SUMS.minisig" "$dist"/visor-*-x86_64-linux-musl.tar.gz "$dist"/zeta-visor_*.deb
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
stage=$work/$name
install -d -m 0755 "$stage" "$stage/man" "$stage/systemd" "$stage/systemd/sysusers.d" \
  "$stage/systemd/tmpfiles.d" "$stage/completions"
install -m 0755 "$bin" "$stage/visor"
install -m 0644 man/visor.1 man/visor-config.5 "$stage/man/"
install -m 0644 contrib/visor.service "$stage/systemd/zeta-visor.service"
install -m 0644 contrib/zeta-visor.sysusers "$stage/systemd/sysusers.d/zeta-visor.conf"
install -m 0644 contrib/zeta-visor.tmpfile "$stage/systemd/tmpfiles.d/zeta-visor.conf"
install -m 0644 contrib/completions/visor.bash contrib/completions/_visor \
  contrib/completions/visor.fish "$stage/completions/"
install -m 0644 LICENSE README.md CHANGELOG.md "$stage/"
tarball=$dist/$name.tar.gz
tar --sort=name --format=gnu --mtime="@$epoch" --owner=0 --group=0 --numeric-owner \
  -C "$work" -cf - "$name" | gzip -9 -n > "$tarball"
say "$(basename "$tarball"): $(stat -c %s "$tarball") bytes"

# --- the .deb ----------------------------------------------------------------------------
artifacts=("$(basename "$tarball")")
if [ "$with_deb" = 1 ]; then
  say "packaging the .deb"
  cargo deb --no-build --no-strip --target "$target" --output "$dist" >/dev/null
  for deb in "$dist"/zeta-visor_*.deb; do
    say "$(basename "$deb"): $(stat -c %s "$deb") bytes"
    artifacts+=("$(basename "$deb")")
  done
fi

(cd "$dist" && sha256sum -- "${artifacts[@]}" > SHA256SUMS)
say "dist/SHA256SUMS:"
sed 's/^/    /' "$dist/SHA256SUMS"

# --- the signature -----------------------------------------------------------------------
if [ -n "${VISOR_MINISIGN_KEY:-}" ]; then
  say "signing SHA256SUMS with the minisign key $VISOR_MINISIGN_KEY"
  minisign -S -s "$VISOR_MINISIGN_KEY" -m "$dist/SHA256SUMS" -x "$dist/SHA256SUMS.minisig" \
    -t "visor $version" >/dev/null
  say "dist/SHA256SUMS.minisig"
fi
