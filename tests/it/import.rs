//! The `dataset` stage: HUDD's folder layout, CSV listings and IDX files, and their bad inputs.

use std::io::Write;

use hudd::engine::Outcome;
use hudd::engine::store::Store;

use crate::support::Ws;

fn png(path: &std::path::Path, w: u32, h: u32, value: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::RgbImage::from_pixel(w, h, image::Rgb([value, value / 2, 255 - value])).save(path).unwrap();
}

fn run(ws: &Ws, stage: &str) -> (Vec<String>, Vec<Outcome>) {
    let text = format!("[workflow]\nname = \"imp\"\nseed = 3\n[[stage]]\nid = \"data\"\nkind = \"dataset\"\n{stage}");
    let (_, report) = ws.run_builtin(&text);
    (report.keys, report.outcomes)
}

fn dataset(ws: &Ws, key: &str) -> hudd::dataset::Dataset {
    hudd::dataset::Dataset::open(&Store::open(ws.path()).unwrap().output_path(key, "dataset").unwrap()).unwrap()
}

#[test]
fn hudds_folder_layout_becomes_a_dataset_with_splits_and_classes() {
    let ws = Ws::new();
    for (split, n) in [("TrainingSet", 3), ("TestSet", 2), ("ImprovementSet", 1)] {
        for class in ["open", "closed"] {
            for i in 0..n {
                png(&ws.path().join(format!("DataSets/{split}/{class}/{i}.png")), 20, 10, 40 * i as u8);
            }
        }
    }
    let (keys, outcomes) = run(&ws, "format = \"folders\"\npath = \"DataSets\"\nsize = 16\nresize = \"crop\"\n");
    assert!(matches!(outcomes[0], Outcome::Ran { .. }), "{outcomes:?}");
    let ds = dataset(&ws, &keys[0]);
    assert_eq!(ds.meta.splits, vec![("train".into(), 6), ("test".into(), 4), ("improvement".into(), 2)]);
    assert_eq!(ds.meta.target, hudd::dataset::Target::Classification { classes: vec!["closed".into(), "open".into()] });
    assert_eq!((ds.meta.height, ds.meta.width, ds.meta.channels), (16, 16, 3));
    assert_eq!(ds.ids().unwrap()[0], "TrainingSet/closed/0.png");
}

#[test]
fn torchvisions_image_folder_layout_imports_with_each_splits_folder_named() {
    let ws = Ws::new();
    for (folder, n) in [("train", 3), ("val", 2)] {
        for class in ["cat", "dog"] {
            for i in 0..n {
                png(&ws.path().join(format!("photos/{folder}/{class}/{i}.png")), 12, 12, 30 * i as u8);
            }
        }
    }
    let stage = "format = \"folders\"\npath = \"photos\"\nsize = 8\nsplits = { test = \"val\", train = \"train\" }\n";
    let (keys, outcomes) = run(&ws, stage);
    assert!(matches!(outcomes[0], Outcome::Ran { .. }), "{outcomes:?}");
    let ds = dataset(&ws, &keys[0]);
    assert_eq!(ds.meta.splits, vec![("train".into(), 6), ("test".into(), 4)], "training first, whatever the order");
    assert_eq!(ds.meta.target, hudd::dataset::Target::Classification { classes: vec!["cat".into(), "dog".into()] });
    assert_eq!(ds.ids().unwrap()[6], "val/cat/0.png");
    // A split folder that is not there is named; `splits` outside the folder or with another format is refused.
    let (_, outcomes) = run(&ws, &stage.replace("\"val\"", "\"valid\""));
    let Outcome::Failed { error, exit_code: 2 } = &outcomes[0] else { panic!("{outcomes:?}") };
    assert!(error.ends_with("photos/valid: no such folder (split `test` of `splits`)"), "{error}");
    for (bad, says) in [
        (stage.replace("\"val\"", "\"../val\""), "split `test`: `../val` is not a folder inside `path`"),
        (stage.replace("folders", "csv"), "only `format = \"folders\"` takes it"),
    ] {
        let text = format!("[workflow]\nname = \"imp\"\n[[stage]]\nid = \"data\"\nkind = \"dataset\"\n{bad}");
        let path = ws.write("bad.toml", &text);
        let (code, _, err) = ws.cli_with(&hudd::stages::registry(), &["check", path.to_str().unwrap()]);
        assert_eq!(code, 2);
        assert!(err.contains(says), "{err}");
    }
}

