//! The synthetic card generator: deterministic, realistic card records (test data, never
//! real card data) with a few deliberate defects so that the reject report has content.

use pmp_core::order::validate::luhn_digit;

/// A deliberate defect in a generated record (so that the reject report has content).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Defect {
    /// The PAN's check digit is wrong.
    BadLuhn,
    /// The expiry month is 13.
    BadExpiry,
    /// The name holds a character outside the embossing set.
    BadName,
    /// The PAN is missing.
    MissingPan,
    /// The PIN block is garbage.
    BadPinBlock,
}

/// One synthetic card record (test data; never real card data).
#[derive(Clone, PartialEq, Eq)]
pub struct Card {
    /// The issuer's record id.
    pub id: String,
    /// The PAN.
    pub pan: String,
    /// Expiry, `YYMM`.
    pub expiry: String,
    /// Service code.
    pub service_code: String,
    /// Cardholder name (embossing).
    pub name: String,
    /// Track 2 equivalent data (`PAN D YYMM SVC discretionary`).
    pub track2: String,
    /// The PIN.
    pub pin: String,
    /// Address line.
    pub address: String,
    /// City.
    pub city: String,
    /// Post code.
    pub postcode: String,
    /// The record's deliberate defect, if any.
    pub defect: Option<Defect>,
}

impl core::fmt::Debug for Card {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Card")
            .field("id", &self.id)
            .field("defect", &self.defect)
            .finish_non_exhaustive()
    }
}

/// A deterministic generator of card records: the same seed gives the same cards.
/// About one record in 25 has a [`Defect`] (records 7, 31, 53, 79 of every 100, and record
/// 250 of every 500).
#[derive(Clone, Debug)]
pub struct Cards {
    state: u64,
    next: u64,
    n: u64,
}

const FIRST: [&str; 16] = [
    "JOHN", "MARY", "AHMED", "LI", "SOFIA", "PIERRE", "ANNA", "KWAME", "YUKI", "CARLOS", "EMMA",
    "OLEG", "FATIMA", "LUCAS", "NORA", "RAJ",
];
const LAST: [&str; 16] = [
    "SMITH",
    "O'NEIL",
    "MUELLER",
    "DUPONT",
    "NAKAMURA",
    "GARCIA",
    "NOWAK",
    "OKAFOR",
    "ROSSI",
    "VAN DER BERG",
    "SILVA",
    "KOWALSKI",
    "HANSEN",
    "BROWN-LEE",
    "PETROV",
    "SINGH",
];
const STREETS: [&str; 8] = [
    "High Street",
    "Rue de la Paix",
    "Main St",
    "Baker Street",
    "Hauptstrasse",
    "Via Roma",
    "Elm Avenue",
    "Station Road",
];
const CITIES: [&str; 8] = [
    "London", "Paris", "Berlin", "Rome", "Madrid", "Warsaw", "Oslo", "Lisbon",
];
const BINS: [&str; 4] = ["411111", "550000", "400005", "522222"];

impl Cards {
    /// `n` cards from `seed`.
    pub fn new(seed: u64, n: u64) -> Self {
        Self {
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            next: 0,
            n,
        }
    }

    fn rand(&mut self) -> u64 {
        // xorshift64*: test data only, not for keys.
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn digits(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b'0' + (self.rand() % 10) as u8))
            .collect()
    }
}

impl Iterator for Cards {
    type Item = Card;

