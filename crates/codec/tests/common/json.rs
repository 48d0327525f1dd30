//! A small JSON reader for the vector sets' `cases.json` (the codec has no JSON dependency).
//! Objects keep their key order, so cases run in the order the file lists them.

#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

/// Why a document did not parse: what was expected and at which byte.
#[derive(Clone, Debug, PartialEq)]
pub struct JsonError {
    pub expected: &'static str,
    pub at: usize,
}

impl std::fmt::Display for JsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "expected {} at byte {}", self.expected, self.at)
    }
}

/// Nesting deeper than this is refused (no unbounded recursion on odd input).
const MAX_DEPTH: usize = 64;

impl Json {
    pub fn parse(text: &str) -> Result<Json, JsonError> {
        let mut p = Parser {
            b: text.as_bytes(),
            i: 0,
        };
        let v = p.value(0)?;
        p.ws();
        if p.i != p.b.len() {
            return Err(p.err("end of document"));
        }
        Ok(v)
    }

    pub fn get(&self, key: &str) -> Option<&Json> {
        self.as_obj()?
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }
    pub fn as_obj(&self) -> Option<&[(String, Json)]> {
        match self {
            Json::Obj(o) => Some(o),
            _ => None,
        }
    }
    pub fn as_arr(&self) -> Option<&[Json]> {
        match self {
            Json::Arr(a) => Some(a),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Json::Num(n) => Some(*n),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Json::Bool(b) => Some(*b),
            _ => None,
        }
    }
    /// A non-negative integer that fits usize exactly.
    pub fn as_usize(&self) -> Option<usize> {
        let n = self.as_f64()?;
        (n >= 0.0 && n.fract() == 0.0 && n < 2f64.powi(53)).then_some(n as usize)
    }
    /// An array of non-negative integers.
    pub fn usizes(&self) -> Option<Vec<usize>> {
        self.as_arr()?.iter().map(Json::as_usize).collect()
    }
    /// An array of numbers.
    pub fn f64s(&self) -> Option<Vec<f64>> {
        self.as_arr()?.iter().map(Json::as_f64).collect()
    }
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn err(&self, expected: &'static str) -> JsonError {
        JsonError {
            expected,
            at: self.i,
        }
    }
    fn ws(&mut self) {
        while self.b.get(self.i).is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }
    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        let hit = self.b.get(self.i) == Some(&c);
        self.i += hit as usize;
        hit
    }
    fn lit(&mut self, word: &'static str, v: Json) -> Result<Json, JsonError> {
        if self.b[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(v)
        } else {
            Err(self.err(word))
        }
    }
    fn value(&mut self, depth: usize) -> Result<Json, JsonError> {
        if depth > MAX_DEPTH {
            return Err(self.err("less nesting"));
        }
        self.ws();
        match self.b.get(self.i) {
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => self.string().map(Json::Str),
            Some(b't') => self.lit("true", Json::Bool(true)),
            Some(b'f') => self.lit("false", Json::Bool(false)),
            Some(b'n') => self.lit("null", Json::Null),
            Some(_) => self.number(),
            None => Err(self.err("a value")),
        }
    }
    fn object(&mut self, depth: usize) -> Result<Json, JsonError> {
        self.i += 1;
        let mut out = Vec::new();
        if self.eat(b'}') {
            return Ok(Json::Obj(out));
        }
        loop {
            self.ws();
            let k = self.string()?;
            if !self.eat(b':') {
                return Err(self.err("':'"));
            }
            out.push((k, self.value(depth + 1)?));
            if self.eat(b'}') {
                return Ok(Json::Obj(out));
            }
            if !self.eat(b',') {
                return Err(self.err("',' or '}'"));
            }
        }
    }
    fn array(&mut self, depth: usize) -> Result<Json, JsonError> {
        self.i += 1;
        let mut out = Vec::new();
        if self.eat(b']') {
            return Ok(Json::Arr(out));
        }
        loop {
            out.push(self.value(depth + 1)?);
            if self.eat(b']') {
                return Ok(Json::Arr(out));
            }
            if !self.eat(b',') {
                return Err(self.err("',' or ']'"));
            }
        }
    }
    fn string(&mut self) -> Result<String, JsonError> {
        if self.b.get(self.i) != Some(&b'"') {
            return Err(self.err("a string"));
        }
        self.i += 1;
        let mut out = String::new();
        loop {
            let start = self.i;
            while self.b.get(self.i).is_some_and(|&c| c != b'"' && c != b'\\') {
                self.i += 1;
            }
            let run = std::str::from_utf8(&self.b[start..self.i]).map_err(|_| self.err("UTF-8"))?;
            out.push_str(run);
            match self.b.get(self.i) {
                Some(b'"') => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(b'\\') => out.push(self.escape()?),
                _ => return Err(self.err("a closing '\"'")),
            }
        }
    }
    fn escape(&mut self) -> Result<char, JsonError> {
        let c = *self.b.get(self.i + 1).ok_or(self.err("an escape"))?;
        self.i += 2;
        Ok(match c {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let hex = self
                    .b
                    .get(self.i..self.i + 4)
                    .ok_or(self.err("4 hex digits"))?;
                let hex = std::str::from_utf8(hex).map_err(|_| self.err("4 hex digits"))?;
                let code = u32::from_str_radix(hex, 16).map_err(|_| self.err("4 hex digits"))?;
                self.i += 4;
                char::from_u32(code).unwrap_or('\u{fffd}')
            }
            _ => return Err(self.err("a known escape")),
        })
    }
    fn number(&mut self) -> Result<Json, JsonError> {
        let start = self.i;
        while self
            .b
            .get(self.i)
            .is_some_and(|c| matches!(c, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'))
        {
            self.i += 1;
        }
        std::str::from_utf8(&self.b[start..self.i])
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|n| n.is_finite())
            .map(Json::Num)
            .ok_or(JsonError {
                expected: "a number",
                at: start,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::Json;

    #[test]
    fn parses_what_cases_json_uses() {
        let j = Json::parse(
            r#" {"a": [1, 2.5, -3e2], "b": {"c": "x\"y\u0041"}, "d": true, "e": null} "#,
        )
        .unwrap();
        assert_eq!(j.get("a").unwrap().f64s(), Some(vec![1.0, 2.5, -300.0]));
        assert_eq!(
            j.get("b").unwrap().get("c").unwrap().as_str(),
            Some("x\"yA")
        );
        assert_eq!(j.get("d").unwrap().as_bool(), Some(true));
        assert_eq!(j.get("e"), Some(&Json::Null));
        assert_eq!(j.get("a").unwrap().usizes(), None); // 2.5 is not an index
        for bad in ["{", "[1,]", "{\"a\" 1}", "tru", "1 2", "\"abc", "[1e999]"] {
            assert!(Json::parse(bad).is_err(), "{bad}");
        }
        let deep = "[".repeat(100) + &"]".repeat(100);
        assert!(Json::parse(&deep).is_err());
    }
}
