//! A sans-IO, push-style decompressor for reading compressed response bodies.
//!
//! The client always gets the body's bytes as they came; [`Decoder`] decodes a copy so
//! that the usage readers see the plain body. It takes the compressed bytes in whatever
//! pieces they arrive ([`Decoder::feed`]) and hands on the decoded bytes in pieces of at
//! most 16 KiB; [`Decoder::finish`] reports a stream that ends early. Any split of the
//! same bytes gives the same decoded bytes.
//!
//! It reads the codings of RFC 9110 §8.4.1 that servers send:
//!
//! * `gzip` (also `x-gzip`), RFC 1952: the header's optional fields and its CRC-16, the
//!   CRC-32 and length of the data, and several members in a row (one body, as gzip(1)
//!   and Firefox read it).
//! * `deflate`: zlib (RFC 1950) with its Adler-32, and raw deflate (RFC 1951) when the
//!   first two bytes are no zlib header, as browsers accept it.
//! * `br`, RFC 7932.
//! * `zstd`, RFC 8878: several frames, skippable frames, checksums.
//!
//! A `Content-Encoding` that lists more than one coding (`gzip, br`) is [`Unsupported`]:
//! no mainstream server stacks codings, and each stage would need a buffer and a cap of
//! its own. `identity` and empty list elements are ignored. Bytes after the end of a
//! stream (other than a next gzip member or zstd frame) make it corrupt. A body with no
//! bytes at all is an empty body, not a truncated stream: servers send the header on
//! empty `204`, `304` and `HEAD` responses too.
//!
//! Memory is bounded whatever the input: one 16 KiB output buffer, allocated on the first
//! byte, plus each codec's own state — deflate's 32 KiB window; brotli's window of at most
//! 16 MiB (large-window brotli, which may ask for 1 GiB, is refused); zstd's window capped
//! at 8 MiB, the most RFC 9659 lets an HTTP encoder use (a frame asking for more is
//! refused). Output is capped too: once more than `max_output` bytes would come out, the
//! decoder hands on the bytes up to the cap, frees its state and answers
//! [`DecodeError::OverCap`] from then on, so a decompression bomb costs no more CPU.
//!
//! Crates: `flate2` on its pure-Rust miniz_oxide backend for deflate and gzip's body
//! (gzip's header and trailer are read here, since flate2 reads them only behind its
//! `Read` / `Write` adapters); `brotli-decompressor`, pure Rust, for `br`; `zstd-safe`,
//! the binding of the reference C library, for `zstd`. The pure-Rust `ruzstd` pulls from
//! a `Read`, and its one push call (`FrameDecoder::decode_from_to`) needs whole blocks in
//! one slice and decodes all of them before handing any out, so its memory would grow
//! with the input.

use std::fmt;

use brotli_decompressor::{
    BrotliDecoderErrorCode, BrotliDecoderIsFinished, BrotliDecompressStream, BrotliResult,
    BrotliState, StandardAlloc,
};
use flate2::{Crc, Decompress, DecompressError, FlushDecompress, Status};
use memchr::memchr;
use zstd_safe::{DCtx, DParameter, InBuffer, OutBuffer};

/// The size of the output buffer, allocated once per decoder.
const OUT_BUF: usize = 16 * 1024;
/// The largest zstd window accepted, as a power of two: 8 MiB (RFC 9659).
const ZSTD_WINDOW_LOG_MAX: u32 = 23;

/// A content coding [`Decoder`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Coding {
    /// `gzip` or `x-gzip`.
    Gzip,
    /// `deflate`: zlib, or raw deflate.
    Deflate,
    /// `br`.
    Brotli,
    /// `zstd`.
    Zstd,
}

impl fmt::Display for Coding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Gzip => "gzip",
            Self::Deflate => "deflate",
            Self::Brotli => "br",
            Self::Zstd => "zstd",
        })
    }
}

/// The `Content-Encoding` tokens read, case-insensitively; `None` is no coding.
const TOKENS: [(&str, Option<Coding>); 6] = [
    ("identity", None),
    ("gzip", Some(Coding::Gzip)),
    ("x-gzip", Some(Coding::Gzip)),
    ("deflate", Some(Coding::Deflate)),
    ("br", Some(Coding::Brotli)),
    ("zstd", Some(Coding::Zstd)),
];

/// Why a `Content-Encoding` is not decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Unsupported {
    /// A coding this module does not know.
    #[error("unsupported content coding `{0}`")]
    Coding(String),
    /// More than one coding, applied one over the other.
    #[error("more than one content coding")]
    Stacked,
}

/// Why decoding stopped.
#[derive(Clone, Debug, thiserror::Error)]
pub(crate) enum DecodeError {
    /// The bytes are not a valid stream of the coding.
    #[error("corrupt {coding} body")]
    Corrupt {
        /// The coding of the body.
        coding: Coding,
        /// What was wrong.
        #[source]
        source: Corruption,
    },
    /// More than `max_output` decoded bytes would have come out.
    #[error("decoded body over {max_output} bytes")]
    OverCap {
        /// The cap.
        max_output: u64,
    },
    /// The body ended inside the stream.
    #[error("{coding} body ends early")]
    Truncated {
        /// The coding of the body.
        coding: Coding,
    },
}

