# shellcheck shell=bash
# Sourced by the bench scripts that watch an idle Visor (footprint.sh, cli_startup.sh,
# idle_code.sh): idle_home WORK SIM makes WORK/home, whose genesis folder runs the simulator
# SIM as a core that answers on WORK/core.sock and accepts nothing, with a default
# config.toml.
idle_home() {
  local work=$1 sim=$2
  mkdir -p "$work/home/genesis"
  echo "# defaults" > "$work/home/config.toml"
  ln -s "$sim" "$work/home/genesis/zeta"
  echo "--sim-version v1 --socket $work/core.sock" > "$work/home/genesis/sim-options"
  cat > "$work/home/genesis/run-config.toml" <<TOML
name = "v1"
[zeta]
  [zeta.binary]
    path = "zeta"
    args = ["start"]
  [zeta.rpc]
    socketPath = "$work/core.sock"
    httpPath = "/rpc"
TOML
}
