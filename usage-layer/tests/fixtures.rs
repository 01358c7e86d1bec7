//! The official SDK's fixtures give exactly the usage the SDK reports: every chunk size
//! from 1 to 64 bytes, with LF, CRLF and CR line ends.

mod common;

use usage_layer::sse::Scanner;

#[test]
fn fixtures_give_the_sdk_usage_for_every_chunking_and_line_ending() {
    let fixtures = common::sse_fixtures();
    let mut checked = 0;
    for (expected, lf_bytes) in &fixtures {
        for (ending_name, ending) in [("LF", &b"\n"[..]), ("CRLF", b"\r\n"), ("CR", b"\r")] {
            let bytes = common::with_line_ending(lf_bytes, ending);
            for chunk_size in 1..=64 {
                let mut scanner = Scanner::new();
                for piece in bytes.chunks(chunk_size) {
                    scanner.feed(piece);
                }
                let body = scanner.finish();
                let usage = body.billed_usage();
                let case = format!("{} {ending_name} chunk {chunk_size}", expected.file);
                assert_eq!(usage.input_tokens, expected.input, "input: {case}");
                assert_eq!(usage.output_tokens, expected.output, "output: {case}");
                assert_eq!(
                    usage.cache_creation_input_tokens, expected.cache_creation,
                    "cache creation: {case}"
                );
                assert_eq!(
                    usage.cache_read_input_tokens, expected.cache_read,
                    "cache read: {case}"
                );
                assert!(body.model.is_some(), "model: {case}");
                assert!(body.complete, "message_stop: {case}");
                assert_eq!(body.issue, None, "issue: {case}");
                checked += 1;
            }
        }
    }
    assert_eq!(checked, fixtures.len() * 3 * 64);
}
