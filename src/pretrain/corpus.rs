//! The generated English corpus the built-in model learns from: short documents stating facts
//! about the world (capitals, continents, languages, animal classes, opposites, colours, numbers)
//! and short texts whose sentiment or topic is plain, each fact in many phrasings.
//!
//! The world facts come from the sample tasks' files (all splits): the built-in model should
//! *know* them, as a real model knows that Paris is the capital of France, so that the tasks
//! measure how well a prompt elicits knowledge, not whether the knowledge is there. What the
//! corpus never contains is the tasks' own phrasing ("The capital of X is", "Review: ...
//! Sentiment:"): `TASK_PHRASES` lists those and `generate` refuses to emit them, so zero-shot
//! on a task is the model generalising from other phrasings.

use crate::task::Task;
use anyhow::{bail, Context, Result};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use std::path::Path;

/// The fixed text of the sample tasks' templates. None of it may appear in the corpus.
pub const TASK_PHRASES: &[&str] = &[
    "The capital of ",
    "is a country in the continent of",
    " is a kind of ",
    "The opposite of ",
    "Headline:",
    "Topic:",
    "Review:",
    "Sentiment:",
];

/// Facts read from the sample tasks.
#[derive(Debug, Default)]
pub struct Facts {
    pub capitals: Vec<(String, String)>,
    pub continents: Vec<(String, String)>,
    pub animals: Vec<(String, String)>,
    pub opposites: Vec<(String, String)>,
}

impl Facts {
    /// Reads `country-capital`, `country-continent`, `animal-class` and `antonyms` under
    /// `tasks_dir`, all splits.
    pub fn load(tasks_dir: &Path) -> Result<Self> {
        let pairs = |name: &str, field: &str| -> Result<Vec<(String, String)>> {
            let dir = tasks_dir.join(name);
            let task = Task::load(&dir).with_context(|| {
                format!("{}: the corpus needs this task's facts", dir.display())
            })?;
            let mut out: Vec<(String, String)> = task
                .train
                .iter()
                .chain(&task.dev)
                .chain(&task.test)
                .map(|e| {
                    let answer = task.answer_text(&e.answer).to_string();
                    (e.fields[field].clone(), answer)
                })
                .collect();
            out.sort();
            out.dedup();
            Ok(out)
        };
        Ok(Self {
            capitals: pairs("country-capital", "country")?,
            continents: pairs("country-continent", "country")?,
            animals: pairs("animal-class", "animal")?,
            opposites: pairs("antonyms", "word")?,
        })
    }
}

/// `count` documents of one to three sentences, reproducible from `seed`.
pub fn generate(facts: &Facts, seed: u64, count: usize) -> Result<Vec<String>> {
    if facts.capitals.is_empty() || facts.continents.is_empty() || facts.animals.is_empty() {
        bail!("the corpus needs capital, continent and animal facts");
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut docs = Vec::with_capacity(count);
    while docs.len() < count {
        let n = rng.random_range(1..=3);
        let mut doc = String::new();
        for _ in 0..n {
            if !doc.is_empty() {
                doc.push(' ');
            }
            doc.push_str(&sentence(facts, &mut rng));
        }
        if let Some(p) = TASK_PHRASES.iter().find(|p| doc.contains(*p)) {
            bail!("internal error: the corpus generator wrote the task phrase {p:?} in {doc:?}");
        }
        docs.push(doc);
    }
    Ok(docs)
}

fn sentence(f: &Facts, rng: &mut StdRng) -> String {
    // Weights: knowledge the tasks ask for dominates; the rest gives the model general English.
    match rng.random_range(0..100) {
        0..=19 => capital(f, rng),
        20..=37 => continent(f, rng),
        38..=53 => animal(f, rng),
        54..=65 => opposite(f, rng),
        66..=69 => language(rng),
        70..=73 => colour(rng),
        74..=77 => number(rng),
        78..=88 => review(rng),
        _ => headline(rng),
    }
}

fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
    items.choose(rng).expect("non-empty list")
}

fn word<'a>(rng: &mut StdRng, items: &[&'a str]) -> &'a str {
    items.choose(rng).copied().expect("non-empty list")
}

/// Replaces `{a}`, `{b}`, `{c}` in `pattern`.
fn fill(pattern: &str, a: &str, b: &str, c: &str) -> String {
    pattern
        .replace("{a}", a)
        .replace("{b}", b)
        .replace("{c}", c)
}

