//! Entry points for the fuzz targets `autoglm_task` and `autoglm_data`: the task
//! parser and the data reader with every cleaning rule must return errors, never
//! panic, and the cleaning must account for every row it reads.

use std::path::Path;

use crate::clean::{Cleaner, Verdict};
use crate::data::{read_source, Record};
use crate::task::{Format, Task};

/// Parses `data` as a task YAML.
pub fn check_task(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Task::from_yaml_str(text, Path::new("/fuzz"));
    }
}

/// Every cleaning rule, near-duplicates included.
const RULES: &str = "data: {input: mr, target: ref, train: x.jsonl}
cleaning:
  - normalize: nfkc
  - whitespace: collapse
  - lowercase: [input]
  - required: [input, target]
  - regex: {field: input, pattern: '\\w'}
  - length: {field: target, min_words: 1, max_chars: 200}
  - mask: {}
  - dedup: pair
  - near_dedup: {threshold: 0.7, num_hashes: 32, shingle: 2}
";

/// Reads `data` (first byte: JSONL or CSV) with fields `mr`/`ref` and cleans it.
pub fn check_data(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let format = if first % 2 == 0 {
        Format::Jsonl
    } else {
        Format::Csv
    };
    let task = Task::from_yaml_str(RULES, Path::new("/fuzz")).expect("valid rules");
    let mut cleaner = Cleaner::new(&task.cleaning).expect("valid rules");
    let (mut rows, mut bad, mut kept) = (0, 0, 0);
    let read = read_source(
        rest,
        Path::new("fuzz"),
        format,
        ("mr", "ref"),
        |_, rec, _| {
            rows += 1;
            match rec {
                Record::Bad(..) => bad += 1,
                Record::Row(r) => {
                    if let Verdict::Keep(r) = cleaner.apply(r) {
                        assert!(!r.input.trim().is_empty() && !r.target.trim().is_empty());
                        kept += 1;
                    }
                }
            }
            Ok(())
        },
    );
    if read.is_ok() {
        let rep = cleaner.report();
        assert_eq!(rows, bad + rep.rows);
        assert_eq!(rep.rows, rep.kept + rep.rejected);
        assert_eq!(rep.kept, kept);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn odd_inputs_are_errors_or_quarantined() {
        for data in [
            &b"\x00{\"mr\": \"name[A]\", \"ref\": \"A is a pub.\"}\n{\"mr\": 3}\n[1]\n\xff\xfe\n"[..],
            b"\x01mr,ref\nname[A],A.\n\"unclosed,x\n",
            b"\x01mr\nx\n",
            b"\x00{\"mr\": {\"a\": [1, null, {\"b\": true}]}, \"ref\": \"call +1 555 123 4567\"}",
        ] {
            super::check_data(data);
        }
        super::check_task(
            b"data: {input: a, target: b, train: c}\ncleaning: [{mask: {kinds: [fax]}}]",
        );
    }
}
