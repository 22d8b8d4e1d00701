//! The kernel's half of CUSE's unrestricted-ioctl retry protocol, simulated for tests (the
//! feature `testkit`): one simulator that every test of the codec, the client and the fuzz
//! targets drive, so that they all agree on what the kernel does.
//!
//! What the kernel does (`fuse_do_ioctl` in fs/fuse/file.c), and so what [`ioctl`] does:
//! the first round reaches the daemon with no input and no output room. A retry names areas
//! of the caller's memory; the kernel refuses more than [`IOVS_MAX`] areas or more than
//! [`DATA_MAX`] bytes either way (ENOMEM), copies the input areas in (EFAULT when one is not
//! readable) and calls again, offering the output areas. A final answer longer than the
//! output offered is EIO; otherwise the kernel copies it out into the output areas in order
//! (EFAULT when one is not writable), also when the result is an error, and the caller sees
//! the result.
//!
//! ```
//! use hpkv_abi::retry_sim::{daemon_round, ioctl, Answer, Memory};
//! use hpkv_abi::{encode_kv, Command, Profile, CMD_INSERT};
//!
//! let base = 0x7000_0000;
//! let mut arg = encode_kv(b"key", b"value")?;
//! // A buffer the caller allocated: the rest of its page is mapped too (INSERT's first
//! // retry reads to the end of the page).
//! let mut memory = Memory::with_page_tail(base, &mut arg);
//! let outcome = ioctl(&mut memory, |input, out_size| {
//!     daemon_round(Profile::Readme, CMD_INSERT, base, input, out_size, |command| {
//!         assert_eq!(command, Command::Insert { key: b"key", value: b"value" });
//!         Answer::done(0, vec![])
//!     })
//! });
//! assert_eq!((outcome.result, outcome.rounds), (Ok(0), 2));
//! # Ok::<(), hpkv_abi::RequestError>(())
//! ```

use nix::errno::Errno;

use crate::{decode_ioctl, Command, Decoded, Iov, Profile, Retry};

/// The page size the simulated caller's memory is mapped in.
pub const PAGE: u64 = 4096;
/// CUSE's limit on the data of one ioctl, each way (32 pages: `FUSE_DEFAULT_MAX_PAGES_PER_REQ`).
pub const DATA_MAX: u64 = 32 * PAGE;
/// The kernel's limit on the areas of one retry, each way (`FUSE_IOCTL_MAX_IOV`).
pub const IOVS_MAX: usize = 256;
/// Rounds after which a command that still asks for more is a bug of the daemon (the
/// kernel itself has no limit; hpkvd needs at most 3).
pub const ROUNDS_MAX: usize = 16;
/// What the bytes past the end of the buffer read as, when they are mapped
/// ([`Memory::with_page_tail`]).
pub const TAIL_BYTE: u8 = 0xA5;

/// The caller's address space as the kernel sees it: `bytes` at address `base`, and
/// optionally readable bytes after them; every other address is unmapped.
#[derive(Debug)]
pub struct Memory<'a> {
    base: u64,
    bytes: &'a mut [u8],
    /// The first address past the readable memory.
    readable_end: u64,
}