/// What was wrong with a corrupt stream.
#[derive(Clone, Debug, thiserror::Error)]
pub(crate) enum Corruption {
    /// Invalid deflate data, or a zlib header or Adler-32 that does not match.
    #[error(transparent)]
    Deflate(#[from] DecompressError),
    /// Invalid brotli data.
    #[error("brotli: {0:?}")]
    Brotli(BrotliDecoderErrorCode),
    /// Invalid zstd data, or a window over 8 MiB; zstd's own message.
    #[error("zstd: {0}")]
    Zstd(&'static str),
    /// Not a gzip member header: wrong magic, method or reserved flags.
    #[error("not a gzip member header")]
    GzipHeader,
    /// The gzip header's CRC-16 does not match.
    #[error("gzip header CRC mismatch")]
    GzipHeaderCrc,
    /// The gzip member's CRC-32 does not match its data.
    #[error("gzip CRC-32 mismatch")]
    GzipCrc,
    /// The gzip member's length field does not match its data.
    #[error("gzip length mismatch")]
    GzipLength,
    /// Bytes after the end of the stream.
    #[error("bytes after the end of the stream")]
    TrailingData,
}

/// A push-style decoder of one compressed body; see the [module docs](self).
pub(crate) struct Decoder {
    coding: Coding,
    /// The codec, or the error that ended decoding: then the codec's memory is freed and
    /// every later call returns the error again.
    state: Result<Codec, DecodeError>,
    /// Empty until the first byte comes, then `OUT_BUF` long.
    buf: Box<[u8]>,
    max_output: u64,
    /// Decoded bytes handed on so far, never more than `max_output`.
    written: u64,
    /// Whether any byte came: a body without any is empty, not truncated.
    started: bool,
}

impl fmt::Debug for Decoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decoder")
            .field("coding", &self.coding)
            .field("max_output", &self.max_output)
            .field("written", &self.written)
            .field("error", &self.state.as_ref().err())
            .finish_non_exhaustive()
    }
}

impl Decoder {
    /// A decoder for a body with these `Content-Encoding` values (one per header line),
    /// handing on at most `max_output` decoded bytes; `None` when the body is not encoded.
    pub(crate) fn for_content_encoding<'a>(
        values: impl IntoIterator<Item = &'a [u8]>,
        max_output: u64,
    ) -> Result<Option<Self>, Unsupported> {
        let mut coding = None;
        let tokens = values
            .into_iter()
            .flat_map(|value| value.split(|&byte| byte == b','))
            .map(<[u8]>::trim_ascii)
            .filter(|token| !token.is_empty());
        for token in tokens {
            let (_, named) = TOKENS
                .iter()
                .find(|(name, _)| token.eq_ignore_ascii_case(name.as_bytes()))
                .ok_or_else(|| Unsupported::Coding(String::from_utf8_lossy(token).into_owned()))?;
            if let Some(named) = named
                && coding.replace(*named).is_some()
            {
                return Err(Unsupported::Stacked);
            }
        }
        Ok(coding.map(|coding| Self::new(coding, max_output)))
    }

    fn new(coding: Coding, max_output: u64) -> Self {
        Self {
            coding,
            state: Ok(Codec::new(coding)),
            buf: Box::default(),
            max_output,
            written: 0,
            started: false,
        }
    }

    /// Decodes all it can of `input`, the next piece of the body, and passes the decoded
    /// bytes to `out` in pieces of at most 16 KiB.
    ///
    /// On [`DecodeError::OverCap`], `out` has received the decoded bytes up to the cap.
    /// Before a [`DecodeError::Corrupt`], how far it got may depend on how the body was
    /// split. After any error the decoder is spent: every later call returns the same error.
    pub(crate) fn feed(&mut self, input: &[u8], out: impl FnMut(&[u8])) -> Result<(), DecodeError> {
        let codec = match &mut self.state {
            Ok(codec) => codec,
            Err(error) => return Err(error.clone()),
        };
        if input.is_empty() {
            return Ok(());
        }
        self.started = true;
        if self.buf.is_empty() {
            self.buf = vec![0; OUT_BUF].into_boxed_slice();
        }
        let mut sink = Sink {
            out,
            written: &mut self.written,
            max_output: self.max_output,
        };
        let result = decode(codec, self.coding, input, &mut self.buf, &mut sink);
        if let Err(error) = &result {
            self.state = Err(error.clone());
            self.buf = Box::default();
        }
        result
    }

    /// Ends the body: an error if the stream is not complete, or the error that ended it.
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        let codec = self.state?;
        if self.started && !codec.at_end() {
            return Err(DecodeError::Truncated {
                coding: self.coding,
            });
        }
        Ok(())
    }
}

/// Where decoded bytes go, within the cap.
struct Sink<'a, F> {
    out: F,
    written: &'a mut u64,
    max_output: u64,
}

impl<F: FnMut(&[u8])> Sink<'_, F> {
    /// Hands on `piece`, or only the part of it within the cap and then fails.
    fn emit(&mut self, piece: &[u8]) -> Result<(), DecodeError> {
        let room = self.max_output - *self.written;
        // Room beyond a usize is more than any piece.
        let fits = usize::try_from(room).map_or(piece.len(), |room| room.min(piece.len()));
        if fits > 0 {
            (self.out)(&piece[..fits]);
            *self.written += fits as u64;
        }
        if fits < piece.len() {
            return Err(DecodeError::OverCap {
                max_output: self.max_output,
            });
        }
        Ok(())
    }
}

/// Runs `codec` over all of `input`, handing each buffer of output to `sink`.
fn decode<F: FnMut(&[u8])>(
    codec: &mut Codec,
    coding: Coding,
    mut input: &[u8],
    buf: &mut [u8],
    sink: &mut Sink<'_, F>,
) -> Result<(), DecodeError> {
    loop {
        let step = codec
            .step(input, buf)
            .map_err(|source| DecodeError::Corrupt { coding, source })?;
        input = &input[step.consumed..];
        sink.emit(&buf[..step.produced])?;
        // A full buffer may leave more output inside the codec, even without input.
        if input.is_empty() && step.produced < buf.len() {
            return Ok(());
        }
    }
}

