//! djangoql's grammar (`djangoql/parser.py`): comparisons joined by `and`/`or`, parentheses.
//! `and` and `or` have **equal** precedence and group to the right: `a and b or c` is
//! `a and (b or c)`. There is no unary `not`.

use super::lexer::{tokenize, Tok};
use super::AkqlError;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logic {
    And,
    Or,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Logical(Logic, Box<Expr>, Box<Expr>),
    Cmp(Comparison),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Contains,
    NotContains,
    StartsWith,
    NotStartsWith,
    EndsWith,
    NotEndsWith,
    In,
    NotIn,
}

impl Op {
    pub const ALL: [Op; 14] = [
        Op::Eq,
        Op::Ne,
        Op::Gt,
        Op::Ge,
        Op::Lt,
        Op::Le,
        Op::Contains,
        Op::NotContains,
        Op::StartsWith,
        Op::NotStartsWith,
        Op::EndsWith,
        Op::NotEndsWith,
        Op::In,
        Op::NotIn,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Contains => "~",
            Op::NotContains => "!~",
            Op::StartsWith => "startswith",
            Op::NotStartsWith => "not startswith",
            Op::EndsWith => "endswith",
            Op::NotEndsWith => "not endswith",
            Op::In => "in",
            Op::NotIn => "not in",
        }
    }

    /// The operator that holds exactly when this one does not (on a present, non-null
    /// value): `=`/`!=`, `~`/`!~`, `in`/`not in`, `startswith`/`not startswith`,
    /// `endswith`/`not endswith`. Orderings have none.
    pub fn negation(self) -> Option<Op> {
        Some(match self {
            Op::Eq => Op::Ne,
            Op::Ne => Op::Eq,
            Op::Contains => Op::NotContains,
            Op::NotContains => Op::Contains,
            Op::StartsWith => Op::NotStartsWith,
            Op::NotStartsWith => Op::StartsWith,
            Op::EndsWith => Op::NotEndsWith,
            Op::NotEndsWith => Op::EndsWith,
            Op::In => Op::NotIn,
            Op::NotIn => Op::In,
            Op::Gt | Op::Ge | Op::Lt | Op::Le => return None,
        })
    }

    /// The negative forms (`!=`, `!~`, `not ...`): Django builds them as `exclude` of the
    /// positive one.
    pub fn is_negative(self) -> bool {
        matches!(
            self,
            Op::Ne | Op::NotContains | Op::NotStartsWith | Op::NotEndsWith | Op::NotIn
        )
    }

    /// `~`, `startswith`, `endswith` and their negations: case-insensitive text matching.
    pub fn is_text(self) -> bool {
        matches!(
            self,
            Op::Contains
                | Op::NotContains
                | Op::StartsWith
                | Op::NotStartsWith
                | Op::EndsWith
                | Op::NotEndsWith
        )
    }

    pub fn is_ordering(self) -> bool {
        matches!(self, Op::Gt | Op::Ge | Op::Lt | Op::Le)
    }
}

