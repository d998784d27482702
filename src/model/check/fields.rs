//! Shape checks of single values: each returns the parsed value or a message for the finding.

use std::net::Ipv4Addr;

use crate::model::source;

/// A MAC address, normalised to lowercase `xx:xx:xx:xx:xx:xx`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mac(pub [u8; 6]);

impl std::fmt::Display for Mac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// Parses `xx:xx:xx:xx:xx:xx` or `xx-xx-xx-xx-xx-xx` (one separator kind).
pub fn mac(s: &str) -> Result<Mac, String> {
    let sep = if s.contains('-') { '-' } else { ':' };
    let parts: Vec<&str> = s.split(sep).collect();
    let bad = || format!("`{s}` is not a MAC address (six hexadecimal pairs)");
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut out = [0u8; 6];
    for (o, p) in out.iter_mut().zip(&parts) {
        if p.len() != 2 || !p.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(bad());
        }
        *o = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    Ok(Mac(out))
}

/// NetBIOS computer-name rules: 1–15 characters of `[A-Za-z0-9-]`, not all digits, no leading
/// hyphen.
pub fn netbios(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("hostname is empty".into());
    }
    if name.chars().count() > 15 {
        return Err(format!(
            "hostname `{name}` has {} characters, NetBIOS allows 15",
            name.chars().count()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
    {
        return Err(format!(
            "hostname `{name}` contains {}; NetBIOS allows letters, digits and `-` (ASCII only)",
            show_char(c)
        ));
    }
    if name.starts_with('-') {
        return Err(format!("hostname `{name}` starts with `-`"));
    }
    if name.bytes().all(|c| c.is_ascii_digit()) {
        return Err(format!("hostname `{name}` is all digits"));
    }
    Ok(())
}

/// A character for a message: `_` as `` `_` ``, and anything outside ASCII by its code point
/// and name (`` `С` (U+0421 CYRILLIC CAPITAL LETTER ES, which looks like `C`) ``).
pub fn show_char(c: char) -> String {
    if c.is_ascii_graphic() {
        format!("`{c}`")
    } else if c.is_ascii() {
        format!("`{}`", source::escape_text(&c.to_string()))
    } else if source::escape_text(&c.to_string()) != c.to_string() {
        format!("an invisible {}", source::describe_char(c))
    } else {
        let like = source::looks_like(c)
            .map(|l| format!(", which looks like `{l}`"))
            .unwrap_or_default();
        format!("`{c}` ({}{like})", source::describe_char(c))
    }
}

/// An identifier `[a-z0-9-]+`.
pub fn ident(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
}

/// Splits `name@version` at the last `@`.
pub fn reference(s: &str) -> Option<(&str, &str)> {
    let (n, v) = s.rsplit_once('@')?;
    (!n.is_empty() && !v.is_empty() && !v.contains(char::is_whitespace)).then_some((n, v))
}

/// A `secret:NAME` reference with `NAME` = `[A-Z][A-Z0-9_]*`.
pub fn secret(s: &str) -> Result<&str, String> {
    let Some(name) = s.strip_prefix("secret:") else {
        return Err(format!(
            "`{}` is not a secret reference; secrets are never written in the files",
            redact(s)
        ));
    };
    let mut b = name.bytes();
    let ok = matches!(b.next(), Some(c) if c.is_ascii_uppercase())
        && b.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_');
    if ok {
        Ok(name)
    } else {
        Err(format!(
            "`secret:{name}`: the NAME must be [A-Z][A-Z0-9_]* (capital letters, digits, `_`)"
        ))
    }
}

/// A value that may be a secret pasted by mistake is never shown, not even in part.
fn redact(_s: &str) -> String {
    "***".to_string()
}

/// A URL with a password in it, found in any text: (byte offset of the URL, the URL with the
/// password as `***`, the password). `https://user:pass@host/...`, `smb://DOMAIN;user:pass@host`.
pub fn url_credentials(text: &str) -> Vec<(usize, String, String)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = text[from..].find("://") {
        let sep = from + i;
        // The scheme: letters, digits, `+-.` before `://`.
        let start = text[..sep]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || "+-.".contains(c)))
            .map(|j| j + 1)
            .unwrap_or(0);
        let rest = &text[sep + 3..];
        let end = rest
            .find(|c: char| {
                c == '/' || c == '?' || c == '#' || c.is_whitespace() || "\"'<>".contains(c)
            })
            .unwrap_or(rest.len());
        let authority = &rest[..end];
        if start < sep
            && let Some(at) = authority.rfind('@')
            && let Some(colon) = authority[..at].find(':')
        {
            let password = &authority[colon + 1..at];
            if !password.is_empty() {
                let url_end = sep
                    + 3
                    + rest[end..]
                        .find(|c: char| c.is_whitespace() || "\"'<>".contains(c))
                        .map(|k| end + k)
                        .unwrap_or(rest.len());
                let url = &text[start..url_end];
                let shown = url.replacen(&format!(":{password}@"), ":***@", 1);
                out.push((start, shown, password.to_string()));
            }
        }
        from = sep + 3;
    }
    out
}

