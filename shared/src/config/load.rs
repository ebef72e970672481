//! Reading a configuration file: every mistake at once, each with its file, line and field.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::IntoDeserializer as _;
use serde::{Deserialize, Serialize};

use super::{Config, ConfigError, TenantConfig};
use crate::model::TenantId;

impl Config {
    /// Parses and checks a `portier.toml`; errors name the line and field.
    pub fn parse_toml(text: &str) -> Result<Config, ConfigError> {
        Self::load(text, "portier.toml").map_err(|e| ConfigError(e.to_string()))
    }

    /// Parses and checks the configuration file `file`, reporting every mistake at once, each
    /// with the file, line and field it is at.
    pub fn load(text: &str, file: &str) -> Result<Config, ConfigProblems> {
        let fail = |problems| ConfigProblems { file: file.to_owned(), problems };
        let (doc, syntax) = toml::de::DeTable::parse_recoverable(text);
        if !syntax.is_empty() {
            // Past a syntax error the structure is a guess: report the syntax only.
            return Err(fail(syntax.iter().map(|e| Problem::of_toml(text, e, None)).collect()));
        }
        let lines = Lines(text);
        let doc = toml::de::DeValue::Table(doc.into_inner());
        let tenants: &[toml::Spanned<toml::de::DeValue<'_>>] = match child(&doc, "tenant") {
            Some(toml::de::DeValue::Array(a)) => a,
            _ => &[],
        };
        let mut problems = Vec::new();
        // Everything but the tenants, on its own, so a mistake there does not hide theirs.
        let mut rest = match &doc {
            toml::de::DeValue::Table(t) => t.clone(),
            _ => toml::de::DeTable::new(),
        };
        rest.remove("tenant");
        let mut config: Config = match Config::deserialize(
            toml::Spanned::new(0..0, toml::de::DeValue::Table(rest)).into_deserializer(),
        ) {
            Ok(c) => c,
            Err(e) => {
                problems.push(Problem::of_toml(text, &e, None));
                Config::default()
            }
        };
        let mut seen: BTreeMap<TenantId, usize> = BTreeMap::new();
        for raw in tenants {
            let t = match TenantConfig::deserialize(raw.clone().into_deserializer()) {
                Ok(t) => t,
                Err(e) => {
                    let id = child(raw.get_ref(), "id").and_then(|v| match v {
                        toml::de::DeValue::String(s) => Some(s.to_string()),
                        _ => None,
                    });
                    problems.push(Problem::of_toml(text, &e, id.as_deref()));
                    continue;
                }
            };
            let at = |path: &[&str]| locate(raw, path).map(|span| lines.of(span.start));
            if let Some(first) = seen.get(&t.id) {
                problems.push(Problem {
                    line: at(&["id"]),
                    tenant: Some(t.id.to_string()),
                    field: "id".into(),
                    message: format!("tenant {} is defined twice (first at line {first})", t.id),
                });
            } else {
                seen.insert(t.id.clone(), at(&["id"]).unwrap_or(0));
            }
            for (path, message) in t.problems() {
                let parts: Vec<&str> = path.split('.').collect();
                problems.push(Problem {
                    line: at(&parts).or_else(|| at(&parts[..parts.len().saturating_sub(1)])),
                    tenant: Some(t.id.to_string()),
                    field: path,
                    message,
                });
            }
            config.tenants.push(t);
        }
        if problems.is_empty() { Ok(config) } else { Err(fail(problems)) }
    }

    /// Every `…_env` of every tenant that names no set environment variable, each at its line.
    pub fn missing_env(text: &str, config: &Config) -> Vec<Problem> {
        let lines = Lines(text);
        let Ok(doc) = toml::de::DeTable::parse(text) else { return Vec::new() };
        let doc = toml::de::DeValue::Table(doc.into_inner());
        let mut out = Vec::new();
        if let Some(toml::de::DeValue::Array(tenants)) = child(&doc, "tenant") {
            for (raw, t) in tenants.iter().zip(&config.tenants) {
                let mut found = Vec::new();
                env_fields(raw, String::new(), &mut found);
                for (field, name, span) in found {
                    if std::env::var(&name).map_or(true, |v| v.is_empty()) {
                        out.push(Problem {
                            line: Some(lines.of(span.start)),
                            tenant: Some(t.id.to_string()),
                            field,
                            message: format!("environment variable {name} is not set"),
                        });
                    }
                }
            }
        }
        out
    }

