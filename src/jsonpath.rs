//! JSONPath in the *jsonpath2* dialect, the one `chaos` uses for `jsonpath` tolerances.
//!
//! jsonpath2 is not RFC 9535 JSONPath: a filter applies to the *current* node (so filtering
//! array elements needs `[*]` first: `$.items[*][?(@.ok = true)]`), equality is `=`, `and`
//! binds looser than `or`, string literals are double-quoted and taken verbatim (escapes are
//! not decoded), and callables (`length()`, `keys()`, `values()`, `entries()`, `charAt(i)`,
//! `substring(a[, b])`) are available as subscripts. This module parses that grammar (the
//! ANTLR grammar published with jsonpath2 0.4.5) and evaluates it over `serde_json` values with
//! Python's comparison rules, so tolerances match or fail exactly as they do under `chaos`.

use std::fmt;

use serde_json::Value;

use crate::python;

/// A parsed jsonpath2 expression.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonPath {
    root: Node,
}

/// Why a path failed to parse: the byte offset and what was wrong there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 0-based character column of the offending token.
    pub column: usize,
    /// What the parser expected or found.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "column {}: {}", self.column + 1, self.message)
    }
}

impl std::error::Error for ParseError {}

impl JsonPath {
    /// Parses a path; the whole input must be one `$…` expression.
    ///
    /// # Errors
    ///
    /// Returns a [`ParseError`] at the first token the grammar does not accept.
    pub fn parse(input: &str) -> Result<Self, ParseError> {
        let tokens = lex(input)?;
        let mut parser = Parser { tokens, pos: 0 };
        let root = parser.jsonpath()?;
        Ok(Self { root })
    }

