//! Entry points for the fuzz targets (`fuzz/fuzz_targets/models_readers.rs`): the
//! parsers of outside input must return errors, never panic.

use std::path::Path;

use crate::checkpoint::Checkpoint;
use crate::config::ModelConfig;

/// The first byte picks the reader: 0 mod 3, a safetensors file (every tensor read
/// with its stored shape and with a wrong one); 1, a `config.json` (and, if it parses,
/// its `to_json` must parse back to the same configuration); 2, a GGUF file (if it
/// parses, every tensor's bytes slice, and the file written again from what was read
/// parses back to the same metadata and tensors).
pub fn check_readers(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    if first % 3 == 2 {
        check_gguf(rest);
    } else if first % 3 == 0 {
        let Ok(ck) = Checkpoint::from_bytes(Path::new("fuzz.safetensors"), rest.to_vec()) else {
            return;
        };
        let names: Vec<String> = ck.names().map(str::to_owned).collect();
        for name in names {
            let shape = ck.shape(&name).unwrap_or_default();
            let _ = ck.tensor(&name, &shape);
            let mut wrong = shape.clone();
            wrong.push(2);
            assert!(ck.tensor(&name, &wrong).is_err());
        }
    } else if let Ok(text) = std::str::from_utf8(rest) {
        if let Ok(cfg) = ModelConfig::from_json(text, Path::new("config.json")) {
            let back = ModelConfig::from_json(&cfg.to_json().to_string(), Path::new("config.json"))
                .expect("to_json parses back");
            assert_eq!(back, cfg);
        }
    }
}

fn check_gguf(bytes: &[u8]) {
    use crate::gguf::{Gguf, GgufWriter, Value};
    let Ok(g) = Gguf::parse(bytes, Path::new("fuzz.gguf")) else {
        return;
    };
    // A model read from it is an error or a model, never a panic.
    let _ = crate::gguf_import::import_parsed(&g, bytes, Path::new("fuzz.gguf"));
    let arch = match g.metadata.first() {
        Some((k, Value::String(a))) if k == "general.architecture" => a,
        _ => return, // the writer puts the architecture first
    };
    let mut w = GgufWriter::new(arch);
    for (k, v) in &g.metadata[1..] {
        if w.add(k, v.clone()).is_err() {
            return; // an architecture key twice, or typed as the writer refuses
        }
    }
    for t in &g.tensors {
        let data = g.data(bytes, t).to_vec();
        w.add_tensor(&t.name, &t.dims, t.ty, data)
            .expect("a parsed tensor is a valid tensor");
    }
    let again = w.to_bytes();
    let back = Gguf::parse(&again, Path::new("again.gguf")).expect("written files parse");
    assert_eq!(back.metadata, g.metadata);
    assert_eq!(back.tensors, g.tensors);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_inputs_are_errors() {
        let mut st = vec![0u8];
        let header = br#"{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}"#;
        st.extend((header.len() as u64).to_le_bytes());
        st.extend(header);
        st.extend([0u8; 16]);
        check_readers(&st);
        let ck = Checkpoint::from_bytes(Path::new("x"), st[1..].to_vec()).unwrap();
        assert_eq!(ck.tensor("w", &[2, 2]).unwrap().shape(), &[2, 2]);
        let e = ck.tensor("w", &[4]).unwrap_err().to_string();
        assert!(e.contains("'w'") && e.contains("[2, 2]"), "{e}");
        // Truncated: one byte short.
        let e = Checkpoint::from_bytes(Path::new("x"), st[1..st.len() - 1].to_vec()).unwrap_err();
        assert!(e.to_string().contains("not a valid safetensors"), "{e}");
        // A header length beyond the file.
        check_readers(&[0, 255, 255, 255, 255, 0, 0, 0, 0, b'{']);
        check_readers(b"\x01{\"model_type\":\"glm\",\"hidden_size\":-1}");
        let mut w = crate::gguf::GgufWriter::new("glm4");
        w.add_tensor("t", &[2], crate::gguf::GgmlType::F32, vec![0; 8])
            .unwrap();
        let mut g = vec![2u8];
        g.extend(w.to_bytes());
        check_readers(&g);
        g.truncate(g.len() - 20);
        check_readers(&g);
        check_readers(b"\x01{\"model_type\":\"gpt_neox\",\"vocab_size\":9,\"hidden_size\":8,\"num_hidden_layers\":1,\"num_attention_heads\":2,\"intermediate_size\":4}");
    }
}