    /// Parses the JSON form pushed to DynamoDB for Lambda.
    pub fn parse_json(text: &str) -> Result<Config, ConfigError> {
        let config: Config =
            serde_json::from_str(text).map_err(|e| ConfigError(format!("config document: {e}")))?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let mut seen = BTreeMap::new();
        for t in &self.tenants {
            if seen.insert(t.id.clone(), ()).is_some() {
                return Err(ConfigError(format!("tenant {} is defined twice", t.id)));
            }
            t.check()?;
        }
        Ok(())
    }
}

/// One mistake in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// 1-based line, when the place is known.
    pub line: Option<usize>,
    pub tenant: Option<String>,
    /// The field, as a dotted path inside the tenant (`source.username_env`, `mapping.2.targets`).
    pub field: String,
    pub message: String,
}

impl Problem {
    fn of_toml(text: &str, e: &toml::de::Error, tenant: Option<&str>) -> Problem {
        let line = e.span().map(|s| Lines(text).of(s.start));
        // The field is the key the error points at, when it points at one.
        let field = e
            .span()
            .and_then(|s| text.get(s))
            .filter(|k| !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or_default()
            .to_owned();
        Problem { line, tenant: tenant.map(str::to_owned), field, message: e.message().trim().to_owned() }
    }
}

/// Every mistake found in one configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
pub struct ConfigProblems {
    pub file: String,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigProblems {
    /// One line per problem, `file:line: tenant t: field: message`, as compilers print them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}", self.file)?;
            if let Some(line) = p.line {
                write!(f, ":{line}")?;
            }
            write!(f, ":")?;
            if let Some(t) = &p.tenant {
                write!(f, " tenant {t}:")?;
            }
            if !p.field.is_empty() {
                write!(f, " {}:", p.field)?;
            }
            write!(f, " {}", p.message)?;
        }
        Ok(())
    }
}

/// Byte offsets to 1-based line numbers.
struct Lines<'a>(&'a str);

impl Lines<'_> {
    fn of(&self, offset: usize) -> usize {
        self.0.as_bytes().iter().take(offset).filter(|b| **b == b'\n').count() + 1
    }
}

fn child<'a, 'i>(v: &'a toml::de::DeValue<'i>, key: &str) -> Option<&'a toml::de::DeValue<'i>> {
    match v {
        toml::de::DeValue::Table(t) => t.iter().find(|(k, _)| k.get_ref() == key).map(|(_, v)| v.get_ref()),
        _ => None,
    }
}

/// The span of the value at `path` (table keys, or array indexes as numbers).
fn locate(v: &toml::Spanned<toml::de::DeValue<'_>>, path: &[&str]) -> Option<std::ops::Range<usize>> {
    let Some((first, rest)) = path.split_first() else { return Some(v.span()) };
    let next = match v.get_ref() {
        toml::de::DeValue::Table(t) => t.iter().find(|(k, _)| k.get_ref() == first).map(|(_, v)| v),
        toml::de::DeValue::Array(a) => first.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    }?;
    locate(next, rest)
}

/// Every `…_env` string under `v`: (field path, variable name, span).
fn env_fields(
    v: &toml::Spanned<toml::de::DeValue<'_>>,
    path: String,
    out: &mut Vec<(String, String, std::ops::Range<usize>)>,
) {
    if let toml::de::DeValue::Table(t) = v.get_ref() {
        for (k, child) in t.iter() {
            let field =
                if path.is_empty() { k.get_ref().to_string() } else { format!("{path}.{}", k.get_ref()) };
            match child.get_ref() {
                toml::de::DeValue::String(name) if k.get_ref().ends_with("_env") => {
                    out.push((field, name.to_string(), child.span()));
                }
                _ => env_fields(child, field, out),
            }
        }
    }
}
