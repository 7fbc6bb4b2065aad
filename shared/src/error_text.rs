//! One line for an error and its causes, each said once.

use std::error::Error;

/// `error: cause: cause…`, like anyhow's `{:#}`, but a cause whose text the line already ends
/// with (after a `": "`) is left out: an error that shows its source in its own message (`"{path}: {source}"`)
/// and also returns it from [`Error::source`] is then not repeated ("No such file or directory
/// (os error 2): No such file or directory (os error 2)").
pub fn error_chain(e: &dyn Error) -> String {
    let mut line = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        // said already: the whole line, or its last part after a ": "
        if !text.is_empty() && line != text && !line.ends_with(&format!(": {text}")) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = c.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Wrapped(&'static str, Option<Box<dyn Error>>);

    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl Error for Wrapped {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1.as_deref()
        }
    }

    #[test]
    fn a_cause_already_in_the_message_is_said_once_and_others_are_added() {
        let io = || Box::new(std::io::Error::from(std::io::ErrorKind::NotFound)) as Box<dyn Error>;
        let not_found = std::io::Error::from(std::io::ErrorKind::NotFound).to_string();
        // the message shows its source, and returns it
        let e = Wrapped("keys/facegate.secret: entity not found", Some(io()));
        assert!(e.to_string().ends_with(&not_found), "the test's premise: {e}");
        assert_eq!(error_chain(&e), "keys/facegate.secret: entity not found");
        // wrapped once more by a message that does not show it: each level once
        let outer = Wrapped("cannot load the signing key", Some(Box::new(e)));
        assert_eq!(error_chain(&outer), "cannot load the signing key: keys/facegate.secret: entity not found");
        // a cause not in the message is added, also one the message ends with but not as its
        // own part
        let e = Wrapped("cannot read the card", Some(io()));
        assert_eq!(error_chain(&e), format!("cannot read the card: {not_found}"));
        let e = Wrapped("the request was not found", Some(Box::new(Wrapped("found", None))));
        assert_eq!(error_chain(&e), "the request was not found: found");
    }
}
