//! The `traceparent` format: printing, parsing and what the specification refuses.

use super::TraceParent;
use super::traceparent::Hex;

const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[test]
fn the_specifications_example_round_trips() {
    let parsed: TraceParent = EXAMPLE.parse().unwrap();
    assert_eq!(parsed.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(parsed.span_id_hex(), "00f067aa0ba902b7");
    assert_eq!(parsed.flags, TraceParent::SAMPLED);
    assert_eq!(parsed.to_string(), EXAMPLE);
}

#[test]
fn new_traces_and_spans_are_fresh_and_well_formed() {
    let root = TraceParent::new_trace();
    let child = root.new_span();
    assert_eq!(child.trace_id, root.trace_id);
    assert_ne!(child.span_id, root.span_id);
    assert_ne!(TraceParent::new_trace().trace_id, root.trace_id);
    assert_eq!(root.to_string().parse::<TraceParent>().unwrap(), root);
    assert_eq!(root.to_string().len(), 55);
}

#[test]
fn a_later_version_may_append_fields() {
    let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes-next";
    let parsed: TraceParent = later.parse().unwrap();
    assert_eq!(parsed.span_id_hex(), "00f067aa0ba902b7");
}

#[test]
fn malformed_values_and_zero_ids_are_refused() {
    for bad in [
        "",
        "00",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
        "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
    ] {
        let error = bad.parse::<TraceParent>().unwrap_err();
        assert_eq!(error.value, bad, "{error}");
    }
}

#[test]
fn hex_prints_every_byte_as_two_lowercase_digits_at_any_length() {
    assert_eq!(Hex(&[]).to_string(), "");
    assert_eq!(Hex(&[0x00, 0x0f, 0xa5, 0xff]).to_string(), "000fa5ff");
    // Longer than one chunk of the printer's buffer, and not a whole number of chunks.
    let bytes: Vec<u8> = (0..=80u8).collect();
    let expected: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(Hex(&bytes).to_string(), expected);
}
