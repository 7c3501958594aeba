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