fn capital(f: &Facts, rng: &mut StdRng) -> String {
    let (country, city) = pick(rng, &f.capitals);
    let pattern = pick(
        rng,
        &[
            "{b} is the capital of {a}.",
            "{b} is the capital city of {a}.",
            "{a} has its capital at {b}.",
            "The government of {a} sits in {b}.",
            "{a}'s capital city is {b}.",
            "{b}, the capital of {a}, is a busy city.",
            "Many people in {a} work in {b}, the capital.",
            "Q: Which city is the capital of {a}? A: {b}.",
            "The president of {a} lives in {b}.",
            "{b} has been the capital of {a} for many years.",
            "If you fly to the capital of {a}, you land in {b}.",
            "Capital of {a}: {b}.",
        ],
    );
    fill(pattern, country, city, "")
}

fn continent(f: &Facts, rng: &mut StdRng) -> String {
    let (country, cont) = pick(rng, &f.continents);
    let adjective = match cont.as_str() {
        "Africa" => "African",
        "Asia" => "Asian",
        "Europe" => "European",
        "North America" => "North American",
        "South America" => "South American",
        "Oceania" => "Oceanian",
        other => other,
    };
    let article = if adjective.starts_with(['A', 'E', 'O']) {
        "an"
    } else {
        "a"
    };
    let pattern = pick(
        rng,
        &[
            "{a} is in {b}.",
            "{a} lies in {b}.",
            "{a} is located in {b}.",
            "{a} is part of {b}.",
            "{b} includes {a}.",
            "You will find {a} in {b}.",
            "{a} is {c} country.",
            "A trip to {a} is a trip to {b}.",
            "Q: On which continent is {a}? A: {b}.",
            "The map of {b} shows {a}.",
            "Continent of {a}: {b}.",
            "{a} and its neighbours are in {b}.",
        ],
    );
    fill(pattern, country, cont, &format!("{article} {adjective}"))
}

fn animal(f: &Facts, rng: &mut StdRng) -> String {
    let (name, class) = pick(rng, &f.animals);
    let class_article = if class.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    let trait_of = match class.as_str() {
        "mammal" => "feeds its young on milk",
        "bird" => "has feathers and lays eggs",
        "fish" => "breathes through gills",
        "reptile" => "has dry scales",
        "amphibian" => "starts life in water",
        "insect" => "has six legs",
        _ => "is an animal",
    };
    let pattern = pick(
        rng,
        &[
            "Scientists class the {a} as {ca} {b}.",
            "The {a} belongs to the {b}s.",
            "Like every {b}, the {a} {c}.",
            "The {a} {c}, because it is {ca} {b}.",
            "Q: What class of animal is the {a}? A: {b}.",
            "Among the {b}s we count the {a}.",
            "Class of the {a}: {b}.",
            "In the zoo, the {a} lives with the other {b}s.",
        ],
    );
    let plural = if class == "fish" {
        "fish".to_string()
    } else {
        format!("{class}s")
    };
    fill(&pattern.replace("{b}s", &plural), name, class, trait_of).replace("{ca}", class_article)
}

fn opposite(f: &Facts, rng: &mut StdRng) -> String {
    let (w, o) = pick(rng, &f.opposites);
    let (a, b) = if rng.random_bool(0.5) { (w, o) } else { (o, w) };
    let pattern = pick(
        rng,
        &[
            "{a} and {b} are opposites.",
            "{b} is the opposite of {a}.",
            "{a} is the reverse of {b}.",
            "Q: What word means the reverse of {a}? A: {b}.",
            "Something that is not {a} may be {b}.",
            "The words {a} and {b} mean opposite things.",
            "Antonym of {a}: {b}.",
            "{a}'s opposite is {b}.",
            "{a} versus {b}: two opposite words.",
        ],
    );
    fill(pattern, a, b, "")
}

const LANGUAGES: &[(&str, &str)] = &[
    ("France", "French"),
    ("Germany", "German"),
    ("Spain", "Spanish"),
    ("Italy", "Italian"),
    ("Portugal", "Portuguese"),
    ("Brazil", "Portuguese"),
    ("Mexico", "Spanish"),
    ("Argentina", "Spanish"),
    ("Japan", "Japanese"),
    ("China", "Chinese"),
    ("Russia", "Russian"),
    ("Greece", "Greek"),
    ("Turkey", "Turkish"),
    ("Egypt", "Arabic"),
    ("Saudi Arabia", "Arabic"),
    ("Iran", "Persian"),
    ("India", "Hindi"),
    ("Netherlands", "Dutch"),
    ("Sweden", "Swedish"),
    ("Norway", "Norwegian"),
    ("Finland", "Finnish"),
    ("Poland", "Polish"),
    ("Hungary", "Hungarian"),
    ("Vietnam", "Vietnamese"),
    ("Thailand", "Thai"),
    ("South Korea", "Korean"),
    ("Indonesia", "Indonesian"),
    ("Kenya", "Swahili"),
    ("United Kingdom", "English"),
    ("Australia", "English"),
    ("Ukraine", "Ukrainian"),
    ("Denmark", "Danish"),
    ("Israel", "Hebrew"),
];