impl<'a> Memory<'a> {
    /// Exactly `bytes`, at `base`.
    pub fn new(base: u64, bytes: &'a mut [u8]) -> Memory<'a> {
        let readable_end = base + bytes.len() as u64;
        Memory {
            base,
            bytes,
            readable_end,
        }
    }

    /// `bytes` at `base`, and the rest of the last page they touch readable too (reading as
    /// [`TAIL_BYTE`]), as for a buffer the caller allocated: the daemon may read there, and
    /// a write there panics (it would land outside the caller's buffer: a soundness hole in
    /// the caller's wrapper).
    pub fn with_page_tail(base: u64, bytes: &'a mut [u8]) -> Memory<'a> {
        let readable_end = (base + bytes.len() as u64).next_multiple_of(PAGE);
        Memory {
            base,
            bytes,
            readable_end,
        }
    }

    /// The address of the buffer's first byte.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Where `area` lies in the buffer, as the offsets of its first byte and of the byte
    /// past it, if it lies in readable memory at all.
    fn span(&self, area: Iov) -> Option<(usize, usize)> {
        let end = area.base.checked_add(area.len)?;
        if area.base < self.base || end > self.readable_end {
            return None;
        }
        let start = usize::try_from(area.base - self.base).ok()?;
        Some((start, usize::try_from(end - self.base).ok()?))
    }

    /// Copies `areas` in, concatenated.
    fn gather(&self, areas: &[Iov]) -> Result<Vec<u8>, Errno> {
        let mut input = Vec::new();
        for &area in areas {
            let (start, end) = self.span(area).ok_or(Errno::EFAULT)?;
            for at in start..end {
                input.push(self.bytes.get(at).copied().unwrap_or(TAIL_BYTE));
            }
        }
        Ok(input)
    }

    /// Copies `data` out into `areas`, in order.
    fn scatter(&mut self, areas: &[Iov], mut data: &[u8]) -> Result<(), Errno> {
        for &area in areas {
            let n = data
                .len()
                .min(usize::try_from(area.len).unwrap_or(usize::MAX));
            let part = Iov {
                base: area.base,
                len: n as u64,
            };
            let (start, end) = self.span(part).ok_or(Errno::EFAULT)?;
            assert!(
                end <= self.bytes.len(),
                "the daemon writes {n} bytes at +{start}, past the end of a {}-byte buffer",
                self.bytes.len()
            );
            self.bytes[start..end].copy_from_slice(&data[..n]);
            data = &data[n..];
        }
        Ok(())
    }
}

/// The daemon's answer to one round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Copy these areas and call again.
    Retry(Retry),
    /// The final answer: the ioctl's result (0 or more, or a negated errno) and the bytes to
    /// copy out.
    Done {
        /// 0 or more: the ioctl's return value; negative: the negated errno.
        result: i32,
        /// Copied out into the output areas the last retry named.
        data: Vec<u8>,
    },
}

impl Answer {
    /// [`Answer::Done`].
    pub fn done(result: i32, data: Vec<u8>) -> Answer {
        Answer::Done { result, data }
    }

    /// [`Answer::Done`] with no data, failing with `errno`.
    pub fn fail(errno: Errno) -> Answer {
        Answer::Done {
            result: -(errno as i32),
            data: vec![],
        }
    }
}

/// How an ioctl ended, as the caller sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The ioctl's return value, or its errno.
    pub result: Result<i32, Errno>,
    /// The rounds the daemon was called for.
    pub rounds: usize,
}

fn total(areas: &[Iov]) -> Option<u64> {
    areas.iter().try_fold(0u64, |sum, v| sum.checked_add(v.len))
}

/// Runs one ioctl as the kernel does, calling `daemon(input, out_size)` for each round, over
/// the caller's `memory`.
///
/// # Panics
/// When the daemon asks for more after [`ROUNDS_MAX`] rounds, or writes outside the buffer
/// into the readable tail of [`Memory::with_page_tail`].
pub fn ioctl(memory: &mut Memory<'_>, mut daemon: impl FnMut(&[u8], usize) -> Answer) -> Outcome {
    let mut input = Vec::new();
    let mut output: Vec<Iov> = Vec::new();
    for round in 1..=ROUNDS_MAX {
        let out_size = total(&output).expect("checked when the retry came");
        let out_size = usize::try_from(out_size).expect("at most DATA_MAX");
        let result = match daemon(&input, out_size) {
            Answer::Done { result, data } => {
                if data.len() > out_size {
                    Err(Errno::EIO)
                } else {
                    memory.scatter(&output, &data).map(|()| result)
                }
            }
            Answer::Retry(retry) => {
                let fits = |areas: &[Iov]| {
                    areas.len() <= IOVS_MAX && total(areas).is_some_and(|t| t <= DATA_MAX)
                };
                if !fits(&retry.input) || !fits(&retry.output) {
                    Err(Errno::ENOMEM)
                } else {
                    match memory.gather(&retry.input) {
                        Ok(bytes) => {
                            input = bytes;
                            output = retry.output;
                            continue;
                        }
                        Err(e) => Err(e),
                    }
                }
            }
        };
        let result = result.and_then(|r| {
            if r < 0 {
                Err(Errno::from_raw(-r))
            } else {
                Ok(r)
            }
        });
        return Outcome {
            result,
            rounds: round,
        };
    }
    panic!("the daemon still asks for more after {ROUNDS_MAX} rounds");
}

