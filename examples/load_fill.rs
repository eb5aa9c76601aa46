//! Fills a data directory for `bench/load.sh`: COUNT generated movies bulk-appended to the
//! SQLite event log, then every projection built by `movies replay`'s own code. Writes the movie
//! ids, one per line, to DIR/ids.txt (every one up to 200,000, then an even sample), and words
//! to search for, drawn by the catalogue's own frequencies, to DIR/words.txt.
//!
//! Usage: load_fill COUNT DIR

use std::io::Write;
use std::time::Instant;

use indicatif::ProgressBar;
use movies::generate::BenchArgs;
use movies::replay::{replay, Outcome, Which};
use movies::Settings;
use rand::{Rng, SeedableRng};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let filled = fill().await;
    if let Err(error) = &filled {
        // Each cause as its type sees it: some (a database's) say nothing in their message.
        for cause in error.chain() {
            eprintln!("caused by: {cause:?}");
        }
    }
    filled
}

async fn fill() -> anyhow::Result<()> {
    let BenchArgs { count, dir: data_dir, shape } = BenchArgs::from_command_line();
    let settings = Settings::for_tools(data_dir.clone(), None);
    let write = movies::open_write_side(&settings).await?;
    let started = Instant::now();
    let ids = movies::generate::append_generated(write.events.as_ref(), count, shape, |_| {}).await?;
    let appended = started.elapsed().as_secs_f64();
    let never = tokio::sync::watch::channel(false).1;
    let Outcome::Swapped { seconds, .. } =
        replay(&settings, Which::All, false, &ProgressBar::hidden(), never).await?
    else {
        anyhow::bail!("the replay did not finish");
    };
    let step = (ids.len() / 200_000).max(1);
    let mut out = std::io::BufWriter::new(std::fs::File::create(data_dir.join("ids.txt"))?);
    for id in ids.iter().step_by(step) {
        writeln!(out, "{id}")?;
    }
    // Words to search for, drawn by the catalogue's own frequencies: one word of each of the
    // first titles (the same generator, so the same titles).
    let mut generator = movies::generate::Generator::with_shape(42, count, shape);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut words = std::io::BufWriter::new(std::fs::File::create(data_dir.join("words.txt"))?);
    for _ in 0..count.min(2000) {
        let title = generator.next_record().name.to_lowercase();
        let candidates: Vec<&str> =
            title.split(' ').filter(|w| w.chars().all(char::is_alphanumeric)).collect();
        if !candidates.is_empty() {
            writeln!(words, "{}", candidates[rng.gen_range(0..candidates.len())])?;
        }
    }
    words.flush()?;
    eprintln!("filled {count} movies: appended in {appended:.1} s, projected in {seconds:.1} s");
    Ok(())
}
