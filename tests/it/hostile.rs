//! A user's own DNN and images handled as hostile input: malformed ONNX files, external data that points out of
//! the model's folder, pipes and devices where files belong, outputs that would overwrite or follow links, image
//! folders with sub-folders, empty classes and links to system folders. Each is refused by name with exit 2 (or
//! skipped and listed), never a panic, a hang, a read or write outside, or a stale key.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use hudd::engine::Outcome;

use crate::support::Ws;

fn hostile(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hostile").join(name)
}

/// `hudd model import ONNX -o OUT [extra]` in-process: (exit code, stderr).
fn import(onnx: &Path, out: &Path, extra: &[&str]) -> (u8, String) {
    let ws = Ws::new();
    let mut args = vec!["model", "import", onnx.to_str().unwrap(), "-o", out.to_str().unwrap()];
    args.extend(extra);
    let (code, _, err) = ws.cli_with(&hudd::stages::registry(), &args);
    (code, err)
}

/// [`import`] on another thread: a read that blocks fails the test instead of hanging it.
fn import_within(onnx: &Path, out: &Path, seconds: u64) -> (u8, String) {
    let (tx, rx) = mpsc::channel();
    let (file, out) = (onnx.to_path_buf(), out.to_path_buf());
    std::thread::spawn(move || tx.send(import(&file, &out, &[])).unwrap());
    rx.recv_timeout(Duration::from_secs(seconds)).unwrap_or_else(|_| panic!("importing {} blocked", onnx.display()))
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo {}", path.display());
}

/// The files of a folder, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

#[test]
fn every_hostile_onnx_file_is_refused_naming_its_fault_with_nothing_written() {
    let expected: std::collections::BTreeMap<String, String> =
        serde_json::from_str(&std::fs::read_to_string(hostile("expected.json")).unwrap()).unwrap();
    assert_eq!(expected.len(), 13);
    let out = tempfile::tempdir().unwrap();
    for (file, says) in expected {
        let (code, err) = import(&hostile(&file), &out.path().join("net.toml"), &[]);
        assert_eq!(code, 2, "{file}: {err}");
        assert!(err.contains(&file) && err.contains(&says), "{file}: expected `{says}` in: {err}");
        assert!(!err.contains("panicked"), "{file}: {err}");
        assert!(listing(out.path()).is_empty(), "{file} left {:?}", listing(out.path()));
    }
    // The sound model beside them imports.
    let (code, err) = import(&hostile("external.onnx"), &out.path().join("net.toml"), &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(listing(out.path()), ["net.safetensors", "net.toml"]);
}

#[test]
fn external_data_is_read_only_from_a_regular_file_inside_the_models_folder() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("external.onnx");
    std::fs::copy(hostile("external.onnx"), &model).unwrap();
    let out = dir.path().join("out.toml");
    // A link inside the folder that leads out of it (to a file of the right size) is refused like `../`.
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), [7u8; 432]).unwrap();
    std::os::unix::fs::symlink(secret.path(), dir.path().join("weights.bin")).unwrap();
    let (code, err) = import(&model, &out, &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("its external data `weights.bin` lies outside the model's folder"), "{err}");
    // A named pipe there is refused at once, not read forever.
    std::fs::remove_file(dir.path().join("weights.bin")).unwrap();
    mkfifo(&dir.path().join("weights.bin"));
    let (code, err) = import_within(&model, &out, 20);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("weights.bin") && err.contains("a named pipe, not a regular file"), "{err}");
    assert!(!out.exists());
}

#[test]
fn a_pipe_or_a_device_given_as_the_model_is_refused_without_blocking_or_growing() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("model.onnx");
    mkfifo(&fifo);
    let (code, err) = import_within(&fifo, &dir.path().join("a.toml"), 20);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("a named pipe, not a regular file"), "{err}");
    let (code, err) = import_within(Path::new("/dev/zero"), &dir.path().join("b.toml"), 20);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("/dev/zero") && err.contains("a device, not a regular file"), "{err}");
}

#[test]
fn model_import_follows_no_link_and_replaces_nothing_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("net.toml");
    // The fixed temporary name earlier versions wrote through, as a link to a file outside.
    let victim = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(victim.path(), "precious").unwrap();
    std::os::unix::fs::symlink(victim.path(), dir.path().join("net.partial")).unwrap();
    std::os::unix::fs::symlink(victim.path(), dir.path().join("net.safetensors.partial")).unwrap();
    let (code, err) = import(&hostile("external.onnx"), &out, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read_to_string(victim.path()).unwrap(), "precious");
    assert_eq!(listing(dir.path()), ["net.partial", "net.safetensors", "net.safetensors.partial", "net.toml"]);
    // A hand-edited architecture and its weights stay unless --force.
    std::fs::write(&out, "# edited by hand\n").unwrap();
    let (code, err) = import(&hostile("external.onnx"), &out, &[]);
    assert_eq!(code, 2);
    assert!(err.contains("net.toml exists; `hudd model import` replaces it only with --force"), "{err}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "# edited by hand\n");
    let (code, err) = import(&hostile("external.onnx"), &out, &["--force"]);
    assert_eq!(code, 0, "{err}");
    assert!(std::fs::read_to_string(&out).unwrap().contains("[[layer]]"));
    // Output names that would put TOML over the weights, or files beside a folder, are refused.
    let (code, err) = import(&hostile("external.onnx"), &dir.path().join("w.safetensors"), &[]);
    assert_eq!(code, 2);
    assert!(err.contains("its weights go beside it as .safetensors, so give another name"), "{err}");
    let folder = dir.path().join("models");
    std::fs::create_dir(&folder).unwrap();
    let (code, err) = import(&hostile("external.onnx"), &folder, &[]);
    assert_eq!(code, 2);
    assert!(err.contains("is a folder; give the architecture file to write"), "{err}");
    assert_eq!(listing(dir.path()).len(), 5, "{:?}", listing(dir.path()));
    assert!(listing(&folder).is_empty());
}

