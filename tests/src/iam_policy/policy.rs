//! Role policies: reading a function's role and its statements out of the template, and the
//! Allow/Deny decision IAM makes for one authorisation (an explicit Deny wins).

use super::*;

/// A string from the policy: known, or unknown for this deployment (matches nothing).
#[derive(Debug, Clone, PartialEq)]
pub enum Pattern {
    Text(String),
    Unknown(String),
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::Text(t) => f.write_str(t),
            Pattern::Unknown(why) => write!(f, "<unknown: {why}>"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

/// One condition test: `operator` on `key` against `values`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConditionTest {
    pub operator: String,
    pub key: String,
    pub values: Vec<Pattern>,
}

/// A policy statement of a role, evaluated for a deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    /// `<policy name>/<Sid or #index>`.
    pub name: String,
    pub effect: Effect,
    pub actions: Vec<String>,
    pub not_actions: Vec<String>,
    pub resources: Vec<Pattern>,
    pub not_resources: Vec<Pattern>,
    pub conditions: Vec<ConditionTest>,
    /// Inside an `If` whose condition this deployment does not decide.
    pub conditional: bool,
}

impl Statement {
    /// A KMS grant limited by `kms:ViaService` is exercised by that service (DynamoDB for an
    /// encrypted table, SQS for an encrypted queue) with the function's credentials whenever the
    /// function calls the service; no call of the function's own names the KMS action.
    pub fn is_used_by_service_on_behalf(&self, action: &str) -> bool {
        action.to_ascii_lowercase().starts_with("kms:")
            && self
                .conditions
                .iter()
                .any(|c| c.key.eq_ignore_ascii_case("kms:ViaService"))
    }

    pub(super) fn matches(&self, access: &Access) -> bool {
        let action_ok = if self.not_actions.is_empty() {
            self.actions.iter().any(|a| glob(a, &access.action, true))
        } else {
            !self
                .not_actions
                .iter()
                .any(|a| glob(a, &access.action, true))
        };
        let resource_ok = if self.not_resources.is_empty() {
            self.resources
                .iter()
                .any(|r| pattern_matches(r, &access.resource))
        } else {
            // An unknown NotResource might exclude this resource: does not match.
            !self
                .not_resources
                .iter()
                .any(|r| !matches!(r, Pattern::Text(_)) || pattern_matches(r, &access.resource))
        };
        action_ok
            && resource_ok
            && self
                .conditions
                .iter()
                .all(|c| condition_holds(c, &access.context))
    }

    pub(super) fn describe(&self) -> String {
        let resources: Vec<String> = self.resources.iter().map(|r| r.to_string()).collect();
        let mut text = format!(
            "{} [{}] on [{}]",
            self.name,
            self.actions.join(", "),
            resources.join(", ")
        );
        for c in &self.conditions {
            let values: Vec<String> = c.values.iter().map(|v| v.to_string()).collect();
            text.push_str(&format!(
                " if {} {} [{}]",
                c.key,
                c.operator,
                values.join(", ")
            ));
        }
        text
    }
}

/// The evaluated policy of one function's role.
#[derive(Debug, Clone)]
pub struct RolePolicy {
    pub function: String,
    pub role: String,
    pub statements: Vec<Statement>,
    /// `ManagedPolicyArns` of the role: not evaluated (they allow nothing here).
    pub managed_policy_arns: Vec<String>,
}

/// The outcome of one authorisation.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// The indexes of every Allow statement that matches.
    Allowed(Vec<usize>),
    ExplicitDeny(usize),
    ImplicitDeny,
}

