#[derive(clap::Subcommand)]
pub enum ModelCommand {}

pub fn run(c: ModelCommand) -> anyhow::Result<()> {
    match c {}
}
