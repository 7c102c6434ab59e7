//! Contact rows that look like a real export: names repeated by the dozen and surnames by the
//! thousand (a few hundred of each, drawn unevenly, with accents, hyphens, apostrophes and
//! some middle names), e-mails made from the names on ten domains (so they collide, and carry
//! numbers as people's do), phones typed as people type them (national forms of the source's
//! country, international ones of five countries; about 2 % invalid), and tags from small
//! vocabularies. Row `i`
//! is always the same row, so a file can be written again with changes.
#![allow(dead_code)]

const GIVEN: &[&str] = &[
    "James",
    "Mary",
    "John",
    "Patricia",
    "Robert",
    "Jennifer",
    "Michael",
    "Linda",
    "William",
    "Elizabeth",
    "David",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Charles",
    "Karen",
    "Christopher",
    "Nancy",
    "Daniel",
    "Lisa",
    "Matthew",
    "Betty",
    "Anthony",
    "Margaret",
    "Mark",
    "Sandra",
    "Donald",
    "Ashley",
    "Steven",
    "Kimberly",
    "Paul",
    "Emily",
    "Andrew",
    "Donna",
    "Joshua",
    "Michelle",
    "Kenneth",
    "Dorothy",
    "Kevin",
    "Carol",
    "Brian",
    "Amanda",
    "George",
    "Melissa",
    "Edward",
    "Deborah",
    "Ronald",
    "Stephanie",
    "Timothy",
    "Rebecca",
    "Jason",
    "Sharon",
    "Jeffrey",
    "Laura",
    "Ryan",
    "Cynthia",
    "Jacob",
    "Kathleen",
    "Gary",
    "Amy",
    "Nicholas",
    "Shirley",
    "Eric",
    "Angela",
    "Jonathan",
    "Helen",
    "Stephen",
    "Anna",
    "Larry",
    "Brenda",
    "Justin",
    "Pamela",
    "Scott",
    "Nicole",
    "Brandon",
    "Emma",
    "Benjamin",
    "Samantha",
    "Samuel",
    "Katherine",
    "Gregory",
    "Christine",
    "Frank",
    "Debra",
    "Alexander",
    "Rachel",
    "Raymond",
    "Catherine",
    "Patrick",
    "Carolyn",
    "Jack",
    "Janet",
    "Dennis",
    "Ruth",
    "Jerry",
    "Maria",
    "Tyler",
    "Heather",
    "Aaron",
    "Diane",
    "José",
    "Virginia",
    "Adam",
    "Julie",
    "Henry",
    "Joyce",
    "Nathan",
    "Victoria",
    "Douglas",
    "Olivia",
    "Zachary",
    "Kelly",
    "Peter",
    "Christina",
    "Kyle",
    "Lauren",
    "Walter",
    "Joan",
    "Ethan",
    "Evelyn",
    "Jeremy",
    "Judith",
    "Harold",
    "Megan",
    "Keith",
    "Cheryl",
    "Christian",
    "Andrea",
    "Roger",
    "Hannah",
    "Noah",
    "Martha",
    "Gerald",
    "Jacqueline",
    "Carl",
    "Frances",
    "Terry",
    "Gloria",
    "Sean",
    "Ann",
    "Austin",
    "Teresa",
    "Arthur",
    "Kathryn",
    "Lawrence",
    "Sara",
    "Jesse",
    "Janice",
    "Dylan",
    "Jean",
    "Bryan",
    "Alice",
    "Joe",
    "Madison",
    "Jordan",
    "Doris",
    "Billy",
    "Abigail",
    "Bruce",
    "Julia",
    "Albert",
    "Judy",
    "Willie",
    "Grace",
    "Gabriel",
    "Denise",
    "Logan",
    "Amber",
    "Alan",
    "Marilyn",
    "Juan",
    "Beverly",
    "Wayne",
    "Danielle",
    "Roy",
    "Theresa",
    "Ralph",
    "Sophia",
    "Randy",
    "Marie",
    "Eugene",
    "Diana",
    "Vincent",
    "Brittany",
    "Russell",
    "Natalie",
    "Elijah",
    "Isabella",
    "Louis",
    "Charlotte",
    "Bobby",
    "Rose",
    "Philip",
    "Alexis",
    "Johnny",
    "Kayla",
    "François",
    "Zoë",
    "Søren",
    "Anne-Marie",
    "Jean-Luc",
    "Siân",
    "Chloé",
    "Björn",
    "Élodie",
    "Renée",
    "Inés",
    "Mateo",
];

