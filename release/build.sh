#!/usr/bin/env bash
# Builds a Zeta Visor release on an x86_64 Debian machine (as root it installs what it needs),
# for x86_64 and for arm64 (aarch64) Linux:
#
#   dist/visor-VERSION-x86_64-linux-musl.tar.gz   static visor, man pages, systemd unit,
#   dist/visor-VERSION-aarch64-linux-musl.tar.gz  sysusers.d and tmpfiles.d entries, shell
#                                                 completions, LICENSE, README.md, CHANGELOG.md
#   dist/zeta-visor_VERSION-1_amd64.deb            the same, installed in their system places
#   dist/zeta-visor_VERSION-1_arm64.deb
#   dist/SHA256SUMS                                the SHA-256 of all four
#   dist/SHA256SUMS.minisig                        its minisign signature, when a key is given
#
# The build is reproducible: the same commit built with the same Rust toolchain, C cross
# compiler and cargo-deb gives the same bytes, in whatever folder it is built. No path of the
# build machine is embedded (sources, $CARGO_HOME and the toolchain are remapped, and checked
# for), the commit is stamped (visor version), and every timestamp is the commit's
# (SOURCE_DATE_EPOCH). Verify a build with: (cd dist && sha256sum -c SHA256SUMS).
# Both binaries are static PIEs (`file`: static-pie linked), so the kernel loads them at a
# random address (ASLR), and link with packed relative relocations (build.rs).
# The arm64 binary is cross-compiled (Rust's aarch64-unknown-linux-musl target, Debian's
# gcc-aarch64-linux-gnu for the C of ring and for the link against Rust's own musl) and its
# stamp is read by running it under qemu-aarch64 (Debian's qemu-user). Its linker is
# release/aarch64-static-pie-cc: stable rustc links that target as a non-PIE static
# executable (`-static -no-pie`, crt1.o), and the script turns the link into a static PIE
# (`-static-pie`, musl's self-relocating rcrt1.o, crtbeginS.o, crtendS.o, as rustc does for
# x86_64), linked by the Rust toolchain's lld (Debian's aarch64 ld 2.40 ignores
# `-z pack-relative-relocs`).
#
# Usage: release/build.sh [--arch x86_64|aarch64]... [--no-deb] [--no-install | --tools-only]
#   --arch ARCH   build only this architecture (repeatable; default both)
#   --no-deb      build the tarballs only (no cargo-deb needed)
#   --no-install  install nothing; fail if a tool is missing
#   --tools-only  install what the build needs, then stop
# Environment: VISOR_ALLOW_DIRTY=1 builds from a tree with uncommitted changes (the stamped
# commit then does not describe the binary; never for a published release).
# VISOR_MINISIGN_KEY=/path/to/minisign.key signs SHA256SUMS with that minisign secret key
# (the maintainers' release key, kept outside the source tree and never committed; CI uses a
# throwaway password-less one): minisign -S -t "visor VERSION". The signature is not listed in
# SHA256SUMS, so the build stays reproducible.
set -euo pipefail

# The cargo-deb the .deb is reproducible with; another version may lay out the archive
# differently.
cargo_deb_version=3.8.0
with_deb=1
install=1
tools_only=0
arches=()
while [ $# -gt 0 ]; do
  case $1 in
    --arch)
      case ${2:-} in
        x86_64 | aarch64) arches+=("$2"); shift ;;
        *) echo "release/build.sh: --arch takes x86_64 or aarch64" >&2; exit 2 ;;
      esac ;;
    --no-deb) with_deb=0 ;;
    --no-install) install=0 ;;
    --tools-only) tools_only=1 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "release/build.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done
[ ${#arches[@]} -gt 0 ] || arches=(x86_64 aarch64)

# Per architecture: the Rust target, the .deb architecture, the C compiler, the linker and
# what runs the binary on this x86_64 machine.
target_of() { echo "$1-unknown-linux-musl"; }
deb_arch_of() { case $1 in x86_64) echo amd64 ;; aarch64) echo arm64 ;; esac; }
cc_of() { case $1 in x86_64) echo musl-gcc ;; aarch64) echo aarch64-linux-gnu-gcc ;; esac; }
# The linker: the default `cc` for x86_64 (Rust links its own musl start files and libc, as a
# static PIE); for aarch64, the script that makes rustc's non-PIE link a static PIE.
linker_of() { case $1 in x86_64) echo cc ;; aarch64) echo "$src/release/aarch64-static-pie-cc" ;; esac; }
runner_of() { case $1 in x86_64) echo "" ;; aarch64) echo qemu-aarch64 ;; esac; }
# What `file` says of a binary of the architecture.
file_arch_of() { case $1 in x86_64) echo x86-64 ;; aarch64) echo "ARM aarch64" ;; esac; }

src=$(cd "$(dirname "$0")/.." && pwd -P)
cd "$src"
say() { printf '==> %s\n' "$*"; }
die() { printf 'release/build.sh: %s\n' "$*" >&2; exit 1; }

