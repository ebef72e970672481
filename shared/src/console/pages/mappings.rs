//! The mappings page: what each source item opens, and a form of drop-downs filled from the
//! live [`Catalog`](crate::console::Catalog), saved through [`Console::save_mapping`].

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::{CarriesCsrf, Posted, Signed, error_page, page};
use crate::console::auth::Session;
use crate::console::{
    Catalog, Choice, Console, ConsoleError, LockSystemChoices, MappingLine, MappingsView, St,
};
use crate::model::{ItemKind, ProviderKind, Target};

#[derive(Deserialize)]
pub(super) struct EditQuery {
    /// `kind#id` of the mapping to edit.
    edit: Option<String>,
}

pub(super) async fn mappings(
    State(c): St,
    Signed(session): Signed,
    Path(tenant): Path<String>,
    Query(q): Query<EditQuery>,
) -> Response {
    mappings_page(&c, &session, &tenant, q.edit.as_deref(), None).await
}

/// The mappings table and the form that edits one, with `notice` (an outcome or a refusal).
/// The lock systems are listed once, for both.
async fn mappings_page(
    c: &Console,
    session: &Session,
    tenant: &str,
    edit: Option<&str>,
    notice: Option<(StatusCode, String)>,
) -> Response {
    let catalog = match c.catalog(tenant).await {
        Ok(catalog) => catalog,
        Err(e) => return error_page(session, &e),
    };
    let m = match c.tenant(tenant).await {
        Ok(t) => c.mappings_named(&t, catalog.lock_systems.clone()).await,
        Err(e) => Err(e),
    };
    let m = match m {
        Ok(m) => m,
        Err(e) => return error_page(session, &e),
    };
    let editing = edit.and_then(|e| m.mappings.iter().find(|l| l.item.to_string() == e));
    let status = notice.as_ref().map_or(StatusCode::OK, |(s, _)| *s);
    let body = html! {
        h1 { "Mappings: " (tenant) }
        @if let Some((s, text)) = &notice {
            div.card #notice { p class=(if s.is_success() { "ok" } else { "bad" }) { (text) } }
        }
        (mappings_table(tenant, &m, &catalog))
        (mapping_form(session, tenant, &catalog, editing))
    };
    (status, page("Mappings", Some(session), body)).into_response()
}

fn mappings_table(tenant: &str, m: &MappingsView, catalog: &Catalog) -> Markup {
    html! {
        @if let Some(w) = &m.warning { div.card { p.bad { (w) } } }
        div.card #mappings {
            table {
                tr { th { "Source item" } th { "Opens" } th { "From" } th {} }
                @for line in &m.mappings { tr {
                    td { (line.item.kind.as_str()) " "
                        @if let Some(i) = catalog.source.items.iter().find(|i| i.item == line.item) { b { (i.name) } " " }
                        code { (line.item.id) } }
                    td { @if line.targets.is_empty() { span.muted { "nothing (unmapped)" } }
                        @for t in &line.targets { div {
                        (t.provider.name()) ": "
                        @if let Some(n) = &t.name { b { (n) } " " }
                        span.mono.muted { (t.target.to_string()) }
                    } } }
                    td { (if line.origin == "stored" { "console or CSV import" } else { "portier.toml" }) }
                    td { a.edit href=(format!("/console/tenants/{tenant}/mappings?edit={}", crate::http::path_segment(&line.item.to_string()))) { "Edit" } }
                } }
            }
            p.muted { "A mapping saved here (or imported) replaces the one in portier.toml for the same item." }
        }
    }
}

/// The id `editing` maps to at `kind`, or "".
fn current(editing: Option<&MappingLine>, kind: ProviderKind) -> &str {
    editing.and_then(|l| l.targets.iter().find(|t| t.provider == kind)).map_or("", |t| match &t.target {
        Target::TapkeyLock(v) => v.as_str(),
        Target::SaltoGroup(v) => v.as_str(),
        Target::BrivoGroup(v) => v.as_str(),
    })
}

fn mapping_form(session: &Session, tenant: &str, catalog: &Catalog, editing: Option<&MappingLine>) -> Markup {
    let source = &catalog.source;
    let selected_item = editing.map(|l| l.item.to_string()).unwrap_or_default();
    // An item the source did not list is edited in the free-entry fields.
    let unlisted = editing
        .filter(|l| l.item.kind != ItemKind::Visitors && !source.items.iter().any(|i| i.item == l.item));
    html! {
        div.card #edit-mapping {
            h2 { @if editing.is_some() { "Edit " (selected_item) } @else { "Map an item" } }
            @if let Some(e) = &source.error { p.bad { (e) } }
            form method="post" action=(format!("/console/tenants/{tenant}/mappings")) {
                input type="hidden" name="csrf" value=(session.csrf);
                p { label for="item" { "Source item" } br;
                    select #item name="item" {
                        option value="" { "— type it below —" }
                        @for i in &source.items {
                            option value=(i.item.to_string()) selected[i.item.to_string() == selected_item] {
                                (i.name) " (" (i.item.kind.as_str()) " " (i.item.id) ")"
                            }
                        }
                        @if source.kinds.contains(&ItemKind::Visitors) {
                            option value="visitors#*" selected[selected_item == "visitors#*"] { "Visitors (visitors *)" }
                        }
                    }
                }
                p.muted { "Or an item the source does not list, by its kind and id:" }
                div.inline {
                    select #kind name="kind" {
                        @for k in &source.kinds {
                            option value=(k.as_str()) selected[unlisted.is_some_and(|l| l.item.kind == *k)] { (k.as_str()) }
                        }
                    }
                    input #id type="text" name="id" placeholder="id" value=(unlisted.map_or("", |l| l.item.id.as_str()));
                }
                @for l in &catalog.lock_systems { (target_field(l, current(editing, l.provider))) }
                button.btn #save-mapping type="submit" { "Save mapping" }
            }
        }
    }
}

