//! The quickstart's report in a real browser (Debian's `chromium`, installed by scripts/deps.sh): every image loads
//! and no text overflows its column at 1280 px; a screenshot is taken at that width.

use std::path::{Path, PathBuf};
use std::process::Command;

use hudd::engine::RunOptions;

/// Runs in the page after load and leaves its findings in `body[data-check]` (only in the test's copy).
const CHECK: &str = r#"<script>
window.addEventListener('load', () => {
  const images = [...document.images];
  const broken = images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt);
  const overflow = [];
  const page = document.documentElement;
  if (page.scrollWidth > page.clientWidth) overflow.push('page ' + page.scrollWidth + ' > ' + page.clientWidth);
  for (const e of document.body.querySelectorAll('*')) {
    const style = getComputedStyle(e);
    if (style.display === 'inline' || e.tagName === 'svg' || e.closest('svg')) continue;
    if (e.scrollWidth > e.clientWidth + 1 && style.overflowX === 'visible')
      overflow.push(e.tagName + ' ' + (e.textContent || '').slice(0, 60) + ': ' + e.scrollWidth + ' > ' + e.clientWidth);
    const parent = e.parentElement.getBoundingClientRect();
    if (e.getBoundingClientRect().right > parent.right + 1)
      overflow.push(e.tagName + ' ' + (e.textContent || '').slice(0, 60) + ' sticks out of ' + e.parentElement.tagName);
  }
  // The map: each point's thumbnail hidden until hovered, the atlas decoding to whole tiles.
  const thumbs = [...document.querySelectorAll('.map-thumb')];
  const shown = thumbs.filter(t => getComputedStyle(t).visibility !== 'hidden').length;
  const tile = thumbs.length ? thumbs[0].viewBox.baseVal : null;
  const atlas = document.getElementById('map-atlas');
  const done = map => document.body.setAttribute('data-check',
    JSON.stringify({ images: images.length, broken, overflow, map }));
  if (!atlas) return done(null);
  const img = new Image();
  img.onload = () => done({ thumbs: thumbs.length, shown, tile: [tile.width, tile.height],
                            atlas: [img.naturalWidth, img.naturalHeight] });
  img.onerror = () => done({ thumbs: thumbs.length, shown, atlas: 'broken' });
  img.src = atlas.getAttribute('href');
});
</script>"#;

