//! A reader for `wrangler d1 export` dumps: SQLite-dialect SQL text made of
//! `PRAGMA`, `CREATE TABLE`/`INDEX`/`TRIGGER`/`VIEW`, `INSERT INTO … VALUES`
//! (one row or several per statement, with or without a column list) and the
//! `sqlite_sequence` bookkeeping. It tokenises the text (string literals with
//! `''` escaping, `X'..'` blobs, numbers, quoted identifiers, comments),
//! splits statements at semicolons outside strings, reads each `CREATE TABLE`
//! for its column order and evaluates the few value expressions dumps use
//! (`NULL`, signed numbers, `replace(…)`, `char(…)`, `unistr(…)`).
//!
//! It never executes anything and knows nothing of vault-mcp's tables: it
//! returns tables of rows, each with the line it started on. A truncated file or
//! a statement a D1 export does not contain is an error naming the line.

use std::collections::BTreeMap;
use std::fmt;

/// A value as the dump wrote it.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// One row of an `INSERT`, with the line of the statement that holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct DumpRow {
    pub line: usize,
    /// (column, value) in the table's column order.
    pub values: Vec<(String, SqlValue)>,
}

/// A table as the dump describes it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DumpTable {
    /// Columns from its `CREATE TABLE`, in order (empty if the dump had none).
    pub columns: Vec<String>,
    pub rows: Vec<DumpRow>,
}

/// What a dump holds: tables by name (as written, case kept) and whether it
/// looked like a D1 export (a `PRAGMA defer_foreign_keys` or a `d1_migrations` table).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dump {
    pub tables: BTreeMap<String, DumpTable>,
    pub d1_marks: bool,
    pub statements: usize,
}

/// A parse failure at a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

type PResult<T> = Result<T, ParseError>;

fn err<T>(line: usize, message: impl Into<String>) -> PResult<T> {
    Err(ParseError {
        line,
        message: message.into(),
    })
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// A bare word (keyword or identifier).
    Word(String),
    /// A quoted identifier ("x", `x`, [x]).
    Quoted(String),
    Str(String),
    Blob(Vec<u8>),
    Num(String),
    Punct(char),
}

#[derive(Debug, Clone, PartialEq)]
struct Token {
    tok: Tok,
    line: usize,
}

impl Token {
    fn is_word(&self, w: &str) -> bool {
        matches!(&self.tok, Tok::Word(x) if x.eq_ignore_ascii_case(w))
    }
    fn is_punct(&self, c: char) -> bool {
        self.tok == Tok::Punct(c)
    }
    fn describe(&self) -> String {
        match &self.tok {
            Tok::Word(w) => format!("`{w}`"),
            Tok::Quoted(w) => format!("identifier \"{w}\""),
            Tok::Str(_) => "a string literal".into(),
            Tok::Blob(_) => "a blob literal".into(),
            Tok::Num(n) => format!("number {n}"),
            Tok::Punct(c) => format!("`{c}`"),
        }
    }
}

struct Lexer<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    line: usize,
}

impl<'a> Lexer<'a> {
    fn new(text: &'a str) -> Self {
        Lexer {
            chars: text.chars().peekable(),
            line: 1,
        }
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.chars.next();
        if c == Some('\n') {
            self.line += 1;
        }
        c
    }

    /// The text up to the closing `close`, where a doubled `close` stands for one.
    fn quoted(&mut self, close: char, what: &str) -> PResult<String> {
        let start = self.line;
        let mut s = String::new();
        loop {
            match self.bump() {
                None => {
                    return err(
                        self.line,
                        format!(
                            "the file ends inside {what} that starts at line {start} (is the dump truncated?)"
                        ),
                    );
                }
                Some(c) if c == close => {
                    if self.chars.peek() == Some(&close) && close != ']' {
                        self.bump();
                        s.push(close);
                    } else {
                        return Ok(s);
                    }
                }
                Some(c) => s.push(c),
            }
        }
    }

