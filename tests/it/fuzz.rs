//! Bounded fuzzing in CI: the manifest parser, the table reader, the IDX importer, the weights reader and the
//! evidence reader of `diff` and `annotate` take arbitrary input and answer with a value or an error, never a panic.

use proptest::prelude::*;

use crate::support::Ws;

/// TOML-ish text: the tokens a manifest is made of, in any order.
fn tomlish() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("[workflow]\n".to_string()),
        Just("[[stage]]\n".to_string()),
        Just("name = \"w\"\n".to_string()),
        Just("id = \"a\"\n".to_string()),
        Just("kind = \"train\"\n".to_string()),
        Just("kind = \"select\"\n".to_string()),
        Just("matrix = { seed = [1, 2] }\n".to_string()),
        Just("dataset = \"a.dataset\"\n".to_string()),
        Just("lr = inf\n".to_string()),
        Just("epochs = -1\n".to_string()),
        "[a-z_]{1,8} = [0-9.e+-]{1,6}\n",
        "[a-z_.]{1,8} = \"[^\"\\\\]{0,12}\"\n",
        "[\\[\\]{}=\",. \\na-z0-9]{1,16}",
    ];
    proptest::collection::vec(token, 0..24).prop_map(|t| t.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn the_manifest_parser_never_panics(text in tomlish()) {
        let _ = hudd::engine::manifest::parse(std::path::Path::new("f.toml"), &text, &[], &hudd::stages::registry());
    }

    #[test]
    fn the_table_reader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut text = b"image,cluster,distance,rank\n".to_vec();
        text.extend(bytes);
        let _ = hudd::artefact::table::parse::<hudd::artefact::selection::UnsafeRow>(std::path::Path::new("t.csv"), &text);
    }
}

/// The key lines of a valid two-stage manifest: (stage, key, value).
const VALID: [(usize, &str, &str); 9] = [
    (0, "simulator", "\"signs\""),
    (0, "size", "32"),
    (0, "splits", "{ train = { count = 40 } }"),
    (1, "dataset", "\"data.dataset\""),
    (1, "architecture", "\"alexnet-small\""),
    (1, "epochs", "3"),
    (1, "batch_size", "8"),
    (1, "optimizer", "\"adam\""),
    (1, "lr", "0.003"),
];

/// One invalid value for a stage's key (a wrong type, an unknown key, an unknown variant or reference), and what
/// the error says about it.
const INVALID: [(usize, &str, &str, &str); 8] = [
    (1, "epochs", "-1", "invalid value: integer `-1`"),
    (1, "lr", "\"fast\"", "invalid type: string \"fast\""),
    (1, "batch_size", "2.5", "invalid type: floating point `2.5`"),
    (1, "optimizer", "\"sgdd\"", "unknown variant `sgdd`"),
    (1, "epoch", "3", "unknown field `epoch`"),
    (1, "dataset", "\"dta.dataset\"", "reference to unknown stage `dta`"),
    (0, "size", "\"big\"", "invalid type: string \"big\""),
    (0, "simulatr", "\"signs\"", "unknown field `simulatr`"),
];

/// A valid manifest with one value made invalid: its text, the line of the invalid value, and what its error says.
fn one_invalid_value() -> impl Strategy<Value = (String, usize, &'static str)> {
    (0..INVALID.len(), Just(VALID.to_vec()).prop_shuffle(), 1u32..20, 1u32..999).prop_map(|(bad, keys, epochs, lr)| {
        let (stage, key, value, message) = INVALID[bad];
        // Where an unknown key goes among its stage's lines: 0 to 2 lines before the stage's end.
        let back = epochs as usize % 3;
        let (epochs, lr) = (epochs.to_string(), format!("0.{lr:03}"));
        let mut lines = vec!["[workflow]".to_string(), "name = \"w\"".to_string()];
        let mut line = 0;
        for (s, (id, kind)) in [("data", "simulate"), ("train", "train")].into_iter().enumerate() {
            lines.extend([
                "".to_string(),
                "[[stage]]".to_string(),
                format!("id = \"{id}\""),
                format!("kind = \"{kind}\""),
            ]);
            let mut placed = false;
            for (_, k, v) in keys.iter().filter(|(owner, _, _)| *owner == s) {
                let v = match *k {
                    "epochs" => epochs.as_str(),
                    "lr" => lr.as_str(),
                    _ => v,
                };
                if s == stage && *k == key {
                    lines.push(format!("{k} = {value}"));
                    line = lines.len();
                    placed = true;
                } else {
                    lines.push(format!("{k} = {v}"));
                }
            }
            if s == stage && !placed {
                // A key the stage does not have: among its others.
                let at = lines.len() - back;
                lines.insert(at, format!("{key} = {value}"));
                line = at + 1;
            }
        }
        (lines.join("\n") + "\n", line, message)
    })
}

