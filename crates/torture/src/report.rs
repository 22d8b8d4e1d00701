//! Results in the VM runner's protocol: `HPKV-RESULT PASS name` / `HPKV-RESULT FAIL name why`,
//! and figure lines `HPKV-TORTURE name key=value ...` that tests/vm/torture/run.sh gathers.

/// Prints a PASS line.
pub fn pass(name: &str, summary: &str) {
    println!("HPKV-RESULT PASS torture:{name} {summary}");
}

/// Prints the details (every line), then a FAIL line with the first line of `why` and how to
/// replay the run.
pub fn fail(name: &str, why: &str, seed: u64) {
    println!("---- torture:{name} failed (seed {seed}) ----");
    for line in why.lines() {
        println!("  {line}");
    }
    let first = why.lines().next().unwrap_or("failed");
    println!(
        "HPKV-RESULT FAIL torture:{name} {first} (replay: tests/vm/torture/run.sh --seed {seed})"
    );
}

/// Prints the figures of a scenario, one line, for the runner to sum.
pub fn figures(name: &str, pairs: &[(&str, u64)]) {
    let fields: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("HPKV-TORTURE figures {name} {}", fields.join(" "));
}

/// A progress line (the console is the log of a VM run).
pub fn progress(name: &str, what: &str) {
    println!("torture:{name}: {what}");
}
