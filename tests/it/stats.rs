//! Mann-Whitney U and Vargha-Delaney Â12 against scipy.stats (numbers from tests/fixtures/stats_ref.py, committed as
//! tests/fixtures/stats_ref.json).

use hudd::stats;

#[test]
fn mann_whitney_and_a12_match_scipy() {
    let path = format!("{}/tests/fixtures/stats_ref.json", env!("CARGO_MANIFEST_DIR"));
    let cases: Vec<serde_json::Value> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for case in &cases {
        let v = |k: &str| -> Vec<f64> { case[k].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect() };
        let (x, y) = (v("x"), v("y"));
        let got = stats::mann_whitney(&x, &y);
        let (u, p, a12) = (case["u"].as_f64().unwrap(), case["p"].as_f64().unwrap(), case["a12"].as_f64().unwrap());
        assert_eq!(got.u, u, "{}", case["name"]);
        assert!((got.p - p).abs() <= 1e-9 + 1e-6 * p, "{}: p {} against scipy's {p}", case["name"], got.p);
        assert!((stats::a12(&x, &y) - a12).abs() < 1e-12, "{}", case["name"]);
    }
}

#[test]
fn a12_is_one_half_for_identical_samples_and_one_for_separated_ones() {
    let same = [0.9, 0.8, 0.85];
    assert_eq!(stats::a12(&same, &same), 0.5);
    assert_eq!(stats::a12(&[0.95, 0.97], &[0.80, 0.81, 0.9]), 1.0);
    assert_eq!(stats::a12(&[0.80, 0.81, 0.9], &[0.95, 0.97]), 0.0);
}

#[test]
fn spreads_of_angles_wrap_around_and_categories_use_gini() {
    // Angles around 0°: 350°, 355°, 5°, 10° are close, with the circular variance of -10°, -5°, 5°, 10°.
    let wrapped = stats::circular_variance(&[350.0, 355.0, 5.0, 10.0]);
    let plain = stats::circular_variance(&[-10.0, -5.0, 5.0, 10.0]);
    assert!((wrapped - plain).abs() < 1e-12 && wrapped < 0.01, "{wrapped} {plain}");
    assert!(stats::circular_variance(&[0.0, 90.0, 180.0, 270.0]) > 0.999);
    assert_eq!(stats::arc(&[350.0, 355.0, 5.0, 10.0]), (350.0, 10.0));
    assert_eq!(stats::arc(&[205.0, 219.0, 210.0]), (205.0, 219.0));
    assert_eq!(stats::gini(&["a", "a", "a"]), 0.0);
    assert!((stats::gini(&["a", "b", "a", "b"]) - 0.5).abs() < 1e-12);
    assert!((stats::variance(&[1.0, 2.0, 3.0, 4.0]) - 1.25).abs() < 1e-12);
}

#[test]
fn small_sample_spreads_are_unbiased_and_axes_wrap_at_180() {
    // numpy.var(ddof=1) of [1, 2, 3, 4] is 5/3; the population variance is 1.25.
    assert!((stats::sample_variance(&[1.0, 2.0, 3.0, 4.0]) - 5.0 / 3.0).abs() < 1e-12);
    assert_eq!(stats::sample_variance(&[7.0]), 0.0);
    // Two categories in a pair: the population Gini impurity 0.5, the unbiased one 1 (two draws always differ).
    assert!((stats::sample_gini(&["a", "b"]) - 1.0).abs() < 1e-12);
    assert_eq!(stats::sample_gini(&["a", "a", "a"]), 0.0);
    // Identical angles have no spread; angles evenly around the circle have the most, whatever their number (the
    // uncorrected 1 − R̄ of two opposite angles is 1 too, but of three random ones would be well below).
    assert_eq!(stats::circular_spread(&[30.0, 30.0, 30.0], 360.0), 0.0);
    assert!((stats::circular_spread(&[0.0, 90.0, 180.0, 270.0], 360.0) - 1.0).abs() < 1e-12);
    // ρ̂² = (n R̄² − 1) / (n − 1): for [0°, 60°], R̄ = cos 30°, so ρ̂² = (2 · 0.75 − 1) / 1 = 0.5.
    assert!((stats::circular_spread(&[0.0, 60.0], 360.0) - (1.0 - 0.5f64.sqrt())).abs() < 1e-12);
    // Axes: 179° and 1° are 2° apart, 0° and 90° as far apart as axes can be.
    assert!(stats::circular_spread(&[179.0, 1.0, 178.0, 2.0], 180.0) < 0.01);
    assert!((stats::circular_spread(&[0.0, 90.0], 180.0) - 1.0).abs() < 1e-12);
    assert_eq!(stats::axial_arc(&[175.0, 5.0, 178.0]), (175.0, 5.0));
    assert_eq!(stats::arc_length((350.0, 10.0)), 20.0);
}

#[test]
fn clopper_pearson_intervals_match_scipys_beta_quantiles() {
    // Numbers from tests/fixtures/binomial_ref.py.
    let path = format!("{}/tests/fixtures/binomial_ref.json", env!("CARGO_MANIFEST_DIR"));
    let cases: Vec<serde_json::Value> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for c in cases {
        let (k, n, alpha) =
            (c["k"].as_u64().unwrap() as usize, c["n"].as_u64().unwrap() as usize, c["alpha"].as_f64().unwrap());
        let (lo, hi) = hudd::trigger::clopper_pearson(k, n, alpha);
        let (want_lo, want_hi) = (c["lo"].as_f64().unwrap(), c["hi"].as_f64().unwrap());
        assert!(
            (lo - want_lo).abs() < 1e-8 && (hi - want_hi).abs() < 1e-8,
            "{k}/{n}: ({lo}, {hi}) against ({want_lo}, {want_hi})"
        );
    }
}