/// A valid unsafe-set table with one row made invalid: its bytes, that row's line (the header is line 1), and what
/// its error says.
fn one_invalid_row() -> impl Strategy<Value = (String, u64, &'static str)> {
    let row = ("[a-z]{1,8}", 0usize..10, 0.0f64..100.0, 0usize..1000)
        .prop_map(|(image, cluster, distance, rank)| format!("{image},{cluster},{distance},{rank}\n"));
    let bad = prop_oneof![
        Just(("img,x,0.5,1\n", "invalid digit")),
        Just(("img,-1,0.5,1\n", "invalid digit")),
        Just(("img,1,far,1\n", "invalid float literal")),
        Just(("img,1,0.5,1.5\n", "invalid digit")),
        Just(("img,1,0.5\n", "found record with 3 fields")),
    ];
    (proptest::collection::vec(row, 0..30), bad, any::<proptest::sample::Index>()).prop_map(
        |(rows, (bad, message), at)| {
            let at = at.index(rows.len() + 1);
            let mut rows = rows;
            rows.insert(at, bad.to_string());
            (format!("image,cluster,distance,rank\n{}", rows.concat()), at as u64 + 2, message)
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn a_valid_manifest_with_one_invalid_value_is_refused_at_that_line((text, line, message) in one_invalid_value()) {
        let result = hudd::engine::manifest::parse(std::path::Path::new("f.toml"), &text, &[], &hudd::stages::registry());
        let Err(hudd::engine::manifest::ManifestError::Invalid { rendered, .. }) = result else {
            panic!("not refused as invalid:\n{text}");
        };
        prop_assert!(rendered.contains(&format!("--> f.toml:{line}:")), "line {line} of\n{text}\nnot named in:\n{rendered}");
        prop_assert!(rendered.contains(message), "{message:?} missing from:\n{rendered}");
    }

    #[test]
    fn a_valid_table_with_one_invalid_row_is_refused_at_that_line((text, line, message) in one_invalid_row()) {
        let e = hudd::artefact::table::parse::<hudd::artefact::selection::UnsafeRow>(std::path::Path::new("t.csv"), text.as_bytes())
            .unwrap_err();
        let shown = e.to_string();
        prop_assert!(shown.starts_with(&format!("t.csv:{line}: ")), "line {line} of\n{text}\nnot named in: {shown}");
        prop_assert!(shown.contains(message), "{message:?} missing from: {shown}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn the_idx_importer_refuses_or_imports_any_header(
        ndim in 0u8..5,
        dims in proptest::collection::vec(prop_oneof![Just(0u32), 1u32..4, Just(u32::MAX)], 0..5),
        body in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let ws = Ws::new();
        let dir = ws.path().join("mnist");
        std::fs::create_dir_all(&dir).unwrap();
        let mut bytes = vec![0, 0, 8, ndim];
        for d in &dims {
            bytes.extend_from_slice(&d.to_be_bytes());
        }
        bytes.extend(&body);
        std::fs::write(dir.join("train-images-idx3-ubyte"), &bytes).unwrap();
        std::fs::write(dir.join("train-labels-idx1-ubyte"), &bytes).unwrap();
        let text = "[workflow]\nname = \"f\"\n[[stage]]\nid = \"data\"\nkind = \"dataset\"\nformat = \"idx\"\npath = \"mnist\"\nsize = 8\nchannels = 1\n";
        let (_, report) = ws.run_builtin(text);
        match &report.outcomes[0] {
            hudd::engine::Outcome::Ran { .. } => {}
            hudd::engine::Outcome::Failed { error, exit_code } => {
                prop_assert_eq!(*exit_code, 2);
                prop_assert!(!error.contains("internal error"), "a panic: {}", error);
            }
            other => prop_assert!(false, "{:?}", other),
        }
    }

    #[test]
    fn the_weights_reader_refuses_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        use hudd::model::artefact::load_weights;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        // A plausible header length first, so the reader gets past the first check on some cases.
        let mut file = (bytes.len().min(64) as u64).to_le_bytes().to_vec();
        file.extend(&bytes);
        std::fs::write(&path, &file).unwrap();
        let mut model = crate::support::tiny_model();
        prop_assert!(load_weights(model.var_store_mut().unwrap(), &path).is_err());
    }
}

/// A JSON value of any kind, for the fields of a cluster in an evidence file.
fn any_json() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(serde_json::Value::from),
        "[a-z\\u{0}-\\u{1f}\\u{202e}]{0,6}".prop_map(serde_json::Value::from),
        proptest::collection::vec("[a-z0-9-]{1,6}", 0..3).prop_map(serde_json::Value::from),
        proptest::collection::vec(any::<i32>(), 0..3).prop_map(serde_json::Value::from),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Evidence files with clusters of any types: read or refused naming the field, never a panic; what is read has
    /// the types `diff` and `annotate` need.
    #[test]
    fn an_evidence_file_with_any_cluster_types_is_read_or_refused_by_field(
        fields in proptest::collection::vec((any_json(), any_json(), any_json()), 0..4)
    ) {
        let clusters: Vec<serde_json::Value> = fields
            .into_iter()
            .map(|(id, size, members)| serde_json::json!({ "id": id, "size": size, "members": members }))
            .collect();
        let doc = serde_json::json!({ "schema": "hudd.evidence", "schema_version": 2, "clusters": clusters });
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("evidence.json");
        std::fs::write(&path, doc.to_string()).unwrap();
        match hudd::diff::read_evidence(&path) {
            Ok(value) => prop_assert_eq!(hudd::diff::clusters(&value).len(), clusters.len()),
            Err(e) => {
                prop_assert!(matches!(e, hudd::diff::DiffError::Clusters { .. }), "{:?}", e);
                let e = e.to_string();
                prop_assert!(e.contains("`clusters[") && e.contains("evidence.json"), "{}", e)
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Notes holding control characters, terminal escapes and bidirectional overrides (typed or pasted into the
    /// file): read, and written back by `hudd annotate` as the same notes, bound to the same cluster.
    #[test]
    fn notes_with_any_characters_survive_the_annotate_round_trip(
        condition in "[a-z \"'\\\\\\u{0}-\\u{1f}\\u{7f}\\u{202e}\\u{2066}]{0,16}",
        hazard in "[a-z\\u{1b}\\[\\]0-9m]{0,12}",
        status in "[a-z\\u{0}\\u{202e}]{0,6}",
    ) {
        use hudd::artefact::annotations::{self, Annotation, Annotations, Current};
        let members: Vec<String> = (0..4).map(|i| format!("test-{i}")).collect();
        let cluster = Current { id: 1, fingerprint: hudd::artefact::evidence::fingerprint(&members), members };
        let note = Annotation {
            fingerprint: Some(cluster.fingerprint.clone()),
            members: cluster.members.clone(),
            triggering_condition: condition,
            hazard,
            status,
            ..Default::default()
        };
        let file = Annotations { cluster: [("1".to_string(), note.clone())].into() };
        let text = toml::to_string(&file).unwrap();
        let read: Annotations = toml::from_str(&text).unwrap();
        prop_assert_eq!(&read, &file);
        let rewritten = annotations::template(&[cluster], &read, |_| "cluster 1\u{1b}[31m".into());
        let back: Annotations = toml::from_str(&rewritten).map_err(|e| TestCaseError::fail(format!("{e}\n{rewritten}")))?;
        let expected = Annotation { status: if note.status.is_empty() { "open".into() } else { note.status.clone() }, ..note };
        prop_assert_eq!(&back.cluster["1"], &expected);
    }
}