    /// All values the path matches in `document`, in jsonpath2's order.
    pub fn query(&self, document: &Value) -> Vec<Value> {
        let mut out = Vec::new();
        self.root.matches(document, document, &mut out);
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Lexer

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Current,
    RecursiveDescent,
    Root,
    Dot,
    Star,
    And,
    Or,
    Not,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    True,
    False,
    Null,
    BraceL,
    BraceR,
    BracketL,
    BracketR,
    Colon,
    Comma,
    ParenL,
    ParenR,
    Question,
    Id(String),
    /// The raw text between the quotes; jsonpath2 does not decode escapes.
    Str(String),
    /// The literal text of a number, kept to decide int or float like jsonpath2 does.
    Num(String),
    Eof,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    column: usize,
}

fn lex(input: &str) -> Result<Vec<Token>, ParseError> {
    let chars: Vec<char> = input.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    let err = |column: usize, message: String| ParseError { column, message };
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        let simple = match c {
            ' ' | '\t' | '\n' | '\r' => {
                i += 1;
                continue;
            }
            '@' => Some(Tok::Current),
            '$' => Some(Tok::Root),
            '*' => Some(Tok::Star),
            '{' => Some(Tok::BraceL),
            '}' => Some(Tok::BraceR),
            '[' => Some(Tok::BracketL),
            ']' => Some(Tok::BracketR),
            ':' => Some(Tok::Colon),
            ',' => Some(Tok::Comma),
            '(' => Some(Tok::ParenL),
            ')' => Some(Tok::ParenR),
            '?' => Some(Tok::Question),
            '=' => Some(Tok::Eq),
            _ => None,
        };
        if let Some(tok) = simple {
            tokens.push(Token { tok, column: start });
            i += 1;
            continue;
        }
        let next = chars.get(i + 1).copied();
        let tok = match c {
            '.' if next == Some('.') => {
                i += 2;
                Tok::RecursiveDescent
            }
            '.' => {
                i += 1;
                Tok::Dot
            }
            '>' | '<' | '!' => {
                let two = next == Some('=');
                i += if two { 2 } else { 1 };
                match (c, two) {
                    ('>', true) => Tok::Ge,
                    ('>', false) => Tok::Gt,
                    ('<', true) => Tok::Le,
                    ('<', false) => Tok::Lt,
                    ('!', true) => Tok::Ne,
                    _ => return Err(err(start, "token recognition error at: '!'".into())),
                }
            }
            '"' => {
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(err(start, "unterminated string".into())),
                        Some('"') => break,
                        Some('\\') => {
                            let escaped = chars.get(i + 1).copied();
                            match escaped {
                                Some('"' | '\\' | '/' | 'b' | 'f' | 'n' | 'r' | 't') => i += 2,
                                Some('u')
                                    if chars.len() >= i + 6
                                        && chars[i + 2..i + 6]
                                            .iter()
                                            .all(char::is_ascii_hexdigit) =>
                                {
                                    i += 6
                                }
                                _ => return Err(err(i, "invalid escape in string".into())),
                            }
                        }
                        Some(ch) if (*ch as u32) < 0x20 => {
                            return Err(err(i, "control character in string".into()));
                        }
                        Some(_) => i += 1,
                    }
                }
                i += 1;
                Tok::Str(chars[start + 1..i - 1].iter().collect())
            }
            '-' | '0'..='9' => {
                let mut j = i;
                if chars[j] == '-' {
                    j += 1;
                }
                match chars.get(j) {
                    Some('0') => j += 1,
                    Some('1'..='9') => {
                        while chars.get(j).is_some_and(char::is_ascii_digit) {
                            j += 1;
                        }
                    }
                    _ => return Err(err(start, format!("token recognition error at: '{c}'"))),
                }
                if chars.get(j) == Some(&'.') && chars.get(j + 1).is_some_and(char::is_ascii_digit)
                {
                    j += 1;
                    while chars.get(j).is_some_and(char::is_ascii_digit) {
                        j += 1;
                    }
                }
                if matches!(chars.get(j), Some('e' | 'E')) {
                    let mut k = j + 1;
                    if matches!(chars.get(k), Some('+' | '-')) {
                        k += 1;
                    }
                    // The exponent is an INT: `0` or a digit run without a leading zero.
                    match chars.get(k) {
                        Some('0') => j = k + 1,
                        Some('1'..='9') => {
                            j = k;
                            while chars.get(j).is_some_and(char::is_ascii_digit) {
                                j += 1;
                            }
                        }
                        _ => {}
                    }
                }
                i = j;
                Tok::Num(chars[start..i].iter().collect())
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                while chars
                    .get(i)
                    .is_some_and(|ch| ch.is_ascii_alphanumeric() || *ch == '_')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                match word.as_str() {
                    "and" => Tok::And,
                    "or" => Tok::Or,
                    "not" => Tok::Not,
                    "true" => Tok::True,
                    "false" => Tok::False,
                    "null" => Tok::Null,
                    _ => Tok::Id(word),
                }
            }
            other => return Err(err(start, format!("token recognition error at: '{other}'"))),
        };
        tokens.push(Token { tok, column: start });
    }
    tokens.push(Token {
        tok: Tok::Eof,
        column: chars.len(),
    });
    Ok(tokens)
}

// ---------------------------------------------------------------------------------------------
// Syntax tree

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Root(Box<Node>),
    Current(Box<Node>),
    Subscript(Vec<Subscript>, Box<Node>),
    /// `..`: apply the inner node here, then at every descendant (pre-order).
    RecursiveDescent(Box<Node>),
    Terminal,
}