/// A constant as written.
#[derive(Debug, Clone, PartialEq)]
pub enum Const {
    Str(String),
    Num(String),
    True,
    False,
    None,
    /// `in` / `not in`: strings and numbers.
    List(Vec<Const>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// The dotted name, split (`["context", "model", "app"]`).
    pub name: Vec<String>,
    pub op: Op,
    pub value: Const,
}

pub fn parse(src: &str) -> Result<Expr, AkqlError> {
    let toks = tokenize(src)?;
    let mut p = Parser { toks, pos: 0 };
    let e = p.expr()?;
    match p.toks.get(p.pos) {
        None => Ok(e),
        Some(t) => Err(syntax(t)),
    }
}

fn syntax(t: &Tok) -> AkqlError {
    AkqlError::parse(format!("Line 1: Syntax error at '{}'", t.text()))
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn next(&mut self) -> Result<Tok, AkqlError> {
        let t = self
            .toks
            .get(self.pos)
            .cloned()
            .ok_or_else(|| AkqlError::parse("Unexpected end of input"))?;
        self.pos += 1;
        Ok(t)
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    /// `primary ((and | or) expr)?`: right-grouping, one precedence level.
    fn expr(&mut self) -> Result<Expr, AkqlError> {
        let left = self.primary()?;
        let logic = match self.peek() {
            Some(Tok::And) => Logic::And,
            Some(Tok::Or) => Logic::Or,
            _ => return Ok(left),
        };
        self.pos += 1;
        let right = self.expr()?;
        Ok(Expr::Logical(logic, Box::new(left), Box::new(right)))
    }

    fn primary(&mut self) -> Result<Expr, AkqlError> {
        match self.next()? {
            Tok::LParen => {
                let e = self.expr()?;
                match self.next()? {
                    Tok::RParen => Ok(e),
                    t => Err(syntax(&t)),
                }
            }
            Tok::Name(n) => self.comparison(n),
            t => Err(syntax(&t)),
        }
    }

    fn comparison(&mut self, name: String) -> Result<Expr, AkqlError> {
        let op = match self.next()? {
            Tok::Eq => Op::Eq,
            Tok::Ne => Op::Ne,
            Tok::Gt => Op::Gt,
            Tok::Ge => Op::Ge,
            Tok::Lt => Op::Lt,
            Tok::Le => Op::Le,
            Tok::Contains => Op::Contains,
            Tok::NotContains => Op::NotContains,
            Tok::StartsWith => Op::StartsWith,
            Tok::EndsWith => Op::EndsWith,
            Tok::In => Op::In,
            Tok::Not => match self.next()? {
                Tok::StartsWith => Op::NotStartsWith,
                Tok::EndsWith => Op::NotEndsWith,
                Tok::In => Op::NotIn,
                t => return Err(syntax(&t)),
            },
            t => return Err(syntax(&t)),
        };
        let value = match op {
            Op::In | Op::NotIn => self.list()?,
            _ => {
                let t = self.next()?;
                match (&t, op) {
                    (Tok::Str(s), _) => Const::Str(s.clone()),
                    (Tok::Num(n), o) if !o.is_text() => Const::Num(n.clone()),
                    (Tok::True, Op::Eq | Op::Ne) => Const::True,
                    (Tok::False, Op::Eq | Op::Ne) => Const::False,
                    (Tok::None, Op::Eq | Op::Ne) => Const::None,
                    _ => return Err(syntax(&t)),
                }
            }
        };
        Ok(Expr::Cmp(Comparison {
            name: name.split('.').map(str::to_string).collect(),
            op,
            value,
        }))
    }

    /// `( value (, value)* )`: strings and numbers.
    fn list(&mut self) -> Result<Const, AkqlError> {
        match self.next()? {
            Tok::LParen => {}
            t => return Err(syntax(&t)),
        }
        let mut items = Vec::new();
        loop {
            match self.next()? {
                Tok::Str(s) => items.push(Const::Str(s)),
                Tok::Num(n) => items.push(Const::Num(n)),
                t => return Err(syntax(&t)),
            }
            match self.next()? {
                Tok::Comma => continue,
                Tok::RParen => return Ok(Const::List(items)),
                t => return Err(syntax(&t)),
            }
        }
    }
}

/// Prints a query that parses back to the same tree: a left operand that is itself an
/// `and`/`or` is parenthesised (the grammar groups to the right); strings are double-quoted
/// with `"` and `\` escaped and line breaks as `\uXXXX`.
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Cmp(c) => write!(f, "{c}"),
            Expr::Logical(l, a, b) => {
                let word = match l {
                    Logic::And => "and",
                    Logic::Or => "or",
                };
                match **a {
                    Expr::Logical(..) => write!(f, "({a}) {word} {b}"),
                    Expr::Cmp(_) => write!(f, "{a} {word} {b}"),
                }
            }
        }
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {}",
            self.name.join("."),
            self.op.as_str(),
            self.value
        )
    }
}

impl fmt::Display for Const {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Const::Str(s) => {
                f.write_str("\"")?;
                for c in s.chars() {
                    match c {
                        '"' => f.write_str("\\\"")?,
                        '\\' => f.write_str("\\\\")?,
                        '\n' | '\r' | '\u{2028}' | '\u{2029}' => write!(f, "\\u{:04x}", c as u32)?,
                        c => write!(f, "{c}")?,
                    }
                }
                f.write_str("\"")
            }
            Const::Num(n) => f.write_str(n),
            Const::True => f.write_str("True"),
            Const::False => f.write_str("False"),
            Const::None => f.write_str("None"),
            Const::List(items) => {
                f.write_str("(")?;
                for (i, it) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{it}")?;
                }
                f.write_str(")")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(name: &str, v: &str) -> Expr {
        Expr::Cmp(Comparison {
            name: vec![name.into()],
            op: Op::Eq,
            value: Const::Str(v.into()),
        })
    }

    #[test]
    fn and_or_group_to_the_right_with_equal_precedence() {
        let e = parse(r#"app = "a" and app = "b" or app = "c""#).unwrap();
        assert_eq!(
            e,
            Expr::Logical(
                Logic::And,
                Box::new(cmp("app", "a")),
                Box::new(Expr::Logical(
                    Logic::Or,
                    Box::new(cmp("app", "b")),
                    Box::new(cmp("app", "c"))
                ))
            )
        );
        let e = parse(r#"app = "a" or app = "b" and app = "c""#).unwrap();
        assert!(matches!(e, Expr::Logical(Logic::Or, _, _)));
    }

    #[test]
    fn syntax_errors() {
        for (q, msg) in [
            (r#"not action = "login""#, "Line 1: Syntax error at 'not'"),
            (r#"action = "login" and"#, "Unexpected end of input"),
            ("action in ()", "Line 1: Syntax error at ')'"),
            ("action ~ 5", "Line 1: Syntax error at '5'"),
            ("action > True", "Line 1: Syntax error at 'True'"),
            ("(action = \"x\"", "Unexpected end of input"),
        ] {
            assert_eq!(parse(q).unwrap_err().message, msg, "{q}");
        }
    }

    #[test]
    fn printing_parses_back() {
        for q in [
            r#"(a = "x" or b = "y") and c in ("1", 2) or d not startswith "q\"\\""#,
            r#"a != None and b = True and c >= -1.5e3"#,
        ] {
            let e = parse(q).unwrap();
            assert_eq!(parse(&e.to_string()).unwrap(), e, "{q} -> {e}");
        }
    }
}
