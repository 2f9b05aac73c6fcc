//! Runs until converged (`--until`, `--budget`) for plugins that know nothing
//! of it: the host raises `draws` to a cap and answers `should_stop()`.

use lh_tests::{llc_of, quadratic_target, sample, Home};

/// HMC, NUTS, MAMS and MCLMC on the quadratic oracle stop once R̂ ≤ 1.01 and
/// bulk ESS ≥ 400, complete, well short of the draw cap; the manifest says so
/// with both figures, and λ̂ is within 3 SE of exact.
#[test]
fn mcmc_plugins_run_until_converged() {
    let h = Home::new();
    let (id, want) = quadratic_target(&h);
    for plugin in ["hmc", "nuts", "mams", "mclmc"] {
        let m = sample(&h, &id, plugin, &["--seed", "3", "--until", "rhat=1.01,ess=400", "--budget", "grads=200000"]);
        assert_eq!(m["status"], "complete", "{plugin}");
        let stop = &m["stop"];
        assert_eq!(stop["outcome"], "converged", "{plugin}: {stop}");
        assert_eq!(stop["until"], "rhat=1.01,ess=400");
        assert_eq!(stop["budget"], "grads=200000");
        let (rhat, ess) = (stop["rhat"].as_f64().unwrap(), stop["ess_bulk"].as_f64().unwrap());
        assert!(rhat <= 1.01 && ess >= 400.0, "{plugin}: R̂ {rhat}, ESS {ess}");
        assert_eq!(m["llc"]["rhat"], stop["rhat"]);
        assert!(m["config"].as_str().unwrap().contains("draws: 1000000,"), "{plugin}: the cap");
        let draws = m["draws"].as_u64().unwrap();
        assert!(draws < 20_000 && draws >= m["burn_in"].as_u64().unwrap() + 100, "{plugin}: {draws} draws");
        let (got, se) = llc_of(&m);
        eprintln!("{plugin} until converged: {draws} draws, R̂ {rhat:.4}, ESS {ess:.0}, λ̂ = {got} ± {se} (exact {want})");
        assert!((got - want).abs() < 3.0 * se, "{plugin}: λ̂ = {got} ± {se}, exact {want}");
    }
}

/// A criterion that cannot be met ends with the budget: complete, `budget
/// exhausted`, and the gradients counted within one draw of the budget
/// (and no λ̂ when the budget ends before the first kept draw).
#[test]
fn a_budget_ends_a_run_that_does_not_converge() {
    let h = Home::new();
    let (id, _) = quadratic_target(&h);
    // 100 warm-up draws of 10 steps: kept draws come before the budget is spent.
    let m = sample(&h, &id, "hmc", &["--set", "warmup=100", "--until", "rhat=1.0000001,ess=1e9", "--budget", "grads=3000"]);
    assert_eq!(m["status"], "complete");
    assert_eq!(m["stop"]["outcome"], "budget exhausted");
    let grads = m["work"]["grad_evals_fge"].as_f64().unwrap();
    assert!((3000.0..3011.0).contains(&grads), "{grads}");
    // A budget alone stops a plugin's own draw count early too.
    let m = sample(&h, &id, "hmc", &["--set", "warmup=100", "--budget", "grads=2000"]);
    assert_eq!((m["status"].as_str(), m["stop"]["outcome"].as_str()), (Some("complete"), Some("budget exhausted")));
    assert!(m["stop"]["until"].is_null());
    // A budget spent in warm-up leaves nothing to estimate from: complete (a rerun would do
    // the same, and a workflow redoes incomplete runs), but no λ̂.
    let m = sample(&h, &id, "hmc", &["--budget", "grads=50"]);
    assert_eq!((m["status"].as_str(), m["stop"]["outcome"].as_str()), (Some("complete"), Some("budget exhausted")), "{m}");
    assert!(m["llc"].is_null(), "{m}");
}

/// Bad use is a one-line error naming what is wrong.
#[test]
fn until_errors_name_the_problem() {
    let h = Home::new();
    let (id, _) = quadratic_target(&h);
    let e = h.fails(&["sample", "--target", &id, "--plugin", "hmc", "--until", "rhat=1.01"]);
    assert!(e.contains("--until needs a --budget"), "{e}");
    let e = h.fails(&["sample", "--target", &id, "--plugin", "sgld", "--until", "ess=100", "--budget", "time=1m"]);
    assert!(e.contains("unknown key `draws` for plugin `sgld`") && e.contains("--until"), "{e}");
    // Values clap refuses (its message, then a hint to --help), exit 2.
    for (args, says) in
        [(["--until", "rhat=0.5", "--budget", "time=1m"], "rhat must be ≥ 1"), (["--until", "ess=10", "--budget", "time=soon"], "--budget time=soon")]
    {
        let r = h.run(&[&["sample", "--target", &id, "--plugin", "hmc"][..], &args].concat());
        assert_eq!(r.code, 2, "{}", r.stderr);
        assert!(r.stderr.lines().next().unwrap().contains(says), "{}", r.stderr);
    }
}