/// What one call into a codec did.
#[derive(Clone, Copy, Debug, Default)]
struct Step {
    /// Input bytes taken.
    consumed: usize,
    /// Output bytes written.
    produced: usize,
}

/// The state of one coding's decoder.
///
/// [`Codec::step`] always gets on when it has input or was left with output: it takes
/// input, writes output, moves to its next part, or fails. [`decode`] relies on it to end.
enum Codec {
    Gzip(Gzip),
    Deflate(Deflate),
    Brotli(Box<BrotliState<StandardAlloc, StandardAlloc, StandardAlloc>>),
    Zstd {
        context: DCtx<'static>,
        /// Inside a frame: zstd's last answer was not 0.
        in_frame: bool,
    },
}

impl Codec {
    fn new(coding: Coding) -> Self {
        match coding {
            Coding::Gzip => Self::Gzip(Gzip::new()),
            Coding::Deflate => Self::Deflate(Deflate::Sniff(None)),
            Coding::Brotli => Self::Brotli(Box::new(BrotliState::new_strict(
                StandardAlloc::default(),
                StandardAlloc::default(),
                StandardAlloc::default(),
            ))),
            Coding::Zstd => {
                let mut context = DCtx::create();
                context
                    .set_parameter(DParameter::WindowLogMax(ZSTD_WINDOW_LOG_MAX))
                    .expect("23 is within zstd's window log range");
                Self::Zstd {
                    context,
                    in_frame: false,
                }
            }
        }
    }

    /// Decodes what it can of `input` into `out`.
    fn step(&mut self, input: &[u8], out: &mut [u8]) -> Result<Step, Corruption> {
        match self {
            Self::Gzip(gzip) => gzip.step(input, out),
            Self::Deflate(deflate) => deflate.step(input, out),
            Self::Brotli(state) if BrotliDecoderIsFinished(&**state) => after_end(input),
            Self::Brotli(state) => {
                let (mut available_in, mut input_offset) = (input.len(), 0);
                let (mut available_out, mut output_offset, mut total_out) = (out.len(), 0, 0);
                let result = BrotliDecompressStream(
                    &mut available_in,
                    &mut input_offset,
                    input,
                    &mut available_out,
                    &mut output_offset,
                    out,
                    &mut total_out,
                    &mut **state,
                );
                match result {
                    BrotliResult::ResultFailure => Err(Corruption::Brotli(state.error_code)),
                    _ => Ok(Step {
                        consumed: input_offset,
                        produced: output_offset,
                    }),
                }
            }
            Self::Zstd { context, in_frame } => {
                let mut input = InBuffer::around(input);
                let mut output = OutBuffer::around(out);
                let hint = context
                    .decompress_stream(&mut output, &mut input)
                    .map_err(|code| Corruption::Zstd(zstd_safe::get_error_name(code)))?;
                *in_frame = hint != 0;
                Ok(Step {
                    consumed: input.pos(),
                    produced: output.pos(),
                })
            }
        }
    }

    /// Whether the stream is complete.
    fn at_end(&self) -> bool {
        match self {
            Self::Gzip(gzip) => gzip.at_end(),
            Self::Deflate(deflate) => matches!(deflate, Deflate::End),
            Self::Brotli(state) => BrotliDecoderIsFinished(&**state),
            Self::Zstd { in_frame, .. } => !in_frame,
        }
    }
}

/// Inflates what it can of `input` into `out`; `true` at the end of the deflate stream.
fn inflate(
    inflater: &mut Decompress,
    input: &[u8],
    out: &mut [u8],
) -> Result<(Step, bool), Corruption> {
    let (before_in, before_out) = (inflater.total_in(), inflater.total_out());
    let status = inflater.decompress(input, out, FlushDecompress::None)?;
    // The differences are within the slices' lengths.
    let step = Step {
        consumed: (inflater.total_in() - before_in) as usize,
        produced: (inflater.total_out() - before_out) as usize,
    };
    Ok((step, status == Status::StreamEnd))
}

/// The `deflate` coding.
enum Deflate {
    /// Before the inflater: the first byte is held until the second one tells zlib from
    /// raw deflate.
    Sniff(Option<u8>),
    Inflate(Decompress),
    /// After the end of the stream.
    End,
}

impl Deflate {
    fn step(&mut self, input: &[u8], out: &mut [u8]) -> Result<Step, Corruption> {
        match self {
            Self::Sniff(held) => match (*held, input) {
                (_, []) => Ok(Step::default()),
                (None, [first]) => {
                    *held = Some(*first);
                    Ok(Step {
                        consumed: 1,
                        produced: 0,
                    })
                }
                (None, [first, second, ..]) => {
                    *self = Self::Inflate(Decompress::new(is_zlib_header(*first, *second)));
                    Ok(Step::default())
                }
                (Some(first), [second, ..]) => {
                    let mut inflater = Decompress::new(is_zlib_header(first, *second));
                    // One byte cannot fill the buffer, so the inflater takes it whole.
                    let (step, _) = inflate(&mut inflater, &[first], out)?;
                    *self = Self::Inflate(inflater);
                    Ok(Step {
                        consumed: 0,
                        produced: step.produced,
                    })
                }
            },
            Self::Inflate(inflater) => {
                let (step, end) = inflate(inflater, input, out)?;
                if end {
                    *self = Self::End;
                }
                Ok(step)
            }
            Self::End => after_end(input),
        }
    }
}