impl RolePolicy {
    /// The role of `function` (a logical id of `template`), evaluated for `deployment`.
    pub fn for_function(template: &Value, function: &str, deployment: &Deployment) -> Result<Self> {
        let eval = Evaluator::new(template, deployment)?;
        let resources = template
            .get("Resources")
            .and_then(Value::as_mapping)
            .ok_or_else(|| anyhow!("the template has no Resources"))?;
        let res = resources
            .get(function)
            .ok_or_else(|| anyhow!("no resource {function} in the template"))?;
        let role_value = res
            .get("Properties")
            .and_then(|p| p.get("Role"))
            .ok_or_else(|| {
                anyhow!("{function} has no Role (SAM-generated roles are not evaluated)")
            })?;
        let role = referenced_resource(role_value).ok_or_else(|| {
            anyhow!("{function}: Role is not a !GetAtt/!Ref of a role in this template")
        })?;
        let role_res = resources
            .get(role.as_str())
            .ok_or_else(|| anyhow!("{function}: role {role} is not in the template"))?;
        let props = role_res.get("Properties").cloned().unwrap_or(Value::Null);
        let props = eval.resolve(&props);

        let mut statements = Vec::new();
        let mut conditional_policies = Vec::new();
        collect_items(props.get("Policies"), false, &mut conditional_policies);
        for (policy, conditional) in conditional_policies {
            let name = match policy.get("PolicyName") {
                Some(Resolved::Str(s)) => s.clone(),
                _ => "inline".into(),
            };
            read_document(
                policy.get("PolicyDocument"),
                &name,
                conditional,
                &mut statements,
            )
            .with_context(|| format!("{role}: policy {name}"))?;
        }
        // Policies attached from outside the role.
        for (key, other) in resources {
            let Some(id) = key.as_str() else { continue };
            let kind = other
                .get("Type")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !matches!(
                kind,
                "AWS::IAM::Policy" | "AWS::IAM::RolePolicy" | "AWS::IAM::ManagedPolicy"
            ) {
                continue;
            }
            let Some(p) = other.get("Properties") else {
                continue;
            };
            let mut attached = p
                .get("Roles")
                .and_then(Value::as_sequence)
                .map(|roles| {
                    roles
                        .iter()
                        .any(|r| referenced_resource(r).as_deref() == Some(role.as_str()))
                })
                .unwrap_or(false);
            if let Some(r) = p.get("RoleName") {
                attached |= referenced_resource(r).as_deref() == Some(role.as_str());
            }
            if !attached {
                continue;
            }
            let conditional = match other.get("Condition").and_then(Value::as_str) {
                Some(c) => match eval.condition(c)? {
                    Some(false) => continue,
                    Some(true) => false,
                    None => true,
                },
                None => false,
            };
            let name = match eval.resolve(p).get("PolicyName") {
                Some(Resolved::Str(s)) => s.clone(),
                _ => id.to_string(),
            };
            read_document(
                eval.resolve(p).get("PolicyDocument"),
                &name,
                conditional,
                &mut statements,
            )
            .with_context(|| format!("{id}: policy document"))?;
        }
        let managed_policy_arns = props
            .get("ManagedPolicyArns")
            .map(|m| m.patterns().iter().map(|p| p.to_string()).collect())
            .unwrap_or_default();
        Ok(RolePolicy {
            function: function.to_string(),
            role,
            statements,
            managed_policy_arns,
        })
    }

    pub fn decide(&self, access: &Access) -> Decision {
        let mut allowed = Vec::new();
        for (i, s) in self.statements.iter().enumerate() {
            if !s.matches(access) {
                continue;
            }
            match s.effect {
                Effect::Deny => return Decision::ExplicitDeny(i),
                Effect::Allow => allowed.push(i),
            }
        }
        if allowed.is_empty() {
            Decision::ImplicitDeny
        } else {
            Decision::Allowed(allowed)
        }
    }