/// A choice's label: its name, and its id too when another choice has the same name.
fn label(choices: &[Choice], c: &Choice) -> String {
    let twin = choices.iter().filter(|o| o.name == c.name).count() > 1;
    let mut label = if twin { format!("{} ({})", c.name, c.id) } else { c.name.clone() };
    if !c.usable {
        label.push_str(" (not active)");
    }
    label
}

/// One lock system's drop-down; a text field for the id when it could not be listed, and the
/// current target kept as a choice when the listing no longer has it.
fn target_field(l: &LockSystemChoices, current: &str) -> Markup {
    let (field, title) = match l.provider {
        ProviderKind::Tapkey => ("tapkey_lock", "Tapkey lock"),
        ProviderKind::Salto => ("salto_group", "Salto KS access group"),
        ProviderKind::Brivo => ("brivo_group", "Brivo group"),
    };
    html! {
        p { label for=(field) { (title) } br;
            @if let Some(e) = &l.error {
                input id=(field) type="text" name=(field) value=(current) placeholder="id";
                br; span.bad { (e) " — type the id." }
            } @else {
                select id=(field) name=(field) {
                    option value="" { "— none —" }
                    @for c in &l.choices {
                        option value=(c.id) selected[c.id.eq_ignore_ascii_case(current)] { (label(&l.choices, c)) }
                    }
                    @if !current.is_empty() && l.name_of(current).is_none() {
                        option value=(current) selected { (current) " (not listed)" }
                    }
                }
            }
        }
    }
}

#[derive(Deserialize)]
pub(super) struct MappingForm {
    csrf: Option<String>,
    item: Option<String>,
    kind: Option<String>,
    id: Option<String>,
    tapkey_lock: Option<String>,
    salto_group: Option<String>,
    brivo_group: Option<String>,
}

impl CarriesCsrf for MappingForm {
    fn csrf(&self) -> Option<&str> {
        self.csrf.as_deref()
    }
}

impl MappingForm {
    /// The mapping the form describes; the listed item wins over a typed one.
    fn mapping(&self) -> Result<crate::model::Mapping, String> {
        let filled =
            |v: &Option<String>| v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
        let (kind, id) = match (filled(&self.item), filled(&self.id)) {
            (Some(item), _) => {
                item.split_once('#').map(|(k, i)| (k.to_owned(), i.to_owned())).ok_or("pick an item")?
            }
            (None, Some(id)) => (filled(&self.kind).ok_or("pick a kind")?, id),
            (None, None) => return Err("pick an item, or type its kind and id".into()),
        };
        let kind = serde_json::from_value(serde_json::Value::String(kind.clone()))
            .map_err(|_| format!("unknown item kind {kind:?}"))?;
        let mut targets = Vec::new();
        if let Some(l) = filled(&self.tapkey_lock) {
            targets.push(Target::TapkeyLock(l.as_str().into()));
        }
        if let Some(g) = filled(&self.salto_group) {
            targets.push(Target::SaltoGroup(g.as_str().into()));
        }
        if let Some(g) = filled(&self.brivo_group) {
            targets.push(Target::BrivoGroup(g.as_str().into()));
        }
        Ok(crate::model::Mapping { item: crate::model::ItemRef { kind, id }, targets })
    }
}

pub(super) async fn save_mapping(
    State(c): St,
    Path(tenant): Path<String>,
    Posted(session, f): Posted<MappingForm>,
) -> Response {
    let notice = match f.mapping() {
        Err(m) => (StatusCode::BAD_REQUEST, m),
        Ok(mapping) => match c.save_mapping(&tenant, mapping).await {
            Ok(saved) => (
                StatusCode::OK,
                format!(
                    "Saved {}: {} target(s); {} people holding it are being brought in line.",
                    saved.mapping.item,
                    saved.mapping.targets.len(),
                    saved.queued
                ),
            ),
            Err(ConsoleError::BadRequest(m)) => (StatusCode::BAD_REQUEST, format!("Not saved: {m}")),
            Err(e) => return error_page(&session, &e),
        },
    };
    mappings_page(&c, &session, &tenant, None, Some(notice)).await
}