#[test]
fn a_truncated_image_stops_the_stage_naming_the_file_or_is_skipped_and_listed() {
    let ws = Ws::new();
    png(&ws.path().join("DataSets/TrainingSet/a/good.png"), 8, 8, 10);
    png(&ws.path().join("DataSets/TrainingSet/a/bad.png"), 8, 8, 10);
    let bad = ws.path().join("DataSets/TrainingSet/a/bad.png");
    let bytes = std::fs::read(&bad).unwrap();
    std::fs::write(&bad, &bytes[..bytes.len() / 2]).unwrap();
    let (keys, outcomes) = run(&ws, "format = \"folders\"\npath = \"DataSets\"\nsize = 8\n");
    let Outcome::Failed { error, exit_code } = &outcomes[0] else { panic!("{outcomes:?}") };
    assert_eq!(*exit_code, 2);
    assert!(error.contains("TrainingSet/a/bad.png: unreadable or truncated image"), "{error}");
    assert!(Store::open(ws.path()).unwrap().entry(&keys[0]).is_none(), "nothing partial enters the store");
    let (keys, outcomes) = run(&ws, "format = \"folders\"\npath = \"DataSets\"\nsize = 8\non_bad_image = \"skip\"\n");
    assert!(matches!(outcomes[0], Outcome::Ran { .. }), "{outcomes:?}");
    assert_eq!(dataset(&ws, &keys[0]).meta.count, 1);
    let skipped =
        std::fs::read_to_string(Store::open(ws.path()).unwrap().output_path(&keys[0], "skipped").unwrap()).unwrap();
    assert!(skipped.contains("TrainingSet/a/bad.png,"), "{skipped}");
}

#[test]
fn broken_and_looping_links_in_a_dataset_folder_are_bad_images_and_a_link_back_is_not_followed_forever() {
    let ws = Ws::new();
    let class = ws.path().join("DataSets/TrainingSet/a");
    png(&class.join("good.png"), 8, 8, 10);
    // A dangling link, a loop of two links, and a class folder linking back to its parent.
    std::os::unix::fs::symlink(class.join("gone.png"), class.join("dangling.png")).unwrap();
    std::os::unix::fs::symlink(class.join("loop-b.png"), class.join("loop-a.png")).unwrap();
    std::os::unix::fs::symlink(class.join("loop-a.png"), class.join("loop-b.png")).unwrap();
    std::os::unix::fs::symlink("..", ws.path().join("DataSets/TrainingSet/back")).unwrap();
    let (keys, outcomes) = run(&ws, "format = \"folders\"\npath = \"DataSets\"\nsize = 8\non_bad_image = \"skip\"\n");
    assert!(matches!(outcomes[0], Outcome::Ran { .. }), "planned and run: {outcomes:?}");
    assert_eq!(dataset(&ws, &keys[0]).meta.count, 1);
    let skipped =
        std::fs::read_to_string(Store::open(ws.path()).unwrap().output_path(&keys[0], "skipped").unwrap()).unwrap();
    for name in ["a/dangling.png,", "a/loop-a.png,", "a/loop-b.png,"] {
        assert!(skipped.contains(name), "{name} listed: {skipped}");
    }
    // Without `skip`, the stage stops naming the first of them.
    let (_, outcomes) = run(&ws, "format = \"folders\"\npath = \"DataSets\"\nsize = 8\n");
    let Outcome::Failed { error, exit_code } = &outcomes[0] else { panic!("{outcomes:?}") };
    assert!(*exit_code == 2 && error.contains("TrainingSet/a/dangling.png"), "{error}");
}