[ "$(uname -m)" = x86_64 ] || die "builds on an x86_64 machine only (this one is $(uname -m))"

# --- tools -------------------------------------------------------------------------------
# The Debian package that provides a command.
package_of() {
  case $1 in
    musl-gcc) echo musl-tools ;;
    aarch64-linux-gnu-gcc) echo "gcc-aarch64-linux-gnu libc6-dev-arm64-cross" ;;
    qemu-aarch64) echo qemu-user ;;
    cc) echo gcc ;;
    readelf) echo binutils ;;
    *) echo "$1" ;;
  esac
}
needed=(git cc file readelf)
for arch in "${arches[@]}"; do
  needed+=("$(cc_of "$arch")")
  [ -z "$(runner_of "$arch")" ] || needed+=("$(runner_of "$arch")")
done
[ -z "${VISOR_MINISIGN_KEY:-}" ] || needed+=(minisign)
if [ "$install" = 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  missing=()
  for tool in "${needed[@]}"; do
    # shellcheck disable=SC2207 # package names have no spaces
    command -v "$tool" >/dev/null || missing+=($(package_of "$tool"))
  done
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" >/dev/null
  fi
fi
for tool in "${needed[@]}"; do
  command -v "$tool" >/dev/null || die "$tool is missing: apt-get install $(package_of "$tool")"
done
for arch in "${arches[@]}"; do
  target=$(target_of "$arch")
  if ! rustup target list --installed | grep -qx "$target"; then
    [ "$install" = 1 ] || die "the Rust target $target is missing: rustup target add $target"
    rustup target add "$target"
  fi
done
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
say "visor $version, commit $commit, SOURCE_DATE_EPOCH=$epoch"
say "$(rustc --version); $(cargo --version)"

cargo_home=$(cd "${CARGO_HOME:-$HOME/.cargo}" && pwd -P)
toolchain=$(rustc --print sysroot)
export CARGO_TARGET_DIR="$src/target"
unset CARGO_ENCODED_RUSTFLAGS
# Later mappings win, so the more specific ones come last.
export RUSTFLAGS="--remap-path-prefix=$src=. --remap-path-prefix=$cargo_home=/cargo --remap-path-prefix=$toolchain=/rust"
dist=$src/dist
mkdir -p "$dist"
rm -f "$dist/SHA256SUMS" "$dist/SHA256SUMS.minisig" "$dist"/visor-*-linux-musl.tar.gz "$dist"/zeta-visor_*.deb
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
artifacts=()

for arch in "${arches[@]}"; do
  target=$(target_of "$arch")
  name=visor-$version-$arch-linux-musl
  cc=$(cc_of "$arch")
  runner=$(runner_of "$arch")
  # The environment variables cargo and the cc crate read are named after the target.
  var=$(echo "$target" | tr 'a-z-' 'A-Z_')

  # --- the static binary -----------------------------------------------------------------
  say "building $target (release)"
  env "CC_${var,,}=$cc" "CFLAGS_${var,,}=-ffile-prefix-map=$src=. -ffile-prefix-map=$cargo_home=/cargo" \
    "CARGO_TARGET_${var}_LINKER=$(linker_of "$arch")" \
    cargo build --locked --release --target "$target" --bin visor
  bin=$CARGO_TARGET_DIR/$target/release/visor
  described=$(file "$bin")
  case $described in
    *"$(file_arch_of "$arch")"*) ;;
    *) die "$bin is not an $arch binary: $described" ;;
  esac
  # Static and position-independent (ASLR): never a plain static executable.
  echo "$described" | grep -q 'static-pie linked' || die "$bin is not a static PIE: $described"
  # Its relative relocations packed (build.rs), which a linker without DT_RELR drops silently.
  readelf -d "$bin" | grep -q '(RELR)' || die "$bin has no packed relative relocations (DT_RELR)"
  for path in "$src" "$cargo_home" "$toolchain" "$HOME"; do
    if [ "$path" != / ] && grep -q -a -F "$path" "$bin"; then
      die "$bin embeds the build machine's path $path"
    fi
  done
  stamped=$($runner "$bin" version --output json)
  case $stamped in
    *"\"hash\":\"$commit\""*"\"version\":\"$version\""*) ;;
    *) die "visor version ($target) says $stamped, expected commit $commit and version $version" ;;
  esac

  # --- the tarball -----------------------------------------------------------------------
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
  artifacts+=("$(basename "$tarball")")

  # --- the .deb --------------------------------------------------------------------------
  if [ "$with_deb" = 1 ]; then
    say "packaging the $(deb_arch_of "$arch") .deb"
    cargo deb --no-build --no-strip --target "$target" --output "$dist" >/dev/null
    deb=$dist/zeta-visor_$version-1_$(deb_arch_of "$arch").deb
    [ -f "$deb" ] || die "cargo deb did not write $deb"
    say "$(basename "$deb"): $(stat -c %s "$deb") bytes"
    artifacts+=("$(basename "$deb")")
  fi
done

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