    /// Why `access` is refused and what would allow it, in one paragraph.
    pub fn explain_denial(&self, access: &Access, decision: &Decision) -> String {
        let head = format!(
            "{} (role {}) is not allowed {access}",
            self.function, self.role
        );
        if let Decision::ExplicitDeny(i) = decision {
            return format!(
                "{head}: explicitly denied by {}",
                self.statements[*i].describe()
            );
        }
        let with_action: Vec<String> = self
            .statements
            .iter()
            .filter(|s| s.effect == Effect::Allow)
            .filter(|s| s.actions.iter().any(|a| glob(a, &access.action, true)))
            .map(Statement::describe)
            .collect();
        let on_resource: Vec<String> = self
            .statements
            .iter()
            .filter(|s| s.effect == Effect::Allow)
            .filter(|s| {
                s.resources
                    .iter()
                    .any(|r| pattern_matches(r, &access.resource))
            })
            .map(Statement::describe)
            .collect();
        let missing = if with_action.is_empty() {
            match on_resource.first() {
                Some(s) => format!(
                    "missing: {} in a statement on this resource, e.g. {s}",
                    access.action
                ),
                None => format!(
                    "missing: a statement allowing {} on {}",
                    access.action, access.resource
                ),
            }
        } else {
            format!(
                "statements granting {} do not cover this resource or condition: {}",
                access.action,
                with_action.join("; ")
            )
        };
        format!("{head}; {missing}")
    }
}

/// The list items of a `Policies`/`Statement` value, flattening `If`s on unknown conditions
/// (their items are conditional) and dropping `NoValue`.
pub(super) fn collect_items(
    value: Option<&Resolved>,
    conditional: bool,
    out: &mut Vec<(Resolved, bool)>,
) {
    match value {
        None | Some(Resolved::NoValue) | Some(Resolved::Null) => {}
        Some(Resolved::List(items)) => {
            for item in items {
                collect_items(Some(item), conditional, out);
            }
        }
        Some(Resolved::Either(options)) => {
            for option in options {
                collect_items(Some(option), true, out);
            }
        }
        Some(other) => out.push((other.clone(), conditional)),
    }
}

pub(super) fn read_document(
    document: Option<&Resolved>,
    policy: &str,
    conditional: bool,
    out: &mut Vec<Statement>,
) -> Result<()> {
    let Some(document) = document else {
        bail!("no PolicyDocument")
    };
    let mut items = Vec::new();
    collect_items(document.get("Statement"), conditional, &mut items);
    for (index, (statement, conditional)) in items.into_iter().enumerate() {
        let name = match statement.get("Sid") {
            Some(Resolved::Str(s)) => format!("{policy}/{s}"),
            _ => format!("{policy}/#{index}"),
        };
        let effect = match statement.get("Effect") {
            Some(Resolved::Str(e)) if e == "Allow" => Effect::Allow,
            Some(Resolved::Str(e)) if e == "Deny" => Effect::Deny,
            other => bail!("{name}: Effect {other:?}"),
        };
        let texts = |key: &str| -> Result<Vec<String>> {
            statement
                .get(key)
                .map(|v| v.patterns())
                .unwrap_or_default()
                .into_iter()
                .map(|p| match p {
                    Pattern::Text(t) => Ok(t),
                    Pattern::Unknown(why) => Err(anyhow!("{name}: {key} is unknown: {why}")),
                })
                .collect()
        };
        let conditions = match statement.get("Condition") {
            None | Some(Resolved::NoValue) => Vec::new(),
            Some(Resolved::Map(ops)) => {
                let mut tests = Vec::new();
                for (operator, keys) in ops {
                    let Resolved::Map(keys) = keys else {
                        bail!("{name}: Condition {operator} is not a map")
                    };
                    check_operator(operator).with_context(|| name.clone())?;
                    for (key, values) in keys {
                        tests.push(ConditionTest {
                            operator: operator.clone(),
                            key: key.clone(),
                            values: values.patterns(),
                        });
                    }
                }
                tests
            }
            Some(other) => bail!("{name}: Condition {other:?}"),
        };
        let (actions, not_actions) = (texts("Action")?, texts("NotAction")?);
        out.push(Statement {
            name,
            effect,
            actions,
            not_actions,
            resources: statement
                .get("Resource")
                .map(|v| v.patterns())
                .unwrap_or_default(),
            not_resources: statement
                .get("NotResource")
                .map(|v| v.patterns())
                .unwrap_or_default(),
            conditions,
            conditional,
        });
    }
    Ok(())
}
