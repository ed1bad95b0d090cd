//! `hearth`, the hub: a thin layer over `hearth::cli`.

fn main() -> std::process::ExitCode {
    hearth::cli::main()
}
