//! The `visor` binary: everything lives in the library; see ARCHITECTURE.md.

fn main() {
    std::process::exit(zeta_visor::commands::main());
}