    fn next_token(&mut self) -> PResult<Option<Token>> {
        loop {
            let Some(&c) = self.chars.peek() else {
                return Ok(None);
            };
            let line = self.line;
            if c.is_whitespace() {
                self.bump();
                continue;
            }
            if c == '-' {
                let mut ahead = self.chars.clone();
                ahead.next();
                if ahead.peek() == Some(&'-') {
                    while let Some(c) = self.bump() {
                        if c == '\n' {
                            break;
                        }
                    }
                    continue;
                }
            }
            if c == '/' {
                let mut ahead = self.chars.clone();
                ahead.next();
                if ahead.peek() == Some(&'*') {
                    self.bump();
                    self.bump();
                    let mut prev = ' ';
                    loop {
                        match self.bump() {
                            None => {
                                return err(
                                    self.line,
                                    format!(
                                        "the file ends inside a comment that starts at line {line}"
                                    ),
                                );
                            }
                            Some('/') if prev == '*' => break,
                            Some(c) => prev = c,
                        }
                    }
                    continue;
                }
            }
            let tok = match c {
                '\'' => {
                    self.bump();
                    Tok::Str(self.quoted('\'', "a string literal")?)
                }
                '"' => {
                    self.bump();
                    Tok::Quoted(self.quoted('"', "a quoted identifier")?)
                }
                '`' => {
                    self.bump();
                    Tok::Quoted(self.quoted('`', "a quoted identifier")?)
                }
                '[' => {
                    self.bump();
                    Tok::Quoted(self.quoted(']', "a bracketed identifier")?)
                }
                'x' | 'X'
                    if {
                        let mut ahead = self.chars.clone();
                        ahead.next();
                        ahead.peek() == Some(&'\'')
                    } =>
                {
                    self.bump();
                    self.bump();
                    let hex = self.quoted('\'', "a blob literal")?;
                    match hex::decode(hex.as_bytes()) {
                        Ok(b) => Tok::Blob(b),
                        Err(_) => {
                            return err(
                                line,
                                "a blob literal X'..' holds something other than pairs of hex digits",
                            );
                        }
                    }
                }
                c if c.is_ascii_digit() || c == '.' => {
                    let mut n = String::new();
                    while let Some(&d) = self.chars.peek() {
                        let exp_sign = (d == '-' || d == '+') && n.ends_with(['e', 'E']);
                        if d.is_ascii_alphanumeric() || d == '.' || exp_sign {
                            n.push(d);
                            self.bump();
                        } else {
                            break;
                        }
                    }
                    Tok::Num(n)
                }
                c if c.is_alphabetic() || c == '_' => {
                    let mut w = String::new();
                    while let Some(&d) = self.chars.peek() {
                        if d.is_alphanumeric() || d == '_' || d == '$' {
                            w.push(d);
                            self.bump();
                        } else {
                            break;
                        }
                    }
                    Tok::Word(w)
                }
                c => {
                    self.bump();
                    Tok::Punct(c)
                }
            };
            return Ok(Some(Token { tok, line }));
        }
    }
}

/// The words a statement of a D1 export starts with.
const STARTS: [&str; 9] = [
    "PRAGMA", "BEGIN", "COMMIT", "END", "ANALYZE", "CREATE", "INSERT", "REPLACE", "DELETE",
];

