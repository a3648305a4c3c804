// SPDX-License-Identifier: GPL-2.0
//! Just enough JSON to read a NATS `INFO` (RFC 8259 values; numbers kept as `f64`).

/// A JSON value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    Array(Vec<Value>),
    Object(Vec<(String, Value)>),
}

impl Value {
    /// The member `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Self::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    /// The number as a `u64`, if this is a non-negative whole number.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Self::Number(n) if n >= 0.0 && n.fract() == 0.0 && n < 1.8e19 => Some(n as u64),
            _ => None,
        }
    }

    /// The boolean, if this is one.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Self::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The elements, if this is an array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Self::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// Deepest nesting accepted.
const MAX_DEPTH: usize = 32;

struct Parser<'a> {
    s: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.s.get(self.at).is_some_and(|b| b" \t\r\n".contains(b)) {
            self.at += 1;
        }
    }

    fn eat(&mut self, b: u8) -> Option<()> {
        self.ws();
        (self.s.get(self.at) == Some(&b)).then(|| self.at += 1)
    }

    fn word(&mut self, w: &[u8], v: Value) -> Option<Value> {
        self.s[self.at..].starts_with(w).then(|| {
            self.at += w.len();
            v
        })
    }

    fn value(&mut self, depth: usize) -> Option<Value> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.ws();
        match *self.s.get(self.at)? {
            b'n' => self.word(b"null", Value::Null),
            b't' => self.word(b"true", Value::Bool(true)),
            b'f' => self.word(b"false", Value::Bool(false)),
            b'"' => self.string().map(Value::String),
            b'[' => {
                self.at += 1;
                let mut items = Vec::new();
                if self.eat(b']').is_some() {
                    return Some(Value::Array(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    if self.eat(b']').is_some() {
                        return Some(Value::Array(items));
                    }
                    self.eat(b',')?;
                }
            }
            b'{' => {
                self.at += 1;
                let mut members = Vec::new();
                if self.eat(b'}').is_some() {
                    return Some(Value::Object(members));
                }
                loop {
                    self.ws();
                    let key = self.string()?;
                    self.eat(b':')?;
                    members.push((key, self.value(depth + 1)?));
                    if self.eat(b'}').is_some() {
                        return Some(Value::Object(members));
                    }
                    self.eat(b',')?;
                }
            }
            _ => self.number(),
        }
    }

    fn number(&mut self) -> Option<Value> {
        let start = self.at;
        while self
            .s
            .get(self.at)
            .is_some_and(|b| b.is_ascii_digit() || b"+-.eE".contains(b))
        {
            self.at += 1;
        }
        let text = std::str::from_utf8(&self.s[start..self.at]).ok()?;
        text.parse().ok().map(Value::Number)
    }

    fn hex4(&mut self) -> Option<u32> {
        let h = std::str::from_utf8(self.s.get(self.at..self.at + 4)?).ok()?;
        self.at += 4;
        u32::from_str_radix(h, 16).ok()
    }

    fn string(&mut self) -> Option<String> {
        if self.s.get(self.at) != Some(&b'"') {
            return None;
        }
        self.at += 1;
        let mut out = Vec::new();
        loop {
            let b = *self.s.get(self.at)?;
            self.at += 1;
            match b {
                b'"' => return String::from_utf8(out).ok(),
                b'\\' => {
                    let e = *self.s.get(self.at)?;
                    self.at += 1;
                    let c = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let mut u = self.hex4()?;
                            if (0xd800..0xdc00).contains(&u) {
                                // A surrogate pair.
                                if self.s.get(self.at..self.at + 2) != Some(b"\\u") {
                                    return None;
                                }
                                self.at += 2;
                                let low = self.hex4()?;
                                if !(0xdc00..0xe000).contains(&low) {
                                    return None;
                                }
                                u = 0x10000 + ((u - 0xd800) << 10) + (low - 0xdc00);
                            }
                            char::from_u32(u)?
                        }
                        _ => return None,
                    };
                    let mut tmp = [0; 4];
                    out.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
                }
                b if b < 0x20 => return None,
                b => out.push(b),
            }
        }
    }
}

/// Parses one JSON value (surrounding white space allowed); `None` if it is not one.
pub fn parse(text: &str) -> Option<Value> {
    let mut p = Parser {
        s: text.as_bytes(),
        at: 0,
    };
    let v = p.value(0)?;
    p.ws();
    (p.at == p.s.len()).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nats_info() {
        let info = r#"{"server_id":"NDX","server_name":"n\u00e9 \"1\"","version":"2.9.10",
            "proto":1,"go":"go1.19","host":"127.0.0.1","port":4222,"headers":true,
            "max_payload":1048576,"client_id":5,"client_ip":"127.0.0.1",
            "connect_urls":["127.0.0.1:4222","[::1]:4223"],"ldm":false,"x":{"y":[1,-2.5e3,null]}}"#;
        let v = parse(info).unwrap();
        assert_eq!(
            v.get("max_payload").and_then(Value::as_u64),
            Some(1_048_576)
        );
        assert_eq!(
            v.get("server_name").and_then(Value::as_str),
            Some("né \"1\"")
        );
        assert_eq!(v.get("headers").and_then(Value::as_bool), Some(true));
        assert_eq!(v.get("tls_required"), None);
        let urls: Vec<&str> = v
            .get("connect_urls")
            .and_then(Value::as_array)
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(urls, ["127.0.0.1:4222", "[::1]:4223"]);
        assert_eq!(
            v.get("x").and_then(|x| x.get("y")),
            Some(&Value::Array(vec![
                Value::Number(1.0),
                Value::Number(-2500.0),
                Value::Null
            ]))
        );
        assert_eq!(parse(r#""\ud83d\ude00""#), Some(Value::String("😀".into())));
    }

    #[test]
    fn refuses_what_is_not_json() {
        for bad in [
            "",
            "{",
            "{\"a\":}",
            "{\"a\" 1}",
            "[1,]",
            "[1 2]",
            "\"unterminated",
            "\"bad \\q escape\"",
            "{} x",
            "nul",
            "\"\\ud800\"",
            &"[".repeat(100),
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        assert_eq!(parse(" {} "), Some(Value::Object(vec![])));
        assert_eq!(Value::Number(-1.0).as_u64(), None);
        assert_eq!(Value::Number(1.5).as_u64(), None);
    }
}
