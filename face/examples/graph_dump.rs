//! Lists an ONNX graph node by node (operator, name, inputs, outputs, attributes, initializer
//! shapes): what the load-time rewrites of `face/src/rewrite.rs` were written against.
//! Run: `cargo run --release -p facegate-face --example graph_dump -- models/face_detection_yunet_2023mar.onnx`.

use prost::Message;
use tract_onnx::pb;
fn main() {
    let path = std::env::args().nth(1).unwrap();
    let m = pb::ModelProto::decode(&*std::fs::read(path).unwrap()).unwrap();
    let g = m.graph.unwrap();
    for n in &g.node {
        let attrs: Vec<String> = n
            .attribute
            .iter()
            .map(|a| format!("{}={:?}", a.name, if a.ints.is_empty() { vec![a.i] } else { a.ints.clone() }))
            .collect();
        let shapes: Vec<String> = n
            .input
            .iter()
            .filter_map(|i| g.initializer.iter().find(|t| &t.name == i).map(|t| format!("{:?}", t.dims)))
            .collect();
        println!(
            "{} {} in={:?} out={:?} {} {}",
            n.op_type,
            n.name,
            n.input,
            n.output,
            attrs.join(" "),
            shapes.join(" ")
        );
    }
}