#[test]
fn a_csv_listing_keeps_its_extra_columns_and_refuses_unknown_labels() {
    let ws = Ws::new();
    png(&ws.path().join("imgs/x.png"), 12, 12, 200);
    png(&ws.path().join("imgs/y.png"), 12, 12, 20);
    ws.write("list.csv", "path,label,split,weather\nimgs/x.png,cat,train,rain\nimgs/y.png,dog,test,sun\n");
    let (keys, outcomes) =
        run(&ws, "format = \"csv\"\npath = \"list.csv\"\nsize = 12\nresize = \"none\"\nchannels = 1\n");
    assert!(matches!(outcomes[0], Outcome::Ran { .. }), "{outcomes:?}");
    let ds = dataset(&ws, &keys[0]);
    assert_eq!(ds.strings("weather").unwrap(), ["rain", "sun"]);
    assert_eq!(ds.meta.channels, 1);
    let (_, outcomes) = run(&ws, "format = \"csv\"\npath = \"list.csv\"\nsize = 12\nclasses = [\"cat\", \"bird\"]\n");
    let Outcome::Failed { error, .. } = &outcomes[0] else { panic!("{outcomes:?}") };
    assert!(error.contains("imgs/y.png: label `dog` is not in the class list (cat, bird)"), "{error}");
    let (_, outcomes) = run(&ws, "format = \"csv\"\npath = \"list.csv\"\nsize = 10\nresize = \"none\"\n");
    let Outcome::Failed { error, .. } = &outcomes[0] else { panic!("{outcomes:?}") };
    assert!(error.contains("imgs/x.png: is 12×12, not 10×10"), "{error}");
}

/// Writes an IDX file of unsigned bytes, gzipped.
fn idx(path: &std::path::Path, dims: &[u32], data: &[u8]) {
    let mut bytes = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        bytes.extend_from_slice(&d.to_be_bytes());
    }
    bytes.extend_from_slice(data);
    let mut gz = flate2::write::GzEncoder::new(std::fs::File::create(path).unwrap(), flate2::Compression::fast());
    gz.write_all(&bytes).unwrap();
    gz.finish().unwrap();
}

#[test]
fn idx_files_import_with_an_improvement_split_carved_from_training() {
    let ws = Ws::new();
    let dir = ws.path().join("mnist");
    std::fs::create_dir_all(&dir).unwrap();
    let n = 20u32;
    idx(&dir.join("train-images-idx3-ubyte.gz"), &[n, 8, 8], &(0..n * 64).map(|i| i as u8).collect::<Vec<_>>());
    idx(&dir.join("train-labels-idx1-ubyte.gz"), &[n], &(0..n).map(|i| (i % 10) as u8).collect::<Vec<_>>());
    idx(&dir.join("t10k-images-idx3-ubyte.gz"), &[5, 8, 8], &[7; 320]);
    idx(&dir.join("t10k-labels-idx1-ubyte.gz"), &[5], &[1; 5]);
    let (keys, outcomes) = run(&ws, "format = \"idx\"\npath = \"mnist\"\nsize = 8\nchannels = 1\nimprovement = 0.25\n");
    assert!(matches!(outcomes[0], Outcome::Ran { .. }), "{outcomes:?}");
    let ds = dataset(&ws, &keys[0]);
    assert_eq!(ds.meta.splits, vec![("train".into(), 15), ("test".into(), 5), ("improvement".into(), 5)]);
    let row = ds.ids().unwrap().iter().position(|id| id == "train-00000").unwrap();
    let first = ds.images(&[row]).unwrap();
    assert_eq!(first, (0..64).collect::<Vec<u8>>(), "pixels arrive unchanged at their own size");
    // `classes` names IDX label indices in order.
    let names = "classes = [\"zero\", \"one\", \"two\", \"three\", \"four\", \"five\", \"six\", \"seven\", \"eight\", \"nine\"]\n";
    let (keys, outcomes) = run(&ws, &format!("format = \"idx\"\npath = \"mnist\"\nsize = 8\nchannels = 1\n{names}"));
    assert!(matches!(outcomes[0], Outcome::Ran { .. }), "{outcomes:?}");
    let ds = dataset(&ws, &keys[0]);
    assert_eq!(&ds.strings("label").unwrap()[..3], ["zero", "one", "two"]);
    let (_, outcomes) =
        run(&ws, "format = \"idx\"\npath = \"mnist\"\nsize = 8\nchannels = 1\nclasses = [\"a\", \"b\"]\n");
    let Outcome::Failed { error, .. } = &outcomes[0] else { panic!("{outcomes:?}") };
    assert!(error.contains("train-00002: label 2 has no name in `classes` (2 names)"), "{error}");
    // A truncated file is named.
    idx(&dir.join("t10k-images-idx3-ubyte.gz"), &[5, 8, 8], &[7; 100]);
    let (_, outcomes) = run(&ws, "format = \"idx\"\npath = \"mnist\"\nsize = 8\nchannels = 1\n");
    let Outcome::Failed { error, .. } = &outcomes[0] else { panic!("{outcomes:?}") };
    assert!(error.contains("t10k-images-idx3-ubyte.gz: truncated"), "{error}");
}