/// Three classes of 8×8 images in HUDD's folder layout, as `external.onnx` takes them.
fn three_classes(ws: &Ws) {
    for (k, class) in ["a", "b", "c"].iter().enumerate() {
        for i in 0..2u8 {
            let path = ws.path().join(format!("DataSets/TestSet/{class}/{i}.png"));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            image::RgbImage::from_pixel(8, 8, image::Rgb([60 * k as u8, 30 * i, 90])).save(&path).unwrap();
        }
    }
}

#[test]
fn replacing_an_onnx_models_external_data_makes_the_model_stage_stale_naming_the_file() {
    let ws = Ws::new();
    three_classes(&ws);
    std::fs::create_dir_all(ws.path().join("net")).unwrap();
    std::fs::copy(hostile("external.onnx"), ws.path().join("net/model.onnx")).unwrap();
    std::fs::copy(hostile("weights.bin"), ws.path().join("net/weights.bin")).unwrap();
    let text = "[workflow]\nname = \"ext\"\n[[stage]]\nid = \"data\"\nkind = \"dataset\"\nformat = \"folders\"\n\
                path = \"DataSets\"\nsize = 8\n[[stage]]\nid = \"dnn\"\nkind = \"model\"\ndataset = \"data.dataset\"\n\
                onnx = \"net/model.onnx\"\n";
    let (w, first) = ws.run_builtin(text);
    assert_eq!(first.exit_code(), 0, "{}", crate::support::failures(&first));
    let manifest = ws.path().join("w.toml");
    let (_, plan, _) = ws.cli_with(&hudd::stages::registry(), &["plan", manifest.to_str().unwrap()]);
    assert!(!plan.contains("stale"), "{plan}");
    // New weights of the same shape, as PyTorch's exporter writes them on a second export.
    let mut bytes = std::fs::read(ws.path().join("net/weights.bin")).unwrap();
    bytes[..4].copy_from_slice(&2.5f32.to_le_bytes());
    std::fs::write(ws.path().join("net/weights.bin"), &bytes).unwrap();
    let (code, plan, err) = ws.cli_with(&hudd::stages::registry(), &["plan", manifest.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let line = plan.lines().find(|l| l.contains("dnn")).unwrap();
    assert!(line.contains("stale") && line.contains("external file changed: net/weights.bin"), "{plan}");
    let (_, second) = ws.run_builtin(text);
    let dnn = w.stage_index("dnn").unwrap();
    assert_ne!(first.keys[dnn], second.keys[dnn]);
    let weights = |key: &str| {
        let dir = ws.store().output_path(key, "model").unwrap();
        let model = hudd::model::artefact::Model::load(&dir, tch::Device::Cpu).unwrap();
        f64::try_from(model.var_store().unwrap().variables()["conv.weight"].flatten(0, -1).get(0)).unwrap()
    };
    assert_eq!(weights(&second.keys[dnn]), 2.5, "the stage read the new data");
    let (code, out, err) = ws.cli_with(&hudd::stages::registry(), &["reproduce", manifest.to_str().unwrap(), "dnn"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = ws.cli_with(&hudd::stages::registry(), &["verify"]);
    assert_eq!(code, 0, "verify: {out}{err}");
}

#[test]
fn an_image_folder_is_walked_like_torchvisions_and_what_holds_no_image_is_listed() {
    let ws = Ws::new();
    three_classes(&ws);
    let train = ws.path().join("DataSets/TrainingSet");
    // Images in sub-folders of a class; a class whose images all lie in sub-folders; an empty class; a stray file;
    // a link to a system folder (never hashed nor read); a named pipe where an image belongs.
    for path in ["a/x/1.png", "a/2.png", "b/deep/er/3.png"] {
        let path = train.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        image::RgbImage::from_pixel(8, 8, image::Rgb([1, 2, 3])).save(&path).unwrap();
    }
    std::fs::create_dir_all(train.join("empty")).unwrap();
    std::fs::write(train.join("README.txt"), "notes").unwrap();
    std::os::unix::fs::symlink("/usr", train.join("a/system")).unwrap();
    mkfifo(&train.join("c.png"));
    std::fs::create_dir_all(train.join("c")).unwrap();
    mkfifo(&train.join("c/pipe.png"));
    let text = "[workflow]\nname = \"walk\"\n[[stage]]\nid = \"data\"\nkind = \"dataset\"\nformat = \"folders\"\n\
                path = \"DataSets\"\nsize = 8\non_bad_image = \"skip\"\n";
    let (_, report) = ws.run_builtin(text);
    assert!(matches!(report.outcomes[0], Outcome::Ran { .. }), "{:?}", report.outcomes);
    let ds = hudd::dataset::Dataset::open(&ws.store().output_path(&report.keys[0], "dataset").unwrap()).unwrap();
    let ids = ds.ids().unwrap();
    for id in ["TrainingSet/a/x/1.png", "TrainingSet/a/2.png", "TrainingSet/b/deep/er/3.png"] {
        assert!(ids.iter().any(|i| i == id), "{id} imported: {ids:?}");
    }
    assert_eq!(ds.meta.splits, vec![("train".into(), 3), ("test".into(), 6)]);
    let skipped = std::fs::read_to_string(ws.store().output_path(&report.keys[0], "skipped").unwrap()).unwrap();
    for (id, reason) in [
        ("TrainingSet/README.txt", "not in a class folder"),
        ("TrainingSet/c.png", "not in a class folder"),
        ("TrainingSet/empty/", "an empty class folder"),
        ("TrainingSet/a/system", "a link to the folder /usr"),
        ("TrainingSet/c/pipe.png", "a named pipe, not an image file"),
    ] {
        assert!(skipped.lines().any(|l| l.starts_with(&format!("{id},")) && l.contains(reason)), "{id}: {skipped}");
    }
    // Without `skip`, the pipe stops the stage by name (and is never opened).
    let (_, report) = ws.run_builtin(&text.replace("on_bad_image = \"skip\"\n", ""));
    let Outcome::Failed { error, exit_code: 2 } = &report.outcomes[0] else { panic!("{:?}", report.outcomes) };
    assert!(error.contains("TrainingSet/c/pipe.png: a named pipe, not an image file"), "{error}");
    let (code, out, err) = ws.cli_with(&hudd::stages::registry(), &["verify"]);
    assert_eq!(code, 0, "nothing half-written: {out}{err}");
}

#[test]
fn sizes_that_would_ask_libtorch_for_terabytes_are_refused_by_name_before_anything_runs() {
    let ws = Ws::new();
    let text = "[workflow]\nname = \"big\"\n[[stage]]\nid = \"data\"\nkind = \"simulate\"\nsimulator = \"signs\"\n\
                [stage.splits.test]\ncount = 4\n[[stage]]\nid = \"feat\"\nkind = \"activations\"\n\
                images = \"data.dataset\"\nbackbone = { architecture = \"efficientnet-lite0\", weights = \"w.safetensors\", \
                size = [100000, 100000] }\n";
    let path = ws.write("big.toml", text);
    let (code, _, err) = ws.cli_with(&hudd::stages::registry(), &["check", path.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("height and width must be at most 4096 pixels, got [100000, 100000]"), "{err}");
    let arch = ws.write(
        "pad.toml",
        "[model]\nname = \"pad\"\ninput = [3, 8, 8]\n[[layer]]\nname = \"conv\"\nkind = \"conv2d\"\nout_channels = 4\n\
         kernel_size = 3\npadding = 1048576\n",
    );
    let (code, _, err) = ws.cli_with(&hudd::stages::registry(), &["model", "describe", arch.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("layer `conv` (conv2d): output values per image"), "{err}");
}

#[test]
fn replacing_an_image_a_csv_lists_makes_the_dataset_stale_naming_the_image() {
    let ws = Ws::new();
    for (name, value) in [("x", 10u8), ("y", 200)] {
        let path = ws.path().join(format!("data/imgs/{name}.png"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        image::RgbImage::from_pixel(8, 8, image::Rgb([value, 0, 0])).save(&path).unwrap();
    }
    ws.write("data/list.csv", "path,label\nimgs/x.png,a\nimgs/y.png,b\nimgs/gone.png,a\n");
    let text = "[workflow]\nname = \"csv\"\n[[stage]]\nid = \"data\"\nkind = \"dataset\"\nformat = \"csv\"\n\
                path = \"data/list.csv\"\nsize = 8\non_bad_image = \"skip\"\n";
    let (_, first) = ws.run_builtin(text);
    assert!(matches!(first.outcomes[0], Outcome::Ran { .. }), "a missing image is skipped: {:?}", first.outcomes);
    image::RgbImage::from_pixel(8, 8, image::Rgb([11, 0, 0])).save(ws.path().join("data/imgs/x.png")).unwrap();
    let manifest = ws.path().join("w.toml");
    let (_, plan, _) = ws.cli_with(&hudd::stages::registry(), &["plan", manifest.to_str().unwrap()]);
    assert!(plan.contains("external file changed: data/imgs/x.png"), "{plan}");
    let (_, second) = ws.run_builtin(text);
    assert_ne!(first.keys[0], second.keys[0]);
}