fn language(rng: &mut StdRng) -> String {
    let (country, lang) = pick(rng, LANGUAGES);
    let pattern = pick(
        rng,
        &[
            "People in {a} speak {b}.",
            "The main language of {a} is {b}.",
            "In {a}, most people speak {b}.",
            "{b} is spoken in {a}.",
        ],
    );
    fill(pattern, country, lang, "")
}

const COLOURS: &[(&str, &str)] = &[
    ("the sky", "blue"),
    ("grass", "green"),
    ("snow", "white"),
    ("coal", "black"),
    ("blood", "red"),
    ("a banana", "yellow"),
    ("a lemon", "yellow"),
    ("a ripe tomato", "red"),
    ("milk", "white"),
    ("chocolate", "brown"),
    ("the sea", "blue"),
    ("a leaf in summer", "green"),
    ("the night", "black"),
    ("an orange", "orange"),
    ("a carrot", "orange"),
    ("a plum", "purple"),
];

fn colour(rng: &mut StdRng) -> String {
    let (thing, col) = pick(rng, COLOURS);
    let pattern = pick(
        rng,
        &[
            "The colour of {a} is {b}.",
            "{A} is {b}.",
            "Most children paint {a} {b}.",
        ],
    );
    fill(pattern, thing, col, "").replace("{A}", &capitalise(thing))
}

const NUMBERS: &[&str] = &[
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve",
];

fn number(rng: &mut StdRng) -> String {
    let a = rng.random_range(0..=6);
    let b = rng.random_range(0..=6);
    match rng.random_range(0..4) {
        0 => format!(
            "{} plus {} makes {}.",
            NUMBERS[a],
            NUMBERS[b],
            NUMBERS[a + b]
        ),
        1 => format!("After {} comes {}.", NUMBERS[a], NUMBERS[a + 1]),
        2 => format!("{} and {} are {}.", a, b, a + b),
        _ => {
            let start = rng.random_range(0..8);
            let run: Vec<&str> = NUMBERS[start..start + 4].to_vec();
            format!("Counting: {}.", run.join(", "))
        }
    }
}

const THINGS: &[&str] = &[
    "soup",
    "hotel room",
    "phone",
    "film",
    "app",
    "staff",
    "battery",
    "bed",
    "pasta",
    "plot",
    "service",
    "camera",
    "coffee",
    "laptop",
    "breakfast",
    "show",
    "game",
    "headphones",
    "pizza",
    "book",
    "sequel",
    "documentary",
    "kettle",
    "earbuds",
    "waiter",
    "menu",
    "screen",
    "charger",
    "update",
    "series",
    "restaurant",
    "hotel",
    "room",
    "album",
    "novel",
    "blender",
    "mattress",
    "chef",
    "soundtrack",
    "ending",
    "acting",
    "delivery",
    "keyboard",
    "vacuum",
    "tent",
    "shoes",
];
const GOOD: &[&str] = &[
    "excellent",
    "delicious",
    "wonderful",
    "friendly",
    "comfortable",
    "brilliant",
    "fast",
    "clean",
    "beautiful",
    "charming",
    "reliable",
    "fresh",
    "perfect",
    "great",
    "lovely",
    "superb",
    "tender",
    "funny",
    "wise",
    "stylish",
    "inventive",
    "gorgeous",
    "helpful",
    "spotless",
    "cosy",
    "quiet",
    "moving",
    "gripping",
    "sturdy",
    "tasty",
    "generous",
    "smooth",
];
const BAD: &[&str] = &[
    "awful",
    "terrible",
    "cold",
    "rude",
    "dirty",
    "broken",
    "slow",
    "boring",
    "bland",
    "noisy",
    "disappointing",
    "stale",
    "horrible",
    "poor",
    "useless",
    "cheap",
    "greasy",
    "flimsy",
    "overpriced",
    "buggy",
    "dull",
    "cramped",
    "smelly",
    "confusing",
    "one-sided",
    "repetitive",
    "late",
    "faulty",
    "soggy",
    "unbearable",
    "clumsy",
    "tedious",
];
const GOOD_ACTS: &[&str] = &[
    "works perfectly",
    "exceeded my hopes",
    "arrived early",
    "never lets me down",
    "made us smile",
    "is worth the price",
    "feels solid",
    "charges quickly",
    "deserves a wide audience",
    "kept us laughing",
    "fixed my problem at once",
];
const BAD_ACTS: &[&str] = &[
    "stopped working after a week",
    "keeps crashing",
    "arrived broken",
    "broke on the first day",
    "kept disconnecting",
    "wasted our evening",
    "never answered our emails",
    "made me feel ill",
    "fell apart",
    "drains the battery",
    "is a rip-off",
];
const GOOD_ENDINGS: &[&str] = &[
    "I loved it.",
    "Highly recommended.",
    "We will come back.",
    "Worth every penny.",
    "It made my day.",
    "Five stars.",
    "I would buy it again.",
    "A real gem.",
];
const BAD_ENDINGS: &[&str] = &[
    "I want my money back.",
    "Never again.",
    "Avoid it.",
    "A waste of money.",
    "It ruined my day.",
    "One star.",
    "I returned it.",
    "Very disappointed.",
];

