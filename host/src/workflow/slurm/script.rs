//! What is handed to `sbatch`: the argument vectors (every setting a
//! separate argument, passed without a shell) and the one job script both
//! arrays run, which holds nothing but two quoted absolute paths and fixed
//! words: `exec '<lh-host>' __workflow-task --plan '<plan.json>' "$@"`. The
//! phase and the task offset come as the script's arguments; the task index
//! from SLURM's own `SLURM_ARRAY_TASK_ID`, read by lh-host.

use std::path::Path;

use crate::config::WorkflowConfig;

/// The hidden command a SLURM task runs.
pub const TASK_COMMAND: &str = "__workflow-task";

/// `s` as one word of POSIX shell: single-quoted, with `'` as `'\''`.
pub fn quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,%@+".contains(c)) {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// An argument vector as one line a shell would read back the same way.
pub fn shell_words(argv: &[String]) -> String {
    argv.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ")
}

/// The job script.
pub fn job_script(exe: &Path, plan: &Path) -> String {
    format!(
        "#!/bin/sh\n# Written by lh-host workflow sample: one task of a job array (phase, offset: the arguments).\nexec {} {TASK_COMMAND} --plan {} \"$@\"\n",
        quote(&exe.display().to_string()),
        quote(&plan.display().to_string())
    )
}

/// A letters-digits-`_-.` version of `s`, for a job name.
fn job_name(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || "_-.".contains(c) { c } else { '_' }).take(40).collect()
}

/// What one `sbatch` call submits.
pub struct ArraySpec<'a> {
    pub experiment: &'a str,
    /// `targets` or `runs`.
    pub phase: &'a str,
    /// Tasks in this array (indices 0..tasks).
    pub tasks: usize,
    /// Index of this array's task 0 among the phase's tasks.
    pub offset: usize,
    pub settings: &'a WorkflowConfig,
    pub threads: usize,
    /// Folder of the task logs.
    pub logs: &'a Path,
    /// The submission's folder (the tasks' working folder).
    pub chdir: &'a Path,
    pub script: &'a Path,
    /// Job ids this array waits for (`afterok`).
    pub after: &'a [String],
}

/// The `sbatch` argument vector of `spec` (program name first).
pub fn sbatch_argv(spec: &ArraySpec<'_>) -> Vec<String> {
    let s = spec.settings;
    // sbatch expands %-patterns in file names: a literal % is %%.
    let log = spec.logs.join(format!("{}-%A_%a.out", spec.phase)).display().to_string().replace('%', "%%").replace("%%A_%%a", "%A_%a");
    let throttle = s.throttle.map(|k| format!("%{k}")).unwrap_or_default();
    let mut argv = vec![
        "sbatch".to_string(),
        "--parsable".into(),
        format!("--job-name=lh-{}-{}", job_name(spec.experiment), spec.phase),
        format!("--array=0-{}{throttle}", spec.tasks.saturating_sub(1)),
        format!("--output={log}"),
        format!("--chdir={}", spec.chdir.display()),
        format!("--cpus-per-task={}", s.cpus.unwrap_or(spec.threads)),
    ];
    if let Some(p) = &s.partition {
        argv.push(format!("--partition={p}"));
    }
    if let Some(t) = &s.walltime {
        argv.push(format!("--time={t}"));
    }
    if let Some(m) = &s.mem {
        argv.push(format!("--mem={m}"));
    }
    if let Some(g) = s.gpus {
        argv.push(format!("--gres=gpu:{g}"));
    }
    if !spec.after.is_empty() {
        argv.push(format!("--dependency=afterok:{}", spec.after.join(":")));
    }
    argv.push(spec.script.display().to_string());
    argv.extend(["--phase".to_string(), spec.phase.to_string(), "--offset".into(), spec.offset.to_string()]);
    argv
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_a_shell_and_arguments_are_separate() {
        assert_eq!(quote("/a/b"), "/a/b");
        assert_eq!(quote("it's $(x)"), r"'it'\''s $(x)'");
        let script = job_script(Path::new("/opt/lh host/lh-host"), Path::new("/h/o'k/plan.json"));
        assert!(script.contains(r"exec '/opt/lh host/lh-host' __workflow-task --plan '/h/o'\''k/plan.json' "), "{script}");
        let out = std::process::Command::new("sh")
            .args(["-c", &format!("printf '%s\\n' {}", shell_words(&["a b".into(), "$(id)".into(), "x'y".into()]))])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "a b\n$(id)\nx'y\n");
        let settings =
            WorkflowConfig { partition: Some("debug".into()), walltime: Some("00:10:00".into()), throttle: Some(2), gpus: Some(1), ..Default::default() };
        let spec = ArraySpec {
            experiment: "e x",
            phase: "runs",
            tasks: 5,
            offset: 0,
            settings: &settings,
            threads: 2,
            logs: Path::new("/h/100%/logs"),
            chdir: Path::new("/h"),
            script: Path::new("/h/task.sh"),
            after: &["17".into()],
        };
        let argv = sbatch_argv(&spec);
        for want in [
            "--job-name=lh-e_x-runs",
            "--array=0-4%2",
            "--output=/h/100%%/logs/runs-%A_%a.out",
            "--cpus-per-task=2",
            "--partition=debug",
            "--time=00:10:00",
            "--gres=gpu:1",
            "--dependency=afterok:17",
        ] {
            assert!(argv.contains(&want.to_string()), "{want}: {argv:?}");
        }
        assert_eq!(&argv[argv.len() - 5..], ["/h/task.sh", "--phase", "runs", "--offset", "0"]);
    }
}
