//! Asking SLURM: `sbatch` and `scancel` run, the queue read with `squeue`,
//! and the final state of every array task read from `sacct` where
//! accounting exists, else from `scontrol show job` (which keeps finished
//! jobs for `MinJobAge`, 300 s by default).

use std::collections::BTreeMap;
use std::process::Command;

use crate::error::{Error, Result};

/// Runs SLURM command `argv` (program first, no shell) and returns its stdout.
pub fn run(argv: &[String]) -> Result<String> {
    let (prog, args) = argv.split_first().expect("a program");
    let out = Command::new(prog).args(args).output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::invalid(format!("`{prog}` not found: SLURM's commands must be on PATH for --backend slurm (`--backend local` runs here)"))
        } else {
            Error::io(prog, e)
        }
    })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let first = err.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("no message");
        return Err(Error::invalid(format!("{prog} failed ({}): {first}", out.status)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn argv(prog: &str, args: &[&str]) -> Vec<String> {
    std::iter::once(prog).chain(args.iter().copied()).map(String::from).collect()
}

/// The job id `sbatch --parsable` printed (`123` or `123;cluster`).
pub fn parse_job_id(stdout: &str) -> Result<String> {
    let id = stdout.trim().split(';').next().unwrap_or("").trim();
    crate::ensure!(!id.is_empty() && id.chars().all(|c| c.is_ascii_digit()), "sbatch printed {:?}, not a job id", stdout.trim());
    Ok(id.to_string())
}

/// One queued task (or a pending range of tasks) of an array job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    /// The array job's id.
    pub job: String,
    /// The array task indices this line covers.
    pub tasks: Vec<usize>,
    pub state: String,
    pub reason: String,
}

/// The queue's entries of `jobs`; an empty list once none is queued.
pub fn queue(jobs: &[String]) -> Result<Vec<Queued>> {
    if jobs.is_empty() {
        return Ok(vec![]);
    }
    let list = jobs.join(",");
    match run(&argv("squeue", &["-h", "-r", "-o", "%i|%T|%r", "-j", &list])) {
        Ok(out) => Ok(out.lines().filter_map(parse_queue_line).collect()),
        // squeue refuses ids it no longer knows: nothing of them is queued.
        Err(e) if e.to_string().contains("Invalid job id") => Ok(vec![]),
        Err(e) => Err(e),
    }
}

/// `123_4|PENDING|Dependency` (or `123_[5-9%2]|…`).
fn parse_queue_line(line: &str) -> Option<Queued> {
    let mut f = line.trim().split('|');
    let (id, state, reason) = (f.next()?, f.next()?, f.next().unwrap_or(""));
    let (job, tasks) = split_task_id(id)?;
    Some(Queued { job, tasks, state: state.to_string(), reason: reason.to_string() })
}

/// `123_4` → (123, [4]); `123_[5-7,9%2]` → (123, [5, 6, 7, 9]); `123` → (123, []).
fn split_task_id(id: &str) -> Option<(String, Vec<usize>)> {
    match id.split_once('_') {
        Some((job, tasks)) => Some((job.to_string(), parse_ranges(tasks.trim_start_matches('[').trim_end_matches(']'))?)),
        None => Some((id.to_string(), vec![])),
    }
}

/// `5-7,9%2` → [5, 6, 7, 9].
fn parse_ranges(s: &str) -> Option<Vec<usize>> {
    let s = s.split('%').next()?;
    let mut v = Vec::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => v.extend(a.parse::<usize>().ok()?..=b.parse::<usize>().ok()?),
            None => v.push(part.parse().ok()?),
        }
    }
    Some(v)
}

/// Cancels `targets` (`123`, or one task `123_4`).
pub fn cancel(targets: &[String]) -> Result<()> {
    if targets.is_empty() {
        return Ok(());
    }
    let mut a = vec!["scancel".to_string()];
    a.extend(targets.iter().cloned());
    run(&a).map(|_| ())
}

/// How an array task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Final {
    pub state: String,
    pub exit_code: String,
}

