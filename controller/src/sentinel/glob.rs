//! The glob patterns of PSUBSCRIBE, as Redis reads them: `*` (any run of bytes), `?` (one byte),
//! `[...]` (one byte of a class: single bytes, ranges `a-z`, negated with `[^...]`, `\` escaping
//! inside), `\x` (the byte x), anything else itself. Sentinel clients subscribe with these, for
//! example `[-+]sdown` or `*`.
//!
//! Matching takes time linear in the pattern times the text and constant stack: a pattern of
//! stars cannot make the endpoint backtrack exponentially or recurse (the class of Redis
//! CVE-2022-36021), which a PSUBSCRIBE from any client could otherwise do.

/// One element of a compiled pattern; every one but [`Token::Star`] matches exactly one byte.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Star,
    Any,
    Byte(u8),
    /// Inclusive byte ranges (a single byte is a range of one).
    Class {
        negated: bool,
        ranges: Vec<(u8, u8)>,
    },
}

impl Token {
    fn matches(&self, b: u8) -> bool {
        match self {
            Self::Star | Self::Any => true,
            Self::Byte(c) => *c == b,
            Self::Class { negated, ranges } => {
                ranges.iter().any(|&(lo, hi)| lo <= b && b <= hi) != *negated
            }
        }
    }
}

/// A compiled PSUBSCRIBE pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    tokens: Vec<Token>,
}

impl Pattern {
    /// Reads `pattern` as Redis does: an unterminated class ends with the pattern, and a lone
    /// trailing `\` is itself.
    pub fn new(pattern: &[u8]) -> Self {
        let mut tokens = Vec::new();
        let mut i = 0;
        while i < pattern.len() {
            let token = match pattern[i] {
                // A run of stars is one star.
                b'*' if tokens.last() == Some(&Token::Star) => {
                    i += 1;
                    continue;
                }
                b'*' => Token::Star,
                b'?' => Token::Any,
                b'\\' if i + 1 < pattern.len() => {
                    i += 1;
                    Token::Byte(pattern[i])
                }
                b'[' => {
                    let (class, next) = class(pattern, i + 1);
                    tokens.push(class);
                    i = next;
                    continue;
                }
                b => Token::Byte(b),
            };
            tokens.push(token);
            i += 1;
        }
        Self { tokens }
    }

    /// Whether `text` matches, all of it. Greedy, remembering only the last star: each other
    /// token takes exactly one byte, so retrying from the last star is enough.
    pub fn matches(&self, text: &[u8]) -> bool {
        let (mut p, mut t) = (0, 0);
        // The last star seen, and where in the text its run now ends.
        let mut star: Option<(usize, usize)> = None;
        while t < text.len() {
            match self.tokens.get(p) {
                Some(Token::Star) => {
                    star = Some((p, t));
                    p += 1;
                }
                Some(token) if token.matches(text[t]) => {
                    p += 1;
                    t += 1;
                }
                _ => match star {
                    Some((sp, st)) => {
                        // Let the last star take one more byte, and go on after it.
                        star = Some((sp, st + 1));
                        p = sp + 1;
                        t = st + 1;
                    }
                    None => return false,
                },
            }
        }
        self.tokens[p.min(self.tokens.len())..]
            .iter()
            .all(|token| *token == Token::Star)
    }
}

/// The class that starts at `pattern[i]` (just after its `[`), and where the pattern goes on.
fn class(pattern: &[u8], mut i: usize) -> (Token, usize) {
    let negated = pattern.get(i) == Some(&b'^');
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    while i < pattern.len() {
        match pattern[i] {
            b'\\' if i + 1 < pattern.len() => {
                ranges.push((pattern[i + 1], pattern[i + 1]));
                i += 2;
            }
            b']' => {
                i += 1;
                break;
            }
            lo if i + 2 < pattern.len() && pattern[i + 1] == b'-' => {
                let hi = pattern[i + 2];
                ranges.push((lo.min(hi), lo.max(hi)));
                i += 3;
            }
            b => {
                ranges.push((b, b));
                i += 1;
            }
        }
    }
    (Token::Class { negated, ranges }, i)
}

/// Whether `text` matches the PSUBSCRIBE pattern `pattern`.
pub fn glob(pattern: &[u8], text: &[u8]) -> bool {
    Pattern::new(pattern).matches(text)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn stars_questions_classes_and_escapes_match_as_in_redis() {
        let yes: &[(&str, &str)] = &[
            ("*", "+sdown"),
            ("+*", "+sdown"),
            ("?sdown", "-sdown"),
            ("[-+]sdown", "+sdown"),
            ("[-+]sdown", "-sdown"),
            ("[^-]sdown", "+sdown"),
            ("+[a-z]down", "+sdown"),
            ("+[z-a]down", "+sdown"),
            ("\\*", "*"),
            ("[\\]]", "]"),
            ("a\\", "a\\"),
            ("+switch-*", "+switch-master"),
            ("*master", "+switch-master"),
            ("*-*-*", "-failover-abort-no-good-slave"),
            ("[ab", "b"),
        ];
        for (p, t) in yes {
            assert!(glob(p.as_bytes(), t.as_bytes()), "{p} should match {t}");
        }
        let no: &[(&str, &str)] = &[
            ("+*", "-sdown"),
            ("[-+]sdown", "*sdown"),
            ("[^-]sdown", "-sdown"),
            ("\\*", "x"),
            ("[]", "a"),
            ("?", ""),
            ("?", "ab"),
            ("+sdown", "+sdow"),
            ("*master", "+switch-masters"),
        ];
        for (p, t) in no {
            assert!(
                !glob(p.as_bytes(), t.as_bytes()),
                "{p} should not match {t}"
            );
        }
    }

    /// 64 KiB of stars and a long text: no recursion to overflow the stack, no exponential
    /// backtracking; a run of stars is one star.
    #[test]
    fn a_pattern_of_stars_is_one_star() {
        let stars = vec![b'*'; 64 * 1024];
        let p = Pattern::new(&stars);
        assert_eq!(p.tokens, [Token::Star]);
        let mut adversarial = b"a*".repeat(32 * 1024);
        adversarial.push(b'b');
        let text = vec![b'a'; 64 * 1024];
        assert!(!glob(&adversarial, &text));
        assert!(glob(&stars, &text));
    }

    /// What matching means, written the plain (exponential) way, for short inputs only.
    fn reference(tokens: &[Token], text: &[u8]) -> bool {
        match tokens.split_first() {
            None => text.is_empty(),
            Some((Token::Star, rest)) => (0..=text.len()).any(|i| reference(rest, &text[i..])),
            Some((token, rest)) => {
                text.first().is_some_and(|&b| token.matches(b)) && reference(rest, &text[1..])
            }
        }
    }

    proptest! {
        #[test]
        fn matching_agrees_with_the_plain_definition(
            pattern in proptest::collection::vec(
                prop::sample::select(b"ab*?[]^-\\".to_vec()), 0..10),
            text in proptest::collection::vec(prop::sample::select(b"ab-]".to_vec()), 0..10),
        ) {
            let p = Pattern::new(&pattern);
            prop_assert_eq!(p.matches(&text), reference(&p.tokens, &text));
        }
    }
}
