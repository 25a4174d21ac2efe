//! The task schema and data preparation: strict YAML with positions in errors,
//! cleaning with a quarantine that accounts for every row, splits without shared
//! inputs, multi-reference grouping, test references read only on demand.

use std::path::{Path, PathBuf};

use autoglm::data::prepare;
use autoglm::Task;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn yaml_errors_name_line_and_column() {
    let base = Path::new("/tmp");
    let cases = [
        ("data:\n  input: mr\n  target: ref\n  train: a.jsonl\n  tarin: b\n", "line 5"),
        ("data:\n  input: mr\n  target: ref\n  train: a.jsonl\ncleaning:\n  - normalise: nfkc\n", "line 6"),
        ("data:\n  input: mr\n  target: ref\n  train: a.jsonl\ncleaning:\n  - whitespace: squash\n", "squash"),
        ("data:\n  input: mr\n  target: ref\n  train: a.jsonl\n  split: {dev: 0.6, test: 0.5}\n", "none would be left"),
        ("data:\n  input: mr\n  target: ref\n  train: a.jsonl\n  test: {inputs: t.txt}\n", "both `inputs` and `references`"),
        ("data:\n  input: mr\n  target: ref\n  train: a.jsonl\ncleaning:\n  - regex: {field: input, pattern: '(['}\n", "regex:input"),
        ("data:\n  input: mr\n  target: [ref\n", "line"),
    ];
    for (text, want) in cases {
        let e = Task::from_yaml_str(text, base).unwrap_err().to_string();
        assert!(e.contains(want), "{text:?}: {e}");
    }
    // Relative paths resolve against the YAML file's directory; absolute ones stay.
    let dir = tempfile::tempdir().unwrap();
    let y = write(
        dir.path(),
        "task.yaml",
        "name: t\ndata:\n  input: mr\n  target: ref\n  train: d/train.jsonl\n  dev: /abs/dev.jsonl\n",
    );
    let t = Task::from_yaml_file(&y).unwrap();
    assert_eq!(t.data.train, dir.path().join("d/train.jsonl"));
    assert_eq!(t.data.dev.as_deref(), Some(Path::new("/abs/dev.jsonl")));
    assert_eq!(t.output_dir(), dir.path().join("runs/t"));
    let e = Task::from_yaml_file(&dir.path().join("nope.yaml")).unwrap_err();
    assert!(e.to_string().contains("nope.yaml"), "{e}");
}

const ROWS: &str = r#"{"mr": "name[Aromi], eatType[pub]", "ref": "Aromi is a pub."}
{"mr": "name[Aromi], eatType[pub]", "ref": "There is a pub called Aromi."}
{"mr": "name[Aromi], eatType[pub]", "ref": "Aromi  is a pub."}

{"mr": "name[Zizzi], food[Italian]", "ref": "Zizzi serves Italian food. Call 01223 456789."}
{"mr": "name[Zizzi], food[Italian]"}
{"mr": "name[Cotto]", "ref": ""}
{"mr": "name[Cotto], near[The Bakers]", "ref": "Cotto is near The Bakers."
["not", "an", "object"]
{"mr": {"name": "Wildwood", "eatType": "pub"}, "ref": "Wildwood is a pub."}
{"mr": "name[Alimentum], area[riverside]", "ref": "Alimentum is by the riverside."}
{"mr": "name[Bibimbap House], area[city centre]", "ref": "Bibimbap House is in the centre."}
{"mr": "name[Blue Spice], area[riverside]", "ref": "Blue Spice is at the riverside."}
{"mr": "name[Clowns], eatType[pub]", "ref": "Clowns is a pub."}
{"mr": "name[Fitzbillies], eatType[coffee shop]", "ref": "Fitzbillies is a coffee shop."}
{"mr": "name[Giraffe], eatType[pub]", "ref": "Giraffe is a pub."}
{"mr": "name[Loch Fyne], food[French]", "ref": "Loch Fyne serves French food."}
"#;

const CLEANING: &str = "cleaning:
  - normalize: nfkc
  - whitespace: collapse
  - required: [input, target]
  - mask: {kinds: [phone]}
  - dedup: pair
";

#[test]
fn every_row_is_kept_or_quarantined_with_its_rule() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "train.jsonl", ROWS);
    let yaml = format!(
        "data:\n  input: mr\n  target: ref\n  train: train.jsonl\n  split: {{dev: 0.2, test: 0.2, seed: 3}}\n{CLEANING}"
    );
    let y = write(dir.path(), "task.yaml", &yaml);
    let task = Task::from_yaml_file(&y).unwrap();
    // Malformed rows stop the run by default, naming file and line.
    let e = prepare(&task, &dir.path().join("out"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("train.jsonl:8:") && e.contains("invalid JSON"),
        "{e}"
    );
    let y = write(
        dir.path(),
        "task.yaml",
        &yaml.replace("seed: 3}", "seed: 3}\n  on_malformed: quarantine"),
    );
    let task = Task::from_yaml_file(&y).unwrap();
    let out = dir.path().join("out");
    let p = prepare(&task, &out).unwrap();
    let r = &p.report;
    assert_eq!(r.train.rows, 16);
    assert_eq!(r.train.blank_lines, 1);
    assert_eq!((r.train.malformed, r.train.missing_field), (2, 1));
    assert_eq!(r.train.cleaning.rejected, 2, "{:?}", r.train.cleaning); // empty ref, repeat
    assert!(r.train.balanced());
    let q = std::fs::read_to_string(out.join("quarantine.jsonl")).unwrap();
    assert_eq!(q.lines().count(), r.quarantined);
    assert_eq!(r.quarantined, 5);
    let rules: Vec<String> = q
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["rule"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        rules,
        [
            "dedup:pair",
            "missing_field",
            "required",
            "malformed",
            "malformed"
        ]
    );
    // 11 rows kept, of 10 distinct inputs: 2 to dev, 2 to test, the rest trains.
    assert_eq!(r.split_inputs, (2, 2));
    let mut inputs: Vec<&str> = p.train.iter().map(|r| r.input.as_str()).collect();
    inputs.dedup();
    for item in &p.dev {
        assert!(!inputs.contains(&item.input.as_str()));
        assert!(!p.test_inputs.contains(&item.input));
    }
    assert_eq!(
        p.train.len()
            + r.dev_references
            + p.test_references()
                .unwrap()
                .iter()
                .map(Vec::len)
                .sum::<usize>(),
        11
    );
    // The phone number is masked, the object input linearised.
    let all: String = std::fs::read_to_string(out.join("train.jsonl")).unwrap()
        + &std::fs::read_to_string(out.join("dev.jsonl")).unwrap()
        + &std::fs::read_to_string(out.join("test_references.jsonl")).unwrap();
    assert!(!all.contains("456789"));
    let wild = "eatType[pub], name[Wildwood]";
    assert!(all.contains(wild) || p.test_inputs.iter().any(|i| i == wild));
}