const SURNAMES: &[&str] = &[
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Torres",
    "Nguyen",
    "Hill",
    "Flores",
    "Green",
    "Adams",
    "Nelson",
    "Baker",
    "Hall",
    "Rivera",
    "Campbell",
    "Mitchell",
    "Carter",
    "Roberts",
    "Gomez",
    "Phillips",
    "Evans",
    "Turner",
    "Diaz",
    "Parker",
    "Cruz",
    "Edwards",
    "Collins",
    "Reyes",
    "Stewart",
    "Morris",
    "Morales",
    "Murphy",
    "Cook",
    "Rogers",
    "Gutierrez",
    "Ortiz",
    "Morgan",
    "Cooper",
    "Peterson",
    "Bailey",
    "Reed",
    "Kelly",
    "Howard",
    "Ramos",
    "Kim",
    "Cox",
    "Ward",
    "Richardson",
    "Watson",
    "Brooks",
    "Chavez",
    "Wood",
    "James",
    "Bennett",
    "Gray",
    "Mendoza",
    "Ruiz",
    "Hughes",
    "Price",
    "Alvarez",
    "Castillo",
    "Sanders",
    "Patel",
    "Myers",
    "Long",
    "Ross",
    "Foster",
    "Jiménez",
    "O'Brien",
    "O'Connor",
    "O'Neill",
    "McDonald",
    "MacLeod",
    "D'Angelo",
    "Müller",
    "Schmidt",
    "Schneider",
    "Fischer",
    "Weber",
    "Meyer",
    "Wagner",
    "Becker",
    "Schäfer",
    "Koch",
    "Dubois",
    "Lefèvre",
    "Moreau",
    "Laurent",
    "Simon",
    "Michel",
    "Lefebvre",
    "Leroy",
    "Roux",
    "Bernard",
    "Dupont",
    "Girard",
    "Bonnet",
    "François",
    "Mercier",
    "Smith-Jones",
    "Lloyd-Webber",
    "Taylor-Wood",
    "García-López",
    "Núñez",
    "Peña",
    "Øvergaard",
    "Sørensen",
    "Åberg",
    "Ødegård",
    "van der Berg",
    "de Vries",
    "van Dijk",
    "da Silva",
    "dos Santos",
    "Rossi",
    "Russo",
    "Ferrari",
    "Esposito",
    "Bianchi",
    "Romano",
];

const DOMAINS: &[&str] = &[
    "gmail.com",
    "yahoo.com",
    "hotmail.com",
    "outlook.com",
    "icloud.com",
    "gmx.de",
    "orange.fr",
    "btinternet.com",
    "bigpond.com",
    "example.org",
];

const TAG1: &[&str] = &["gold", "silver", "bronze", "prospect", "lapsed"];
const TAG2: &[&str] = &[
    "newsletter",
    "events",
    "vip",
    "partner",
    "press",
    "webinar",
    "retail",
    "wholesale",
];

