//! Step a's licence check: does every non-free software of the profile have a licence (or a written
//! authorisation of the head of school) covering every PC of the room? Pure: today's date is an
//! argument.

use super::state::Refusal;

/// How a software is licensed, from the catalog (`licence:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatalogLicence {
    /// No licence needed.
    Free,
    /// A site licence (covers every seat of the school).
    Site,
    /// Counted seats.
    PerSeat,
    /// Needs a written authorisation of the head of school.
    Authorisation,
}

/// What the profile holds for one software (`licences:` entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Catalog id.
    pub software: String,
    /// Kind the profile declares.
    pub kind: CatalogLicence,
    /// Seats (per-seat only).
    pub seats: Option<u32>,
    /// Expiry date `YYYY-MM-DD`, if any.
    pub expires: Option<String>,
}

/// Checks every software against the grants for a room of `seats_needed` PCs on `today`
/// (`YYYY-MM-DD`; ISO dates compare as strings). Returns every refusal, not just the first.
pub fn check_licences(
    software: &[(String, CatalogLicence)],
    grants: &[Grant],
    seats_needed: u32,
    today: &str,
) -> Vec<Refusal> {
    let mut refusals = Vec::new();
    for (id, licence) in software {
        if *licence == CatalogLicence::Free {
            continue;
        }
        let valid: Vec<&Grant> = grants
            .iter()
            .filter(|g| &g.software == id)
            .filter(|g| g.expires.as_deref().is_none_or(|e| e >= today))
            .collect();
        if valid.is_empty() {
            refusals.push(Refusal::NoLicence {
                software: id.clone(),
            });
            continue;
        }
        // A site licence or an authorisation covers the room; otherwise seats add up.
        if valid.iter().any(|g| g.kind != CatalogLicence::PerSeat) {
            continue;
        }
        let seats: u32 = valid.iter().map(|g| g.seats.unwrap_or(0)).sum();
        if seats < seats_needed {
            refusals.push(Refusal::LicenceShortfall {
                software: id.clone(),
                seats,
                needed: seats_needed,
            });
        }
    }
    refusals
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(
        software: &str,
        kind: CatalogLicence,
        seats: Option<u32>,
        expires: Option<&str>,
    ) -> Grant {
        Grant {
            software: software.into(),
            kind,
            seats,
            expires: expires.map(Into::into),
        }
    }

    #[test]
    fn seats_expiry_and_missing_licences() {
        let software = vec![
            ("libreoffice".to_string(), CatalogLicence::Free),
            ("solidworks".to_string(), CatalogLicence::PerSeat),
            ("autocad".to_string(), CatalogLicence::PerSeat),
            ("pronote".to_string(), CatalogLicence::Site),
            ("old".to_string(), CatalogLicence::Site),
            ("geo".to_string(), CatalogLicence::Authorisation),
        ];
        let grants = vec![
            grant("solidworks", CatalogLicence::PerSeat, Some(20), None),
            grant(
                "solidworks",
                CatalogLicence::PerSeat,
                Some(10),
                Some("2026-08-31"),
            ),
            grant(
                "autocad",
                CatalogLicence::PerSeat,
                Some(40),
                Some("2026-08-31"),
            ),
            grant("pronote", CatalogLicence::Site, None, None),
            grant("old", CatalogLicence::Site, None, Some("2025-01-01")),
            grant("geo", CatalogLicence::Authorisation, None, None),
        ];
        let refusals = check_licences(&software, &grants, 32, "2026-06-01");
        assert_eq!(
            refusals,
            vec![
                Refusal::LicenceShortfall {
                    software: "solidworks".into(),
                    seats: 30,
                    needed: 32
                },
                Refusal::NoLicence {
                    software: "old".into()
                },
            ]
        );
        assert!(check_licences(&software[..1], &[], 32, "2026-06-01").is_empty());
        // After the end of August the 40 autocad seats are gone too.
        let later = check_licences(&software[2..3], &grants, 32, "2026-09-01");
        assert_eq!(
            later,
            vec![Refusal::NoLicence {
                software: "autocad".into()
            }]
        );
    }
}