/// A step once the stream has ended: nothing, or trailing data.
fn after_end(input: &[u8]) -> Result<Step, Corruption> {
    if input.is_empty() {
        Ok(Step::default())
    } else {
        Err(Corruption::TrailingData)
    }
}

/// Whether two bytes are a zlib header (RFC 1950: method 8, a window of at most 32 KiB,
/// a check that makes them a multiple of 31), not the start of raw deflate.
fn is_zlib_header(cmf: u8, flg: u8) -> bool {
    cmf & 0x0f == 8 && cmf >> 4 <= 7 && (u16::from(cmf) << 8 | u16::from(flg)) % 31 == 0
}

/// A gzip header's flags (RFC 1952 §2.3.1).
const FHCRC: u8 = 1 << 1;
const FEXTRA: u8 = 1 << 2;
const FNAME: u8 = 1 << 3;
const FCOMMENT: u8 = 1 << 4;
const RESERVED: u8 = 0b1110_0000;
/// ID1, ID2 and CM (deflate), the start of every member.
const GZIP_MAGIC: [u8; 3] = [0x1f, 0x8b, 8];

/// The `gzip` coding: members of header, deflate data and trailer, one after another.
struct Gzip {
    part: GzipPart,
    /// The optional header fields still to read, as flags.
    pending: u8,
    /// A raw inflater, reset for each member.
    inflater: Decompress,
    /// The CRC-32 of the member's header until its data starts, then of its data.
    crc: Crc,
    /// Whether a member has ended: then bytes that start no member are trailing data.
    after_member: bool,
}

/// Where a gzip decoder is within a member.
enum GzipPart {
    /// ID1 ID2 CM FLG MTIME XFL OS.
    Fixed(Field<10>),
    /// XLEN.
    ExtraLength(Field<2>),
    /// The extra field's bytes still to skip.
    Extra(u16),
    /// A zero-terminated file name or comment.
    Text,
    /// CRC16.
    HeaderCrc(Field<2>),
    /// The deflate data.
    Data,
    /// CRC32 ISIZE.
    Trailer(Field<8>),
}

impl Gzip {
    fn new() -> Self {
        Self {
            part: GzipPart::Fixed(Field::EMPTY),
            pending: 0,
            inflater: Decompress::new(false),
            crc: Crc::new(),
            after_member: false,
        }
    }

    fn at_end(&self) -> bool {
        matches!(&self.part, GzipPart::Fixed(field) if field.len == 0)
    }

    /// Moves to the next optional header field the flags ask for, or to the data.
    fn next_header_part(&mut self) {
        let parts = [
            (FEXTRA, GzipPart::ExtraLength(Field::EMPTY)),
            (FNAME, GzipPart::Text),
            (FCOMMENT, GzipPart::Text),
            (FHCRC, GzipPart::HeaderCrc(Field::EMPTY)),
        ];
        for (flag, part) in parts {
            if self.pending & flag != 0 {
                self.pending &= !flag;
                self.part = part;
                return;
            }
        }
        self.crc.reset();
        self.part = GzipPart::Data;
    }

    fn step(&mut self, input: &[u8], out: &mut [u8]) -> Result<Step, Corruption> {
        let consumed = match &mut self.part {
            GzipPart::Data => {
                let (step, end) = inflate(&mut self.inflater, input, out)?;
                self.crc.update(&out[..step.produced]);
                if end {
                    self.part = GzipPart::Trailer(Field::EMPTY);
                }
                return Ok(step);
            }
            GzipPart::Fixed(field) => {
                let (taken, header) = field.take(input);
                if !GZIP_MAGIC.iter().zip(field.filled()).all(|(a, b)| a == b) {
                    return Err(if self.after_member {
                        Corruption::TrailingData
                    } else {
                        Corruption::GzipHeader
                    });
                }
                self.crc.update(&input[..taken]);
                if let Some(header) = header {
                    let flags = header[3];
                    if flags & RESERVED != 0 {
                        return Err(Corruption::GzipHeader);
                    }
                    self.pending = flags & (FEXTRA | FNAME | FCOMMENT | FHCRC);
                    self.next_header_part();
                }
                taken
            }
            GzipPart::ExtraLength(field) => {
                let (taken, length) = field.take(input);
                self.crc.update(&input[..taken]);
                match length.map(u16::from_le_bytes) {
                    Some(0) => self.next_header_part(),
                    Some(length) => self.part = GzipPart::Extra(length),
                    None => {}
                }
                taken
            }
            GzipPart::Extra(remaining) => {
                let taken = input.len().min(usize::from(*remaining));
                self.crc.update(&input[..taken]);
                // `taken` is at most `remaining`, a u16.
                *remaining -= taken as u16;
                if *remaining == 0 {
                    self.next_header_part();
                }
                taken
            }
            GzipPart::Text => {
                let end = memchr(0, input);
                let taken = end.map_or(input.len(), |end| end + 1);
                self.crc.update(&input[..taken]);
                if end.is_some() {
                    self.next_header_part();
                }
                taken
            }
            GzipPart::HeaderCrc(field) => {
                let (taken, crc16) = field.take(input);
                if let Some(crc16) = crc16 {
                    // The CRC-16 is the low half of the header's CRC-32.
                    if u32::from(u16::from_le_bytes(crc16)) != self.crc.sum() & 0xffff {
                        return Err(Corruption::GzipHeaderCrc);
                    }
                    self.next_header_part();
                }
                taken
            }
            GzipPart::Trailer(field) => {
                let (taken, trailer) = field.take(input);
                if let Some(trailer) = trailer {
                    let [c0, c1, c2, c3, l0, l1, l2, l3] = trailer;
                    if u32::from_le_bytes([c0, c1, c2, c3]) != self.crc.sum() {
                        return Err(Corruption::GzipCrc);
                    }
                    // ISIZE is the length modulo 2^32, as is `Crc::amount`.
                    if u32::from_le_bytes([l0, l1, l2, l3]) != self.crc.amount() {
                        return Err(Corruption::GzipLength);
                    }
                    self.after_member = true;
                    self.crc.reset();
                    self.inflater.reset(false);
                    self.part = GzipPart::Fixed(Field::EMPTY);
                }
                taken
            }
        };
        Ok(Step {
            consumed,
            produced: 0,
        })
    }
}