/// A well-mixed 64-bit hash of `i` and a salt (splitmix64): the same row every time.
fn mix(i: u64, salt: u64) -> u64 {
    let mut z = i
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(salt.wrapping_mul(0xD1B5_4A32_D192_ED03));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// An index below `n`, the first ones far more often than the last (roughly 1/k), as surnames
/// and given names are spread.
fn skewed(h: u64, n: usize) -> usize {
    let u = (h >> 11) as f64 / (1u64 << 53) as f64;
    (((n as f64 + 1.0).powf(u) - 1.0) as usize).min(n - 1)
}

/// The person of row `i`: given name, optional middle name, surname.
fn person(i: u64) -> (&'static str, Option<&'static str>, &'static str) {
    let given = GIVEN[skewed(mix(i, 1), GIVEN.len())];
    let surname = SURNAMES[skewed(mix(i, 2), SURNAMES.len())];
    let middle = mix(i, 3)
        .is_multiple_of(10)
        .then(|| GIVEN[(mix(i, 4) % GIVEN.len() as u64) as usize]);
    (given, middle, surname)
}

/// Lower-case ASCII letters of a name part, as an e-mail's local part carries it.
fn local(part: &str) -> String {
    part.chars()
        .filter_map(|c| {
            let c = match c {
                'á' | 'à' | 'â' | 'ä' | 'å' | 'Å' => 'a',
                'é' | 'è' | 'ê' | 'ë' | 'É' => 'e',
                'í' | 'ï' => 'i',
                'ó' | 'ô' | 'ö' | 'ø' | 'Ø' => 'o',
                'ú' | 'ü' => 'u',
                'ñ' => 'n',
                'ç' => 'c',
                c => c,
            };
            c.is_ascii_alphabetic().then(|| c.to_ascii_lowercase())
        })
        .collect()
}

/// A phone as a person types it: national forms of the source's country (Australia) and
/// international ones of five countries, spaced, dotted, bracketed; about 2 % are not phone
/// numbers at all.
fn phone(i: u64) -> String {
    let h = mix(i, 5);
    let d = |k: u64, n: u32| format!("{:0width$}", (h >> k) % 10u64.pow(n), width = n as usize);
    if h % 50 == 7 {
        return format!("{}", h % 100_000);
    }
    match (h >> 8) % 10 {
        0 => format!("(02) 9{} {}", d(20, 3), d(30, 4)),
        1 => format!("04{} {} {}", d(20, 2), d(27, 3), d(37, 3)),
        2 => format!("04{}.{}.{}", d(20, 2), d(27, 3), d(37, 3)),
        3 => format!("+61 4{} {} {}", d(20, 2), d(27, 3), d(37, 3)),
        4 => format!("+61 2 9{} {}", d(20, 3), d(30, 4)),
        5 => format!("+1 (212) {}-{}", 200 + (h >> 20) % 700, d(30, 4)),
        6 => format!("+44 20 7{} {}", d(20, 3), d(30, 4)),
        7 => format!("+33 6 {} {} {} {}", d(20, 2), d(27, 2), d(34, 2), d(41, 2)),
        8 => format!("+49 30 {}", d(20, 8)),
        _ => format!("+61 3 9{} {}", d(20, 3), d(30, 4)),
    }
}

/// One row: `external_id,name,email,phone,tag1,tag2`. With `changed`, a tenth of the rows
/// differ (name, e-mail or tag2 in turn).
pub fn row(i: u64, changed: bool) -> [String; 6] {
    let (given, middle, surname) = person(i);
    let mut name = match middle {
        Some(middle) => format!("{given} {middle} {surname}"),
        None => format!("{given} {surname}"),
    };
    let h = mix(i, 6);
    let number = match h % 4 {
        0 | 1 => String::new(),
        2 => format!("{}", (h >> 8) % 100),
        _ => format!("{}", 1950 + (h >> 8) % 60),
    };
    let (g, s) = (local(given), local(surname));
    let user = match (h >> 16) % 4 {
        0 => format!("{g}.{s}{number}"),
        1 => format!("{}{s}{number}", &g[..1.min(g.len())]),
        2 => format!("{g}{s}{number}"),
        _ => format!("{g}_{number}"),
    };
    let mut email = format!(
        "{user}@{}",
        DOMAINS[((h >> 24) % DOMAINS.len() as u64) as usize]
    );
    let tag1 = TAG1[skewed(mix(i, 7), TAG1.len())].to_string();
    let mut tag2 = TAG2[(mix(i, 8) % TAG2.len() as u64) as usize].to_string();
    if changed && i % 10 == 3 {
        match (i / 10) % 3 {
            0 => name.push_str(" Jr"),
            1 => email = format!("new.{email}"),
            _ => tag2.push_str("-old"),
        }
    }
    [format!("C{i:07}"), name, email, phone(i), tag1, tag2]
}

/// The row as a CSV line (no value holds a comma or a quote).
pub fn line(i: u64, changed: bool) -> String {
    let mut out = row(i, changed).join(",");
    out.push('\n');
    out
}

/// Rows equal to a manual record already in the console (they convert): 1 %.
pub fn is_known(i: u64) -> bool {
    i.is_multiple_of(100)
}

/// Rows whose name and e-mail match a manual record whose phone differs (they must not
/// convert): 0.5 %.
pub fn is_near_miss(i: u64) -> bool {
    i % 200 == 50
}

/// The phone of the manual record of a near miss: another number.
pub fn other_phone(i: u64) -> String {
    phone(i ^ 0x5555_5555)
}