/// Reads the statements of a dump, one at a time (a statement's tokens and the
/// line it starts on). `CREATE TRIGGER … BEGIN … END;` is one statement.
fn statements(text: &str) -> PResult<Vec<(usize, Vec<Token>)>> {
    let mut lx = Lexer::new(text);
    let mut out = Vec::new();
    let mut cur: Vec<Token> = Vec::new();
    while let Some(t) = lx.next_token()? {
        if t.is_punct(';') {
            let trigger = cur.len() > 2
                && cur[0].is_word("CREATE")
                && cur.iter().take(4).any(|t| t.is_word("TRIGGER"));
            if trigger && !cur.last().is_some_and(|t| t.is_word("END")) {
                cur.push(t);
                continue;
            }
            if !cur.is_empty() {
                out.push((cur[0].line, std::mem::take(&mut cur)));
            }
            continue;
        }
        if cur.is_empty() && !STARTS.iter().any(|w| t.is_word(w)) {
            let what = match &t.tok {
                Tok::Word(w) => format!("`{}`", w.to_uppercase()),
                _ => t.describe(),
            };
            return err(
                t.line,
                format!(
                    "{what} does not start a statement a `wrangler d1 export` dump contains (expected CREATE TABLE and INSERT INTO): this is not a D1 dump"
                ),
            );
        }
        cur.push(t);
    }
    if let Some(first) = cur.first() {
        let what = first_words(&cur);
        return err(
            cur.last().map_or(lx.line, |t| t.line),
            format!(
                "the file ends in the middle of the `{what}` statement that starts at line {} (no closing `;`: is the dump truncated?)",
                first.line
            ),
        );
    }
    Ok(out)
}