/// The final state of every task of array job `job`, by task index, from
/// `sacct` if it answers, else `scontrol show job` (empty once SLURM forgot the job).
pub fn final_states(job: &str) -> Result<BTreeMap<usize, Final>> {
    if let Ok(out) = run(&argv("sacct", &["-n", "-P", "-X", "-j", job, "--format=JobID,State,ExitCode"])) {
        if !out.trim().is_empty() {
            return Ok(parse_sacct(&out));
        }
    }
    match run(&argv("scontrol", &["show", "job", "-o", job])) {
        Ok(out) => Ok(parse_scontrol(&out)),
        Err(e) if e.to_string().contains("Invalid job id") => Ok(BTreeMap::new()),
        Err(e) => Err(e),
    }
}

/// `123_4|COMPLETED|0:0` lines.
fn parse_sacct(out: &str) -> BTreeMap<usize, Final> {
    let mut m = BTreeMap::new();
    for line in out.lines() {
        let f: Vec<&str> = line.trim().split('|').collect();
        if let (Some(id), Some(state), Some(code)) = (f.first(), f.get(1), f.get(2)) {
            if let Some((_, tasks)) = split_task_id(id) {
                // `CANCELLED by 0` → `CANCELLED`.
                let state = state.split_whitespace().next().unwrap_or("").to_string();
                for t in tasks {
                    m.insert(t, Final { state: state.clone(), exit_code: code.to_string() });
                }
            }
        }
    }
    m
}

/// `scontrol show job -o` lines: `JobId=… ArrayJobId=123 ArrayTaskId=4 JobState=COMPLETED … ExitCode=0:0 …`.
fn parse_scontrol(out: &str) -> BTreeMap<usize, Final> {
    let mut m = BTreeMap::new();
    for line in out.lines() {
        let field = |k: &str| line.split_whitespace().find_map(|w| w.strip_prefix(k)?.strip_prefix('=')).map(str::to_string);
        if let (Some(tasks), Some(state)) = (field("ArrayTaskId").and_then(|t| parse_ranges(&t)), field("JobState")) {
            let code = field("ExitCode").unwrap_or_default();
            for t in tasks {
                m.insert(t, Final { state: state.clone(), exit_code: code.clone() });
            }
        }
    }
    m
}

/// SLURM's `MaxArraySize` (array indices must stay below it), 1001 when it cannot be read.
pub fn max_array_size() -> usize {
    run(&argv("scontrol", &["show", "config"]))
        .ok()
        .and_then(|out| out.lines().find_map(|l| l.trim().strip_prefix("MaxArraySize")?.trim().strip_prefix('=')?.trim().parse::<usize>().ok()))
        .filter(|&n| n >= 2)
        .unwrap_or(1001)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slurm_outputs_are_read() {
        assert_eq!(parse_job_id("123\n").unwrap(), "123");
        assert_eq!(parse_job_id("123;cluster\n").unwrap(), "123");
        assert!(parse_job_id("Submitted batch job 5").is_err());
        assert_eq!(
            parse_queue_line("77_[3-5,8%2]|PENDING|DependencyNeverSatisfied").unwrap(),
            Queued { job: "77".into(), tasks: vec![3, 4, 5, 8], state: "PENDING".into(), reason: "DependencyNeverSatisfied".into() }
        );
        assert_eq!(parse_queue_line("77_1|RUNNING|None").unwrap().tasks, vec![1]);
        let s = parse_sacct("77_0|COMPLETED|0:0\n77_1|CANCELLED by 0|0:15\n77_[2-3]|CANCELLED by 0|0:0\n");
        assert_eq!(s[&1].state, "CANCELLED");
        assert_eq!(s.len(), 4);
        let c = parse_scontrol(
            "JobId=80 ArrayJobId=77 ArrayTaskId=0 JobName=x JobState=COMPLETED Reason=None ExitCode=0:0\nJobId=77 ArrayJobId=77 ArrayTaskId=2-3 JobState=CANCELLED Reason=DependencyNeverSatisfied ExitCode=0:0\n",
        );
        assert_eq!(c[&0], Final { state: "COMPLETED".into(), exit_code: "0:0".into() });
        assert_eq!(c[&3].state, "CANCELLED");
    }
}
