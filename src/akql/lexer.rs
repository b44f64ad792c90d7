//! Tokens of djangoql 0.19.1 (`djangoql/lexer.py`), the language AKQL is.

use super::AkqlError;

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// Identifiers joined by dots (`context.http_request.path`): one token, as in djangoql.
    Name(String),
    /// A string constant, escapes already resolved.
    Str(String),
    /// A number constant as written (`7`, `-0.5`, `1e3`).
    Num(String),
    True,
    False,
    None,
    And,
    Or,
    Not,
    In,
    StartsWith,
    EndsWith,
    LParen,
    RParen,
    Comma,
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Contains,
    NotContains,
}

impl Tok {
    /// How the token reads in an error message (djangoql quotes the token's text).
    pub fn text(&self) -> String {
        match self {
            Tok::Name(s) | Tok::Num(s) => s.clone(),
            Tok::Str(s) => format!("\"{s}\""),
            Tok::True => "True".into(),
            Tok::False => "False".into(),
            Tok::None => "None".into(),
            Tok::And => "and".into(),
            Tok::Or => "or".into(),
            Tok::Not => "not".into(),
            Tok::In => "in".into(),
            Tok::StartsWith => "startswith".into(),
            Tok::EndsWith => "endswith".into(),
            Tok::LParen => "(".into(),
            Tok::RParen => ")".into(),
            Tok::Comma => ",".into(),
            Tok::Eq => "=".into(),
            Tok::Ne => "!=".into(),
            Tok::Gt => ">".into(),
            Tok::Ge => ">=".into(),
            Tok::Lt => "<".into(),
            Tok::Le => "<=".into(),
            Tok::Contains => "~".into(),
            Tok::NotContains => "!~".into(),
        }
    }
}

/// djangoql's ignored characters and line breaks.
pub fn is_space(c: char) -> bool {
    matches!(
        c,
        ' ' | '\t' | '\u{0b}' | '\u{0c}' | '\u{a0}' | '\n' | '\r' | '\u{2028}' | '\u{2029}'
    )
}

/// Line terminators may not appear raw inside a string.
fn is_line_break(c: char) -> bool {
    matches!(c, '\n' | '\r' | '\u{2028}' | '\u{2029}')
}

fn ident_start(c: char) -> bool {
    c == '_' || c.is_ascii_alphabetic()
}

fn ident_char(c: char) -> bool {
    c == '_' || c.is_ascii_alphanumeric()
}

pub fn tokenize(src: &str) -> Result<Vec<Tok>, AkqlError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let illegal = |c: char| AkqlError::parse(format!("Illegal character {c:?}"));
    while i < chars.len() {
        let c = chars[i];
        if is_space(c) {
            i += 1;
            continue;
        }
        let two = chars.get(i + 1).copied();
        let (tok, len) = match (c, two) {
            ('!', Some('=')) => (Tok::Ne, 2),
            ('!', Some('~')) => (Tok::NotContains, 2),
            ('>', Some('=')) => (Tok::Ge, 2),
            ('<', Some('=')) => (Tok::Le, 2),
            ('=', _) => (Tok::Eq, 1),
            ('>', _) => (Tok::Gt, 1),
            ('<', _) => (Tok::Lt, 1),
            ('~', _) => (Tok::Contains, 1),
            ('(', _) => (Tok::LParen, 1),
            (')', _) => (Tok::RParen, 1),
            (',', _) => (Tok::Comma, 1),
            ('"' | '\'', _) => {
                let (s, len) = string(&chars[i..])?;
                (Tok::Str(s), len)
            }
            ('-' | '0'..='9', _) => {
                let len = number(&chars[i..]).ok_or_else(|| illegal(c))?;
                (Tok::Num(chars[i..i + len].iter().collect()), len)
            }
            _ if ident_start(c) => {
                let len = name(&chars[i..]);
                let text: String = chars[i..i + len].iter().collect();
                let tok = match text.as_str() {
                    "and" => Tok::And,
                    "or" => Tok::Or,
                    "not" => Tok::Not,
                    "in" => Tok::In,
                    "startswith" => Tok::StartsWith,
                    "endswith" => Tok::EndsWith,
                    "True" => Tok::True,
                    "False" => Tok::False,
                    "None" => Tok::None,
                    _ => Tok::Name(text),
                };
                (tok, len)
            }
            _ => return Err(illegal(c)),
        };
        out.push(tok);
        i += len;
    }
    Ok(out)
}

