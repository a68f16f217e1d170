//! [`SpecError`]: why a spec (a load spec, a churn spec, an aggregator's load request) cannot
//! run, naming the spec's fields in braces (`{max_connections} 5 is below {connections} 10`).
//! Each caller shows the fields under its own names: the CLI as its flags (one table per
//! command), an API as the JSON field names ([`fmt::Display`]). The rules live with the spec,
//! the words with whoever shows them.

use std::fmt;

/// A spec that cannot run: one line, with the fields it names in braces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError(String);

impl SpecError {
    /// A message naming fields as `{field}`; `{{` is a literal brace (see [`quote`]).
    pub fn new(message: impl Into<String>) -> SpecError {
        SpecError(message.into())
    }

    /// A message that names no field: whatever it holds is shown as it is.
    pub fn plain(text: impl std::fmt::Display) -> SpecError {
        SpecError(quote(&text.to_string()))
    }

    /// The message with each `{field}` replaced by `name(field)`.
    pub fn naming(&self, name: impl Fn(&str) -> String) -> String {
        let mut out = String::new();
        let mut rest = self.0.as_str();
        while let Some(open) = rest.find('{') {
            out += &rest[..open];
            let after = &rest[open + 1..];
            if let Some(more) = after.strip_prefix('{') {
                out.push('{');
                rest = more;
                continue;
            }
            let Some(len) = after.find('}') else {
                out.push('{');
                rest = after;
                continue;
            };
            out += &name(&after[..len]);
            rest = &after[len + 1..];
        }
        out + rest
    }

    /// The same error with `prefix` before it (`target 2: …`).
    pub fn within(self, prefix: &str) -> SpecError {
        SpecError(format!("{prefix}: {}", self.0))
    }
}

/// `text` (a user's input, another error's words) as it reads inside a [`SpecError`]'s
/// message: its braces are not fields.
pub fn quote(text: &str) -> String {
    text.replace('{', "{{")
}

/// The fields by their own names.
impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.naming(|field| field.to_string()))
    }
}

impl std::error::Error for SpecError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_shown_under_the_callers_names() {
        let e = SpecError::new("{max_connections} 5 is below {connections} 10");
        assert_eq!(e.to_string(), "max_connections 5 is below connections 10");
        let flag = |f: &str| match f {
            "max_connections" => "--max-connections".to_string(),
            "connections" => "-c".to_string(),
            other => other.to_string(),
        };
        assert_eq!(e.naming(flag), "--max-connections 5 is below -c 10");
        assert_eq!(
            SpecError::new("unclosed {brace").to_string(),
            "unclosed {brace"
        );
        assert_eq!(
            SpecError::new("{a}").within("target 2").to_string(),
            "target 2: a"
        );
        // What a user wrote keeps its braces.
        let header = format!("invalid header {}", quote("{x}: {{y}}"));
        assert_eq!(
            SpecError::new(header).naming(flag),
            "invalid header {x}: {{y}}"
        );
        assert_eq!(SpecError::plain("a {b}").naming(flag), "a {b}");
    }
}