    fn next(&mut self) -> Option<Card> {
        if self.next >= self.n {
            return None;
        }
        self.next += 1;
        let k = self.next;
        let bin = BINS[(self.rand() % 4) as usize];
        let body = format!("{bin}{}", self.digits(9));
        let check = luhn_digit(body.as_bytes());
        let mut pan = format!("{body}{}", char::from(check));
        let mut expiry = format!("{:02}{:02}", 27 + self.rand() % 5, 1 + self.rand() % 12);
        let service_code = ["201", "101", "221", "206"][(self.rand() % 4) as usize].to_string();
        let mut name = format!(
            "{} {}",
            FIRST[(self.rand() % 16) as usize],
            LAST[(self.rand() % 16) as usize]
        );
        let track2 = format!(
            "{pan}D{expiry}{service_code}{}{}",
            self.digits(5),
            "0".repeat(3)
        );
        let pin_len = 4 + (self.rand() % 3) as usize;
        let pin = self.digits(pin_len);
        let address = format!(
            "{} {}, Flat {}",
            1 + self.rand() % 200,
            STREETS[(self.rand() % 8) as usize],
            1 + self.rand() % 30
        );
        let city = CITIES[(self.rand() % 8) as usize].to_string();
        let postcode = self.digits(5);
        let defect = match k % 100 {
            7 => Some(Defect::BadLuhn),
            31 => Some(Defect::BadExpiry),
            53 => Some(Defect::BadName),
            79 => Some(Defect::BadPinBlock),
            _ if k % 500 == 250 => Some(Defect::MissingPan),
            _ => None,
        };
        match defect {
            Some(Defect::BadLuhn) => {
                let last = pan.pop().map_or(0, |c| c as u8 - b'0');
                pan.push(char::from(b'0' + (last + 1) % 10));
            }
            Some(Defect::BadExpiry) => expiry = format!("{}13", &expiry[..2]),
            Some(Defect::BadName) => name = format!("{name}_#1"),
            Some(Defect::MissingPan) => pan.clear(),
            _ => {}
        }
        Some(Card {
            id: format!("C{k:09}"),
            pan,
            expiry,
            service_code,
            name,
            track2,
            pin,
            address,
            city,
            postcode,
            defect,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Luhn check (ISO/IEC 7812-1 annex B), written here independently of pmp-core's.
    fn luhn(pan: &str) -> bool {
        let sum: u32 = pan
            .bytes()
            .rev()
            .enumerate()
            .map(|(i, b)| {
                let d = u32::from(b - b'0');
                if i % 2 == 1 {
                    if d * 2 > 9 { d * 2 - 9 } else { d * 2 }
                } else {
                    d
                }
            })
            .sum();
        !pan.is_empty() && sum.is_multiple_of(10)
    }

    #[test]
    fn same_seed_same_cards_other_seed_other_cards() {
        let a: Vec<Card> = Cards::new(5, 50).collect();
        assert_eq!(a, Cards::new(5, 50).collect::<Vec<_>>());
        assert_ne!(a, Cards::new(6, 50).collect::<Vec<_>>());
    }

    #[test]
    fn defects_sit_where_documented_and_good_cards_are_valid() {
        let cards: Vec<Card> = Cards::new(3, 1000).collect();
        for (i, c) in cards.iter().enumerate() {
            let k = i + 1;
            let expected = match k % 100 {
                7 => Some(Defect::BadLuhn),
                31 => Some(Defect::BadExpiry),
                53 => Some(Defect::BadName),
                79 => Some(Defect::BadPinBlock),
                _ if k % 500 == 250 => Some(Defect::MissingPan),
                _ => None,
            };
            assert_eq!(c.defect, expected, "record {k}");
            assert_eq!(c.id, format!("C{k:09}"));
            match c.defect {
                Some(Defect::BadLuhn) => assert!(!luhn(&c.pan), "record {k}"),
                Some(Defect::MissingPan) => assert!(c.pan.is_empty()),
                _ => assert!(luhn(&c.pan) && c.pan.len() == 16, "record {k}"),
            }
            let month: u32 = c.expiry[2..].parse().unwrap();
            assert_eq!(
                month == 13,
                c.defect == Some(Defect::BadExpiry),
                "record {k}"
            );
            assert!((4..=6).contains(&c.pin.len()));
        }
        assert_eq!(cards.iter().filter(|c| c.defect.is_some()).count(), 42);
    }

    #[test]
    fn debug_shows_no_card_data() {
        let c = Cards::new(1, 1).next().unwrap();
        let d = format!("{c:?}");
        assert!(d.contains(&c.id));
        for secret in [&c.pan, &c.pin, &c.track2, &c.name] {
            assert!(!d.contains(secret.as_str()), "{d}");
        }
    }
}
