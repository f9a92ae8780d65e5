//! The rows of an `sqlite3 .dump` of config.db (the `expected/` files of a
//! scenario), parsed without SQLite.

use pmxcfs::core::memdb::Row;

fn parse_values(s: &str) -> Result<Vec<Option<Vec<u8>>>, String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b' ' | b',' => i += 1,
            b'\'' => {
                let mut v = Vec::new();
                i += 1;
                loop {
                    match b.get(i) {
                        None => return Err("unterminated string".into()),
                        Some(b'\'') if b.get(i + 1) == Some(&b'\'') => {
                            v.push(b'\'');
                            i += 2;
                        }
                        Some(b'\'') => {
                            i += 1;
                            break;
                        }
                        Some(&c) => {
                            v.push(c);
                            i += 1;
                        }
                    }
                }
                out.push(Some(v));
            }
            b'X' | b'x' if b.get(i + 1) == Some(&b'\'') => {
                let end = s[i + 2..].find('\'').ok_or("unterminated blob")? + i + 2;
                let hex = &s[i + 2..end];
                let bytes = (0..hex.len())
                    .step_by(2)
                    .map(|k| u8::from_str_radix(&hex[k..k + 2], 16).map_err(|e| e.to_string()))
                    .collect::<Result<Vec<u8>, String>>()?;
                out.push(Some(bytes));
                i = end + 1;
            }
            _ => {
                let end = s[i..].find(',').map_or(s.len(), |e| e + i);
                let tok = s[i..end].trim();
                if tok == "NULL" {
                    out.push(None);
                } else {
                    out.push(Some(tok.as_bytes().to_vec()));
                }
                i = end;
            }
        }
    }
    Ok(out)
}

fn int(v: &Option<Vec<u8>>) -> Result<u64, String> {
    let s = v.as_ref().ok_or("NULL integer")?;
    std::str::from_utf8(s)
        .map_err(|e| e.to_string())?
        .parse()
        .map_err(|e| format!("{e}"))
}

/// The `tree` rows of a dump.
pub fn parse_dump(text: &str) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("INSERT INTO tree VALUES(") else {
            continue;
        };
        let inner = rest
            .strip_suffix(");")
            .ok_or_else(|| format!("bad line: {line}"))?;
        let v = parse_values(inner)?;
        if v.len() != 8 {
            return Err(format!("expected 8 values: {line}"));
        }
        rows.push(Row {
            inode: int(&v[0])?,
            parent: int(&v[1])?,
            version: int(&v[2])?,
            writer: int(&v[3])? as u32,
            mtime: int(&v[4])? as u32,
            entry_type: int(&v[5])? as u8,
            name: v[6].clone().unwrap_or_default(),
            data: v[7].clone(),
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_values() {
        let rows = parse_dump("INSERT INTO tree VALUES(0,0,46,3,1795235797,8,'__version__',NULL);\nINSERT INTO tree VALUES(5,4,5,2,17,8,'it''s',X'0aff');\n").unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].version, 46);
        assert_eq!(rows[0].data, None);
        assert_eq!(rows[1].name, b"it's");
        assert_eq!(rows[1].data, Some(vec![0x0a, 0xff]));
    }
}