/// A fixed-size field that may arrive split across pieces.
struct Field<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> Field<N> {
    const EMPTY: Self = Self {
        bytes: [0; N],
        len: 0,
    };

    /// Takes what the field still lacks from `input`; returns how many bytes it took, and
    /// the field once complete.
    fn take(&mut self, input: &[u8]) -> (usize, Option<[u8; N]>) {
        let taken = (N - self.len).min(input.len());
        self.bytes[self.len..self.len + taken].copy_from_slice(&input[..taken]);
        self.len += taken;
        (taken, (self.len == N).then_some(self.bytes))
    }

    /// The bytes so far.
    fn filled(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use std::io::{self, Read, Write as _};
    use std::mem;
    use std::sync::OnceLock;

    use brotli::enc::BrotliEncoderParams;
    use flate2::Compression;
    use proptest::prelude::*;
    use zstd_safe::{CCtx, CParameter};

    use super::*;

    /// How the tests compress: the codings, with `deflate` both ways.
    #[derive(Clone, Copy, Debug)]
    enum Format {
        Gzip,
        Zlib,
        RawDeflate,
        Brotli,
        Zstd,
    }

    const FORMATS: [Format; 5] = [
        Format::Gzip,
        Format::Zlib,
        Format::RawDeflate,
        Format::Brotli,
        Format::Zstd,
    ];

    impl Format {
        fn coding(self) -> Coding {
            match self {
                Self::Gzip => Coding::Gzip,
                Self::Zlib | Self::RawDeflate => Coding::Deflate,
                Self::Brotli => Coding::Brotli,
                Self::Zstd => Coding::Zstd,
            }
        }

        /// Compresses `data` with the codec crates' own encoders, streaming where they can.
        fn compress(self, mut data: impl Read) -> Vec<u8> {
            let level = Compression::fast();
            let mut out = Vec::new();
            let written = match self {
                Self::Gzip => flate2::read::GzEncoder::new(data, level).read_to_end(&mut out),
                Self::Zlib => flate2::read::ZlibEncoder::new(data, level).read_to_end(&mut out),
                Self::RawDeflate => {
                    flate2::read::DeflateEncoder::new(data, level).read_to_end(&mut out)
                }
                Self::Brotli => {
                    let params = BrotliEncoderParams {
                        quality: 5,
                        ..BrotliEncoderParams::default()
                    };
                    brotli::BrotliCompress(&mut data, &mut out, &params)
                }
                Self::Zstd => {
                    let mut plain = Vec::new();
                    data.read_to_end(&mut plain).unwrap();
                    let mut context = CCtx::create();
                    context
                        .set_parameter(CParameter::ChecksumFlag(true))
                        .unwrap();
                    out.reserve(zstd_safe::compress_bound(plain.len()));
                    context
                        .compress2(&mut out, &plain)
                        .map_err(|code| io::Error::other(zstd_safe::get_error_name(code)))
                }
            };
            assert_eq!(written.unwrap(), out.len());
            out
        }
    }

    /// `len` bytes of an SSE-like body: a repeated shape with changing numbers.
    fn body(len: usize) -> Vec<u8> {
        let mut body = Vec::with_capacity(len + 100);
        for i in 0u64.. {
            if body.len() >= len {
                break;
            }
            write!(
                body,
                "event: content_block_delta\ndata: {{\"index\":{i},\"text\":\"token {}\"}}\n\n",
                i * 7919 % 10007
            )
            .unwrap();
        }
        body.truncate(len);
        body
    }

    /// Feeds `pieces`, then finishes; returns the decoded bytes and how it ended.
    fn decode_pieces<'a>(
        coding: Coding,
        pieces: impl IntoIterator<Item = &'a [u8]>,
        max_output: u64,
    ) -> (Vec<u8>, Result<(), DecodeError>) {
        let mut decoder = Decoder::new(coding, max_output);
        let mut decoded = Vec::new();
        for piece in pieces {
            let fed = decoder.feed(piece, |bytes: &[u8]| {
                assert!(
                    !bytes.is_empty() && bytes.len() <= OUT_BUF,
                    "{}",
                    bytes.len()
                );
                decoded.extend_from_slice(bytes);
            });
            if let Err(error) = fed {
                return (decoded, Err(error));
            }
        }
        (decoded, decoder.finish())
    }

    fn decode_whole(coding: Coding, stream: &[u8]) -> Result<Vec<u8>, DecodeError> {
        let (decoded, end) = decode_pieces(coding, [stream], u64::MAX);
        end.map(|()| decoded)
    }

    fn corruption(coding: Coding, stream: &[u8]) -> Corruption {
        match decode_whole(coding, stream) {
            Err(DecodeError::Corrupt { source, .. }) => source,
            other => panic!("{coding}: expected corrupt, got {other:?}"),
        }
    }