/// What a MAC address cannot be on a PC's network card: `Some(why)` for the broadcast, a
/// multicast (group bit set) or the all-zero address.
pub fn unusable_mac(m: Mac) -> Option<&'static str> {
    if m.0 == [0xff; 6] {
        Some("the broadcast address")
    } else if m.0 == [0; 6] {
        Some("all zeros (no card has it; often a placeholder)")
    } else if m.0[0] & 1 == 1 {
        Some("a multicast address (the first byte is odd)")
    } else {
        None
    }
}

/// A UAI school code: 7 digits and a letter.
pub fn uai(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 8 && b[..7].iter().all(u8::is_ascii_digit) && b[7].is_ascii_alphabetic()
}

/// An IPv4 subnet `a.b.c.d/len`.
pub fn cidr(s: &str) -> Result<(Ipv4Addr, u8), String> {
    let bad = || format!("`{s}` is not an IPv4 subnet like 198.18.4.0/24");
    let (a, l) = s.split_once('/').ok_or_else(bad)?;
    let addr: Ipv4Addr = a.parse().map_err(|_| bad())?;
    let len: u8 = l.parse().map_err(|_| bad())?;
    if len > 32 {
        return Err(bad());
    }
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    if u32::from(addr) & !mask != 0 {
        return Err(format!(
            "`{s}` has host bits set; the subnet is {}/{len}",
            Ipv4Addr::from(u32::from(addr) & mask)
        ));
    }
    Ok((addr, len))
}

/// A sha256 as 64 lowercase hex digits.
pub fn sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
}

/// An installer source URL with a supported scheme.
pub fn source_url(s: &str) -> bool {
    ["http://", "https://", "file:///", "smb://"]
        .iter()
        .any(|p| s.len() > p.len() && s.starts_with(p))
}