fn review(rng: &mut StdRng) -> String {
    let positive = rng.random_bool(0.5);
    let (adjs, acts, endings, label) = if positive {
        (GOOD, GOOD_ACTS, GOOD_ENDINGS, "positive")
    } else {
        (BAD, BAD_ACTS, BAD_ENDINGS, "negative")
    };
    let text = match rng.random_range(0..4) {
        0 => format!(
            "The {} was {} and the {} was {}. {}",
            pick(rng, THINGS),
            pick(rng, adjs),
            pick(rng, THINGS),
            pick(rng, adjs),
            pick(rng, endings)
        ),
        1 => format!(
            "The {} {}. {}",
            pick(rng, THINGS),
            pick(rng, acts),
            pick(rng, endings)
        ),
        2 => format!(
            "{}, {} and {}: the {} {}.",
            capitalise(word(rng, adjs)),
            pick(rng, adjs),
            pick(rng, adjs),
            pick(rng, THINGS),
            pick(rng, acts)
        ),
        _ => format!("The {} was {}.", pick(rng, THINGS), pick(rng, adjs)),
    };
    let pattern = pick(
        rng,
        &[
            "{a} This review is {b}.",
            "A {b} review: {a}",
            "{a} The customer felt {b} about it.",
            "Opinion ({b}): {a}",
            "{a} Overall, a {b} opinion.",
        ],
    );
    fill(pattern, &text, label, "")
}

/// Per topic: who acts, what they do, and to what, combined freely.
struct Topic {
    name: &'static str,
    subjects: &'static [&'static str],
    verbs: &'static [&'static str],
    objects: &'static [&'static str],
}