    /// A gzip member built by hand, with the optional header fields that `flags` asks for.
    fn gzip_member(flags: u8, data: &[u8]) -> Vec<u8> {
        let mut member = vec![0x1f, 0x8b, 8, flags, 1, 2, 3, 4, 0, 255];
        if flags & FEXTRA != 0 {
            member.extend_from_slice(&5u16.to_le_bytes());
            member.extend_from_slice(b"AB\x00\x01C");
        }
        if flags & FNAME != 0 {
            member.extend_from_slice(b"messages.sse\0");
        }
        if flags & FCOMMENT != 0 {
            member.extend_from_slice(b"a comment\0");
        }
        if flags & FHCRC != 0 {
            let mut crc = Crc::new();
            crc.update(&member);
            member.extend_from_slice(&(crc.sum() as u16).to_le_bytes());
        }
        member.extend(Format::RawDeflate.compress(data));
        let mut crc = Crc::new();
        crc.update(data);
        member.extend_from_slice(&crc.sum().to_le_bytes());
        member.extend_from_slice(&(data.len() as u32).to_le_bytes());
        member
    }

    /// The length of the body in [`streams`].
    const LARGE: usize = 100_000;

    /// Every format's stream of `body(LARGE)`, plus two gzip members and two zstd frames
    /// with a skippable frame between them.
    fn streams() -> &'static [(Coding, Vec<u8>)] {
        static STREAMS: OnceLock<Vec<(Coding, Vec<u8>)>> = OnceLock::new();
        STREAMS.get_or_init(|| {
            let plain = body(LARGE);
            let mut streams: Vec<_> = FORMATS
                .iter()
                .map(|format| (format.coding(), format.compress(&plain[..])))
                .collect();
            let (first, second) = plain.split_at(30_000);
            let members = [Format::Gzip.compress(first), Format::Gzip.compress(second)].concat();
            streams.push((Coding::Gzip, members));
            let skippable = [
                &0x184D_2A50u32.to_le_bytes()[..],
                &3u32.to_le_bytes(),
                b"abc",
            ]
            .concat();
            let frames = [
                Format::Zstd.compress(first),
                skippable,
                Format::Zstd.compress(second),
            ]
            .concat();
            streams.push((Coding::Zstd, frames));
            streams
        })
    }

    #[test]
    fn round_trips_in_any_piece_size() {
        let plain = body(LARGE);
        for (coding, stream) in streams() {
            for size in [1, 7, 4096, stream.len()] {
                let (decoded, end) = decode_pieces(*coding, stream.chunks(size), u64::MAX);
                assert!(end.is_ok(), "{coding} in pieces of {size}: {end:?}");
                assert!(decoded == plain, "{coding} in pieces of {size}");
            }
        }
    }

    #[test]
    fn every_split_point_of_a_small_stream() {
        let plain = body(2_000);
        let mut streams: Vec<_> = FORMATS
            .iter()
            .map(|format| (format.coding(), format.compress(&plain[..])))
            .collect();
        let (first, second) = plain.split_at(700);
        let members = [Format::Gzip.compress(first), Format::Gzip.compress(second)];
        streams.push((Coding::Gzip, members.concat()));
        let frames = [Format::Zstd.compress(first), Format::Zstd.compress(second)];
        streams.push((Coding::Zstd, frames.concat()));
        for (coding, stream) in streams {
            for at in 0..=stream.len() {
                let (head, tail) = stream.split_at(at);
                let (decoded, end) = decode_pieces(coding, [head, tail], u64::MAX);
                assert!(end.is_ok(), "{coding} split at {at}: {end:?}");
                assert!(decoded == plain, "{coding} split at {at}");
            }
        }
    }

    #[test]
    fn gzip_reads_every_optional_header_field() {
        let plain = body(300);
        for fields in 0..16u8 {
            // FTEXT (bit 0) is only a hint; set it on every other member.
            let flags = fields << 1 | fields & 1;
            let member = gzip_member(flags, &plain);
            for at in 0..=member.len() {
                let (head, tail) = member.split_at(at);
                let (decoded, end) = decode_pieces(Coding::Gzip, [head, tail], u64::MAX);
                assert!(end.is_ok(), "flags {flags:#x} split at {at}: {end:?}");
                assert!(decoded == plain, "flags {flags:#x} split at {at}");
            }
        }
    }

    #[test]
    fn corrupt_gzip() {
        let plain = body(300);
        let member = gzip_member(FHCRC | FNAME, &plain);
        let with = |at: usize, byte: u8| {
            let mut stream = member.clone();
            stream[at] = byte;
            stream
        };
        let crc_at = member.len() - 8;
        let length_at = member.len() - 4;
        let cases = [
            (with(1, 0x8c), "not a gzip member header"),
            (with(2, 7), "not a gzip member header"),
            (with(3, FNAME | 0x20), "not a gzip member header"),
            (with(12, b'M'), "gzip header CRC mismatch"),
            (with(crc_at, member[crc_at] ^ 1), "gzip CRC-32 mismatch"),
            (
                with(length_at, member[length_at] ^ 1),
                "gzip length mismatch",
            ),
        ];
        for (stream, expected) in cases {
            assert_eq!(corruption(Coding::Gzip, &stream).to_string(), expected);
        }
    }

    #[test]
    fn corrupt_deflate() {
        let plain = body(300);
        let mut zlib = Format::Zlib.compress(&plain[..]);
        let adler_at = zlib.len() - 1;
        zlib[adler_at] ^= 1;
        assert!(matches!(
            corruption(Coding::Deflate, &zlib),
            Corruption::Deflate(_)
        ));
        // A zlib header that asks for a preset dictionary, which HTTP has no way to name.
        let dictionary = [0x78, 0xbb, 0, 0, 0, 1, 3, 0];
        assert!(matches!(
            corruption(Coding::Deflate, &dictionary),
            Corruption::Deflate(_)
        ));
        // Block type 3 is reserved.
        assert!(matches!(
            corruption(Coding::Deflate, &[0xff; 8]),
            Corruption::Deflate(_)
        ));
    }

    #[test]
    fn corrupt_brotli() {
        // WBITS 16, not the last metablock, a metadata block whose reserved bit is set.
        assert!(matches!(
            corruption(Coding::Brotli, &[0x1c, 0, 0, 0]),
            Corruption::Brotli(BrotliDecoderErrorCode::BROTLI_DECODER_ERROR_FORMAT_RESERVED)
        ));
    }

    #[test]
    fn corrupt_zstd() {
        assert!(matches!(
            corruption(Coding::Zstd, &[0; 16]),
            Corruption::Zstd(_)
        ));
        let mut stream = Format::Zstd.compress(&body(300)[..]);
        let checksum_at = stream.len() - 1;
        stream[checksum_at] ^= 1;
        assert!(matches!(
            corruption(Coding::Zstd, &stream),
            Corruption::Zstd(_)
        ));
    }

    #[test]
    fn bytes_after_the_end_come_after_the_whole_body() {
        let plain = body(2_000);
        for format in FORMATS {
            let stream = [&format.compress(&plain[..])[..], b"\0"].concat();
            for size in [1, 7, stream.len()] {
                let (decoded, end) = decode_pieces(format.coding(), stream.chunks(size), u64::MAX);
                assert!(decoded == plain, "{format:?} in pieces of {size}");
                let Err(DecodeError::Corrupt { source, .. }) = end else {
                    panic!("{format:?} in pieces of {size}: {end:?}");
                };
                // A zstd decoder reads on for the next frame and finds none.
                assert!(
                    matches!(
                        (format, source),
                        (Format::Zstd, Corruption::Zstd(_)) | (_, Corruption::TrailingData)
                    ),
                    "{format:?} in pieces of {size}"
                );
            }
        }
    }

    #[test]
    fn every_proper_prefix_is_truncated() {
        let plain = body(2_000);
        for format in FORMATS {
            let stream = format.compress(&plain[..]);
            let coding = format.coding();
            for len in 1..stream.len() {
                let (_, end) = decode_pieces(coding, [&stream[..len]], u64::MAX);
                let truncated =
                    matches!(end, Err(DecodeError::Truncated { coding: c }) if c == coding);
                assert!(truncated, "{format:?} cut to {len}: {end:?}");
            }
        }
    }

    #[test]
    fn a_body_without_bytes_is_empty() {
        for format in FORMATS {
            let (decoded, end) = decode_pieces(format.coding(), [&[][..], &[]], u64::MAX);
            assert!(decoded.is_empty() && end.is_ok(), "{format:?}: {end:?}");
        }
    }

    /// A zstd frame of one raw block, `x`, whose header asks for a window of 2^`log` bytes.
    fn zstd_frame_with_window(log: u8) -> [u8; 10] {
        let window_descriptor = (log - 10) << 3;
        // Magic, no single segment, the window, then a last raw block of one byte.
        [
            0x28,
            0xb5,
            0x2f,
            0xfd,
            0,
            window_descriptor,
            0b1001,
            0,
            0,
            b'x',
        ]
    }

    #[test]
    fn zstd_windows_over_8_mib_are_refused() {
        assert_eq!(
            decode_whole(Coding::Zstd, &zstd_frame_with_window(23)).unwrap(),
            b"x"
        );
        let Corruption::Zstd(message) = corruption(Coding::Zstd, &zstd_frame_with_window(24))
        else {
            panic!("not a zstd error");
        };
        assert!(message.contains("memory"), "{message}");
    }

    #[test]
    fn large_window_brotli_is_refused() {
        let params = BrotliEncoderParams {
            large_window: true,
            lgwin: 26,
            quality: 5,
            ..BrotliEncoderParams::default()
        };
        let mut stream = Vec::new();
        brotli::BrotliCompress(&mut &body(300)[..], &mut stream, &params).unwrap();
        assert!(matches!(
            corruption(Coding::Brotli, &stream),
            Corruption::Brotli(BrotliDecoderErrorCode::BROTLI_DECODER_ERROR_FORMAT_WINDOW_BITS)
        ));
    }

    /// Decompression bombs of zeros: 1 GiB for gzip (members) and zstd (frames), built
    /// from 1 MiB pieces; 16 MiB in one stream for the others, encoded as it streams.
    fn bomb(format: Format) -> Vec<u8> {
        const MIB: u64 = 1 << 20;
        match format {
            Format::Gzip | Format::Zstd => format.compress(io::repeat(0).take(MIB)).repeat(1024),
            Format::Zlib | Format::RawDeflate | Format::Brotli => {
                format.compress(io::repeat(0).take(16 * MIB))
            }
        }
    }

    #[test]
    fn bombs_stop_at_the_cap() {
        const CAP: u64 = 1 << 20;
        for format in FORMATS {
            let bomb = bomb(format);
            let mut decoder = Decoder::new(format.coding(), CAP);
            let mut received = 0u64;
            let mut fed = 0;
            let end = bomb.chunks(16).find_map(|piece| {
                fed += piece.len();
                let result = decoder.feed(piece, |bytes: &[u8]| {
                    assert!(bytes.len() <= OUT_BUF);
                    received += bytes.len() as u64;
                });
                result.err()
            });
            assert!(
                matches!(end, Some(DecodeError::OverCap { max_output: CAP })),
                "{format:?}: {end:?}"
            );
            // Exactly the bytes up to the cap came out, and the rest of the bomb is left.
            assert_eq!(received, CAP, "{format:?}");
            assert!(fed < bomb.len(), "{format:?}: {} bytes", bomb.len());
            let again = decoder.feed(&bomb[fed..], |_: &[u8]| panic!("{format:?} decodes on"));
            assert!(matches!(again, Err(DecodeError::OverCap { .. })));
            assert!(matches!(decoder.finish(), Err(DecodeError::OverCap { .. })));
        }
    }

    #[test]
    fn exactly_the_cap_is_not_over_it() {
        let plain = body(LARGE);
        let cap = plain.len() as u64;
        for (coding, stream) in streams() {
            let (decoded, end) = decode_pieces(*coding, [&stream[..]], cap);
            assert!(end.is_ok() && decoded == plain, "{coding}: {end:?}");
            let (decoded, end) = decode_pieces(*coding, [&stream[..]], cap - 1);
            assert!(matches!(end, Err(DecodeError::OverCap { .. })), "{coding}");
            assert!(decoded == plain[..plain.len() - 1], "{coding}");
        }
    }

    #[test]
    fn an_error_ends_decoding_for_good() {
        let mut decoder = Decoder::new(Coding::Gzip, u64::MAX);
        let first = decoder.feed(b"\x1f\x8c", |_: &[u8]| {});
        assert!(matches!(first, Err(DecodeError::Corrupt { .. })));
        let stream = Format::Gzip.compress(&b"hello"[..]);
        let again = decoder.feed(&stream, |_: &[u8]| panic!("decodes after an error"));
        assert_eq!(
            again.unwrap_err().to_string(),
            first.unwrap_err().to_string()
        );
        assert!(matches!(decoder.finish(), Err(DecodeError::Corrupt { .. })));
    }

    #[test]
    fn content_encoding_values() {
        let coding = |values: &[&str]| {
            Decoder::for_content_encoding(values.iter().map(|value| value.as_bytes()), 1)
                .map(|decoder| decoder.map(|decoder| decoder.coding))
        };
        assert_eq!(coding(&[]), Ok(None));
        assert_eq!(coding(&["identity"]), Ok(None));
        assert_eq!(coding(&["", " , "]), Ok(None));
        assert_eq!(coding(&["gzip"]), Ok(Some(Coding::Gzip)));
        assert_eq!(coding(&[" X-GZip "]), Ok(Some(Coding::Gzip)));
        assert_eq!(coding(&["Deflate"]), Ok(Some(Coding::Deflate)));
        assert_eq!(coding(&["br"]), Ok(Some(Coding::Brotli)));
        assert_eq!(coding(&["identity, zstd"]), Ok(Some(Coding::Zstd)));
        assert_eq!(coding(&["gzip, br"]), Err(Unsupported::Stacked));
        assert_eq!(coding(&["gzip", "gzip"]), Err(Unsupported::Stacked));
        assert_eq!(
            coding(&["compress"]),
            Err(Unsupported::Coding("compress".into()))
        );
        assert_eq!(coding(&["br, dcb"]), Err(Unsupported::Coding("dcb".into())));
    }

    #[test]
    fn decoders_move_between_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Decoder>();
    }

    /// Cuts `stream` at the given places.
    fn split<'a>(stream: &'a [u8], cuts: &[prop::sample::Index]) -> Vec<&'a [u8]> {
        let mut at: Vec<usize> = cuts.iter().map(|cut| cut.index(stream.len() + 1)).collect();
        at.sort_unstable();
        at.push(stream.len());
        let mut start = 0;
        at.into_iter()
            .map(|end| {
                let piece = &stream[start..end];
                start = end;
                piece
            })
            .collect()
    }

    /// Decodes `stream` whole and split at `cuts`: the same outcome (zstd's message may
    /// differ with the path it took), and decoded bytes that agree, though before an error
    /// they may end elsewhere.
    fn split_agrees(
        coding: Coding,
        stream: &[u8],
        cuts: &[prop::sample::Index],
    ) -> Result<(), TestCaseError> {
        let (split_decoded, split_end) = decode_pieces(coding, split(stream, cuts), u64::MAX);
        let (decoded, end) = decode_pieces(coding, [stream], u64::MAX);
        prop_assert_eq!(
            split_end.map_err(|error| mem::discriminant(&error)),
            end.map_err(|error| mem::discriminant(&error))
        );
        prop_assert!(split_decoded.starts_with(&decoded) || decoded.starts_with(&split_decoded));
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn any_split_gives_the_same_bytes(
            which in 0..streams().len(),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
        ) {
            let (coding, stream) = &streams()[which];
            let (decoded, end) = decode_pieces(*coding, split(stream, &cuts), u64::MAX);
            prop_assert!(end.is_ok(), "{:?}", end);
            prop_assert!(decoded == body(LARGE));
        }

        #[test]
        fn any_bytes_end_alike_in_any_split(
            format in prop::sample::select(FORMATS.to_vec()),
            noise in prop::collection::vec(any::<u8>(), 0..600),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
        ) {
            split_agrees(format.coding(), &noise, &cuts)?;
        }

        #[test]
        fn damaged_streams_end_alike_in_any_split(
            format in prop::sample::select(FORMATS.to_vec()),
            damage in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
        ) {
            let mut stream = format.compress(&body(3_000)[..]);
            for (at, byte) in damage {
                let at = at.index(stream.len());
                stream[at] ^= byte;
            }
            split_agrees(format.coding(), &stream, &cuts)?;
        }
    }
}