#[test]
fn t_intervals_match_scipy() {
    // Numbers from tests/fixtures/interval_ref.py.
    let path = format!("{}/tests/fixtures/interval_ref.json", env!("CARGO_MANIFEST_DIR"));
    let cases: Vec<serde_json::Value> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for c in &cases {
        let x: Vec<f64> = c["x"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let (lo, hi) = hudd::stats::t_interval(&x, c["level"].as_f64().unwrap()).unwrap();
        assert!((lo - c["lo"].as_f64().unwrap()).abs() < 1e-9, "{} {}: {lo}", c["name"], c["level"]);
        assert!((hi - c["hi"].as_f64().unwrap()).abs() < 1e-9, "{} {}: {hi}", c["name"], c["level"]);
    }
    assert_eq!(hudd::stats::t_interval(&[0.9], 0.95), None, "one run has no spread");
}

#[test]
fn the_two_level_interval_replays_numpys_draws_to_the_same_bounds() {
    // Numbers and every index drawn from tests/fixtures/bootstrap_ref.py; the Rust function asks for the same draws
    // in the same order, each below the same bound, and must end on the same percentile bounds.
    let path = format!("{}/tests/fixtures/bootstrap_ref.json", env!("CARGO_MANIFEST_DIR"));
    let cases: Vec<serde_json::Value> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(cases.len(), 3);
    for c in &cases {
        let name = c["name"].as_str().unwrap();
        let outcomes: Vec<Vec<f64>> = serde_json::from_value(c["outcomes"].clone()).unwrap();
        let bounds: Vec<usize> = serde_json::from_value(c["bounds"].clone()).unwrap();
        let draws: Vec<usize> = serde_json::from_value(c["draws"].clone()).unwrap();
        let images = if c["shared"].as_bool().unwrap() { stats::Images::Shared } else { stats::Images::PerRun };
        let mut next = 0;
        let (lo, hi) = stats::two_level_interval_with(
            &outcomes,
            images,
            c["level"].as_f64().unwrap(),
            c["replicates"].as_u64().unwrap() as usize,
            |n| {
                assert!(next < draws.len(), "{name}: more draws asked for than NumPy made");
                assert_eq!(n, bounds[next], "{name}: draw {next} asked below {n}, NumPy drew below {}", bounds[next]);
                next += 1;
                draws[next - 1]
            },
        )
        .unwrap();
        assert_eq!(next, draws.len(), "{name}: fewer draws asked for than NumPy made");
        let (want_lo, want_hi) = (c["lo"].as_f64().unwrap(), c["hi"].as_f64().unwrap());
        assert!(
            (lo - want_lo).abs() < 1e-12 && (hi - want_hi).abs() < 1e-12,
            "{name}: ({lo}, {hi}) against ({want_lo}, {want_hi})"
        );
    }
}

#[test]
fn the_exact_mcnemar_test_and_tarones_family_match_scipy_and_statsmodels() {
    // Numbers from tests/fixtures/intervene_ref.py: scipy's binomtest on the discordant images, Tarone's reduction
    // written from its definition, statsmodels' corrections over the tests it keeps.
    let path = format!("{}/tests/fixtures/intervene_ref.json", env!("CARGO_MANIFEST_DIR"));
    let reference: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for case in reference["mcnemar"].as_array().unwrap() {
        let (b, c) = (case["b"].as_u64().unwrap() as usize, case["c"].as_u64().unwrap() as usize);
        let (got, want) = (stats::mcnemar_greater(b, c), case["p"].as_f64().unwrap());
        assert!((got - want).abs() <= 1e-9 * want.max(1e-300).max(1e-6), "b {b}, c {c}: {got} against {want}");
    }
    for family in reference["families"].as_array().unwrap() {
        let name = family["name"].as_str().unwrap();
        let counts = |key: &str| -> Vec<usize> { serde_json::from_value(family[key].clone()).unwrap() };
        let (b, c) = (counts("b"), counts("c"));
        let p: Vec<f64> = b.iter().zip(&c).map(|(&b, &c)| stats::mcnemar_greater(b, c)).collect();
        let min_p: Vec<f64> = b.iter().zip(&c).map(|(&b, &c)| 0.5f64.powi((b + c) as i32)).collect();
        let counted: Vec<bool> = serde_json::from_value(family["counted"].clone()).unwrap();
        assert_eq!(stats::tarone(&min_p, 0.05), counted, "{name}");
        for (method, correction) in
            [("holm", stats::Correction::Holm), ("fdr_bh", stats::Correction::BenjaminiHochberg)]
        {
            let want: Vec<f64> = serde_json::from_value(family[method].clone()).unwrap();
            let got = stats::adjust_discrete(&p, &min_p, 0.05, correction);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!((g - w).abs() < 1e-9, "{name} {method} test {i}: {g} against {w}");
            }
        }
    }
}
