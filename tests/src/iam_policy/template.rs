//! CloudFormation intrinsic functions evaluated for one deployment (`Ref`, `GetAtt`, `Sub`,
//! `Join`, `Select`, `Split`, `If` and the condition functions), with unknown values kept
//! unknown so they match no request.

use super::*;

/// A value after evaluation for one deployment.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Resolved {
    Str(String),
    Bool(bool),
    List(Vec<Resolved>),
    Map(BTreeMap<String, Resolved>),
    /// `AWS::NoValue`: the property or list item is left out.
    NoValue,
    /// Depends on something this deployment does not fix.
    Unknown(String),
    /// An `If` on an unknown condition: any of these.
    Either(Vec<Resolved>),
    Null,
}

impl Resolved {
    pub(super) fn get(&self, key: &str) -> Option<&Resolved> {
        match self {
            Resolved::Map(m) => m.get(key),
            _ => None,
        }
    }

    /// A string-or-list property as the strings it may hold; unknown parts become
    /// [`Pattern::Unknown`].
    pub(super) fn patterns(&self) -> Vec<Pattern> {
        match self {
            Resolved::Str(s) => vec![Pattern::Text(s.clone())],
            Resolved::Bool(b) => vec![Pattern::Text(b.to_string())],
            Resolved::List(items) | Resolved::Either(items) => {
                items.iter().flat_map(Resolved::patterns).collect()
            }
            Resolved::NoValue | Resolved::Null => Vec::new(),
            Resolved::Unknown(why) => vec![Pattern::Unknown(why.clone())],
            Resolved::Map(_) => vec![Pattern::Unknown("a map where a string was expected".into())],
        }
    }
}

/// The logical id a `!GetAtt X.Arn`, `!Ref X` (or their long forms) points at.
pub(super) fn referenced_resource(value: &Value) -> Option<String> {
    let (name, arg) = intrinsic(value)?;
    match name.as_str() {
        "GetAtt" => match arg {
            Value::String(s) => s.split('.').next().map(str::to_string),
            Value::Sequence(parts) => parts.first()?.as_str().map(str::to_string),
            _ => None,
        },
        "Ref" => arg.as_str().map(str::to_string),
        _ => None,
    }
}

/// `(function name without Fn::, argument)` of a short-form tag or a one-key long-form map.
pub(super) fn intrinsic(value: &Value) -> Option<(String, &Value)> {
    match value {
        Value::Tagged(t) => Some((
            t.tag.to_string().trim_start_matches('!').to_string(),
            &t.value,
        )),
        Value::Mapping(m) if m.len() == 1 => {
            let (k, v) = m.iter().next()?;
            let k = k.as_str()?;
            if k == "Ref" || k == "Condition" {
                Some((k.to_string(), v))
            } else {
                k.strip_prefix("Fn::").map(|n| (n.to_string(), v))
            }
        }
        _ => None,
    }
}

pub(super) struct Evaluator<'a> {
    pub(super) deployment: &'a Deployment,
    pub(super) parameters: Mapping,
    pub(super) resources: Mapping,
    pub(super) conditions: Mapping,
}

impl<'a> Evaluator<'a> {
    pub(super) fn new(template: &Value, deployment: &'a Deployment) -> Result<Self> {
        let section = |name: &str| {
            template
                .get(name)
                .and_then(Value::as_mapping)
                .cloned()
                .unwrap_or_default()
        };
        let parameters = section("Parameters");
        for name in deployment.parameters.keys() {
            if !parameters.contains_key(name.as_str()) {
                bail!("the deployment sets {name}, which is not a parameter of the template");
            }
        }
        Ok(Evaluator {
            deployment,
            parameters,
            resources: section("Resources"),
            conditions: section("Conditions"),
        })
    }

    /// A named condition: true, false, or undecided for this deployment.
    pub(super) fn condition(&self, name: &str) -> Result<Option<bool>> {
        let body = self
            .conditions
            .get(name)
            .ok_or_else(|| anyhow!("no condition {name} in the template"))?;
        Ok(self.truth(body))
    }