fn chromium(args: &[&str], profile: &Path) -> std::process::Output {
    let which = Command::new("chromium").arg("--version").output();
    assert!(
        which.is_ok_and(|o| o.status.success()),
        "chromium is not installed: run scripts/deps.sh (scripts/test does)"
    );
    Command::new("timeout")
        .arg("120")
        .arg("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"])
        .args(["--disable-component-update", "--disable-sync", "--hide-scrollbars", "--window-size=1280,2000"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("chromium runs")
}

fn quickstart_report(ws: &crate::support::Ws) -> PathBuf {
    crate::support::quickstart(ws, 3, &RunOptions::default());
    ws.path().join("reports/quickstart/report.html")
}

#[test]
fn the_quickstart_report_loads_every_image_and_fits_1280_px_in_chromium() {
    let ws = crate::support::Ws::new();
    let html = quickstart_report(&ws);
    let dir = html.parent().unwrap();
    assert!(dir.join("report.md").is_file() && dir.join("images").is_dir(), "the Markdown report lies beside the HTML");
    let text = std::fs::read_to_string(&html).unwrap();
    assert!(!text.contains("<script"), "the report itself carries no script");
    crate::report::assert_evidence_shape(&std::fs::read_to_string(dir.join("evidence.json")).unwrap());

    let checked = ws.write("check/report.html", &text.replace("</body>", &format!("{CHECK}</body>")));
    let out = chromium(
        &["--virtual-time-budget=10000", "--dump-dom", &format!("file://{}", checked.display())],
        &ws.path().join("profile-1"),
    );
    let dom = String::from_utf8_lossy(&out.stdout);
    let start = dom
        .find("data-check=\"")
        .unwrap_or_else(|| panic!("the check did not run: {}", String::from_utf8_lossy(&out.stderr)));
    let value = &dom[start + 12..];
    let value = value[..value.find('"').unwrap()]
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">");
    let check: serde_json::Value = serde_json::from_str(&value).unwrap();
    let clusters = text.matches("<section class=\"cluster\" id=").count();
    assert!(clusters > 0, "the quickstart finds root-cause clusters");
    assert!(check["images"].as_u64().unwrap() as usize >= clusters * 2, "{check}");
    assert_eq!(check["broken"], serde_json::json!([]), "images that did not load");
    assert_eq!(check["overflow"], serde_json::json!([]), "text wider than its column at 1280 px");
    // The map's thumbnails: one per failing image, none shown until hovered, the atlas a whole number of tiles.
    let failures = text.matches("<g class=\"map-pt\">").count();
    let map = &check["map"];
    assert!(failures > 0 && map["thumbs"].as_u64() == Some(failures as u64), "{check}");
    assert_eq!(map["shown"], 0, "{check}");
    let size = |v: &serde_json::Value, i: usize| v[i].as_f64().unwrap();
    let (tiles_x, tiles_y) =
        (size(&map["atlas"], 0) / size(&map["tile"], 0), size(&map["atlas"], 1) / size(&map["tile"], 1));
    assert!(tiles_x.fract() == 0.0 && tiles_y.fract() == 0.0 && tiles_x * tiles_y >= failures as f64, "{check}");

    let shot = ws.path().join("report.png");
    let out = chromium(
        &[&format!("--screenshot={}", shot.display()), &format!("file://{}", html.display())],
        &ws.path().join("profile-2"),
    );
    assert!(shot.is_file(), "no screenshot: {}", String::from_utf8_lossy(&out.stderr));
    let png = image::open(&shot).unwrap().to_rgb8();
    assert_eq!(png.width(), 1280);
    let distinct: std::collections::BTreeSet<[u8; 3]> = png.pixels().map(|p| p.0).collect();
    assert!(distinct.len() > 100, "the screenshot shows a rendered page ({} colours)", distinct.len());

    // Printed: a PDF whose every top-level section starts a page (the print stylesheet).
    let pdf = ws.path().join("report.pdf");
    let out = chromium(
        &[
            "--no-pdf-header-footer",
            &format!("--print-to-pdf={}", pdf.display()),
            &format!("file://{}", html.display()),
        ],
        &ws.path().join("profile-3"),
    );
    let bytes =
        std::fs::read(&pdf).unwrap_or_else(|e| panic!("no PDF ({e}): {}", String::from_utf8_lossy(&out.stderr)));
    assert!(bytes.starts_with(b"%PDF-"), "not a PDF");
    let text = String::from_utf8_lossy(&bytes);
    let pages = text.matches("/Type /Page").count() - text.matches("/Type /Pages").count();
    assert!(pages >= 8, "{pages} pages: the 8 sections each start a page when printed");
    // What is folded on screen (the operational domain, the lineage) is printed in full: the same report with every
    // `<details>` open prints as many pages.
    let html_text = std::fs::read_to_string(&html).unwrap();
    assert!(html_text.matches("<details").count() >= 2, "the domain and the lineage are folded");
    let opened = html.with_file_name("report-open.html");
    std::fs::write(&opened, html_text.replace("<details", "<details open")).unwrap();
    let open_pdf = ws.path().join("report-open.pdf");
    chromium(
        &[
            "--no-pdf-header-footer",
            &format!("--print-to-pdf={}", open_pdf.display()),
            &format!("file://{}", opened.display()),
        ],
        &ws.path().join("profile-4"),
    );
    let open_text = String::from_utf8_lossy(&std::fs::read(&open_pdf).unwrap()).into_owned();
    let open_pages = open_text.matches("/Type /Page").count() - open_text.matches("/Type /Pages").count();
    assert_eq!(pages, open_pages, "folded sections printed as if open");

    // The quickstart again with another number of epochs: `hudd diff` names the parameter and the figures it moved.
    crate::support::quickstart(&ws, 2, &RunOptions::default());
    let (code, diff, err) = ws.cli_with(&hudd::stages::registry(), &["diff", "quickstart~1", "quickstart"]);
    assert_eq!(code, 0, "{err}");
    assert!(diff.contains("train.epochs: 3 → 2"), "{diff}");
    assert!(diff.contains("different: ") && diff.contains("train"), "{diff}");
    assert!(diff.contains("\n  test.accuracy ") || diff.contains("\n  test.errors "), "{diff}");
    assert!(diff.contains("performance[model=hudd,split=holdout].value"), "{diff}");
    assert!(diff.contains("clusters (matched by their members):"), "{diff}");
}
