//! The bundled quickstart corpus: restaurant-style attribute lists and texts made by
//! templates from a seed, so the project needs no download to show the whole
//! pipeline. Each record picks a name and a random subset of attributes; the text
//! realises them with one of several phrasings per attribute and sentence plan, so
//! an input has several valid references and a model has something to learn.

use rand::seq::{IndexedRandom, SliceRandom};
use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64Mcg;

use crate::clean::Row;

const NAMES: [&str; 24] = [
    "The Olive Grove",
    "Blue Lantern",
    "The Copper Kettle",
    "Saffron House",
    "The Red Door",
    "Little Italy",
    "The Golden Fork",
    "Green Garden",
    "The Old Mill",
    "Harbour Lights",
    "The Hungry Fox",
    "Spice Route",
    "The Silver Spoon",
    "Riverside Grill",
    "The Crown",
    "Lotus Blossom",
    "The Market Table",
    "Sunset Diner",
    "The Brass Bell",
    "Cedar Kitchen",
    "The Night Owl",
    "Maple Leaf",
    "The Stone Oven",
    "Sea Breeze",
];
const KINDS: [&str; 4] = ["restaurant", "pub", "cafe", "bistro"];
const FOODS: [&str; 7] = [
    "Italian", "French", "Indian", "Chinese", "Japanese", "Mexican", "English",
];
const PRICES: [&str; 3] = ["cheap", "moderate", "expensive"];
const AREAS: [&str; 3] = ["city centre", "riverside", "old town"];
const RATINGS: [&str; 3] = ["low", "average", "high"];
const LANDMARKS: [&str; 6] = [
    "the station",
    "the cathedral",
    "the museum",
    "the park",
    "the bridge",
    "the market",
];

/// One record's attributes.
struct Record {
    name: &'static str,
    kind: &'static str,
    food: Option<&'static str>,
    price: Option<&'static str>,
    area: Option<&'static str>,
    rating: Option<&'static str>,
    family: Option<bool>,
    near: Option<&'static str>,
}

impl Record {
    fn draw(rng: &mut Pcg64Mcg) -> Record {
        let mut maybe = |p: f64| rng.random::<f64>() < p;
        let (f, pr, a, r, fam, n) = (
            maybe(0.7),
            maybe(0.6),
            maybe(0.6),
            maybe(0.5),
            maybe(0.4),
            maybe(0.4),
        );
        Record {
            name: NAMES.choose(rng).expect("names"),
            kind: KINDS.choose(rng).expect("kinds"),
            food: f.then(|| *FOODS.choose(rng).expect("foods")),
            price: pr.then(|| *PRICES.choose(rng).expect("prices")),
            area: a.then(|| *AREAS.choose(rng).expect("areas")),
            rating: r.then(|| *RATINGS.choose(rng).expect("ratings")),
            family: fam.then(|| rng.random::<bool>()),
            near: n.then(|| *LANDMARKS.choose(rng).expect("landmarks")),
        }
    }

    /// The attribute list, E2E style.
    fn input(&self) -> String {
        let mut v = vec![
            format!("name[{}]", self.name),
            format!("type[{}]", self.kind),
        ];
        let mut put = |k: &str, x: Option<String>| {
            if let Some(x) = x {
                v.push(format!("{k}[{x}]"));
            }
        };
        put("food", self.food.map(str::to_owned));
        put("price", self.price.map(str::to_owned));
        put("area", self.area.map(str::to_owned));
        put("rating", self.rating.map(str::to_owned));
        put(
            "family",
            self.family.map(|b| if b { "yes" } else { "no" }.to_owned()),
        );
        put("near", self.near.map(str::to_owned));
        v.join(", ")
    }