/// An LDAP distinguished name whose `DC=` parts spell `domain`. Returns why not.
pub fn ou_dn(dn: &str, domain: &str) -> Result<(), String> {
    let mut rdns = Vec::new();
    let mut cur = String::new();
    let mut chars = dn.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                cur.push(c);
                match chars.next() {
                    Some(n) => cur.push(n),
                    None => return Err("the DN ends with a lone `\\`".into()),
                }
            }
            ',' => rdns.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    rdns.push(cur);
    let mut dcs = Vec::new();
    let mut has_ou = false;
    for rdn in &rdns {
        let Some((attr, value)) = rdn.split_once('=') else {
            return Err(format!("`{}` is not ATTRIBUTE=value", rdn.trim()));
        };
        let attr = attr.trim();
        if value.trim().is_empty() {
            return Err(format!("`{attr}=` has an empty value"));
        }
        let mut unescaped = value.chars();
        while let Some(c) = unescaped.next() {
            match c {
                '\\' => {
                    unescaped.next();
                }
                '=' | ';' | '+' | '"' | '<' | '>' => {
                    return Err(format!(
                        "`{}` contains an unescaped `{c}` (RDNs are separated by `,`)",
                        rdn.trim()
                    ));
                }
                _ => {}
            }
        }
        match attr.to_ascii_uppercase().as_str() {
            "DC" => dcs.push(value.trim().to_ascii_lowercase()),
            "OU" => {
                if !dcs.is_empty() {
                    return Err("an `OU=` comes after a `DC=`; the DC parts close the DN".into());
                }
                has_ou = true;
            }
            "CN" => {}
            _ => {
                return Err(format!(
                    "unknown attribute `{attr}` (expected OU, CN or DC)"
                ));
            }
        }
    }
    if !has_ou {
        return Err("the DN names no `OU=`".into());
    }
    let spelled = dcs.join(".");
    if spelled != domain.to_ascii_lowercase() {
        return Err(format!(
            "the DC parts spell `{spelled}`, but the domain is `{domain}`"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs() {
        assert_eq!(
            mac("3C-EC-EF-12-34-01").unwrap().to_string(),
            "3c:ec:ef:12:34:01"
        );
        for bad in [
            "3c:ec:ef:12:34",
            "3c:ec:ef:12:34:0g",
            "3c:ec-ef:12:34:01",
            "3cec.ef12.3401",
        ] {
            assert!(mac(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn netbios_rules() {
        assert!(netbios("B204-PC01").is_ok());
        assert!(netbios("B204-PC01-EXTRA16").is_err());
        assert!(netbios("B204_PC01").is_err());
        assert!(netbios("-B204").is_err());
        assert!(netbios("12345").is_err());
    }

    #[test]
    fn dns() {
        let d = "lycee-eiffel.ac-bordeaux.fr";
        assert!(ou_dn("OU=B204,OU=Salles,DC=lycee-eiffel,DC=ac-bordeaux,DC=fr", d).is_ok());
        assert!(ou_dn("OU=B204;DC=lycee-eiffel", d).is_err());
        assert!(ou_dn("OU=B204,DC=other,DC=fr", d).is_err());
        assert!(ou_dn("OU=A\\,B,DC=lycee-eiffel,DC=ac-bordeaux,DC=fr", d).is_ok());
    }

    #[test]
    fn credentials_in_urls() {
        let found = url_credentials("source: https://bob:hunter2@files.example/x.msi");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].1, "https://bob:***@files.example/x.msi");
        assert_eq!(found[0].2, "hunter2");
        let found = url_credentials("smb://AC-BORDEAUX;jdoe:S3cr3t!@srv/share/x.exe");
        assert_eq!(found[0].2, "S3cr3t!");
        assert!(url_credentials("https://files.example/a@b:c").is_empty());
        assert!(url_credentials("smb://user@srv/share").is_empty());
        assert!(url_credentials("no url: here@there").is_empty());
    }

    #[test]
    fn unusable_macs() {
        assert!(unusable_mac(mac("ff:ff:ff:ff:ff:ff").unwrap()).is_some());
        assert!(unusable_mac(mac("00:00:00:00:00:00").unwrap()).is_some());
        assert!(unusable_mac(mac("01:00:5e:00:00:01").unwrap()).is_some());
        assert!(unusable_mac(mac("3c:ec:ef:12:34:01").unwrap()).is_none());
    }

    #[test]
    fn secrets() {
        assert_eq!(secret("secret:AD_JOIN_1").unwrap(), "AD_JOIN_1");
        assert!(secret("secret:ad").is_err());
        let e = secret("P@ssw0rd!").unwrap_err();
        assert!(!e.contains("ssw0rd"), "a pasted secret is not echoed: {e}");
    }
}