#[test]
fn crafted_idx_headers_are_refused_by_name_not_panicked_on() {
    let ws = Ws::new();
    let dir = ws.path().join("mnist");
    std::fs::create_dir_all(&dir).unwrap();
    let stage = "format = \"idx\"\npath = \"mnist\"\nsize = 8\nchannels = 1\n";
    let failure = |ws: &Ws| -> String {
        let (_, outcomes) = run(ws, stage);
        match &outcomes[0] {
            Outcome::Failed { error, exit_code: 2 } => error.clone(),
            other => panic!("accepted or wrong exit code: {other:?}"),
        }
    };
    idx(&dir.join("train-images-idx3-ubyte.gz"), &[2, 8, 8], &[9; 128]);
    // Labels with dimensions [n, 0]: no label at all.
    idx(&dir.join("train-labels-idx1-ubyte.gz"), &[2, 0], &[]);
    let e = failure(&ws);
    assert!(e.contains("none of size 0"), "{e}");
    idx(&dir.join("train-labels-idx1-ubyte.gz"), &[2, 1], &[1, 2]);
    let e = failure(&ws);
    assert!(e.contains("the labels must have dimensions [2], not [2, 1]"), "{e}");
    idx(&dir.join("train-labels-idx1-ubyte.gz"), &[2], &[1, 2]);
    // Image dimensions whose product overflows, and images of 0×0 pixels.
    idx(&dir.join("train-images-idx3-ubyte.gz"), &[u32::MAX, u32::MAX, u32::MAX], &[]);
    let e = failure(&ws);
    assert!(e.contains("describe more bytes than any file holds"), "{e}");
    idx(&dir.join("train-images-idx3-ubyte.gz"), &[2, 0, 0], &[]);
    let e = failure(&ws);
    assert!(e.contains("none of size 0"), "{e}");
}

