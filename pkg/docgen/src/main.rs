//! Generates the man pages and shell completions of hpkvd and hpkvctl from their clap
//! definitions, which it includes from the two programs' sources (`src/cli.rs`,
//! `crates/cli/src/args.rs`):
//!
//! ```text
//! cargo run -p hpkv-docgen -- OUT_DIR
//!   OUT_DIR/man/hpkvd.8 hpkvd-format.8 hpkvctl.1 hpkvctl-get.1 ...
//!   OUT_DIR/completions/bash/hpkvd hpkvctl   zsh/_hpkvd _hpkvctl   fish/hpkvd.fish hpkvctl.fish
//! ```

use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

#[path = "../../../src/cli.rs"]
#[allow(dead_code)]
mod hpkvd_cli;

// hpkvctl's command line (`args.rs`) names `crate::format::Format`: both at this crate's root.
#[path = "../../../crates/cli/src/args.rs"]
#[allow(dead_code)]
mod args;
#[path = "../../../crates/cli/src/format.rs"]
#[allow(dead_code)]
mod format;

/// Writes the page of `cmd` and of each of its subcommands (`NAME-SUB.SECTION`) into `dir`.
fn man_pages(cmd: &clap::Command, section: &'static str, dir: &Path) -> io::Result<()> {
    let mut cmd = cmd.clone().disable_help_subcommand(true);
    cmd.build();
    let mut pending = vec![cmd];
    while let Some(cmd) = pending.pop() {
        pending.extend(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
        clap_mangen::Man::new(cmd)
            .section(section)
            .generate_to(dir)?;
    }
    Ok(())
}

fn completions(cmd: &clap::Command, dir: &Path) -> io::Result<()> {
    let name = cmd.get_name().to_string();
    for (shell, sub, file) in [
        (Shell::Bash, "bash", name.clone()),
        (Shell::Zsh, "zsh", format!("_{name}")),
        (Shell::Fish, "fish", format!("{name}.fish")),
    ] {
        let out = dir.join(sub);
        std::fs::create_dir_all(&out)?;
        let mut text = Vec::new();
        clap_complete::generate(shell, &mut cmd.clone(), &name, &mut text);
        std::fs::write(out.join(file), text)?;
    }
    Ok(())
}

fn generate(out: &Path) -> io::Result<()> {
    let man = out.join("man");
    std::fs::create_dir_all(&man)?;
    let hpkvd = hpkvd_cli::Cli::command();
    let hpkvctl = args::Cli::command();
    man_pages(&hpkvd, "8", &man)?;
    man_pages(&hpkvctl, "1", &man)?;
    completions(&hpkvd, &out.join("completions"))?;
    completions(&hpkvctl, &out.join("completions"))?;
    Ok(())
}

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(out), None) = (args.next(), args.next()) else {
        eprintln!("usage: hpkv-docgen OUT_DIR");
        return ExitCode::from(2);
    };
    match generate(&PathBuf::from(out)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hpkv-docgen: {e}");
            ExitCode::FAILURE
        }
    }
}