    pub(super) fn truth(&self, value: &Value) -> Option<bool> {
        if let Value::Bool(b) = value {
            return Some(*b);
        }
        let (name, arg) = intrinsic(value)?;
        let args = || arg.as_sequence().cloned().unwrap_or_default();
        match name.as_str() {
            "Condition" => self.condition(arg.as_str()?).ok().flatten(),
            "Not" => self.truth(args().first()?).map(|b| !b),
            "And" => args().iter().try_fold(Some(true), |acc, c| {
                Some(match (acc, self.truth(c)) {
                    (Some(false), _) | (_, Some(false)) => Some(false),
                    (Some(true), Some(true)) => Some(true),
                    _ => None,
                })
            })?,
            "Or" => args().iter().try_fold(Some(false), |acc, c| {
                Some(match (acc, self.truth(c)) {
                    (Some(true), _) | (_, Some(true)) => Some(true),
                    (Some(false), Some(false)) => Some(false),
                    _ => None,
                })
            })?,
            "Equals" => {
                let a = args();
                let (x, y) = (self.resolve(a.first()?), self.resolve(a.get(1)?));
                match (&x, &y) {
                    (Resolved::Unknown(_), _) | (_, Resolved::Unknown(_)) => None,
                    (Resolved::Either(_), _) | (_, Resolved::Either(_)) => None,
                    _ => Some(x == y),
                }
            }
            _ => None,
        }
    }

    pub(super) fn resolve(&self, value: &Value) -> Resolved {
        if let Some((name, arg)) = intrinsic(value) {
            return self.function(&name, arg);
        }
        match value {
            Value::Null => Resolved::Null,
            Value::Bool(b) => Resolved::Bool(*b),
            Value::Number(n) => Resolved::Str(n.to_string()),
            Value::String(s) => Resolved::Str(s.clone()),
            Value::Sequence(items) => Resolved::List(
                items
                    .iter()
                    .map(|i| self.resolve(i))
                    .filter(|r| *r != Resolved::NoValue)
                    .collect(),
            ),
            Value::Mapping(m) => Resolved::Map(
                m.iter()
                    .filter_map(|(k, v)| {
                        let v = self.resolve(v);
                        (v != Resolved::NoValue).then(|| (key_text(k), v))
                    })
                    .collect(),
            ),
            Value::Tagged(t) => Resolved::Unknown(format!("tag {}", t.tag)),
        }
    }