#[test]
fn dev_groups_references_and_test_references_are_read_on_demand() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "train.jsonl",
        &ROWS
            .lines()
            .filter(|l| l.ends_with('}') && l.starts_with('{') && l.contains("\"ref\""))
            .collect::<Vec<_>>()
            .join("\n"),
    );
    write(dir.path(), "dev.csv", "mr,ref\n\"name[A], food[Thai]\",A serves Thai food.\n\"name[A], food[Thai]\",Thai food at A.\nname[B],B.\n");
    write(dir.path(), "test.txt", "name[A], food[Thai]\nname[C]\n");
    write(
        dir.path(),
        "refs.jsonl",
        "[\"A serves Thai.\", \"Thai at A.\"]\nnot json\n",
    );
    let y = write(
        dir.path(),
        "task.yaml",
        "data:\n  input: mr\n  target: ref\n  train: train.jsonl\n  dev: dev.csv\n  test: {inputs: test.txt, references: refs.jsonl}\n",
    );
    let task = Task::from_yaml_file(&y).unwrap();
    // The broken references file does not stop preparation: it is not read yet.
    let p = prepare(&task, &dir.path().join("out")).unwrap();
    assert_eq!(p.dev.len(), 2);
    assert_eq!(
        p.dev[0].references,
        ["A serves Thai food.", "Thai food at A."]
    );
    assert_eq!(p.test_inputs, ["name[A], food[Thai]", "name[C]"]);
    assert_eq!(p.report.split_inputs, (0, 0));
    let e = p.test_references().unwrap_err().to_string();
    assert!(e.contains("refs.jsonl:2:"), "{e}");
    // A CSV without the mapped column names the columns it has.
    write(dir.path(), "dev.csv", "meaning,text\nx,y\n");
    let e = prepare(&task, &dir.path().join("out"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("dev.csv:1:") && e.contains("no column 'mr'") && e.contains("meaning"),
        "{e}"
    );
}

#[test]
fn e2e_prepares_with_every_row_accounted_for() {
    let shared = std::env::var_os("AUTOGLM_SHARED").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
        PathBuf::from,
    );
    let e2e = shared.join("data/e2e");
    if !e2e.exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but the shared data is missing at {}",
            e2e.display()
        );
        eprintln!(
            "SKIPPED: {} is not here (set AUTOGLM_SHARED)",
            e2e.display()
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "data:
  input: mr
  target: ref
  train: {0}/train.jsonl
  dev: {0}/dev.jsonl
  test: {{inputs: {0}/derived/mr.txt, references: {0}/derived/refs.jsonl}}
cleaning:
  - normalize: nfkc
  - whitespace: collapse
  - required: [input, target]
  - dedup: pair
",
        e2e.display()
    );
    let y = write(dir.path(), "e2e.yaml", &yaml);
    let task = Task::from_yaml_file(&y).unwrap();
    let p = prepare(&task, &dir.path().join("out")).unwrap();
    let r = &p.report;
    eprintln!("{}", serde_json::to_string_pretty(r).unwrap());
    assert_eq!(r.train.rows, 42061);
    assert_eq!(r.dev.as_ref().unwrap().rows, 4672);
    assert!(r.train.balanced() && r.dev.as_ref().unwrap().balanced());
    assert_eq!(p.test_inputs.len(), 630);
    assert_eq!(p.test_references().unwrap().len(), 630);
    assert_eq!(r.dev_references, r.dev.as_ref().unwrap().kept());
    assert_eq!(
        r.quarantined,
        r.train.cleaning.rejected + r.dev.as_ref().unwrap().cleaning.rejected
    );
}