/// `ident(.ident)*`; a dot not followed by an identifier is left for the next token.
fn name(s: &[char]) -> usize {
    let mut i = 1;
    loop {
        while i < s.len() && ident_char(s[i]) {
            i += 1;
        }
        if i + 1 < s.len() && s[i] == '.' && ident_start(s[i + 1]) {
            i += 1;
            continue;
        }
        return i;
    }
}

/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`; `None` when nothing numeric starts here.
fn number(s: &[char]) -> Option<usize> {
    let mut i = 0;
    if s.first() == Some(&'-') {
        i += 1;
    }
    match s.get(i) {
        Some('0') => i += 1,
        Some('1'..='9') => {
            while s.get(i).is_some_and(|c| c.is_ascii_digit()) {
                i += 1;
            }
        }
        _ => return None,
    }
    if s.get(i) == Some(&'.') && s.get(i + 1).is_some_and(|c| c.is_ascii_digit()) {
        i += 1;
        while s.get(i).is_some_and(|c| c.is_ascii_digit()) {
            i += 1;
        }
    }
    if matches!(s.get(i), Some('e' | 'E')) {
        let mut j = i + 1;
        if matches!(s.get(j), Some('+' | '-')) {
            j += 1;
        }
        if s.get(j).is_some_and(|c| c.is_ascii_digit()) {
            while s.get(j).is_some_and(|c| c.is_ascii_digit()) {
                j += 1;
            }
            i = j;
        }
    }
    Some(i)
}

/// A quoted string starting at `s[0]`: its value and its length in characters.
/// `\uXXXX` is that code point; `\"`, `\'`, `\\`, `\/`, `\b`, `\f`, `\n`, `\r`, `\t` are the
/// character after the backslash (djangoql strips the backslash: `"\n"` is `n`).
fn string(s: &[char]) -> Result<(String, usize), AkqlError> {
    let quote = s[0];
    let mut out = String::new();
    let mut i = 1;
    let unterminated = || AkqlError::parse("Illegal character '\"' (unterminated string)");
    loop {
        let c = *s.get(i).ok_or_else(unterminated)?;
        if c == quote {
            return Ok((out, i + 1));
        }
        if is_line_break(c) {
            return Err(unterminated());
        }
        if c != '\\' {
            out.push(c);
            i += 1;
            continue;
        }
        match s.get(i + 1) {
            Some('u') => {
                let hex: String = s.get(i + 2..i + 6).unwrap_or_default().iter().collect();
                let code = (hex.len() == 4)
                    .then(|| u32::from_str_radix(&hex, 16).ok())
                    .flatten()
                    .ok_or_else(|| AkqlError::parse("Illegal character '\\\\'"))?;
                // A lone surrogate cannot be text (PostgreSQL refuses it too).
                let ch = char::from_u32(code)
                    .ok_or_else(|| AkqlError::parse(format!("Invalid escape \\u{hex}")))?;
                out.push(ch);
                i += 6;
            }
            Some(e @ ('"' | '\'' | '\\' | '/' | 'b' | 'f' | 'n' | 'r' | 't')) => {
                out.push(*e);
                i += 2;
            }
            _ => return Err(AkqlError::parse("Illegal character '\\\\'")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_keywords_and_operators() {
        let t = tokenize("context.http_request.path != 'x' and not in startswith").unwrap();
        assert_eq!(
            t,
            vec![
                Tok::Name("context.http_request.path".into()),
                Tok::Ne,
                Tok::Str("x".into()),
                Tok::And,
                Tok::Not,
                Tok::In,
                Tok::StartsWith
            ]
        );
        assert_eq!(tokenize("And").unwrap(), vec![Tok::Name("And".into())]);
    }

    #[test]
    fn escapes_are_the_character_after_the_backslash() {
        assert_eq!(
            tokenize(r#""a\nb\"c\\d\u00e9\'""#).unwrap(),
            vec![Tok::Str("anb\"c\\dé'".into())]
        );
        assert_eq!(
            tokenize(r#"'it"s'"#).unwrap(),
            vec![Tok::Str("it\"s".into())]
        );
        assert!(tokenize(r#""\x""#).is_err());
        assert!(tokenize("\"a\nb\"").is_err(), "raw line break");
        assert!(tokenize("\"open").is_err());
    }

    #[test]
    fn numbers_and_whitespace() {
        assert_eq!(
            tokenize("-0.5\u{a0}\u{0b}1e3 7").unwrap(),
            vec![
                Tok::Num("-0.5".into()),
                Tok::Num("1e3".into()),
                Tok::Num("7".into())
            ]
        );
        assert!(tokenize("a # b").is_err());
    }
}