/// One round as hpkvd answers it: [`decode_ioctl`]; a failure is answered with its errno, a
/// retry as such, and a whole command by `run`.
pub fn daemon_round(
    profile: Profile,
    cmd: u32,
    arg: u64,
    input: &[u8],
    out_size: usize,
    run: impl FnOnce(Command<'_>) -> Answer,
) -> Answer {
    match decode_ioctl(profile, cmd, arg, input, out_size) {
        Decoded::Fail(e) => Answer::fail(e),
        Decoded::Retry(r) => Answer::Retry(r),
        Decoded::Ready(command) => run(command),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{get_reply, CMD_DELETE, CMD_GET, CMD_INSERT, CMD_PARTIAL_UPDATE, VALUE_MAX};

    /// The command hpkvd's decoder makes of `memory` at `arg`, as text, and the rounds it
    /// took; reads only.
    fn decode(
        profile: Profile,
        cmd: u32,
        memory: &mut Memory<'_>,
        arg: u64,
    ) -> (Result<String, Errno>, usize) {
        let mut seen = None;
        let outcome = ioctl(memory, |input, out_size| {
            daemon_round(profile, cmd, arg, input, out_size, |c| {
                seen = Some(format!("{c:?}"));
                Answer::done(0, vec![])
            })
        });
        (
            outcome.result.map(|_| seen.expect("a command")),
            outcome.rounds,
        )
    }

    fn get(key: &[u8], key_span: usize) -> String {
        format!("{:?}", Command::Get { key, key_span })
    }

    #[test]
    fn readme_get_reads_only_the_key_near_the_end_of_memory() {
        // The key "end" sits in the last 4 bytes of the caller's memory.
        let base = 0x10000;
        let mut mem = vec![0xAAu8; 8192];
        mem[8188..].copy_from_slice(b"end\0");
        let (cmd, rounds) = decode(
            Profile::Readme,
            CMD_GET,
            &mut Memory::new(base, &mut mem),
            base + 8188,
        );
        assert_eq!(cmd, Ok(get(b"end", 4)));
        assert_eq!(rounds, 2, "empty round + one retry");
    }

    #[test]
    fn readme_key_across_a_page_boundary_takes_one_more_round() {
        let base = 0x10000;
        let mut mem = vec![b'k'; 8192];
        mem[4096 + 10] = 0;
        let (cmd, rounds) = decode(
            Profile::Readme,
            CMD_DELETE,
            &mut Memory::new(base, &mut mem),
            base + 4090,
        );
        assert_eq!(
            cmd,
            Ok(format!("{:?}", Command::Delete { key: &[b'k'; 16] }))
        );
        assert_eq!(rounds, 3);
    }

    #[test]
    fn readme_key_errors() {
        let base = 0x10000;
        let mut mem = vec![b'k'; 8192];
        let run = |mem: &mut Vec<u8>, arg| {
            decode(Profile::Readme, CMD_GET, &mut Memory::new(base, mem), arg).0
        };
        assert_eq!(
            run(&mut mem, base),
            Err(Errno::EINVAL),
            "no NUL in 512 bytes"
        );
        mem[511] = 0;
        assert_eq!(run(&mut mem, base), Ok(get(&[b'k'; 511], 512)));
        mem[0] = 0;
        assert_eq!(run(&mut mem, base), Err(Errno::EINVAL), "empty key");
        assert_eq!(run(&mut mem, 0), Err(Errno::EFAULT));
        assert_eq!(run(&mut mem, base + 100_000), Err(Errno::EFAULT));
    }

    #[test]
    fn v13_and_insert_layouts() {
        let base = 0x20000;
        let mut mem = vec![0u8; 4096];
        mem[..5].copy_from_slice(&crate::encode_v13_key(b"abc").unwrap());
        let (cmd, _) = decode(
            Profile::V13,
            CMD_GET,
            &mut Memory::new(base, &mut mem),
            base,
        );
        assert_eq!(cmd, Ok(get(b"abc", 5)));
        crate::le::set_u16(&mut mem, 0, 513);
        let (cmd, _) = decode(
            Profile::V13,
            CMD_DELETE,
            &mut Memory::new(base, &mut mem),
            base,
        );
        assert_eq!(cmd, Err(Errno::EINVAL));
        let mut kv = crate::encode_kv(b"kk", &[7u8; 5000]).unwrap();
        let (cmd, rounds) = decode(
            Profile::Readme,
            CMD_INSERT,
            &mut Memory::new(base, &mut kv),
            base,
        );
        let want = Command::Insert {
            key: b"kk",
            value: &[7u8; 5000],
        };
        assert_eq!(cmd, Ok(format!("{want:?}")));
        assert_eq!(rounds, 3, "value larger than the first granule");
        crate::le::set_u64(&mut kv, 2, 0);
        let (cmd, _) = decode(
            Profile::Readme,
            CMD_PARTIAL_UPDATE,
            &mut Memory::new(base, &mut kv),
            base,
        );
        assert_eq!(cmd, Err(Errno::EINVAL));
    }

    /// A GET whose value is larger than the first output area: the daemon asks once more,
    /// and the value lands in the caller's buffer.
    #[test]
    fn a_large_get_takes_a_third_round_and_writes_only_its_reply() {
        let base = 0x4000_0000;
        let value = vec![b'v'; VALUE_MAX];
        for profile in [Profile::Readme, Profile::V13] {
            let mut buf = match profile {
                Profile::Readme => crate::encode_str_key(b"k").unwrap(),
                Profile::V13 => crate::encode_v13_key(b"k").unwrap(),
            };
            buf.resize(VALUE_MAX + 16, 0xEE);
            let mut memory = Memory::with_page_tail(base, &mut buf);
            let outcome = ioctl(&mut memory, |input, out_size| {
                daemon_round(profile, CMD_GET, base, input, out_size, |c| {
                    let Command::Get { key_span, .. } = c else {
                        panic!("{c:?}")
                    };
                    match get_reply(profile, base, key_span, out_size, value.len()) {
                        Ok(r) => Answer::done(0, [&r.prefix[..], &value, r.suffix].concat()),
                        Err(retry) => Answer::Retry(retry),
                    }
                })
            });
            assert_eq!(
                outcome,
                Outcome {
                    result: Ok(0),
                    rounds: 3
                },
                "{profile}"
            );
            let got = match profile {
                Profile::Readme => crate::parse_readme_get(&buf).unwrap(),
                Profile::V13 => crate::parse_v13_get(&buf).unwrap(),
            };
            assert_eq!(got, &value[..]);
        }
    }

    #[test]
    fn the_kernel_refuses_what_it_cannot_do() {
        let base = 0x8000;
        let mut buf = [0u8; 16];
        let area = |base, len| Iov { base, len };
        let mut memory = Memory::new(base, &mut buf);
        let mut once = |answer: Answer| {
            let mut answers = vec![answer];
            ioctl(&mut memory, |_, _| {
                answers.pop().unwrap_or(Answer::done(0, vec![]))
            })
            .result
        };
        let retry = |input, output| Answer::Retry(Retry { input, output });
        assert_eq!(
            once(retry(vec![area(base, 17)], vec![])),
            Err(Errno::EFAULT)
        );
        assert_eq!(
            once(retry(vec![area(base, DATA_MAX + 1)], vec![])),
            Err(Errno::ENOMEM)
        );
        assert_eq!(
            once(retry(vec![], vec![area(base, 1); IOVS_MAX + 1])),
            Err(Errno::ENOMEM)
        );
        assert_eq!(
            once(retry(vec![area(u64::MAX, 2)], vec![])),
            Err(Errno::EFAULT)
        );
        assert_eq!(
            once(Answer::done(0, vec![1])),
            Err(Errno::EIO),
            "no output offered"
        );
        assert_eq!(once(Answer::fail(Errno::ENOENT)), Err(Errno::ENOENT));
        assert_eq!(once(Answer::done(7, vec![])), Ok(7));
    }

    #[test]
    #[should_panic(expected = "past the end of a 16-byte buffer")]
    fn a_write_into_the_page_tail_is_caught() {
        let base = 0x8000;
        let mut buf = [0u8; 16];
        let mut memory = Memory::with_page_tail(base, &mut buf);
        let output = vec![Iov { base, len: 17 }];
        let mut retried = false;
        ioctl(&mut memory, |_, _| {
            if retried {
                Answer::done(0, vec![0; 17])
            } else {
                retried = true;
                Answer::Retry(Retry {
                    input: vec![],
                    output: output.clone(),
                })
            }
        });
    }
}
