//! NLTK's Porter stemmer (`nltk.stem.porter.PorterStemmer`, mode `NLTK_EXTENSIONS`,
//! NLTK 3.10.4), which rouge-score uses with `use_stemmer=True`.
//!
//! Works on lowercase ASCII words, which is all rouge-score's tokenizer produces.

/// Stems one lowercase ASCII word as NLTK's `PorterStemmer().stem(word)` does.
///
/// Non-ASCII input is returned unchanged (rouge-score never passes any).
///
/// # Examples
/// ```
/// use autoglm_eval::porter_stem;
/// assert_eq!(porter_stem("running"), "run");
/// assert_eq!(porter_stem("dying"), "die");
/// assert_eq!(porter_stem("generalizations"), "gener");
/// ```
pub fn porter_stem(word: &str) -> String {
    if !word.is_ascii() {
        return word.to_owned();
    }
    let lower = word.to_ascii_lowercase();
    if let Some(irregular) = irregular(&lower) {
        return irregular.to_owned();
    }
    if lower.len() <= 2 {
        return lower;
    }
    let mut w = lower.into_bytes();
    step1a(&mut w);
    step1b(&mut w);
    step1c(&mut w);
    step2(&mut w);
    step3(&mut w);
    step4(&mut w);
    step5a(&mut w);
    step5b(&mut w);
    String::from_utf8(w).expect("ASCII in, ASCII out")
}

fn irregular(w: &str) -> Option<&'static str> {
    Some(match w {
        "sky" | "skies" => "sky",
        "dying" => "die",
        "lying" => "lie",
        "tying" => "tie",
        "news" => "news",
        "innings" | "inning" => "inning",
        "outings" | "outing" => "outing",
        "cannings" | "canning" => "canning",
        "howe" => "howe",
        "proceed" => "proceed",
        "exceed" => "exceed",
        "succeed" => "succeed",
        _ => return None,
    })
}

#[inline]
fn is_vowel(c: u8) -> bool {
    matches!(c, b'a' | b'e' | b'i' | b'o' | b'u')
}

/// Consonant flags: a `y` is a consonant iff it starts the word or follows a vowel.
fn is_consonant(w: &[u8], i: usize) -> bool {
    // Equivalent to NLTK's `_is_consonant` (a run of y's alternates).
    let mut flag = true;
    for (k, &c) in w.iter().enumerate().take(i + 1) {
        flag = if is_vowel(c) {
            false
        } else if c == b'y' {
            if k == 0 {
                true
            } else {
                !flag
            }
        } else {
            true
        };
    }
    flag
}

fn measure(stem: &[u8]) -> usize {
    let mut m = 0;
    let mut prev_vowel = false;
    let mut flag = true;
    for (k, &c) in stem.iter().enumerate() {
        flag = if is_vowel(c) {
            false
        } else if c == b'y' {
            k == 0 || !flag
        } else {
            true
        };
        // count "vc" transitions
        if flag && prev_vowel {
            m += 1;
        }
        prev_vowel = !flag;
    }
    m
}

fn contains_vowel(stem: &[u8]) -> bool {
    let mut flag = true;
    for (k, &c) in stem.iter().enumerate() {
        flag = if is_vowel(c) {
            false
        } else if c == b'y' {
            k == 0 || !flag
        } else {
            true
        };
        if !flag {
            return true;
        }
    }
    false
}

fn ends_double_consonant(w: &[u8]) -> bool {
    let n = w.len();
    n >= 2 && w[n - 1] == w[n - 2] && is_consonant(w, n - 1)
}

fn ends_cvc(w: &[u8]) -> bool {
    let n = w.len();
    (n >= 3
        && is_consonant(w, n - 3)
        && !is_consonant(w, n - 2)
        && is_consonant(w, n - 1)
        && !matches!(w[n - 1], b'w' | b'x' | b'y'))
        || (n == 2 && !is_consonant(w, 0) && is_consonant(w, 1))
}

/// A rule's condition on the stem (the word without the suffix).
type Cond<'a> = &'a dyn Fn(&[u8]) -> bool;