    /// One realisation: a sentence plan and phrasings chosen by `rng`.
    fn text(&self, rng: &mut Pcg64Mcg) -> String {
        let mut pick = |opts: &[String]| opts.choose(rng).expect("options").clone();
        let a = |w: &str| {
            if w.starts_with(['a', 'e', 'i', 'o', 'u', 'A', 'E', 'I', 'O', 'U']) {
                "an"
            } else {
                "a"
            }
        };
        let (n, k) = (self.name, self.kind);
        let mut parts: Vec<String> = Vec::new();
        let head = match self.food {
            Some(f) => pick(&[
                format!("{n} is {} {f} {k}", a(f)),
                format!("{n} is {} {k} serving {f} food", a(k)),
                format!("{n}, {} {k}, serves {f} food", a(k)),
            ]),
            None => pick(&[
                format!("{n} is {} {k}", a(k)),
                format!("There is {} {k} called {n}", a(k)),
            ]),
        };
        parts.push(head);
        if let Some(ar) = self.area {
            parts.push(pick(&[
                format!("in the {ar}"),
                format!("located in the {ar} area"),
            ]));
        }
        if let Some(nr) = self.near {
            parts.push(pick(&[format!("near {nr}"), format!("close to {nr}")]));
        }
        let mut first = parts.join(" ");
        first.push('.');
        let mut sentences = vec![first];
        let mut extra: Vec<String> = Vec::new();
        if let Some(p) = self.price {
            extra.push(pick(&[
                format!("prices are {p}"),
                format!("it is {p}"),
                format!("it has {p} prices"),
            ]));
        }
        if let Some(r) = self.rating {
            extra.push(pick(&[
                format!("it has a {r} customer rating"),
                format!("customers rate it {r}"),
            ]));
        }
        if let Some(f) = self.family {
            extra.push(if f {
                pick(&[
                    "it is family friendly".into(),
                    "it welcomes children".into(),
                ])
            } else {
                pick(&[
                    "it is not family friendly".into(),
                    "it is not suitable for children".into(),
                ])
            });
        }
        extra.shuffle(rng);
        if !extra.is_empty() {
            let mut s = extra.join(" and ");
            s[..1].make_ascii_uppercase();
            s.push('.');
            sentences.push(s);
        }
        sentences.join(" ")
    }
}

/// `n` rows from `seed`: each a fresh record with `refs` realisations (rows with
/// equal input are one multi-reference item in dev and test).
pub fn corpus(n: usize, refs: usize, seed: u64) -> Vec<Row> {
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    let mut rows = Vec::with_capacity(n * refs);
    for _ in 0..n {
        let r = Record::draw(&mut rng);
        let input = r.input();
        for _ in 0..refs.max(1) {
            rows.push(Row {
                input: input.clone(),
                target: r.text(&mut rng),
            });
        }
    }
    rows
}

/// Writes the quickstart data set into `dir` (`train.jsonl`, `dev.jsonl`,
/// `test.jsonl`; fields `meaning` and `text`).
///
/// # Errors
/// [`crate::Error::Io`] naming the file.
pub fn write_corpus(
    dir: &std::path::Path,
    train: usize,
    dev: usize,
    test: usize,
    seed: u64,
) -> crate::Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| crate::Error::io(dir, e))?;
    for (name, n, refs, s) in [
        ("train", train, 1, seed),
        ("dev", dev, 3, seed + 1),
        ("test", test, 3, seed + 2),
    ] {
        let path = dir.join(format!("{name}.jsonl"));
        let text: String = corpus(n, refs, s)
            .into_iter()
            .map(|r| {
                format!(
                    "{}\n",
                    serde_json::json!({"meaning": r.input, "text": r.target})
                )
            })
            .collect();
        crate::error::write(&path, text)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn corpus_is_reproducible_and_varied() {
        let a = super::corpus(50, 2, 1);
        assert_eq!(a, super::corpus(50, 2, 1));
        assert_ne!(a, super::corpus(50, 2, 2));
        assert_eq!(a.len(), 100);
        assert!(a.iter().all(|r| r.target.contains(
            r.input
                .split(']')
                .next()
                .unwrap()
                .trim_start_matches("name[")
        )));
        let distinct: std::collections::HashSet<_> = a.iter().map(|r| &r.target).collect();
        assert!(distinct.len() > 90);
    }
}
