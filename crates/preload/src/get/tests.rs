//! The three forms against a view written here, on memory that stands for the caller's.

use std::cell::RefCell;

use hpkv_abi as abi;
use hpkv_view::{ViewConfig, ViewReader, ViewWriter};

use super::{answer, Answer, CallerMemory, Form, Scratch};

/// `bytes` stands for the caller's memory from `arg`; only its first `span` bytes are
/// readable and writable (the rest is "unknown": touching it fails the test).
struct Mem {
    bytes: RefCell<Vec<u8>>,
    span: usize,
}

impl Mem {
    fn new(bytes: Vec<u8>) -> Mem {
        let span = bytes.len();
        Mem {
            bytes: RefCell::new(bytes),
            span,
        }
    }
    fn spanning(bytes: Vec<u8>, span: usize) -> Mem {
        Mem {
            span,
            ..Mem::new(bytes)
        }
    }
    fn take(&self) -> Vec<u8> {
        self.bytes.borrow().clone()
    }
}

impl CallerMemory for Mem {
    fn span(&self) -> usize {
        self.span
    }
    fn read(&self, at: usize, out: &mut [u8]) {
        assert!(at + out.len() <= self.span, "read past the span");
        out.copy_from_slice(&self.bytes.borrow()[at..at + out.len()]);
    }
    fn write(&self, at: usize, bytes: &[u8]) {
        assert!(at + bytes.len() <= self.span, "write past the span");
        self.bytes.borrow_mut()[at..at + bytes.len()].copy_from_slice(bytes);
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    _writer: ViewWriter,
    reader: ViewReader,
}

fn fixture(profile: u64) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.view");
    let mut config = ViewConfig::new(64, 8192, 1 << 20);
    config.abi_profile = u32::try_from(profile).unwrap();
    let mut w = ViewWriter::create(&path, &config).unwrap();
    w.upsert(b"k", 1, Some(b"abc"), 3).unwrap();
    w.upsert(b"bin", 2, Some(b"a\0b\xff"), 4).unwrap();
    w.upsert(b"cold", 3, None, 50).unwrap();
    w.upsert(&[b'L'; 511], 4, Some(b"long key"), 8).unwrap();
    w.upsert(&[b'q'; 512], 5, Some(b"512"), 3).unwrap();
    w.publish().unwrap();
    let reader = ViewReader::open(&path).unwrap();
    Fixture {
        _dir: dir,
        _writer: w,
        reader,
    }
}

fn run(f: &Fixture, form: Form, mem: &Mem) -> Answer {
    answer(form, &f.reader, mem, &mut Scratch::new())
}

fn readme_buf(key: &[u8], cap: usize) -> Vec<u8> {
    let mut b = vec![0xAA; cap];
    b[..key.len()].copy_from_slice(key);
    b[key.len()] = 0;
    b
}

#[test]
fn readme_hit_writes_the_value_and_one_nul() {
    let f = fixture(abi::ABI_README);
    let mem = Mem::new(readme_buf(b"k", 16));
    assert_eq!(run(&f, Form::Module, &mem), Answer::Done);
    let mut want = vec![0xAA; 16];
    want[..4].copy_from_slice(b"abc\0");
    assert_eq!(mem.take(), want);

    let mem = Mem::new(readme_buf(b"bin", 8));
    assert_eq!(run(&f, Form::Module, &mem), Answer::Done);
    assert_eq!(mem.take(), b"a\0b\xff\0\xAA\xAA\xAA");

    let mem = Mem::new(readme_buf(&[b'L'; 511], 600));
    assert_eq!(run(&f, Form::Module, &mem), Answer::Done);
    assert_eq!(&mem.take()[..9], b"long key\0");
}

#[test]
fn readme_miss_and_what_the_device_decides() {
    let f = fixture(abi::ABI_README);
    let before = readme_buf(b"nobody", 32);
    let mem = Mem::new(before.clone());
    assert_eq!(run(&f, Form::Module, &mem), Answer::Fail(libc::ENOENT));
    assert_eq!(mem.take(), before, "ENOENT leaves the buffer as it was");

    let cases: Vec<(&str, Mem)> = vec![
        ("empty key", Mem::new(readme_buf(b"", 8))),
        ("no NUL in 512 bytes", Mem::new(vec![b'k'; 4096])),
        ("a 512-byte key", Mem::new(readme_buf(&[b'q'; 512], 600))),
        (
            "memory ends inside the key",
            Mem::spanning(readme_buf(b"k", 8), 1),
        ),
        (
            "no room for the value's NUL",
            Mem::spanning(readme_buf(b"k", 8), 3),
        ),
        ("value not in the view", Mem::new(readme_buf(b"cold", 8))),
    ];
    for (what, mem) in cases {
        let before = mem.take();
        assert_eq!(run(&f, Form::Module, &mem), Answer::Forward, "{what}");
        assert_eq!(mem.take(), before, "{what}: nothing written");
    }
    // Exactly enough room: the value and its NUL.
    let mem = Mem::spanning(readme_buf(b"k", 8), 4);
    assert_eq!(run(&f, Form::Module, &mem), Answer::Done);
}

fn v13_buf(key: &[u8], cap: usize) -> Vec<u8> {
    let mut b = vec![0xAA; cap];
    b[..2].copy_from_slice(&u16::try_from(key.len()).unwrap().to_le_bytes());
    b[2..2 + key.len()].copy_from_slice(key);
    b
}