#[test]
fn listings_that_would_import_silently_wrong_are_refused_naming_the_line() {
    let ws = Ws::new();
    png(&ws.path().join("imgs/x.png"), 12, 12, 200);
    png(&ws.path().join("imgs/y.png"), 12, 12, 20);
    let stage = "format = \"csv\"\npath = \"list.csv\"\nsize = 12\nresize = \"none\"\n";
    let failure = |text: &str| -> String {
        ws.write("list.csv", text);
        let (_, outcomes) = run(&ws, stage);
        match &outcomes[0] {
            Outcome::Failed { error, exit_code: 2 } => error.clone(),
            other => panic!("accepted:\n{text}\n{other:?}"),
        }
    };
    let e = failure("path,target_x0,target_y0\nimgs/x.png,3,4\nimgs/y.png,abc,4\n");
    assert!(e.contains("list.csv:3: `target_x0` is `abc`, not a finite number"), "{e}");
    let e = failure("path,target_x0,target_y0\nimgs/x.png,3,\n");
    assert!(e.contains("list.csv:2: `target_y0` is ``, not a finite number"), "{e}");
    let e = failure("path,label\nimgs/x.png,cat\nimgs/x.png,dog\n");
    assert!(e.contains("list.csv:3: imgs/x.png is listed twice (also at line 2)"), "{e}");
    let e = failure("path,label,split\nimgs/x.png,cat,\n");
    assert!(e.contains("list.csv:2: empty `split`"), "{e}");
    let e = failure("path,label\n");
    assert!(e.contains("list.csv: no images (only a header)"), "{e}");
    let e = failure("path,label\n,cat\n");
    assert!(e.contains("list.csv:2: empty `path`"), "{e}");
}

#[test]
fn an_image_claiming_huge_dimensions_is_refused_not_allocated() {
    let ws = Ws::new();
    png(&ws.path().join("DataSets/TrainingSet/a/0.png"), 4, 4, 10);
    png(&ws.path().join("DataSets/TestSet/a/0.png"), 4, 4, 10);
    // A decompression bomb: the header claims 60000×60000 pixels (10.8 GB of RGB), the file holds a few bytes.
    let bomb = ws.path().join("DataSets/TrainingSet/a/bomb.png");
    png(&bomb, 4, 4, 10);
    let mut bytes = std::fs::read(&bomb).unwrap();
    // Signature (8), IHDR length (4), "IHDR" (4), then width and height, then the CRC over type and data.
    bytes[16..20].copy_from_slice(&60000u32.to_be_bytes());
    bytes[20..24].copy_from_slice(&60000u32.to_be_bytes());
    let mut crc = flate2::Crc::new();
    crc.update(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.sum().to_be_bytes());
    std::fs::write(&bomb, bytes).unwrap();
    let (_, outcomes) = run(&ws, "format = \"folders\"\npath = \"DataSets\"\nsize = 8\n");
    let Outcome::Failed { error, exit_code } = &outcomes[0] else { panic!("{outcomes:?}") };
    assert_eq!(*exit_code, 2);
    assert!(error.contains("bomb.png"), "{error}");
}