fn first_words(toks: &[Token]) -> String {
    toks.iter()
        .take(2)
        .map(|t| match &t.tok {
            Tok::Word(w) => w.to_uppercase(),
            _ => t.describe(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A cursor over one statement's tokens.
struct Cur<'a> {
    toks: &'a [Token],
    pos: usize,
    /// The line of the statement's end, for "ends early" messages.
    end_line: usize,
}

impl<'a> Cur<'a> {
    fn peek(&self) -> Option<&'a Token> {
        self.toks.get(self.pos)
    }
    fn next(&mut self) -> PResult<&'a Token> {
        let t = self.toks.get(self.pos).ok_or_else(|| ParseError {
            line: self.end_line,
            message: "the statement ends too early".into(),
        })?;
        self.pos += 1;
        Ok(t)
    }
    fn eat_word(&mut self, w: &str) -> bool {
        if self.peek().is_some_and(|t| t.is_word(w)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn eat_punct(&mut self, c: char) -> bool {
        if self.peek().is_some_and(|t| t.is_punct(c)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn expect_punct(&mut self, c: char) -> PResult<()> {
        let t = self.next()?;
        if t.is_punct(c) {
            Ok(())
        } else {
            err(t.line, format!("expected `{c}`, found {}", t.describe()))
        }
    }
    fn name(&mut self) -> PResult<String> {
        let t = self.next()?;
        let mut name = match &t.tok {
            Tok::Word(w) | Tok::Quoted(w) | Tok::Str(w) => w.clone(),
            _ => return err(t.line, format!("expected a name, found {}", t.describe())),
        };
        // schema.table: keep the table.
        if self.eat_punct('.') {
            name = self.name()?;
        }
        Ok(name)
    }
}

/// Parses a whole dump.
pub fn parse(text: &str) -> PResult<Dump> {
    let mut dump = Dump::default();
    // At the end of a file that ends with a newline the lexer is one line past
    // the last; name the last line instead.
    let lines = text.lines().count().max(1);
    let stmts = statements(text).map_err(|e| ParseError {
        line: e.line.min(lines),
        message: e.message,
    })?;
    for (line, toks) in stmts {
        dump.statements += 1;
        let end_line = toks.last().map_or(line, |t| t.line);
        let mut c = Cur {
            toks: &toks,
            pos: 0,
            end_line,
        };
        let first = c.next()?;
        let Tok::Word(w) = &first.tok else {
            return err(
                line,
                format!(
                    "a statement cannot start with {}: this is not a `wrangler d1 export` dump",
                    first.describe()
                ),
            );
        };
        match w.to_ascii_uppercase().as_str() {
            "PRAGMA" => {
                if c.peek().is_some_and(|t| t.is_word("defer_foreign_keys")) {
                    dump.d1_marks = true;
                }
            }
            "BEGIN" | "COMMIT" | "END" | "ANALYZE" => {}
            "CREATE" => create(&mut c, &mut dump)?,
            "INSERT" | "REPLACE" => insert(&mut c, &mut dump)?,
            "DELETE" => {
                c.eat_word("FROM");
                let t = c.name()?;
                if !t.eq_ignore_ascii_case("sqlite_sequence") {
                    return err(
                        line,
                        format!("a D1 export deletes only from sqlite_sequence, not from {t:?}"),
                    );
                }
            }
            other => {
                return err(
                    line,
                    format!(
                        "`{other}` is not a statement a `wrangler d1 export` dump contains (expected CREATE TABLE and INSERT INTO)"
                    ),
                );
            }
        }
    }
    Ok(dump)
}

fn create(c: &mut Cur<'_>, dump: &mut Dump) -> PResult<()> {
    // CREATE [TEMP] [UNIQUE|VIRTUAL] TABLE|INDEX|VIEW|TRIGGER …
    c.eat_word("TEMP");
    c.eat_word("TEMPORARY");
    c.eat_word("UNIQUE");
    let virtual_table = c.eat_word("VIRTUAL");
    if !c.eat_word("TABLE") {
        // Indexes, views and triggers carry no rows.
        return Ok(());
    }
    if c.eat_word("IF") {
        c.eat_word("NOT");
        c.eat_word("EXISTS");
    }
    let name = c.name()?;
    if name.eq_ignore_ascii_case("d1_migrations") {
        dump.d1_marks = true;
    }
    let mut columns = Vec::new();
    if !virtual_table && c.eat_punct('(') {
        // Top-level items split at commas; an item is a column unless it starts
        // with a table-constraint keyword.
        let mut depth = 0usize;
        let mut at_item_start = true;
        loop {
            let t = c.next()?;
            if depth == 0 && t.is_punct(')') {
                break;
            }
            if t.is_punct('(') {
                depth += 1;
            } else if t.is_punct(')') {
                depth -= 1;
            } else if depth == 0 && t.is_punct(',') {
                at_item_start = true;
                continue;
            }
            if at_item_start {
                at_item_start = false;
                let constraint = ["CONSTRAINT", "PRIMARY", "UNIQUE", "CHECK", "FOREIGN"]
                    .iter()
                    .any(|k| t.is_word(k));
                if !constraint {
                    match &t.tok {
                        Tok::Word(w) | Tok::Quoted(w) | Tok::Str(w) => columns.push(w.clone()),
                        _ => {
                            return err(
                                t.line,
                                format!("expected a column name, found {}", t.describe()),
                            );
                        }
                    }
                }
            }
        }
    }
    let table = dump.tables.entry(name).or_default();
    table.columns = columns;
    Ok(())
}

fn insert(c: &mut Cur<'_>, dump: &mut Dump) -> PResult<()> {
    let line = c.toks[0].line;
    // INSERT [OR REPLACE|IGNORE|…] INTO name [(cols)] VALUES (…)[, (…)]
    if c.eat_word("OR") {
        c.next()?;
    }
    if !c.eat_word("INTO") {
        let t = c.next()?;
        return err(t.line, format!("expected INTO, found {}", t.describe()));
    }
    let name = c.name()?;
    let mut cols: Option<Vec<String>> = None;
    if c.eat_punct('(') {
        let mut list = Vec::new();
        loop {
            list.push(c.name()?);
            if c.eat_punct(')') {
                break;
            }
            c.expect_punct(',')?;
        }
        cols = Some(list);
    }
    if !c.eat_word("VALUES") {
        let t = c.next()?;
        return err(
            t.line,
            format!(
                "expected VALUES, found {} (only INSERT … VALUES is read)",
                t.describe()
            ),
        );
    }
    let table = dump.tables.entry(name.clone()).or_default();
    let columns = match cols {
        Some(list) => list,
        // SQLite's own table: the dump never creates it.
        None if table.columns.is_empty() && name.eq_ignore_ascii_case("sqlite_sequence") => {
            vec!["name".into(), "seq".into()]
        }
        None => table.columns.clone(),
    };
    loop {
        let row_line = c.peek().map_or(line, |t| t.line);
        c.expect_punct('(')?;
        let mut values = Vec::new();
        loop {
            values.push(expr(c)?);
            if c.eat_punct(')') {
                break;
            }
            c.expect_punct(',')?;
        }
        if columns.is_empty() {
            return err(
                row_line,
                format!(
                    "INSERT INTO {name} names no columns and no CREATE TABLE {name} came before it, so its values cannot be matched to columns"
                ),
            );
        }
        if values.len() != columns.len() {
            return err(
                row_line,
                format!(
                    "INSERT INTO {name} has {} values for {} columns",
                    values.len(),
                    columns.len()
                ),
            );
        }
        table.rows.push(DumpRow {
            line: row_line,
            values: columns.iter().cloned().zip(values).collect(),
        });
        if !c.eat_punct(',') {
            break;
        }
    }
    if let Some(t) = c.peek() {
        return err(
            t.line,
            format!("unexpected {} after the VALUES list", t.describe()),
        );
    }
    Ok(())
}

/// A value expression: a literal, a signed number, or one of the functions
/// SQLite's dump writes for text with control characters.
fn expr(c: &mut Cur<'_>) -> PResult<SqlValue> {
    let t = c.next()?;
    match &t.tok {
        Tok::Str(s) => Ok(SqlValue::Text(s.clone())),
        Tok::Blob(b) => Ok(SqlValue::Blob(b.clone())),
        Tok::Num(n) => number(t.line, n, false),
        Tok::Punct('-') | Tok::Punct('+') => {
            let n = c.next()?;
            match &n.tok {
                Tok::Num(text) => number(n.line, text, t.is_punct('-')),
                _ => err(
                    n.line,
                    format!("expected a number after the sign, found {}", n.describe()),
                ),
            }
        }
        Tok::Word(w) if w.eq_ignore_ascii_case("NULL") => Ok(SqlValue::Null),
        Tok::Word(w) if w.eq_ignore_ascii_case("TRUE") => Ok(SqlValue::Int(1)),
        Tok::Word(w) if w.eq_ignore_ascii_case("FALSE") => Ok(SqlValue::Int(0)),
        Tok::Word(w) if c.peek().is_some_and(|n| n.is_punct('(')) => {
            let f = w.to_ascii_lowercase();
            c.expect_punct('(')?;
            let mut args = Vec::new();
            if !c.eat_punct(')') {
                loop {
                    args.push(expr(c)?);
                    if c.eat_punct(')') {
                        break;
                    }
                    c.expect_punct(',')?;
                }
            }
            call(t.line, &f, args)
        }
        _ => err(t.line, format!("expected a value, found {}", t.describe())),
    }
}

fn number(line: usize, text: &str, negative: bool) -> PResult<SqlValue> {
    let signed = if negative {
        format!("-{text}")
    } else {
        text.to_string()
    };
    let is_int = text.bytes().all(|b| b.is_ascii_digit());
    if is_int && let Ok(i) = signed.parse::<i64>() {
        return Ok(SqlValue::Int(i));
    }
    match signed.parse::<f64>() {
        Ok(f) if f.is_finite() => Ok(SqlValue::Real(f)),
        _ => err(line, format!("{signed:?} is not a number")),
    }
}

fn text_arg(line: usize, f: &str, v: &SqlValue) -> PResult<String> {
    match v {
        SqlValue::Text(s) => Ok(s.clone()),
        SqlValue::Int(i) => Ok(i.to_string()),
        SqlValue::Real(r) => Ok(r.to_string()),
        SqlValue::Null => Ok(String::new()),
        SqlValue::Blob(_) => err(line, format!("{f}() of a blob is not supported")),
    }
}

fn call(line: usize, f: &str, args: Vec<SqlValue>) -> PResult<SqlValue> {
    match (f, args.as_slice()) {
        ("replace", [s, from, to]) => {
            if *s == SqlValue::Null {
                return Ok(SqlValue::Null);
            }
            let (s, from, to) = (
                text_arg(line, f, s)?,
                text_arg(line, f, from)?,
                text_arg(line, f, to)?,
            );
            Ok(SqlValue::Text(if from.is_empty() {
                s
            } else {
                s.replace(&from, &to)
            }))
        }
        ("char", codes) => {
            let mut s = String::new();
            for c in codes {
                let SqlValue::Int(i) = c else {
                    return err(line, "char() takes integer code points");
                };
                let ch = u32::try_from(*i)
                    .ok()
                    .and_then(char::from_u32)
                    .ok_or_else(|| ParseError {
                        line,
                        message: format!("char({i}) is not a Unicode code point"),
                    })?;
                s.push(ch);
            }
            Ok(SqlValue::Text(s))
        }
        ("unistr", [SqlValue::Text(s)]) => unistr(line, s).map(SqlValue::Text),
        _ => err(
            line,
            format!(
                "{f}() with {} arguments is not something a D1 export writes",
                args.len()
            ),
        ),
    }
}

/// SQLite's `unistr()`: `\XXXX`, `\uXXXX`, `\+XXXXXX`, `\UXXXXXXXX` and `\\`.
fn unistr(line: usize, s: &str) -> PResult<String> {
    let mut out = String::new();
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let width = match it.peek() {
            Some('\\') => {
                it.next();
                out.push('\\');
                continue;
            }
            Some('u') => {
                it.next();
                4
            }
            Some('+') => {
                it.next();
                6
            }
            Some('U') => {
                it.next();
                8
            }
            _ => 4,
        };
        let hex: String = it.by_ref().take(width).collect();
        let ch = u32::from_str_radix(&hex, 16)
            .ok()
            .and_then(char::from_u32)
            .ok_or_else(|| ParseError {
                line,
                message: format!("unistr() escape \\{hex} is not a code point"),
            })?;
        out.push(ch);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(text: &str, table: &str) -> Vec<Vec<(String, SqlValue)>> {
        parse(text).unwrap().tables[table]
            .rows
            .iter()
            .map(|r| r.values.clone())
            .collect()
    }

    fn t(s: &str) -> SqlValue {
        SqlValue::Text(s.into())
    }

    #[test]
    fn values_of_every_kind() {
        let d = "CREATE TABLE t (a TEXT, b INTEGER, c REAL, d BLOB, e TEXT);
INSERT INTO t VALUES('it''s; \"x\"',-42,0.30000000000000004,X'00ff',NULL);";
        let r = rows(d, "t");
        assert_eq!(
            r[0].iter().map(|(_, v)| v.clone()).collect::<Vec<_>>(),
            vec![
                t("it's; \"x\""),
                SqlValue::Int(-42),
                SqlValue::Real(0.30000000000000004),
                SqlValue::Blob(vec![0, 255]),
                SqlValue::Null
            ]
        );
        assert_eq!(r[0][0].0, "a");
    }

    #[test]
    fn column_order_from_create_table_skips_constraints() {
        let d = "CREATE TABLE IF NOT EXISTS `cb` (
  period_type TEXT NOT NULL CHECK (period_type IN ('daily', 'monthly')),
  \"period_key\" TEXT NOT NULL,
  total_cost_usd REAL DEFAULT 0, -- a comment, with a comma
  UNIQUE(period_type, period_key),
  CONSTRAINT x CHECK (total_cost_usd >= 0)
);
INSERT INTO \"cb\" VALUES('daily','2026-11-03',1.5);";
        let dump = parse(d).unwrap();
        assert_eq!(
            dump.tables["cb"].columns,
            vec!["period_type", "period_key", "total_cost_usd"]
        );
        assert_eq!(dump.tables["cb"].rows[0].values[2].1, SqlValue::Real(1.5));
    }

    #[test]
    fn multi_row_values_and_explicit_columns() {
        let d = "INSERT INTO t (b, a) VALUES (1, 'x'),\n(2, 'y');";
        let dump = parse(d).unwrap();
        let r = &dump.tables["t"].rows;
        assert_eq!(r.len(), 2);
        assert_eq!(r[1].line, 2);
        assert_eq!(
            r[1].values,
            vec![("b".into(), SqlValue::Int(2)), ("a".into(), t("y"))]
        );
    }

    #[test]
    fn newlines_raw_and_through_replace_char_and_unistr() {
        let d = "CREATE TABLE t (a);
INSERT INTO t VALUES('one
two');
INSERT INTO t VALUES(replace('a\\nb','\\n',char(10)));
INSERT INTO t VALUES(replace(replace('c\\rd\\n','\\r',char(13)),'\\n',char(10)));
INSERT INTO t VALUES(unistr('tab\\0009end \\u00e9 \\+01F680'));";
        let r = rows(d, "t");
        assert_eq!(r[0][0].1, t("one\ntwo"));
        assert_eq!(r[1][0].1, t("a\nb"));
        assert_eq!(r[2][0].1, t("c\rd\n"));
        assert_eq!(r[3][0].1, t("tab\tend é 🚀"));
    }

    #[test]
    fn semicolons_and_comment_marks_inside_strings_do_not_split() {
        let d = "CREATE TABLE t (a);\nINSERT INTO t VALUES('a; -- b /* c */; ''d''');";
        assert_eq!(rows(d, "t")[0][0].1, t("a; -- b /* c */; 'd'"));
    }

    #[test]
    fn unicode_survives() {
        let d = "CREATE TABLE t (a);\nINSERT INTO t VALUES('日本語 🚀 e\u{301}');";
        assert_eq!(rows(d, "t")[0][0].1, t("日本語 🚀 e\u{301}"));
    }

    #[test]
    fn d1_marks_and_bookkeeping() {
        let d = "PRAGMA defer_foreign_keys=TRUE;
CREATE TABLE d1_migrations(id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE, applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL);
INSERT INTO d1_migrations VALUES(1,'0001_init.sql','2026-01-01 00:00:00');
CREATE INDEX idx ON d1_migrations(name);
CREATE TRIGGER tr AFTER INSERT ON d1_migrations BEGIN SELECT 1; SELECT 2; END;
DELETE FROM sqlite_sequence;
INSERT INTO sqlite_sequence VALUES('d1_migrations',1);";
        let dump = parse(d).unwrap();
        assert!(dump.d1_marks);
        assert_eq!(dump.tables["d1_migrations"].rows.len(), 1);
        assert_eq!(dump.statements, 7);
    }

    #[test]
    fn errors_name_the_line() {
        let cases = [
            (
                "CREATE TABLE t (a);\nINSERT INTO t VALUES('never\nclosed);\n",
                3,
                "ends inside a string literal that starts at line 2",
            ),
            (
                "CREATE TABLE t (a);\nINSERT INTO t VALUES(1)\n",
                2,
                "ends in the middle of the `INSERT INTO` statement that starts at line 2",
            ),
            (
                "-- dump\nSET statement_timeout = 0;\n",
                2,
                "`SET` does not start a statement",
            ),
            ("INSERT INTO t VALUES(1);", 1, "names no columns"),
            (
                "CREATE TABLE t (a, b);\n\nINSERT INTO t VALUES(1);",
                3,
                "has 1 values for 2 columns",
            ),
            (
                "CREATE TABLE t (a);\nINSERT INTO t VALUES(X'0g');",
                2,
                "hex digits",
            ),
            (
                "CREATE TABLE t (a);\nINSERT INTO t VALUES(1) junk;",
                2,
                "after the VALUES",
            ),
            ("DELETE FROM tasks;", 1, "only from sqlite_sequence"),
            ("a,b,c\n1,2,3\n", 1, "this is not a D1 dump"),
            ("{\"d1\": {}}", 1, "this is not a D1 dump"),
        ];
        for (text, line, needle) in cases {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.message.contains(needle), "{text:?}: {e}");
        }
    }
}