#[test]
fn v13_layout_and_refusals() {
    let f = fixture(abi::ABI_V13);
    let mem = Mem::new(v13_buf(b"bin", 20));
    assert_eq!(run(&f, Form::Module, &mem), Answer::Done);
    let got = mem.take();
    assert_eq!(&got[..2], &3u16.to_le_bytes(), "key_len untouched");
    assert_eq!(&got[2..10], &4u64.to_le_bytes());
    assert_eq!(&got[10..14], b"a\0b\xff");
    assert!(
        got[14..].iter().all(|&b| b == 0xAA),
        "no NUL after a v1.3 value"
    );

    let mem = Mem::new(v13_buf(&[b'q'; 512], 600));
    assert_eq!(run(&f, Form::Module, &mem), Answer::Done);
    assert_eq!(&mem.take()[10..13], b"512");

    let before = v13_buf(b"nobody", 32);
    let mem = Mem::new(before.clone());
    assert_eq!(run(&f, Form::Module, &mem), Answer::Fail(libc::ENOENT));
    assert_eq!(mem.take(), before);

    let mut big = vec![0u8; 1024];
    big[..2].copy_from_slice(&513u16.to_le_bytes());
    let cases: Vec<(&str, Mem)> = vec![
        ("key_len 0", Mem::new(v13_buf(b"", 16))),
        ("key_len 513", Mem::new(big)),
        (
            "memory ends inside the key",
            Mem::spanning(v13_buf(b"bin", 20), 4),
        ),
        (
            "no room for the value",
            Mem::spanning(v13_buf(b"bin", 20), 13),
        ),
        ("value not in the view", Mem::new(v13_buf(b"cold", 64))),
        (
            "memory ends inside key_len",
            Mem::spanning(v13_buf(b"k", 8), 1),
        ),
    ];
    for (what, mem) in cases {
        let before = mem.take();
        assert_eq!(run(&f, Form::Module, &mem), Answer::Forward, "{what}");
        assert_eq!(mem.take(), before, "{what}: nothing written");
    }
    let mem = Mem::spanning(v13_buf(b"bin", 20), 14);
    assert_eq!(
        run(&f, Form::Module, &mem),
        Answer::Done,
        "exactly enough room"
    );
}

fn safe_buf(key: &[u8], capacity: u64, room: usize) -> Vec<u8> {
    let mut b = vec![0xAA; abi::GET_STRUCT_SIZE + room];
    b[..abi::GET_STRUCT_SIZE].fill(0);
    b[..2].copy_from_slice(&u16::try_from(key.len()).unwrap().to_le_bytes());
    b[8..16].copy_from_slice(&capacity.to_le_bytes());
    b[24..24 + key.len()].copy_from_slice(key);
    b
}

#[test]
fn safe_get_hit_erange_miss_and_refusals() {
    for profile in [abi::ABI_README, abi::ABI_V13] {
        let f = fixture(profile);
        let mem = Mem::new(safe_buf(b"bin", 4, 8));
        assert_eq!(run(&f, Form::Safe, &mem), Answer::Done);
        let got = mem.take();
        assert_eq!(&got[16..24], &4u64.to_le_bytes());
        assert_eq!(&got[536..540], b"a\0b\xff");
        assert_eq!(&got[540..], &[0xAA; 4]);
        let mut want = safe_buf(b"bin", 4, 8);
        want[16..24].copy_from_slice(&4u64.to_le_bytes());
        want[536..540].copy_from_slice(b"a\0b\xff");
        assert_eq!(got, want, "nothing else written");

        let mem = Mem::new(safe_buf(b"bin", 3, 8));
        assert_eq!(run(&f, Form::Safe, &mem), Answer::Fail(libc::ERANGE));
        let mut want = safe_buf(b"bin", 3, 8);
        want[16..24].copy_from_slice(&4u64.to_le_bytes());
        assert_eq!(mem.take(), want, "ERANGE: the length needed, no value");

        let before = safe_buf(b"nobody", 64, 8);
        let mem = Mem::new(before.clone());
        assert_eq!(run(&f, Form::Safe, &mem), Answer::Fail(libc::ENOENT));
        assert_eq!(mem.take(), before);

        let mut flags = safe_buf(b"k", 8, 8);
        flags[2] = 1;
        let mut reserved = safe_buf(b"k", 8, 8);
        reserved[5] = 1;
        let cases: Vec<(&str, Mem)> = vec![
            ("key_len 0", Mem::new(safe_buf(b"", 8, 8))),
            ("flags", Mem::new(flags)),
            ("reserved", Mem::new(reserved)),
            (
                "struct not all readable",
                Mem::spanning(safe_buf(b"k", 8, 8), 535),
            ),
            (
                "no room for the value",
                Mem::spanning(safe_buf(b"k", 8, 8), 538),
            ),
            ("value not in the view", Mem::new(safe_buf(b"cold", 64, 64))),
        ];
        for (what, mem) in cases {
            let before = mem.take();
            assert_eq!(run(&f, Form::Safe, &mem), Answer::Forward, "{what}");
            assert_eq!(mem.take(), before, "{what}: nothing written");
        }
        // ERANGE needs no room for the value.
        let mem = Mem::spanning(safe_buf(b"bin", 0, 8), 536);
        assert_eq!(run(&f, Form::Safe, &mem), Answer::Fail(libc::ERANGE));
    }
}

#[test]
fn unknown_profile_and_requests() {
    let f = fixture(7);
    let mem = Mem::new(readme_buf(b"k", 16));
    assert_eq!(run(&f, Form::Module, &mem), Answer::Forward);
    assert_eq!(Form::of_request(0), Some(Form::Module));
    assert_eq!(
        Form::of_request(1 << 32),
        Some(Form::Module),
        "the kernel truncates"
    );
    assert_eq!(Form::of_request(u64::from(abi::IOC_GET)), Some(Form::Safe));
    assert_eq!(Form::of_request(1), None);
    assert_eq!(Form::of_request(u64::from(abi::IOC_STATS)), None);
}
