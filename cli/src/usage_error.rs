//! Command-line parsing whose usage errors never echo an argument value.
//!
//! clap's own message repeats what the operator typed ("unexpected argument 'D9EA…'"), so a
//! key, PIN or component typed in the wrong place would land on the terminal, in a log or
//! in a CI transcript. Here a usage error is rendered from its kind and from the names clap
//! knows from the command's definition (flags, subcommands, possible values, usage); a token
//! the operator typed is shown only when it looks like a flag name (`--algoritm`), never a
//! value.

use clap::Parser;
use clap::error::{ContextKind, ContextValue, ErrorKind};

/// Parses the command line; on a usage error prints a message without argument values to
/// stderr and exits with status 2 (help and version are printed by clap as usual).
pub fn parse<P: Parser>() -> P {
    match P::try_parse() {
        Ok(p) => p,
        Err(e) => match e.kind() {
            ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
            _ => {
                eprint!("{}", render(&e));
                std::process::exit(2);
            }
        },
    }
}

/// A token typed on the command line, shown only if it is a flag name: dashes, then a
/// letter, then letters, digits and dashes (no `=value`).
fn shown(token: &str) -> String {
    let name = token.trim_start_matches('-');
    let flag_like = token.starts_with('-')
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if flag_like {
        format!("'{token}'")
    } else {
        "(value not shown)".to_owned()
    }
}

fn context_string(e: &clap::Error, kind: ContextKind) -> Option<String> {
    match e.get(kind)? {
        ContextValue::String(s) => Some(s.clone()),
        ContextValue::Strings(v) => Some(v.join(", ")),
        ContextValue::StyledStr(s) => Some(s.to_string()),
        ContextValue::StyledStrs(v) => Some(
            v.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        ),
        ContextValue::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The message for a usage error: what is wrong, naming arguments by their definition only.
pub fn render(e: &clap::Error) -> String {
    // For these kinds `InvalidArg` holds the typed token; for the others the argument's
    // name as defined (`--algorithm <ALGORITHM>`).
    let arg = context_string(e, ContextKind::InvalidArg);
    let arg_name = arg.clone().unwrap_or_else(|| "an argument".to_owned());
    let mut message = match e.kind() {
        ErrorKind::UnknownArgument => {
            format!(
                "unexpected argument {}",
                shown(arg.as_deref().unwrap_or(""))
            )
        }
        ErrorKind::InvalidSubcommand => {
            format!(
                "unrecognized subcommand {}",
                shown(arg.as_deref().unwrap_or(""))
            )
        }
        ErrorKind::InvalidValue | ErrorKind::ValueValidation | ErrorKind::InvalidUtf8 => {
            format!("invalid value for '{arg_name}' (value not shown)")
        }
        ErrorKind::MissingRequiredArgument => {
            format!("the following required arguments were not provided: {arg_name}")
        }
        ErrorKind::ArgumentConflict => match context_string(e, ContextKind::PriorArg) {
            Some(prior) if prior == arg_name => {
                format!("the argument '{arg_name}' cannot be given more than once")
            }
            Some(prior) => format!("the argument '{arg_name}' cannot be used with '{prior}'"),
            None => format!("the argument '{arg_name}' cannot be used here"),
        },
        ErrorKind::TooManyValues | ErrorKind::WrongNumberOfValues | ErrorKind::TooFewValues => {
            format!("wrong number of values for '{arg_name}' (values not shown)")
        }
        ErrorKind::NoEquals => format!("'{arg_name}' needs its value after '='"),
        ErrorKind::MissingSubcommand => "a subcommand is required".to_owned(),
        kind => format!("invalid command line ({kind})"),
    };
    if let Some(valid) = context_string(e, ContextKind::ValidValue) {
        message.push_str(&format!(" [possible values: {valid}]"));
    }
    let mut out = format!("error: {message}\n");
    for kind in [ContextKind::SuggestedArg, ContextKind::SuggestedSubcommand] {
        if let Some(s) = context_string(e, kind) {
            out.push_str(&format!("  tip: a similar one exists: '{s}'\n"));
        }
    }
    if let Some(usage) = context_string(e, ContextKind::Usage) {
        out.push_str(&format!("\n{}\n", usage.trim_end()));
    }
    out.push_str("\nFor more information, try '--help'.\n");
    out
}