/// NLTK's `_apply_rule_list`: the first rule whose suffix matches decides.
/// Returns whether a rule matched (whether or not its condition held).
fn apply_rules(w: &mut Vec<u8>, rules: &[(&[u8], &[u8], Option<Cond<'_>>)]) {
    for (suffix, repl, cond) in rules {
        if *suffix == b"*d" {
            if ends_double_consonant(w) {
                let stem = &w[..w.len() - 2];
                if cond.is_none_or(|c| c(stem)) {
                    w.truncate(w.len() - 2);
                    w.extend_from_slice(repl);
                }
                return;
            }
            continue;
        }
        if w.ends_with(suffix) {
            let stem = &w[..w.len() - suffix.len()];
            if cond.is_none_or(|c| c(stem)) {
                w.truncate(w.len() - suffix.len());
                w.extend_from_slice(repl);
            }
            return;
        }
    }
}

fn replace_suffix(w: &mut Vec<u8>, suffix: usize, repl: &[u8]) {
    w.truncate(w.len() - suffix);
    w.extend_from_slice(repl);
}

fn step1a(w: &mut Vec<u8>) {
    if w.ends_with(b"ies") && w.len() == 4 {
        replace_suffix(w, 3, b"ie");
        return;
    }
    apply_rules(
        w,
        &[
            (b"sses", b"ss", None),
            (b"ies", b"i", None),
            (b"ss", b"ss", None),
            (b"s", b"", None),
        ],
    );
}

fn step1b(w: &mut Vec<u8>) {
    if w.ends_with(b"ied") {
        if w.len() == 4 {
            replace_suffix(w, 3, b"ie");
        } else {
            replace_suffix(w, 3, b"i");
        }
        return;
    }
    if w.ends_with(b"eed") {
        if measure(&w[..w.len() - 3]) > 0 {
            replace_suffix(w, 3, b"ee");
        }
        return;
    }
    let mut ok = false;
    for suffix in [&b"ed"[..], b"ing"] {
        if w.ends_with(suffix) && contains_vowel(&w[..w.len() - suffix.len()]) {
            let n = w.len() - suffix.len();
            w.truncate(n);
            ok = true;
            break;
        }
    }
    if !ok {
        return;
    }
    let last = *w
        .last()
        .expect("a vowel was found, so the stem is not empty");
    let double = [last];
    let not_lsz = move |_: &[u8]| !matches!(last, b'l' | b's' | b'z');
    let cvc = |stem: &[u8]| measure(stem) == 1 && ends_cvc(stem);
    apply_rules(
        w,
        &[
            (b"at", b"ate", None),
            (b"bl", b"ble", None),
            (b"iz", b"ize", None),
            (b"*d", &double, Some(&not_lsz)),
            (b"", b"e", Some(&cvc)),
        ],
    );
}

fn step1c(w: &mut Vec<u8>) {
    let cond = |stem: &[u8]| stem.len() > 1 && is_consonant(stem, stem.len() - 1);
    apply_rules(w, &[(b"y", b"i", Some(&cond))]);
}

fn positive(stem: &[u8]) -> bool {
    measure(stem) > 0
}

fn step2(w: &mut Vec<u8>) {
    if w.ends_with(b"alli") && positive(&w[..w.len() - 4]) {
        replace_suffix(w, 4, b"al");
        step2(w);
        return;
    }
    let word = w.clone();
    let logi = move |_: &[u8]| positive(&word[..word.len() - 3]);
    let p: Cond<'_> = &positive;
    apply_rules(
        w,
        &[
            (b"ational", b"ate", Some(p)),
            (b"tional", b"tion", Some(p)),
            (b"enci", b"ence", Some(p)),
            (b"anci", b"ance", Some(p)),
            (b"izer", b"ize", Some(p)),
            (b"bli", b"ble", Some(p)),
            (b"alli", b"al", Some(p)),
            (b"entli", b"ent", Some(p)),
            (b"eli", b"e", Some(p)),
            (b"ousli", b"ous", Some(p)),
            (b"ization", b"ize", Some(p)),
            (b"ation", b"ate", Some(p)),
            (b"ator", b"ate", Some(p)),
            (b"alism", b"al", Some(p)),
            (b"iveness", b"ive", Some(p)),
            (b"fulness", b"ful", Some(p)),
            (b"ousness", b"ous", Some(p)),
            (b"aliti", b"al", Some(p)),
            (b"iviti", b"ive", Some(p)),
            (b"biliti", b"ble", Some(p)),
            (b"fulli", b"ful", Some(p)),
            (b"logi", b"log", Some(&logi)),
        ],
    );
}

fn step3(w: &mut Vec<u8>) {
    let p: Cond<'_> = &positive;
    apply_rules(
        w,
        &[
            (b"icate", b"ic", Some(p)),
            (b"ative", b"", Some(p)),
            (b"alize", b"al", Some(p)),
            (b"iciti", b"ic", Some(p)),
            (b"ical", b"ic", Some(p)),
            (b"ful", b"", Some(p)),
            (b"ness", b"", Some(p)),
        ],
    );
}

fn step4(w: &mut Vec<u8>) {
    let gt1 = |stem: &[u8]| measure(stem) > 1;
    let ion = |stem: &[u8]| measure(stem) > 1 && matches!(stem.last(), Some(b's' | b't'));
    let g: Cond<'_> = &gt1;
    apply_rules(
        w,
        &[
            (b"al", b"", Some(g)),
            (b"ance", b"", Some(g)),
            (b"ence", b"", Some(g)),
            (b"er", b"", Some(g)),
            (b"ic", b"", Some(g)),
            (b"able", b"", Some(g)),
            (b"ible", b"", Some(g)),
            (b"ant", b"", Some(g)),
            (b"ement", b"", Some(g)),
            (b"ment", b"", Some(g)),
            (b"ent", b"", Some(g)),
            (b"ion", b"", Some(&ion)),
            (b"ou", b"", Some(g)),
            (b"ism", b"", Some(g)),
            (b"ate", b"", Some(g)),
            (b"iti", b"", Some(g)),
            (b"ous", b"", Some(g)),
            (b"ive", b"", Some(g)),
            (b"ize", b"", Some(g)),
        ],
    );
}

fn step5a(w: &mut Vec<u8>) {
    if w.ends_with(b"e") {
        let stem = &w[..w.len() - 1];
        let m = measure(stem);
        if m > 1 || (m == 1 && !ends_cvc(stem)) {
            w.pop();
        }
    }
}

fn step5b(w: &mut Vec<u8>) {
    if w.ends_with(b"ll") && measure(&w[..w.len() - 1]) > 1 {
        w.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::porter_stem;

    #[test]
    fn known_stems() {
        for (w, s) in [
            ("caresses", "caress"),
            ("ponies", "poni"),
            ("ties", "tie"),
            ("agreed", "agre"),
            ("plastered", "plaster"),
            ("motoring", "motor"),
            ("hopping", "hop"),
            ("filing", "file"),
            ("happy", "happi"),
            ("relational", "relat"),
            ("controlling", "control"),
            ("enjoy", "enjoy"),
            ("yyyy", "yyyi"),
        ] {
            assert_eq!(porter_stem(w), s, "{w}");
        }
    }
}