const TOPICS: &[Topic] = &[
    Topic {
        name: "sports",
        subjects: &[
            "Veteran goalkeeper",
            "Star striker",
            "Team captain",
            "Tennis champion",
            "Sprinter",
            "Cycling team",
            "Football club",
            "Rugby coach",
            "Olympic swimmer",
            "Young golfer",
            "Cricket side",
            "Marathon runner",
            "Boxing champion",
            "Fans of {team}",
            "{team}",
        ],
        verbs: &[
            "wins",
            "loses",
            "reaches",
            "signs for",
            "retires from",
            "breaks the record in",
            "is injured before",
            "celebrates victory in",
            "is knocked out of",
            "qualifies for",
        ],
        objects: &[
            "the cup final",
            "the league title",
            "the world championship",
            "the Olympic final",
            "the semi-final",
            "the new season",
            "the marathon",
            "a penalty shootout",
            "the grand slam",
            "the transfer window",
            "the tournament",
            "the derby match",
        ],
    },
    Topic {
        name: "business",
        subjects: &[
            "{company}",
            "Shares in {company}",
            "Central bank",
            "Retail sales",
            "Factory orders",
            "Oil prices",
            "Restaurant group",
            "Consumer confidence",
            "Start-up",
            "Car maker",
            "Supermarket chain",
            "Investors",
            "Airline",
            "Bank",
        ],
        verbs: &[
            "rise as",
            "fall as",
            "cut jobs as",
            "raise prices as",
            "report profits as",
            "warn of losses as",
            "invest millions as",
            "plan a merger as",
            "slump as",
        ],
        objects: &[
            "demand grows",
            "costs climb",
            "interest rates rise",
            "sales slow",
            "inflation bites",
            "the market recovers",
            "energy bills soar",
            "exports drop",
            "wages increase",
            "recession fears grow",
            "profits shrink",
            "quarterly results disappoint",
        ],
    },
    Topic {
        name: "science",
        subjects: &[
            "Scientists",
            "Astronomers",
            "Researchers",
            "Biologists",
            "Physicists",
            "Mathematicians",
            "Doctors",
            "Chemists",
            "Geologists",
            "Engineers",
            "A new study",
            "Space telescope",
        ],
        verbs: &[
            "discover", "detect", "map", "measure", "prove", "explain", "test", "observe",
            "identify", "build",
        ],
        objects: &[
            "a new species of frog",
            "water on a distant planet",
            "brain circuits in beetles",
            "an ancient fossil",
            "a faster battery",
            "a vaccine against a rare virus",
            "a theorem about prime numbers",
            "black holes colliding",
            "the genes of wheat",
            "sunspot activity",
            "a new particle",
            "ice under the moon's surface",
        ],
    },
    Topic {
        name: "politics",
        subjects: &[
            "Parliament",
            "The president",
            "Prime minister",
            "Junior minister",
            "Opposition party",
            "Voters",
            "Candidates",
            "Senators",
            "The government",
            "Party delegates",
            "Mayor of {city}",
            "Election officials",
        ],
        verbs: &[
            "passes",
            "rejects",
            "debates",
            "votes on",
            "resigns over",
            "campaigns on",
            "promises",
            "signs",
            "blocks",
            "announces",
        ],
        objects: &[
            "the budget",
            "a new law on taxes",
            "the climate bill",
            "healthcare reform",
            "immigration rules",
            "the election result",
            "a trade deal",
            "the party manifesto",
            "a spending row",
            "a referendum",
            "the peace treaty",
            "voting rights",
        ],
    },
    Topic {
        name: "entertainment",
        subjects: &[
            "Singer",
            "Pop star",
            "Film director",
            "Actor",
            "Band",
            "Comedian",
            "Drama series",
            "New film",
            "Reality show",
            "Musical",
            "Rapper",
            "Streaming service",
        ],
        verbs: &[
            "announces",
            "releases",
            "wins",
            "stars in",
            "cancels",
            "premieres",
            "tops",
            "joins",
            "launches",
            "headlines",
        ],
        objects: &[
            "a world tour",
            "a new album",
            "the best actor award",
            "a fantasy film",
            "the box office",
            "the music festival",
            "a comedy special",
            "the final season",
            "a new music video",
            "a sold-out concert in {city}",
            "the red carpet premiere",
            "a celebrity wedding",
        ],
    },
];
const TEAMS: &[&str] = &[
    "City Rovers",
    "Northern Eagles",
    "Harbour United",
    "Red Lions",
    "Valley Wanderers",
];
const COMPANIES: &[&str] = &[
    "Acme",
    "Northwind",
    "Blue River Foods",
    "Orbit Motors",
    "Zenith Bank",
];
const CITIES: &[&str] = &[
    "Paris", "Tokyo", "Lima", "Cairo", "Oslo", "Madrid", "Nairobi",
];

fn capitalise(word: &str) -> String {
    let mut s = word.to_string();
    if let Some(first) = s.get_mut(..1) {
        first.make_ascii_uppercase();
    }
    s
}

fn headline(rng: &mut StdRng) -> String {
    let topic = pick(rng, TOPICS);
    let text = format!(
        "{} {} {}",
        pick(rng, topic.subjects),
        pick(rng, topic.verbs),
        pick(rng, topic.objects)
    )
    .replace("{team}", word(rng, TEAMS))
    .replace("{company}", word(rng, COMPANIES))
    .replace("{city}", word(rng, CITIES));
    let pattern = pick(
        rng,
        &[
            "In {b} news: {a}.",
            "{a}. This story is about {b}.",
            "{c} section: {a}.",
            "{a} ({c}).",
            "Today's {b} story: {a}.",
        ],
    );
    fill(pattern, &text, topic.name, &capitalise(topic.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts {
        let pairs = |v: &[(&str, &str)]| {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        Facts {
            capitals: pairs(&[("France", "Paris"), ("Peru", "Lima")]),
            continents: pairs(&[("France", "Europe"), ("Peru", "South America")]),
            animals: pairs(&[("owl", "bird"), ("eel", "fish")]),
            opposites: pairs(&[("hot", "cold")]),
        }
    }

    #[test]
    fn same_seed_same_corpus_and_never_a_task_phrase() {
        let a = generate(&facts(), 7, 2000).unwrap();
        let b = generate(&facts(), 7, 2000).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, generate(&facts(), 8, 2000).unwrap());
        for doc in &a {
            for p in TASK_PHRASES {
                assert!(!doc.contains(p), "{doc:?} contains {p:?}");
            }
        }
        let text = a.join("\n");
        assert!(text.contains("Paris is the capital of France."));
        assert!(text.contains("Peru is a South American country."));
        assert!(text.contains("Scientists class the owl as a bird."));
    }
}
