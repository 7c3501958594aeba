//! A manifest's matrices and overrides: `--set` values inserted into their stages (with located diagnostics),
//! each stage's `matrix` checked, and every stage expanded into one instance per combination of its values, each
//! instance's inputs and parameters checked.

use super::*;

impl Checker<'_> {
    #[allow(clippy::type_complexity)]
    pub(super) fn matrix<'i>(
        &mut self,
        value: Option<Spanned<DeValue<'i>>>,
    ) -> Option<Vec<(Spanned<String>, Vec<Spanned<DeValue<'i>>>)>> {
        let value = value?;
        let span = value.span();
        let DeValue::Table(table) = value.into_inner() else {
            self.error(Diagnostic::new("`matrix` must be a table of arrays: `matrix = { seed = [1, 2, 3] }`", span));
            return None;
        };
        let mut out = Vec::new();
        for (key, values) in table.iter() {
            let name = Spanned::new(key.span(), key.get_ref().to_string());
            if RESERVED.contains(&name.get_ref().as_str()) {
                self.error(Diagnostic::new(format!("`{}` cannot vary in a matrix", name.get_ref()), key.span()));
                continue;
            }
            let DeValue::Array(items) = values.get_ref() else {
                self.error(Diagnostic::new(
                    format!(
                        "matrix `{}` must be an array of values, found {}",
                        name.get_ref(),
                        values.get_ref().type_str()
                    ),
                    values.span(),
                ));
                continue;
            };
            if items.is_empty() {
                self.error(Diagnostic::new(format!("matrix `{}` has no values", name.get_ref()), values.span()));
                continue;
            }
            let mut shown = Vec::new();
            let mut ok = true;
            for item in items.iter() {
                match scalar_text(item.get_ref()) {
                    Some(text) if !is_valid_matrix_value(&text) => {
                        self.error(
                            Diagnostic::new(format!("matrix `{}` has the value `{text}`", name.get_ref()), item.span())
                                .with_label(format!(
                                    "matrix values name instances and their folders: letters, digits, `_`, `-`, `.`, `+`, at most {MAX_NAME}"
                                )),
                        );
                        ok = false;
                    }
                    Some(text) if shown.contains(&text) => {
                        self.error(Diagnostic::new(
                            format!("matrix `{}` repeats the value {text}", name.get_ref()),
                            item.span(),
                        ));
                        ok = false;
                    }
                    Some(text) => shown.push(text),
                    None => {
                        self.error(Diagnostic::new(
                            format!(
                                "matrix values must be strings, numbers or booleans, found {}",
                                item.get_ref().type_str()
                            ),
                            item.span(),
                        ));
                        ok = false;
                    }
                }
            }
            if ok {
                out.push((name, items.iter().cloned().collect()));
            }
        }
        Some(out)
    }

    pub(super) fn apply_overrides<'a>(
        &mut self,
        raw: &mut [RawStage<'a>],
        sources: &mut Sources,
        overrides: &'a [Override],
    ) {
        for o in overrides {
            let offset = sources.add(format!("--set {}.{}", o.stage, o.key), o.value.clone());
            let whole = offset..offset + o.value.len();
            let value = match DeValue::parse(&o.value) {
                Ok(v) => shift(v, offset),
                Err(_) => Spanned::new(whole.clone(), DeValue::String(Cow::Owned(o.value.clone()))),
            };
            let Some(stage) = raw.iter_mut().find(|s| s.id.get_ref() == &o.stage) else {
                let ids: Vec<&str> = raw.iter().map(|s| s.id.get_ref().as_str()).collect();
                let mut d = Diagnostic::new(
                    format!("--set names stage `{}`, which the workflow does not declare", o.stage),
                    whole,
                );
                if let Some(s) = did_you_mean(&o.stage, ids) {
                    d = d.with_label(format!("did you mean `{s}`?"));
                }
                self.error(d);
                continue;
            };
            if RESERVED.contains(&o.key.as_str()) {
                self.error(Diagnostic::new(format!("--set cannot change a stage's `{}`", o.key), whole));
                continue;
            }
            let parts: Vec<&str> = o.key.split('.').collect();
            if let Err(part) = insert_path(&mut stage.rest, &parts, value, &whole) {
                self.error(Diagnostic::new(format!("--set {}: `{part}` is not a table", o.key), whole));
            }
        }
    }

    // Long: the matrix product, then per instance its id, inputs and parameters checked with located diagnostics;
    // the steps share the spans of the raw stage.
    /// Expands a stage's matrix and checks each instance's inputs and parameters.
    pub(super) fn expand(&mut self, stage: RawStage<'_>, out: &mut Vec<Instance>) {
        let kind = self.registry.get(stage.kind.get_ref()).expect("kinds were checked when stages were read");
        let mut combos: Vec<Vec<(&Spanned<String>, &Spanned<DeValue<'_>>)>> = vec![Vec::new()];
        for (name, values) in &stage.matrix {
            combos = combos
                .into_iter()
                .flat_map(|c| {
                    values.iter().map(move |v| {
                        let mut c = c.clone();
                        c.push((name, v));
                        c
                    })
                })
                .collect();
        }
        for combo in combos {
            let mut table = stage.rest.clone();
            let mut matrix = BTreeMap::new();
            for (name, value) in &combo {
                if let Some((key, _)) = table.get_key_value(name.get_ref().as_str()) {
                    self.error(
                        Diagnostic::new(
                            format!("`{}` is set both in `matrix` and directly", name.get_ref()),
                            key.span(),
                        )
                        .with_note("the matrix sets it here", name.span()),
                    );
                    continue;
                }
                let key = name.get_ref().as_str();
                let takes = kind.param_names().contains(&key) || kind.inputs().iter().any(|s| s.name == key);
                if takes {
                    table.insert(Spanned::new(name.span(), Cow::Owned(name.get_ref().clone())), (*value).clone());
                } else if self.matrix_keys.get(key).copied().unwrap_or(0) < 2 {
                    self.error(
                        Diagnostic::new(format!("matrix key `{key}` is not a parameter or input of kind `{}`", kind.kind()), name.span())
                            .with_label("a key the kind does not take may only label instances to match another stage's matrix, and no other stage has it"),
                    );
                    continue;
                }
                matrix
                    .insert(name.get_ref().clone(), scalar_text(value.get_ref()).expect("matrix values were checked"));
            }
            let id = instance_id(stage.id.get_ref(), &matrix);

            let mut refs = BTreeMap::new();
            for slot in kind.inputs() {
                match table.remove(slot.name) {
                    Some(value) => {
                        if let Some(list) = self.reference_list(value, slot.name, slot.many) {
                            refs.insert(slot.name.to_string(), list);
                        }
                    }
                    None if slot.required => self.error(
                        Diagnostic::new(
                            format!(
                                "stage `{}` (kind `{}`) needs input `{}`",
                                stage.id.get_ref(),
                                kind.kind(),
                                slot.name
                            ),
                            stage.id.span(),
                        )
                        .with_label(format!("add `{} = \"<stage-id>.<output>\"`", slot.name)),
                    ),
                    None => {}
                }
            }
            let params = match kind.check(Spanned::new(stage.span.clone(), DeValue::Table(table))) {
                Ok(p) => p,
                Err(diags) => {
                    self.diags.extend(diags);
                    serde_json::Value::Null
                }
            };
            let externals = if params.is_null() { Vec::new() } else { kind.external_paths(&params) };
            out.push(Instance {
                spec: StageSpec {
                    id,
                    base_id: stage.id.get_ref().clone(),
                    kind: kind.kind().to_string(),
                    matrix,
                    params,
                    inputs: BTreeMap::new(),
                    externals,
                },
                refs,
            });
        }
    }
}
