//! The nearest-neighbour retrieval baseline: each input gets the target of the most
//! similar training input (TF-IDF cosine over the input's lower-cased word tokens;
//! ties to the earliest row). A learnt model has to beat it to be worth its training.

use std::collections::HashMap;

use crate::clean::Row;

/// A TF-IDF index over training inputs.
#[derive(Debug)]
pub struct Retrieval {
    /// Per term, the (row, weight) postings.
    postings: HashMap<String, Vec<(usize, f64)>>,
    /// Inverse document frequency per term.
    idf: HashMap<String, f64>,
    /// The target of each indexed row.
    targets: Vec<String>,
}

fn terms(text: &str) -> HashMap<String, f64> {
    let mut tf: HashMap<String, f64> = HashMap::new();
    for w in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        *tf.entry(w.to_lowercase()).or_default() += 1.0;
    }
    tf
}

impl Retrieval {
    /// Indexes `rows` (one entry per distinct input; its first target).
    pub fn new(rows: &[Row]) -> Retrieval {
        let mut seen = std::collections::HashSet::new();
        let docs: Vec<(&str, &str)> = rows
            .iter()
            .filter(|r| seen.insert(r.input.as_str()))
            .map(|r| (r.input.as_str(), r.target.as_str()))
            .collect();
        let n = docs.len() as f64;
        let tfs: Vec<HashMap<String, f64>> = docs.iter().map(|d| terms(d.0)).collect();
        let mut df: HashMap<String, f64> = HashMap::new();
        for tf in &tfs {
            for t in tf.keys() {
                *df.entry(t.clone()).or_default() += 1.0;
            }
        }
        let idf: HashMap<String, f64> = df
            .into_iter()
            .map(|(t, d)| (t, (1.0 + n / d).ln()))
            .collect();
        let mut postings: HashMap<String, Vec<(usize, f64)>> = HashMap::new();
        for (i, tf) in tfs.into_iter().enumerate() {
            let w: Vec<(String, f64)> = tf
                .into_iter()
                .map(|(t, f)| {
                    let x = f * idf[&t];
                    (t, x)
                })
                .collect();
            let norm = w.iter().map(|(_, x)| x * x).sum::<f64>().sqrt().max(1e-12);
            for (t, x) in w {
                postings.entry(t).or_default().push((i, x / norm));
            }
        }
        Retrieval {
            postings,
            idf,
            targets: docs.iter().map(|d| d.1.to_owned()).collect(),
        }
    }

    /// The target of the training input most similar to `input` (the first row's
    /// when nothing is shared).
    pub fn predict(&self, input: &str) -> &str {
        let q: Vec<(String, f64)> = terms(input)
            .into_iter()
            .filter_map(|(t, f)| Some((t.clone(), f * self.idf.get(&t)?)))
            .collect();
        let norm = q.iter().map(|(_, x)| x * x).sum::<f64>().sqrt().max(1e-12);
        let mut score: HashMap<usize, f64> = HashMap::new();
        for (t, x) in &q {
            for &(i, y) in &self.postings[t] {
                *score.entry(i).or_default() += x / norm * y;
            }
        }
        let best = score
            .into_iter()
            .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
            .map_or(0, |(i, _)| i);
        self.targets.get(best).map_or("", String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_most_similar_input() {
        let rows: Vec<Row> = [
            (
                "name[Aromi], food[Italian], area[riverside]",
                "Aromi is Italian, by the river.",
            ),
            (
                "name[Zizzi], food[Chinese], area[city centre]",
                "Zizzi serves Chinese food in the centre.",
            ),
            (
                "name[Aromi], food[Italian], area[riverside]",
                "A second reference.",
            ),
        ]
        .iter()
        .map(|(i, t)| Row {
            input: (*i).into(),
            target: (*t).into(),
        })
        .collect();
        let r = Retrieval::new(&rows);
        assert_eq!(
            r.predict("name[Zizzi], food[Chinese]"),
            "Zizzi serves Chinese food in the centre."
        );
        assert_eq!(
            r.predict("name[Aromi], area[riverside]"),
            "Aromi is Italian, by the river."
        );
        assert_eq!(
            r.predict("nothing shared"),
            "Aromi is Italian, by the river."
        );
    }
}