    pub(super) fn function(&self, name: &str, arg: &Value) -> Resolved {
        let args = || arg.as_sequence().cloned().unwrap_or_default();
        match name {
            "Ref" => match arg.as_str() {
                Some(target) => self.reference(target),
                None => Resolved::Unknown("Ref of a non-string".into()),
            },
            "GetAtt" => {
                let (res, attr) = match arg {
                    Value::String(s) => match s.split_once('.') {
                        Some((r, a)) => (r.to_string(), a.to_string()),
                        None => return Resolved::Unknown(format!("GetAtt {s}")),
                    },
                    Value::Sequence(p) if p.len() == 2 => (
                        p[0].as_str().unwrap_or_default().to_string(),
                        p[1].as_str().unwrap_or_default().to_string(),
                    ),
                    _ => return Resolved::Unknown("GetAtt form".into()),
                };
                self.attribute(&res, &attr)
            }
            "Sub" => {
                let (text, vars) = match arg {
                    Value::String(s) => (s.clone(), BTreeMap::new()),
                    Value::Sequence(p) if !p.is_empty() => {
                        let vars = match p.get(1).map(|v| self.resolve(v)) {
                            Some(Resolved::Map(m)) => m,
                            _ => BTreeMap::new(),
                        };
                        (p[0].as_str().unwrap_or_default().to_string(), vars)
                    }
                    _ => return Resolved::Unknown("Sub form".into()),
                };
                self.substitute(&text, &vars)
            }
            "If" => {
                let a = args();
                let (Some(cond), Some(yes), Some(no)) =
                    (a.first().and_then(Value::as_str), a.get(1), a.get(2))
                else {
                    return Resolved::Unknown("If form".into());
                };
                match self.condition(cond) {
                    Ok(Some(true)) => self.resolve(yes),
                    Ok(Some(false)) => self.resolve(no),
                    Ok(None) => {
                        let options: Vec<Resolved> = [self.resolve(yes), self.resolve(no)]
                            .into_iter()
                            .filter(|r| *r != Resolved::NoValue)
                            .collect();
                        Resolved::Either(options)
                    }
                    Err(e) => Resolved::Unknown(format!("{e}")),
                }
            }
            "Join" => {
                let a = args();
                let (Some(sep), Some(list)) = (a.first().and_then(Value::as_str), a.get(1)) else {
                    return Resolved::Unknown("Join form".into());
                };
                match self.resolve(list) {
                    Resolved::List(items) => {
                        let mut parts = Vec::new();
                        for item in items {
                            match item {
                                Resolved::Str(s) => parts.push(s),
                                other => return unknown_from(&other, "Join"),
                            }
                        }
                        Resolved::Str(parts.join(sep))
                    }
                    other => unknown_from(&other, "Join"),
                }
            }
            "Select" => {
                let a = args();
                let index = a.first().map(|i| self.resolve(i)).and_then(|i| match i {
                    Resolved::Str(s) => s.parse::<usize>().ok(),
                    _ => None,
                });
                match (index, a.get(1).map(|l| self.resolve(l))) {
                    (Some(i), Some(Resolved::List(items))) => items
                        .get(i)
                        .cloned()
                        .unwrap_or_else(|| Resolved::Unknown("Select out of range".into())),
                    _ => Resolved::Unknown("Select".into()),
                }
            }
            "Split" => {
                let a = args();
                match (
                    a.first().and_then(Value::as_str),
                    a.get(1).map(|s| self.resolve(s)),
                ) {
                    (Some(sep), Some(Resolved::Str(s))) => {
                        Resolved::List(s.split(sep).map(|p| Resolved::Str(p.to_string())).collect())
                    }
                    _ => Resolved::Unknown("Split".into()),
                }
            }
            other => Resolved::Unknown(format!("Fn::{other}")),
        }
    }

    pub(super) fn reference(&self, target: &str) -> Resolved {
        let d = self.deployment;
        match target {
            "AWS::NoValue" => return Resolved::NoValue,
            "AWS::Region" => return Resolved::Str(d.region.clone()),
            "AWS::AccountId" => return Resolved::Str(d.account.clone()),
            "AWS::StackName" => return Resolved::Str(d.stack_name.clone()),
            "AWS::Partition" => return Resolved::Str("aws".into()),
            "AWS::URLSuffix" => return Resolved::Str("amazonaws.com".into()),
            _ => {}
        }
        if let Some(p) = self.parameters.get(target) {
            return match d.parameters.get(target) {
                None => Resolved::Unknown(format!("parameter {target} not set")),
                Some(v) => {
                    let kind = p.get("Type").and_then(Value::as_str).unwrap_or("String");
                    if kind.starts_with("List<") || kind == "CommaDelimitedList" {
                        Resolved::List(
                            v.split(',')
                                .filter(|s| !s.is_empty())
                                .map(|s| Resolved::Str(s.trim().to_string()))
                                .collect(),
                        )
                    } else {
                        Resolved::Str(v.clone())
                    }
                }
            };
        }
        match self.kind(target) {
            Some("AWS::SecretsManager::Secret") => self.secret_arn(target),
            Some(_) => self.physical(target),
            None => Resolved::Unknown(format!("Ref {target}: no such parameter or resource")),
        }
    }

    pub(super) fn kind(&self, logical: &str) -> Option<&str> {
        self.resources
            .get(logical)
            .and_then(|r| r.get("Type"))
            .and_then(Value::as_str)
    }

