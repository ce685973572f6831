//! Wire codecs against vendor fixtures (`fixtures/*/SOURCES.md`): G.711 against the ITU-T G.191
//! STL vectors, Twilio Media Streams against the examples in Twilio's docs, `X-Twilio-Signature`
//! against the docs' worked example and twilio-python's test vectors.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use kav::core::g711;

// ---------------------------------------------------------------------------------------------
// Allocation counting. Per thread, because the test harness runs tests on parallel threads.
// ---------------------------------------------------------------------------------------------

struct CountingAlloc;

thread_local! {
    // `const` and `Cell<usize>` (no destructor) so touching it never allocates itself.
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn note_allocation() {
    // `try_with` because the allocator also runs while thread-locals are being torn down.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

// SAFETY: forwards every call to `System` unchanged; counting has no effect on the memory.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn allocations_during<R>(f: impl FnOnce() -> R) -> (usize, R) {
    let before = ALLOCATIONS.with(Cell::get);
    let result = f();
    (ALLOCATIONS.with(Cell::get) - before, result)
}

// ---------------------------------------------------------------------------------------------
// G.711
// ---------------------------------------------------------------------------------------------

/// CRC-32 (IEEE, reflected, as zlib), which is what the STL README lists for its vector files.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

// CRCs of the STL files (openitu/STL @139db497 src/g711/test_data, README "CRC32-LE"), recorded
// in fixtures/g711/SOURCES.md. They let the whole-sweep tests run without the ITU-licensed files.
const CRC_SWEEP_SRC: u32 = 0xC8BA_7682;
const CRC_SWEEP_R_U: u32 = 0xCD17_0E15;
const CRC_SWEEP_R_U_U: u32 = 0x6364_1C01;

/// `sweep.src`: every int16 from -32768 to 32767 once, little-endian.
fn sweep_src() -> Vec<u8> {
    (i16::MIN..=i16::MAX).flat_map(i16::to_le_bytes).collect()
}

/// Our encoder over the sweep in the `sweep-r.u` layout: one little-endian u16 word per code.
fn our_sweep_r_u() -> Vec<u8> {
    (i16::MIN..=i16::MAX)
        .flat_map(|x| u16::from(g711::encode(x)).to_le_bytes())
        .collect()
}

/// Our decoder over `sweep-r.u` in the `sweep-r.u-u` / `.reu` layout: int16 little-endian.
fn our_sweep_r_u_u() -> Vec<u8> {
    (i16::MIN..=i16::MAX)
        .flat_map(|x| g711::decode(g711::encode(x)).to_le_bytes())
        .collect()
}

/// The STL binaries themselves, if present: `fixtures/g711/` once their licence is cleared for
/// the repo, else `$KAV_STL_G711_DIR` (e.g. /work/shared/protocol-fixtures/g711).
fn stl_file(name: &str) -> Option<Vec<u8>> {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/g711");
    let env = std::env::var_os("KAV_STL_G711_DIR").map(std::path::PathBuf::from);
    [Some(repo), env]
        .into_iter()
        .flatten()
        .map(|dir| dir.join(name))
        .find_map(|path| std::fs::read(path).ok())
}

#[test]
fn g711_sweep_layout_matches_stl_crc() {
    // Proves we read sweep.src's format right before trusting the other CRCs.
    assert_eq!(crc32(&sweep_src()), CRC_SWEEP_SRC);
}

#[test]
fn g711_encode_matches_stl_sweep_r_u_exactly() {
    let ours = our_sweep_r_u();
    assert_eq!(
        crc32(&ours),
        CRC_SWEEP_R_U,
        "encoder differs from STL ulaw_compress"
    );
    match stl_file("sweep-r.u") {
        Some(reference) => {
            let src = stl_file("sweep.src").expect("sweep.src beside sweep-r.u");
            assert_eq!(src, sweep_src());
            for (i, (a, b)) in ours.chunks(2).zip(reference.chunks(2)).enumerate() {
                assert_eq!(a, b, "pcm {}: ours {a:?}, STL {b:?}", i as i32 - 32768);
            }
            assert_eq!(ours.len(), reference.len());
        }
        None => eprintln!("sweep-r.u not present; verified by CRC only"),
    }
}

#[test]
fn g711_decode_matches_stl_expanded_sweep_exactly() {
    let ours = our_sweep_r_u_u();
    assert_eq!(
        crc32(&ours),
        CRC_SWEEP_R_U_U,
        "decode(encode(sweep)) differs from STL sweep-r.u-u"
    );
    for name in ["sweep-r.u-u", "sweep-r.reu"] {
        if let Some(reference) = stl_file(name) {
            assert_eq!(ours, reference, "{name}");
        }
    }
    // Decoding the reference codes themselves (not just ours) must give the expanded file.
    if let (Some(codes), Some(expanded)) = (stl_file("sweep-r.u"), stl_file("sweep-r.u-u")) {
        for (code, want) in codes.chunks(2).zip(expanded.chunks(2)) {
            let got = g711::decode(code[0]);
            assert_eq!(code[1], 0, "sweep-r.u high byte");
            assert_eq!(
                got.to_le_bytes(),
                [want[0], want[1]],
                "code {:#04x}",
                code[0]
            );
        }
    }
}

#[test]
fn g711_decode_table_matches_derived_fixture() {
    let json: serde_json::Value = serde_json::from_str(include_str!(
        "../fixtures/g711/ulaw_decode_table_DERIVED.json"
    ))
    .unwrap();
    let table = json["ulaw_to_linear16"].as_array().unwrap();
    assert_eq!(table.len(), 256);
    for (code, want) in table.iter().enumerate() {
        let want = want.as_i64().unwrap();
        assert_eq!(
            i64::from(g711::decode(code as u8)),
            want,
            "code {code:#04x}"
        );
        assert_eq!(i64::from(g711::DECODE_TABLE[code]), want);
    }
}

#[test]
fn g711_encode_matches_derived_stl_vectors() {
    let json: serde_json::Value = serde_json::from_str(include_str!(
        "../fixtures/g711/ulaw_encode_vectors_DERIVED.json"
    ))
    .unwrap();
    let vectors = json["vectors"].as_array().unwrap();
    assert!(vectors.len() >= 30);
    for v in vectors {
        let pcm = i16::try_from(v["pcm"].as_i64().unwrap()).unwrap();
        let want = u8::from_str_radix(v["stl_ulaw"].as_str().unwrap(), 16).unwrap();
        assert_eq!(g711::encode(pcm), want, "pcm {pcm}");
    }
}

#[test]
fn g711_into_variants_allocate_nothing() {
    let pcm: Vec<i16> = (0..160).map(|i| (i * 397 - 30000) as i16).collect();
    let mut ulaw = [0u8; 160];
    let mut back = [0i16; 160];
    let (allocs, ()) = allocations_during(|| {
        g711::encode_into(&pcm, &mut ulaw);
        g711::decode_into(&ulaw, &mut back);
    });
    assert_eq!(allocs, 0);
    assert_eq!(ulaw[0], g711::encode(pcm[0]));
    assert_eq!(back[159], g711::decode(ulaw[159]));
}