#[derive(Debug, Clone, PartialEq)]
enum Subscript {
    Key(String),
    Index(i64),
    Slice(Option<i64>, Option<i64>, Option<i64>),
    Wildcard,
    Filter(Expr),
    /// A nested `$…`/`@…` path whose int or string results index the current value.
    Path(Box<Node>),
    Call(Callable, Vec<Operand>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Callable {
    CharAt,
    Entries,
    Keys,
    Length,
    Substring,
    Values,
}

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    Path(Node),
    Literal(Value),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Compare(Op, Operand, Operand),
    Exists(Operand),
}

// ---------------------------------------------------------------------------------------------
// Parser: a recursive descent over the jsonpath2 grammar.

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.tokens[self.pos].tok
    }

    fn peek_at(&self, offset: usize) -> &Tok {
        let i = (self.pos + offset).min(self.tokens.len() - 1);
        &self.tokens[i].tok
    }

    fn bump(&mut self) -> Tok {
        let tok = self.tokens[self.pos].tok.clone();
        if self.pos < self.tokens.len() - 1 {
            self.pos += 1;
        }
        tok
    }

    fn error<T>(&self, message: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError {
            column: self.tokens[self.pos].column,
            message: message.into(),
        })
    }

    fn expect(&mut self, want: &Tok, what: &str) -> Result<(), ParseError> {
        if self.peek() == want {
            self.bump();
            Ok(())
        } else {
            self.error(format!("expected {what}"))
        }
    }

    /// `jsonpath : '$' subscript? EOF`
    fn jsonpath(&mut self) -> Result<Node, ParseError> {
        if self.peek() != &Tok::Root {
            return self.error("a path must start with '$'");
        }
        self.bump();
        let next = self.subscript_opt()?;
        if self.peek() != &Tok::Eof {
            return self.error("unexpected input after the path");
        }
        Ok(Node::Root(Box::new(next)))
    }

    /// `jsonpath_ : ('$' | '@') subscript?`
    fn relative_path(&mut self) -> Result<Node, ParseError> {
        let root = match self.bump() {
            Tok::Root => true,
            Tok::Current => false,
            _ => return self.error("expected '$' or '@'"),
        };
        let next = Box::new(self.subscript_opt()?);
        Ok(if root {
            Node::Root(next)
        } else {
            Node::Current(next)
        })
    }

    fn subscript_opt(&mut self) -> Result<Node, ParseError> {
        match self.peek() {
            Tok::RecursiveDescent | Tok::Dot | Tok::BracketL => self.subscript(),
            _ => Ok(Node::Terminal),
        }
    }

    /// `subscript : '..' (bareword | subscriptables) subscript? | '.' bareword subscript?
    ///            | subscriptables subscript?`
    fn subscript(&mut self) -> Result<Node, ParseError> {
        match self.peek() {
            Tok::RecursiveDescent => {
                self.bump();
                let subs = if self.peek() == &Tok::BracketL {
                    self.subscriptables()?
                } else {
                    vec![self.bareword()?]
                };
                let next = self.subscript_opt()?;
                Ok(Node::RecursiveDescent(Box::new(Node::Subscript(
                    subs,
                    Box::new(next),
                ))))
            }
            Tok::Dot => {
                self.bump();
                let sub = self.bareword()?;
                let next = self.subscript_opt()?;
                Ok(Node::Subscript(vec![sub], Box::new(next)))
            }
            Tok::BracketL => {
                let subs = self.subscriptables()?;
                let next = self.subscript_opt()?;
                Ok(Node::Subscript(subs, Box::new(next)))
            }
            _ => self.error("expected '.', '..' or '['"),
        }
    }

    /// `subscriptableBareword : ID subscriptableArguments? | '*'`
    fn bareword(&mut self) -> Result<Subscript, ParseError> {
        match self.peek().clone() {
            Tok::Star => {
                self.bump();
                Ok(Subscript::Wildcard)
            }
            Tok::Id(name) => {
                if self.peek_at(1) == &Tok::ParenL {
                    self.bump();
                    self.call(&name)
                } else {
                    self.bump();
                    Ok(Subscript::Key(name))
                }
            }
            _ => self.error("expected a name or '*'"),
        }
    }

    /// A callable subscript: the name was consumed, the arguments come next.
    fn call(&mut self, name: &str) -> Result<Subscript, ParseError> {
        let callable = match name {
            "charAt" => Callable::CharAt,
            "entries" => Callable::Entries,
            "keys" => Callable::Keys,
            "length" => Callable::Length,
            "substring" => Callable::Substring,
            "values" => Callable::Values,
            other => return self.error(format!("callable subscript '{other}' not found")),
        };
        self.expect(&Tok::ParenL, "'('")?;
        let mut args = Vec::new();
        if self.peek() != &Tok::ParenR {
            loop {
                args.push(self.operand()?);
                if self.peek() == &Tok::Comma {
                    self.bump();
                } else {
                    break;
                }
            }
        }
        self.expect(&Tok::ParenR, "')'")?;
        Ok(Subscript::Call(callable, args))
    }

    /// `subscriptables : '[' subscriptable (',' subscriptable)* ']'`
    fn subscriptables(&mut self) -> Result<Vec<Subscript>, ParseError> {
        self.expect(&Tok::BracketL, "'['")?;
        let mut subs = vec![self.subscriptable()?];
        while self.peek() == &Tok::Comma {
            self.bump();
            subs.push(self.subscriptable()?);
        }
        self.expect(&Tok::BracketR, "']'")?;
        Ok(subs)
    }

    fn int_literal(&self, text: &str) -> Result<i64, ParseError> {
        text.parse::<i64>()
            .or_else(|_| self.error("expected an integer"))
    }

    /// `subscriptable : STRING | NUMBER sliceable? | sliceable | '*' | '?' '(' expression ')'
    ///                | jsonpath_ | ID subscriptableArguments`
    fn subscriptable(&mut self) -> Result<Subscript, ParseError> {
        match self.peek().clone() {
            Tok::Str(s) => {
                self.bump();
                Ok(Subscript::Key(s))
            }
            Tok::Num(n) => {
                let start = self.int_literal(&n)?;
                self.bump();
                if self.peek() == &Tok::Colon {
                    let (end, step) = self.sliceable()?;
                    Ok(Subscript::Slice(Some(start), end, step))
                } else {
                    Ok(Subscript::Index(start))
                }
            }
            Tok::Colon => {
                let (end, step) = self.sliceable()?;
                Ok(Subscript::Slice(None, end, step))
            }
            Tok::Star => {
                self.bump();
                Ok(Subscript::Wildcard)
            }
            Tok::Question => {
                self.bump();
                self.expect(&Tok::ParenL, "'(' after '?'")?;
                let expr = self.expression()?;
                self.expect(&Tok::ParenR, "')'")?;
                Ok(Subscript::Filter(expr))
            }
            Tok::Root | Tok::Current => Ok(Subscript::Path(Box::new(self.relative_path()?))),
            Tok::Id(name) => {
                self.bump();
                if self.peek() != &Tok::ParenL {
                    return self.error("expected '(' after a callable name");
                }
                self.call(&name)
            }
            _ => self.error("expected a subscript"),
        }
    }

    /// `sliceable : ':' NUMBER? (':' NUMBER?)?`, returning (end, step) as jsonpath2 assigns
    /// them.
    fn sliceable(&mut self) -> Result<(Option<i64>, Option<i64>), ParseError> {
        self.expect(&Tok::Colon, "':'")?;
        let mut first = None;
        if let Tok::Num(n) = self.peek().clone() {
            first = Some(self.int_literal(&n)?);
            self.bump();
        }
        if self.peek() != &Tok::Colon {
            return Ok((first, None));
        }
        self.bump();
        let mut second = None;
        if let Tok::Num(n) = self.peek().clone() {
            second = Some(self.int_literal(&n)?);
            self.bump();
        }
        Ok(match (first, second) {
            (Some(end), step) => (Some(end), step),
            (None, step) => (None, step),
        })
    }

    /// `expression : andExpression`;
    /// `andExpression : orExpression ('and' andExpression)?`.
    fn expression(&mut self) -> Result<Expr, ParseError> {
        let mut terms = vec![self.or_expression()?];
        while self.peek() == &Tok::And {
            self.bump();
            terms.push(self.or_expression()?);
        }
        Ok(if terms.len() == 1 {
            terms.pop().expect("one term")
        } else {
            Expr::And(terms)
        })
    }

    /// `orExpression : notExpression ('or' orExpression)?`
    fn or_expression(&mut self) -> Result<Expr, ParseError> {
        let mut terms = vec![self.not_expression()?];
        while self.peek() == &Tok::Or {
            self.bump();
            terms.push(self.not_expression()?);
        }
        Ok(if terms.len() == 1 {
            terms.pop().expect("one term")
        } else {
            Expr::Or(terms)
        })
    }

    /// `notExpression : 'not' notExpression | '(' expression ')'
    ///                | jsonpath__ (op jsonpath__)?`
    fn not_expression(&mut self) -> Result<Expr, ParseError> {
        match self.peek() {
            Tok::Not => {
                self.bump();
                Ok(Expr::Not(Box::new(self.not_expression()?)))
            }
            Tok::ParenL => {
                self.bump();
                let expr = self.expression()?;
                self.expect(&Tok::ParenR, "')'")?;
                Ok(expr)
            }
            _ => {
                let left = self.operand()?;
                let op = match self.peek() {
                    Tok::Eq => Op::Eq,
                    Tok::Ne => Op::Ne,
                    Tok::Lt => Op::Lt,
                    Tok::Le => Op::Le,
                    Tok::Gt => Op::Gt,
                    Tok::Ge => Op::Ge,
                    _ => return Ok(Expr::Exists(left)),
                };
                self.bump();
                let right = self.operand()?;
                Ok(Expr::Compare(op, left, right))
            }
        }
    }

    /// `jsonpath__ : jsonpath_ | value`
    fn operand(&mut self) -> Result<Operand, ParseError> {
        match self.peek() {
            Tok::Root | Tok::Current => Ok(Operand::Path(self.relative_path()?)),
            _ => Ok(Operand::Literal(self.value()?)),
        }
    }

    /// A JSON value as jsonpath2 reads it (strings verbatim, numbers int or float by spelling).
    fn value(&mut self) -> Result<Value, ParseError> {
        match self.peek().clone() {
            Tok::Str(s) => {
                self.bump();
                Ok(Value::String(s))
            }
            Tok::Num(n) => {
                self.bump();
                if n.contains(['.', 'e', 'E']) {
                    let f: f64 = n.parse().or_else(|_| self.error("invalid number"))?;
                    Ok(serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number))
                } else {
                    match n.parse::<i64>() {
                        Ok(i) => Ok(Value::from(i)),
                        Err(_) => {
                            let f: f64 = n.parse().or_else(|_| self.error("invalid number"))?;
                            Ok(serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number))
                        }
                    }
                }
            }
            Tok::True => {
                self.bump();
                Ok(Value::Bool(true))
            }
            Tok::False => {
                self.bump();
                Ok(Value::Bool(false))
            }
            Tok::Null => {
                self.bump();
                Ok(Value::Null)
            }
            Tok::BraceL => {
                self.bump();
                let mut map = serde_json::Map::new();
                if self.peek() != &Tok::BraceR {
                    loop {
                        let Tok::Str(key) = self.bump() else {
                            return self.error("expected a string key");
                        };
                        self.expect(&Tok::Colon, "':'")?;
                        let v = self.value()?;
                        map.insert(key, v);
                        if self.peek() == &Tok::Comma {
                            self.bump();
                        } else {
                            break;
                        }
                    }
                }
                self.expect(&Tok::BraceR, "'}'")?;
                Ok(Value::Object(map))
            }
            Tok::BracketL => {
                self.bump();
                let mut items = Vec::new();
                if self.peek() != &Tok::BracketR {
                    loop {
                        items.push(self.value()?);
                        if self.peek() == &Tok::Comma {
                            self.bump();
                        } else {
                            break;
                        }
                    }
                }
                self.expect(&Tok::BracketR, "']'")?;
                Ok(Value::Array(items))
            }
            _ => self.error("expected a path or a value"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Evaluation

impl Node {
    fn matches(&self, root: &Value, current: &Value, out: &mut Vec<Value>) {
        match self {
            Node::Terminal => out.push(current.clone()),
            Node::Root(next) => next.matches(root, root, out),
            Node::Current(next) => next.matches(root, current, out),
            Node::Subscript(subs, next) => {
                for sub in subs {
                    for value in sub.matches(root, current) {
                        next.matches(root, &value, out);
                    }
                }
            }
            Node::RecursiveDescent(inner) => {
                inner.matches(root, current, out);
                for child in children(current) {
                    self.matches(root, child, out);
                }
            }
        }
    }
}

fn children(value: &Value) -> Vec<&Value> {
    match value {
        Value::Object(map) => map.values().collect(),
        Value::Array(items) => items.iter().collect(),
        _ => Vec::new(),
    }
}

/// Python's `isinstance(v, int)`, which includes bools.
fn as_int(value: &Value) -> Option<i64> {
    match value {
        Value::Bool(b) => Some(i64::from(*b)),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

fn index(items: &[Value], i: i64) -> Option<&Value> {
    let len = items.len() as i64;
    let i = if i < 0 { i + len } else { i };
    (0..len).contains(&i).then(|| &items[i as usize])
}

/// Python's `range(start, stop, step)` as a list of indices (empty for a zero step, where
/// Python would raise).
fn py_range(start: i64, stop: i64, step: i64) -> Vec<i64> {
    let mut out = Vec::new();
    let mut i = start;
    match step.signum() {
        1 => {
            while i < stop {
                out.push(i);
                i += step;
            }
        }
        -1 => {
            while i > stop {
                out.push(i);
                i += step;
            }
        }
        _ => {}
    }
    out
}

/// Python slicing of a string by character positions.
fn py_str_slice(s: &str, start: i64, end: Option<i64>) -> String {
    let chars: Vec<char> = s.chars().collect();
    let len = chars.len() as i64;
    let clamp = |i: i64| -> usize {
        let i = if i < 0 { (i + len).max(0) } else { i.min(len) };
        i as usize
    };
    let (a, b) = (clamp(start), clamp(end.unwrap_or(len)));
    if a >= b {
        String::new()
    } else {
        chars[a..b].iter().collect()
    }
}

impl Subscript {
    fn matches(&self, root: &Value, current: &Value) -> Vec<Value> {
        match self {
            Subscript::Key(key) => current
                .as_object()
                .and_then(|m| m.get(key))
                .cloned()
                .into_iter()
                .collect(),
            Subscript::Index(i) => current
                .as_array()
                .and_then(|items| index(items, *i))
                .cloned()
                .into_iter()
                .collect(),
            Subscript::Slice(start, end, step) => {
                let Some(items) = current.as_array() else {
                    return Vec::new();
                };
                let len = items.len() as i64;
                // jsonpath2's own normalisation, reproduced as written.
                let start = start.map(|s| {
                    if s < 0 {
                        s + if s.abs() < len { len } else { s.abs() }
                    } else {
                        s
                    }
                });
                let end = end.map(|e| if e < 0 { e + len } else { e });
                let indices = py_range(start.unwrap_or(0), end.unwrap_or(len), step.unwrap_or(1));
                indices
                    .into_iter()
                    .filter_map(|i| index(items, i).cloned())
                    .collect()
            }
            Subscript::Wildcard => children(current).into_iter().cloned().collect(),
            Subscript::Filter(expr) => {
                if expr.evaluate(root, current) {
                    vec![current.clone()]
                } else {
                    Vec::new()
                }
            }
            Subscript::Path(node) => {
                let mut keys = Vec::new();
                node.matches(root, current, &mut keys);
                keys.iter()
                    .flat_map(|key| match key {
                        Value::String(s) => Subscript::Key(s.clone()).matches(root, current),
                        other => match as_int(other) {
                            Some(i) => Subscript::Index(i).matches(root, current),
                            None => Vec::new(),
                        },
                    })
                    .collect()
            }
            Subscript::Call(callable, args) => {
                // Every combination of argument values (a path argument may match several).
                let mut combos: Vec<Vec<Value>> = vec![Vec::new()];
                for arg in args {
                    let values = arg.values(root, current);
                    combos = combos
                        .into_iter()
                        .flat_map(|combo| {
                            values.iter().map(move |v| {
                                let mut c = combo.clone();
                                c.push(v.clone());
                                c
                            })
                        })
                        .collect();
                }
                combos
                    .into_iter()
                    .filter_map(|combo| callable.apply(&combo, current))
                    .collect()
            }
        }
    }
}

impl Callable {
    fn apply(self, args: &[Value], current: &Value) -> Option<Value> {
        match (self, current) {
            (Callable::CharAt, Value::String(s)) => {
                let [arg] = args else { return None };
                let i = as_int(arg)?;
                let chars: Vec<char> = s.chars().collect();
                let len = chars.len() as i64;
                let i = if i < 0 { i + len } else { i };
                (0..len)
                    .contains(&i)
                    .then(|| Value::String(chars[i as usize].to_string()))
            }
            (Callable::Substring, Value::String(s)) => match args {
                [a] => Some(Value::String(py_str_slice(s, as_int(a)?, None))),
                [a, b] => Some(Value::String(py_str_slice(s, as_int(a)?, Some(as_int(b)?)))),
                _ => None,
            },
            (_, _) if !args.is_empty() => None,
            (Callable::Entries, Value::Object(m)) => Some(Value::Array(
                m.iter()
                    .map(|(k, v)| Value::Array(vec![Value::String(k.clone()), v.clone()]))
                    .collect(),
            )),
            (Callable::Entries, Value::Array(items)) => Some(Value::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| Value::Array(vec![Value::from(i), v.clone()]))
                    .collect(),
            )),
            (Callable::Keys, Value::Object(m)) => {
                Some(Value::Array(m.keys().cloned().map(Value::String).collect()))
            }
            (Callable::Keys, Value::Array(items)) => {
                Some(Value::Array((0..items.len()).map(Value::from).collect()))
            }
            (Callable::Length, Value::Array(items)) => Some(Value::from(items.len())),
            (Callable::Length, Value::String(s)) => Some(Value::from(s.chars().count())),
            (Callable::Values, Value::Object(m)) => {
                Some(Value::Array(m.values().cloned().collect()))
            }
            (Callable::Values, Value::Array(_)) => Some(current.clone()),
            _ => None,
        }
    }
}

impl Operand {
    fn values(&self, root: &Value, current: &Value) -> Vec<Value> {
        match self {
            Operand::Literal(v) => vec![v.clone()],
            Operand::Path(node) => {
                let mut out = Vec::new();
                node.matches(root, current, &mut out);
                out
            }
        }
    }
}

fn numbers(a: &Value, b: &Value) -> bool {
    let numeric = |v: &Value| matches!(v, Value::Number(_) | Value::Bool(_));
    numeric(a) && numeric(b)
}

impl Expr {
    fn evaluate(&self, root: &Value, current: &Value) -> bool {
        match self {
            Expr::And(terms) => terms.iter().all(|t| t.evaluate(root, current)),
            Expr::Or(terms) => terms.iter().any(|t| t.evaluate(root, current)),
            Expr::Not(inner) => !inner.evaluate(root, current),
            Expr::Exists(Operand::Literal(v)) => python::truthy(v),
            Expr::Exists(path) => !path.values(root, current).is_empty(),
            Expr::Compare(op, left, right) => {
                let lefts = left.values(root, current);
                let rights = right.values(root, current);
                lefts.iter().any(|l| {
                    rights.iter().any(|r| match op {
                        Op::Eq => python::eq(l, r),
                        Op::Ne => !python::eq(l, r),
                        ordering => {
                            if !numbers(l, r) {
                                return false;
                            }
                            let Some(ord) = python::partial_cmp(l, r) else {
                                return false;
                            };
                            match ordering {
                                Op::Lt => ord.is_lt(),
                                Op::Le => ord.is_le(),
                                Op::Gt => ord.is_gt(),
                                _ => ord.is_ge(),
                            }
                        }
                    })
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn q(path: &str, doc: &Value) -> Vec<Value> {
        JsonPath::parse(path)
            .unwrap_or_else(|e| panic!("{path}: {e}"))
            .query(doc)
    }

    fn doc() -> Value {
        json!({
            "services": [
                {"name": "a", "latency": 3, "ok": true},
                {"name": "b", "latency": 9, "ok": false},
                {"name": "c", "latency": 7.5, "ok": true}
            ],
            "meta": {"count": 3, "tags": ["x", "y"]},
            "word": "hello"
        })
    }

    #[test]
    fn basic_paths() {
        let d = doc();
        assert_eq!(q("$.meta.count", &d), vec![json!(3)]);
        assert_eq!(q("$", &d), vec![d.clone()]);
        assert_eq!(q("$.services[0].name", &d), vec![json!("a")]);
        assert_eq!(q("$.services[-1].name", &d), vec![json!("c")]);
        assert_eq!(q("$[\"meta\"][\"tags\"][1]", &d), vec![json!("y")]);
        assert_eq!(
            q("$.services[*].name", &d),
            vec![json!("a"), json!("b"), json!("c")]
        );
        assert_eq!(q("$.services[0:2].name", &d), vec![json!("a"), json!("b")]);
        assert_eq!(q("$.services[::2].name", &d), vec![json!("a"), json!("c")]);
        assert_eq!(q("$.services[1:].name", &d), vec![json!("b"), json!("c")]);
        assert_eq!(q("$.services[0,2].name", &d), vec![json!("a"), json!("c")]);
        assert_eq!(q("$.missing", &d), Vec::<Value>::new());
    }

    #[test]
    fn recursive_descent_is_preorder() {
        let d = json!({"a": {"x": 1, "b": {"x": 2}}, "x": 0});
        assert_eq!(q("$..x", &d), vec![json!(0), json!(1), json!(2)]);
    }

    #[test]
    fn filters_apply_to_the_current_node() {
        let d = doc();
        assert_eq!(
            q("$.services[*][?(@.latency > 5)].name", &d),
            vec![json!("b"), json!("c")]
        );
        // Without [*] the filter tests the array itself, which has no `latency`.
        assert!(q("$.services[?(@.latency > 5)]", &d).is_empty());
        assert_eq!(
            q("$.services[*][?(@.ok = true)].name", &d),
            vec![json!("a"), json!("c")]
        );
        assert_eq!(
            q("$.services[*][?(@.name != \"a\")].name", &d),
            vec![json!("b"), json!("c")]
        );
        assert_eq!(q("$.services[*][?(not @.ok)].name", &d).len(), 0);
        assert_eq!(
            q(
                "$.services[*][?(@.latency >= 7.5 and @.ok = true)].name",
                &d
            ),
            vec![json!("c")]
        );
        assert_eq!(
            q("$.services[*][?(@.latency < 4 or @.latency > 8)].name", &d).len(),
            2
        );
        // Comparisons between non-numbers are false.
        assert!(q("$.services[*][?(@.name > 1)]", &d).is_empty());
    }

    #[test]
    fn or_binds_tighter_than_and() {
        // `true or false and false` is `(true or false) and false` in jsonpath2.
        let d = json!([1]);
        assert!(q("$[?(true or false and false)]", &d).is_empty());
        assert_eq!(q("$[?(false and false or true)]", &d).len(), 0);
        assert_eq!(q("$[?(true and (false or true))]", &d).len(), 1);
    }

    #[test]
    fn callables() {
        let d = doc();
        assert_eq!(q("$.services.length()", &d), vec![json!(3)]);
        assert_eq!(q("$.meta.keys()", &d), vec![json!(["count", "tags"])]);
        assert_eq!(q("$.word.charAt(1)", &d), vec![json!("e")]);
        assert_eq!(q("$.word.substring(1, 3)", &d), vec![json!("el")]);
        assert_eq!(q("$.word.substring(-2)", &d), vec![json!("lo")]);
        assert_eq!(
            q("$.meta.entries()", &d),
            vec![json!([["count", 3], ["tags", ["x", "y"]]])]
        );
        assert_eq!(
            q("$.services[*][?(@.name.length() = 1)].latency", &d).len(),
            3
        );
        assert_eq!(q("$.meta.tags[$.meta.count]", &d), Vec::<Value>::new());
        assert_eq!(q("$.services[@.length()]", &d), Vec::<Value>::new());
    }

    #[test]
    fn python_equality_in_filters() {
        let d = json!([{"v": 1}, {"v": 1.0}, {"v": true}, {"v": "1"}]);
        assert_eq!(q("$[*][?(@.v = 1)]", &d).len(), 3);
    }

    #[test]
    fn invalid_paths() {
        for p in [
            "",
            "a.b",
            "$.",
            "$.a-b",
            "$[",
            "$.foo(",
            "$.nope()",
            "$[1.5]",
            "$ x",
            "$.true",
            "$..",
            "$[?(@.a == 1)]",
        ] {
            assert!(JsonPath::parse(p).is_err(), "{p:?} should be invalid");
        }
    }

    #[test]
    fn strings_are_verbatim() {
        let d = json!({"a\\\"b": 1, "x y": 2});
        assert_eq!(q("$[\"a\\\"b\"]", &d), vec![json!(1)]);
        assert_eq!(q("$[\"x y\"]", &d), vec![json!(2)]);
    }
}