/// Ids of 250 bytes and more (images in seven nested folders of 34 characters) through import, training, test,
/// heatmaps, clustering (its pictures named after the ids), selection and the report.
#[test]
fn ids_of_250_bytes_go_through_every_stage_to_the_report() {
    let ws = Ws::new();
    let deep = ["folder_of_thirty_four_characters__"; 7].join("/");
    let mut rows = String::from("path,label,split\n");
    for i in 0..48 {
        let path = format!("{deep}/image-{i:03}.png");
        // Labels at random to the pixels: the model fails on many images, so clusters are drawn.
        png(&ws.path().join(&path), 16, 16, (i * 37 % 251) as u8);
        let split = if i < 32 { "train" } else { "test" };
        rows += &format!("{path},{},{split}\n", ["a", "b", "c"][(i * 7 + i / 5) % 3]);
    }
    assert!(format!("{deep}/image-000.png").len() > 250);
    ws.write("list.csv", &rows);
    // The report tests' small workflow, its simulated data replaced by the listing.
    let tiny = format!("{}/tests/fixtures/tiny.toml", env!("CARGO_MANIFEST_DIR"));
    let rest = crate::report::SMALL.split_once("\n[[stage]]\nid = \"train\"").unwrap().1;
    let text = format!(
        "[workflow]\nname = \"long\"\nseed = 5\n\n[[stage]]\nid = \"data\"\nkind = \"dataset\"\nformat = \"csv\"\n\
         path = \"list.csv\"\nsize = 32\n\n[[stage]]\nid = \"train\"{}",
        rest.replace("TINY", &tiny)
    );
    let m = ws.write("long.toml", &text);
    let (code, _, err) = ws.cli_with(&hudd::stages::registry(), &["run", m.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let md = std::fs::read_to_string(ws.path().join("reports/long/report.md")).unwrap();
    assert!(md.contains("root-cause clusters of the"), "{md}");
}

/// `corrupt` plants ImageNet-C's kinds of corruption in a share of one split: the shares are exact, every other
/// image keeps its bytes, each image's corruption is named in `scenario`, and a rerun gives the same bytes.
#[test]
fn corrupt_plants_each_corruption_in_its_share_of_the_split_and_leaves_the_rest_alone() {
    let ws = Ws::new();
    let mut rows = String::from("path,label,split\n");
    for i in 0..100 {
        let split = if i < 60 { "test" } else { "train" };
        // A pattern, so that blurring, occluding with the mean or turning changes it.
        let path = ws.path().join(format!("img/{i}.png"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        image::RgbImage::from_fn(16, 16, |x, y| {
            image::Rgb([((x * 16 + y * 3) as usize + i) as u8, (y * 15) as u8, 40])
        })
        .save(&path)
        .unwrap();
        rows += &format!("img/{i}.png,{},{split}\n", ["a", "b"][i % 2]);
    }
    ws.write("list.csv", &rows);
    let text = "[workflow]\nname = \"c\"\nseed = 3\n[[stage]]\nid = \"data\"\nkind = \"dataset\"\nformat = \"csv\"\n\
                path = \"list.csv\"\nsize = 16\n[[stage]]\nid = \"bad\"\nkind = \"corrupt\"\ndataset = \"data.dataset\"\n\
                corruptions = { dark = 0.1, blur = 0.1, noise = 0.1, occlusion = 0.1, rotation = 0.2 }\n";
    let (w, report) = ws.run_builtin(text);
    assert_eq!(report.exit_code(), 0, "{}", crate::support::failures(&report));
    let (clean, bad) = (dataset(&ws, &report.keys[0]), dataset(&ws, &report.keys[1]));
    let planted = bad.strings("scenario").unwrap();
    let splits = bad.strings("split").unwrap();
    let count = |name: &str| planted.iter().filter(|p| *p == name).count();
    assert_eq!([count("dark"), count("blur"), count("noise"), count("occlusion"), count("rotation")], [6, 6, 6, 6, 12]);
    assert_eq!(count("clean"), 64);
    assert!(planted.iter().zip(&splits).all(|(p, s)| p == "clean" || s == "test"), "only the test split");
    let all: Vec<usize> = (0..100).collect();
    let (before, after) = (clean.images(&all).unwrap(), bad.images(&all).unwrap());
    let size = 3 * 16 * 16;
    for (r, p) in planted.iter().enumerate() {
        let same = before[r * size..(r + 1) * size] == after[r * size..(r + 1) * size];
        assert_eq!(same, p == "clean", "image {r} ({p})");
    }
    assert_eq!(bad.ids().unwrap(), clean.ids().unwrap());
    // Again from an empty store: the same bytes.
    let again = Ws::new();
    std::fs::create_dir_all(again.path().join("img")).unwrap();
    for i in 0..100 {
        std::fs::copy(ws.path().join(format!("img/{i}.png")), again.path().join(format!("img/{i}.png"))).unwrap();
    }
    again.write("list.csv", &rows);
    let (_, report2) = again.run_builtin(text);
    assert_eq!(report2.keys, report.keys);
    assert_eq!(dataset(&again, &report2.keys[1]).images(&all).unwrap(), after);
    // A misspelt corruption is named with what it may have meant.
    let (code, _, err) = ws.cli_with(
        &hudd::stages::registry(),
        &["run", ws.write("m.toml", &text.replace("blur =", "blurr =")).to_str().unwrap()],
    );
    assert_eq!(code, 2);
    assert!(err.contains("corruptions.blurr") && err.contains("did you mean `blur`?"), "{err}");
    assert_eq!(w.stage_index("bad"), Some(1));
}
