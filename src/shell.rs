//! Quoting for POSIX sh, the one rule for every script and command line the tool
//! writes (maintainer scripts, monitoring checks, `server-setup`, the commands it
//! prints as next steps). A leaf module: every layer may use it.

/// Quotes a word for POSIX sh: as it is when it holds only characters that are plain
/// in every position of a word, else in single quotes, inside which nothing is
/// special but the quote itself (written `'\''`). Whatever the word holds (spaces,
/// newlines, `$`, a here-document's terminator), the shell reads back exactly it.
pub fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,+@%".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn plain_words_stay_as_they_are() {
        assert_eq!(quote("speedy-jobs-trending"), "speedy-jobs-trending");
        assert_eq!(
            quote("/etc/speedy/jobs.disabled"),
            "/etc/speedy/jobs.disabled"
        );
        assert_eq!(
            quote("http://127.0.0.1:8080/healthz"),
            "http://127.0.0.1:8080/healthz"
        );
    }

    #[test]
    fn everything_else_is_single_quoted() {
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("*:0/15"), "'*:0/15'");
        assert_eq!(quote("Mon..Fri 09:00"), "'Mon..Fri 09:00'");
        assert_eq!(quote("it's $HOME"), "'it'\\''s $HOME'");
        assert_eq!(quote("~root"), "'~root'");
        assert_eq!(quote("a\nEOF\n"), "'a\nEOF\n'");
    }

    /// sh itself reads every quoted word back as the original.
    #[test]
    fn sh_reads_the_word_back() {
        let words = [
            "plain",
            "",
            "two words",
            "it's",
            "'''",
            "$(touch /tmp/x) `id` ${HOME} \\ \"",
            "line\nSPEEDY_SOURCES\ntouch /tmp/PWNED\n",
            "tab\there; semicolon & amp | pipe > gt < lt * ? [a] ~ # !",
        ];
        for word in words {
            let output = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf '%s' {}", quote(word)))
                .output()
                .unwrap();
            assert!(output.status.success(), "{word:?}");
            assert_eq!(String::from_utf8(output.stdout).unwrap(), word);
        }
    }
}