    /// The physical name: given by the deployment, else the resource's name property, else
    /// `<stack>-<logical id>`.
    pub(super) fn physical(&self, logical: &str) -> Resolved {
        if let Some(name) = self.deployment.physical_names.get(logical) {
            return Resolved::Str(name.clone());
        }
        let props = self
            .resources
            .get(logical)
            .and_then(|r| r.get("Properties"));
        for key in [
            "TableName",
            "LogGroupName",
            "QueueName",
            "RoleName",
            "FunctionName",
            "Name",
        ] {
            if let Some(v) = props.and_then(|p| p.get(key)) {
                return self.resolve(v);
            }
        }
        Resolved::Str(format!("{}-{logical}", self.deployment.stack_name))
    }

    pub(super) fn secret_arn(&self, logical: &str) -> Resolved {
        if let Some(arn) = self.deployment.physical_names.get(logical) {
            return Resolved::Str(arn.clone());
        }
        let d = self.deployment;
        map_str(self.physical(logical), |name| {
            format!(
                "arn:aws:secretsmanager:{}:{}:secret:{name}-AbCdEf",
                d.region, d.account
            )
        })
    }

    pub(super) fn attribute(&self, logical: &str, attr: &str) -> Resolved {
        let d = self.deployment;
        let (r, a) = (&d.region, &d.account);
        let name = self.physical(logical);
        match (self.kind(logical), attr) {
            (Some("AWS::DynamoDB::Table"), "Arn") => {
                map_str(name, |n| format!("arn:aws:dynamodb:{r}:{a}:table/{n}"))
            }
            (Some("AWS::Logs::LogGroup"), "Arn") => {
                map_str(name, |n| format!("arn:aws:logs:{r}:{a}:log-group:{n}:*"))
            }
            (Some("AWS::SQS::Queue"), "Arn") => {
                map_str(name, |n| format!("arn:aws:sqs:{r}:{a}:{n}"))
            }
            (Some("AWS::SQS::Queue"), "QueueName") => name,
            (Some("AWS::IAM::Role"), "Arn") => {
                map_str(name, |n| format!("arn:aws:iam::{a}:role/{n}"))
            }
            (Some("AWS::KMS::Key"), "Arn") => {
                map_str(name, |n| format!("arn:aws:kms:{r}:{a}:key/{n}"))
            }
            (Some(kind), _) => Resolved::Unknown(format!("GetAtt {logical}.{attr} ({kind})")),
            (None, _) => Resolved::Unknown(format!("GetAtt {logical}.{attr}: no such resource")),
        }
    }

    pub(super) fn substitute(&self, text: &str, vars: &BTreeMap<String, Resolved>) -> Resolved {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                return Resolved::Unknown(format!("Sub {text}: unclosed ${{"));
            };
            let name = &after[..end];
            rest = &after[end + 1..];
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
                continue;
            }
            let value = match vars.get(name) {
                Some(v) => v.clone(),
                None => match name.split_once('.') {
                    Some((res, attr)) => self.attribute(res, attr),
                    None => self.reference(name),
                },
            };
            match value {
                Resolved::Str(s) => out.push_str(&s),
                other => return unknown_from(&other, &format!("Sub {text}")),
            }
        }
        out.push_str(rest);
        Resolved::Str(out)
    }
}

pub(super) fn map_str(value: Resolved, f: impl Fn(&str) -> String) -> Resolved {
    match value {
        Resolved::Str(s) => Resolved::Str(f(&s)),
        other => unknown_from(&other, "a name"),
    }
}

pub(super) fn unknown_from(value: &Resolved, what: &str) -> Resolved {
    match value {
        Resolved::Unknown(why) => Resolved::Unknown(format!("{what}: {why}")),
        _ => Resolved::Unknown(format!("{what}: not a known string")),
    }
}

pub(super) fn key_text(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        other => serde_norway::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}
