//! Every `unsafe` line of the preload library: the functions it exports in place of the C
//! library's, the calls to the definitions they stand in for, and the copies to and from the
//! caller's memory.
//!
//! # Interposition
//! `LD_PRELOAD` puts this library before the C library in the dynamic linker's search order,
//! so a program's calls to `ioctl`, `open`, ... land here. Each function does its small part
//! and then calls the next definition of the same name, found once with
//! `dlsym(RTLD_NEXT, name)` (in the library's constructor, or on first use before it). Until a
//! name is resolved, and while it is being resolved (`dlsym` may call `calloc`, and a
//! replacement `malloc` may call `open`), the system-call wrappers fall back to the raw system
//! call, and the stdio functions fail with ENOSYS.
//!
//! # Variadic functions
//! `ioctl(int, unsigned long, ...)`, `open(const char *, int, ...)`, `openat` and `mremap` are
//! variadic in C; Rust defines them here with their one optional argument as a plain
//! parameter. On `x86_64` (System V) and `aarch64` (AAPCS64 as Linux uses it) variadic integer and
//! pointer arguments travel in the same registers, in the same order, as named ones, so the
//! callee reads the caller's third (or fifth) argument where it was put. When the caller
//! passed none (`open` without `O_CREAT`), the parameter holds a stale register that is only
//! handed on to the next definition, which ignores it in exactly those cases.
//! `compile_error!` keeps the library from building for other targets.
//!
//! # Never in the caller's way
//! - The library's own work runs inside [`enter`]: a per-thread flag makes any call that comes
//!   back into the library meanwhile (a signal handler, the library's own `open`s, `mmap`s
//!   and `close`s, which also go through these functions) go straight to the next definition;
//!   `errno` is restored; a panic is caught and the call goes to the next definition.
//! - Nothing in the GET path blocks or makes a system call once the thread's scratch buffer
//!   has grown to the largest value it has read.
#![allow(unsafe_code)]

#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
compile_error!(
    "libhpkv_preload relies on the Linux x86_64/aarch64 calling conventions (see ffi.rs)"
);

use std::cell::{Cell, RefCell};
use std::ffi::{c_char, c_int, c_long, c_uint, c_ulong, c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};

use hpkv_abi::{self as abi, StatsRecord};

use crate::get::{self, Answer, CallerMemory, Form, Scratch};
use crate::{fds, memmap, nodes, stats};

type Fd = c_int;
type OpenFn = unsafe extern "C" fn(*const c_char, c_int, c_uint) -> Fd;
type OpenatFn = unsafe extern "C" fn(Fd, *const c_char, c_int, c_uint) -> Fd;
type Open2Fn = unsafe extern "C" fn(*const c_char, c_int) -> Fd;
type Openat2Fn = unsafe extern "C" fn(Fd, *const c_char, c_int) -> Fd;
type CreatFn = unsafe extern "C" fn(*const c_char, libc::mode_t) -> Fd;
type FopenFn = unsafe extern "C" fn(*const c_char, *const c_char) -> *mut libc::FILE;
type FreopenFn =
    unsafe extern "C" fn(*const c_char, *const c_char, *mut libc::FILE) -> *mut libc::FILE;
type MmapFn =
    unsafe extern "C" fn(*mut c_void, usize, c_int, c_int, Fd, libc::off_t) -> *mut c_void;

/// What each thread keeps (one thread-local, so one look-up per call).
struct Local {
    /// Set while this thread runs the library's own code.
    inside: Cell<bool>,
    /// Where the key and the value are copied before the value goes to the caller's memory.
    scratch: RefCell<Scratch>,
}

thread_local! {
    static LOCAL: Local = const {
        Local {
            inside: Cell::new(false),
            scratch: RefCell::new(Scratch::new()),
        }
    };
    /// Set while this thread resolves a name with `dlsym`.
    static RESOLVING: Cell<bool> = const { Cell::new(false) };
}

fn errno() -> c_int {
    // SAFETY: __errno_location returns this thread's errno, valid for the thread's lifetime.
    unsafe { *libc::__errno_location() }
}

fn set_errno(value: c_int) {
    // SAFETY: as in `errno`.
    unsafe { *libc::__errno_location() = value };
}

/// Runs the library's own work `f` with this thread's scratch buffer: `None` (the caller goes
/// to the next definition) when this thread is already inside the library, its thread-locals
/// are gone, or `f` panicked. `errno` is as it was before.
fn enter<T>(f: impl FnOnce(&mut Scratch) -> T) -> Option<T> {
    LOCAL
        .try_with(|local| {
            if local.inside.replace(true) {
                return None;
            }
            let result = local.scratch.try_borrow_mut().ok().and_then(|mut scratch| {
                let saved = errno();
                let result = catch_unwind(AssertUnwindSafe(|| f(&mut scratch))).ok();
                set_errno(saved);
                result
            });
            local.inside.set(false);
            result
        })
        .ok()
        .flatten()
}

fn inside() -> bool {
    LOCAL.try_with(|l| l.inside.get()).unwrap_or(true)
}

// ------------------------------------------------------------------ the next definitions

/// The address of the next definition of `name` (a NUL-terminated symbol), 0 if unknown yet.
fn next(slot: &AtomicUsize, name: &CStr) -> usize {
    let known = slot.load(Ordering::Acquire);
    if known != 0 {
        return known;
    }
    let Ok(false) = RESOLVING.try_with(|r| r.replace(true)) else {
        return 0; // dlsym came back into the library: use the fallback
    };
    // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name only looks the symbol up.
    let found = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) } as usize;
    let _ = RESOLVING.try_with(|r| r.set(false));
    slot.store(found, Ordering::Release);
    found
}

macro_rules! next_fns {
    ($($name:ident: fn($($arg:ty),*) $(-> $ret:ty)?;)*) => {
        /// The next definitions, one slot each.
        #[allow(non_upper_case_globals)]
        mod slots {
            use std::sync::atomic::AtomicUsize;
            $(pub static $name: AtomicUsize = AtomicUsize::new(0);)*
        }
        /// Typed access to the next definitions.
        #[allow(non_snake_case)]
        mod next_fn {
            use super::*;
            $(
                pub fn $name() -> Option<unsafe extern "C" fn($($arg),*) $(-> $ret)?> {
                    let name = concat!(stringify!($name), "\0");
                    let cname = CStr::from_bytes_with_nul(name.as_bytes()).ok()?;
                    let address = next(&slots::$name, cname);
                    // SAFETY: `address` is what dlsym found for this very symbol of the C
                    // library, whose C prototype the signature above transcribes.
                    (address != 0).then(|| unsafe {
                        std::mem::transmute::<usize, unsafe extern "C" fn($($arg),*) $(-> $ret)?>(address)
                    })
                }
            )*
            /// Resolves every name (the constructor).
            pub fn resolve_all() {
                $(let _ = $name();)*
            }
        }
    };
}

next_fns! {
    ioctl: fn(Fd, c_ulong, *mut c_void) -> c_int;
    open: fn(*const c_char, c_int, c_uint) -> Fd;
    open64: fn(*const c_char, c_int, c_uint) -> Fd;
    openat: fn(Fd, *const c_char, c_int, c_uint) -> Fd;
    openat64: fn(Fd, *const c_char, c_int, c_uint) -> Fd;
    __open_2: fn(*const c_char, c_int) -> Fd;
    __open64_2: fn(*const c_char, c_int) -> Fd;
    __openat_2: fn(Fd, *const c_char, c_int) -> Fd;
    __openat64_2: fn(Fd, *const c_char, c_int) -> Fd;
    creat: fn(*const c_char, libc::mode_t) -> Fd;
    creat64: fn(*const c_char, libc::mode_t) -> Fd;
    fopen: fn(*const c_char, *const c_char) -> *mut libc::FILE;
    fopen64: fn(*const c_char, *const c_char) -> *mut libc::FILE;
    freopen: fn(*const c_char, *const c_char, *mut libc::FILE) -> *mut libc::FILE;
    freopen64: fn(*const c_char, *const c_char, *mut libc::FILE) -> *mut libc::FILE;
    fclose: fn(*mut libc::FILE) -> c_int;
    fcloseall: fn() -> c_int;
    fdopen: fn(Fd, *const c_char) -> *mut libc::FILE;
    close: fn(Fd) -> c_int;
    close_range: fn(c_uint, c_uint, c_int) -> c_int;
    closefrom: fn(Fd);
    dup: fn(Fd) -> Fd;
    dup2: fn(Fd, Fd) -> Fd;
    dup3: fn(Fd, Fd, c_int) -> Fd;
    mmap: fn(*mut c_void, usize, c_int, c_int, Fd, libc::off_t) -> *mut c_void;
    mmap64: fn(*mut c_void, usize, c_int, c_int, Fd, libc::off_t) -> *mut c_void;
    munmap: fn(*mut c_void, usize) -> c_int;
    mremap: fn(*mut c_void, usize, usize, c_int, *mut c_void) -> *mut c_void;
    mprotect: fn(*mut c_void, usize, c_int) -> c_int;
    pkey_mprotect: fn(*mut c_void, usize, c_int, c_int) -> c_int;
    shmdt: fn(*const c_void) -> c_int;
    dlclose: fn(*mut c_void) -> c_int;
}

/// A value as a system call's argument register (what glibc's `syscall` passes).
trait Word {
    fn word(self) -> c_long;
}

impl Word for c_int {
    fn word(self) -> c_long {
        c_long::from(self)
    }
}

impl Word for c_uint {
    fn word(self) -> c_long {
        c_long::from(self)
    }
}

impl Word for u64 {
    fn word(self) -> c_long {
        c_long::from_ne_bytes(self.to_ne_bytes())
    }
}

impl Word for usize {
    fn word(self) -> c_long {
        c_long::from_ne_bytes(self.to_ne_bytes())
    }
}

impl<T> Word for *const T {
    fn word(self) -> c_long {
        self.addr().word()
    }
}

impl<T> Word for *mut T {
    fn word(self) -> c_long {
        self.addr().word()
    }
}

/// A raw system call returning an int (the fallback before the next definition is known).
fn sys_int(number: c_long, args: [c_long; 4]) -> c_int {
    // SAFETY: the callers pass the arguments the program gave for the same call; the kernel
    // checks every pointer it is given.
    let ret = unsafe { libc::syscall(number, args[0], args[1], args[2], args[3]) };
    c_int::try_from(ret).unwrap_or(-1)
}

/// A raw system call returning a pointer (`mmap`, `mremap`).
fn sys_ptr(number: c_long, args: [c_long; 6]) -> *mut c_void {
    // SAFETY: as in `sys_int`.
    let ret =
        unsafe { libc::syscall(number, args[0], args[1], args[2], args[3], args[4], args[5]) };
    std::ptr::with_exposed_provenance_mut(usize::from_ne_bytes(ret.to_ne_bytes()))
}

// ------------------------------------------------------------------------- constructor

extern "C" fn child_after_fork() {
    memmap::after_fork_in_child();
}

extern "C" fn init() {
    let _ = enter(|_| {
        next_fn::resolve_all();
        nodes::init_env();
        // SAFETY: registers a handler that only touches atomics of this library.
        unsafe { libc::pthread_atfork(None, None, Some(child_after_fork)) };
    });
}

// Run by the dynamic loader when the library is loaded, before the program's `main`.
#[used]
#[link_section = ".init_array"]
static INIT: extern "C" fn() = init;

// ------------------------------------------------------------------------------ GET

/// The caller's memory at `arg`: `span` bytes from it lie in one readable and writable
/// mapping of this process ([`memmap::rw_span`]).
struct UserMemory {
    arg: usize,
    span: usize,
}

impl CallerMemory for UserMemory {
    fn span(&self) -> usize {
        self.span
    }

    fn read(&self, at: usize, out: &mut [u8]) {
        assert!(
            at <= self.span && out.len() <= self.span - at,
            "read past the span"
        );
        // SAFETY: [arg + at, arg + at + len) lies inside [arg, arg + span), which memmap found
        // inside a read-write mapping of this process (the program may not unmap it while it
        // waits for this ioctl without racing itself, as it would with the device). The bytes
        // are copied, never borrowed: another thread of the program may change them meanwhile,
        // as it may while the kernel copies them for the device.
        unsafe {
            std::ptr::copy_nonoverlapping(
                (self.arg + at) as *const u8,
                out.as_mut_ptr(),
                out.len(),
            );
        }
    }

    fn find_nul(&self, limit: usize) -> Option<usize> {
        assert!(limit <= self.span, "search past the span");
        // SAFETY: as in `read`: [arg, arg + limit) is inside the span. memchr reads only those
        // bytes and returns NULL or a pointer into them.
        let found = unsafe { libc::memchr(self.arg as *const c_void, 0, limit) };
        (!found.is_null()).then(|| found as usize - self.arg)
    }

    fn write(&self, at: usize, bytes: &[u8]) {
        assert!(
            at <= self.span && bytes.len() <= self.span - at,
            "write past the span"
        );
        // SAFETY: as in `read`; the caller handed this memory to GET to be written, and
        // `bytes` (the library's scratch or a local) cannot overlap it.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), (self.arg + at) as *mut u8, bytes.len());
        }
    }
}

/// Answers a GET on a tracked descriptor from its node's view.
fn view_get(entry: fds::Entry, form: Form, arg: usize, scratch: &mut Scratch) -> Option<Answer> {
    let view = nodes::view(entry.node)?;
    let span = memmap::rw_span(arg as u64)?;
    let mem = UserMemory {
        arg,
        span: usize::try_from(span).ok()?,
    };
    view.with(|reader| get::answer(form, reader, &mem, scratch))
}

/// `ioctl(fd, request, arg)`: GETs on tracked descriptors from the view, all else to the
/// next definition.
///
/// # Safety
/// As the C library's `ioctl`: `arg` is whatever `request` expects.
#[no_mangle]
pub unsafe extern "C" fn ioctl(fd: Fd, request: c_ulong, arg: *mut c_void) -> c_int {
    if let Some(form) = Form::of_request(request) {
        if !arg.is_null() {
            if let Some(entry) = fds::get(fd) {
                match enter(|scratch| view_get(entry, form, arg as usize, scratch)).flatten() {
                    Some(Answer::Done) => return 0,
                    Some(Answer::Fail(e)) => {
                        set_errno(e);
                        return -1;
                    }
                    Some(Answer::Forward) | None => {}
                }
            }
        }
    }
    real_ioctl(fd, request, arg)
}

fn real_ioctl(fd: Fd, request: c_ulong, arg: *mut c_void) -> c_int {
    match next_fn::ioctl() {
        // SAFETY: the program's own arguments, handed on unchanged.
        Some(f) => unsafe { f(fd, request, arg) },
        None => sys_int(libc::SYS_ioctl, [fd.word(), request.word(), arg.word(), 0]),
    }
}

// ----------------------------------------------------------------------------- opening

/// After the next definition of an `open` opened `fd` (or failed with `err`): tracks `fd`,
/// or serves `/proc/hpkv_stats`. Returns what the program gets, with `errno` as it must be.
fn opened(fd: Fd, path: *const c_char, flags: c_int, from_stdio: bool) -> Fd {
    let err = errno();
    if fd >= 0 {
        fds::clear(fd);
        if flags & libc::O_PATH == 0 {
            let _ = enter(|_| track(fd, from_stdio));
        }
        set_errno(err);
        return fd;
    }
    if err == libc::ENOENT && flags & libc::O_ACCMODE == libc::O_RDONLY && !path.is_null() {
        // SAFETY: the program passed `path` to open as a NUL-terminated string, and the next
        // definition read it as one without failing with EFAULT.
        let path = unsafe { CStr::from_ptr(path) };
        if stats::is_proc_stats(path.to_bytes()) {
            if let Some(Some(fd)) = enter(|_| proc_stats_fd(flags & libc::O_CLOEXEC)) {
                return fd;
            }
        }
    }
    set_errno(err);
    fd
}

/// Notes which node (if any) `fd` is open on.
fn track(fd: Fd, from_stdio: bool) {
    // SAFETY: an all-zero `stat` is a valid value of the plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid, writable `stat` owned by this frame.
    if unsafe { libc::fstat(fd, &raw mut st) } != 0 {
        return;
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFCHR {
        return;
    }
    let entry = nodes::node_for(st.st_rdev).map(|node| fds::Entry { node, from_stdio });
    fds::set(fd, entry);
}

/// A read-only file holding the module's three lines, or `None`.
fn proc_stats_fd(cloexec: c_int) -> Option<Fd> {
    let text = stats::proc_text(device_stats)?;
    // SAFETY: a NUL-terminated name; memfd_create only creates a descriptor.
    let memfd = unsafe { libc::memfd_create(c"hpkv_stats".as_ptr(), libc::MFD_CLOEXEC) };
    if memfd < 0 {
        return None;
    }
    // SAFETY: `text` is valid for its length; `memfd` is ours.
    let written = unsafe { libc::write(memfd, text.as_ptr().cast(), text.len()) };
    let ro = (usize::try_from(written).ok() == Some(text.len()))
        .then(|| {
            let path = format!("/proc/self/fd/{memfd}\0");
            // Reopened read-only, so that the program cannot change what it reads, with
            // the program's O_CLOEXEC.
            real_open(path.as_ptr().cast(), libc::O_RDONLY | cloexec, 0)
        })
        .filter(|&fd| fd >= 0);
    real_close(memfd);
    ro
}

/// The STATS ioctl on the store's node.
fn device_stats(node: &std::path::Path) -> Option<StatsRecord> {
    let path = std::ffi::CString::new(node.as_os_str().as_encoded_bytes()).ok()?;
    let fd = real_open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC, 0);
    if fd < 0 {
        return None;
    }
    let mut buf = [0u8; abi::STATS_STRUCT_SIZE];
    let r = real_ioctl(fd, c_ulong::from(abi::IOC_STATS), buf.as_mut_ptr().cast());
    real_close(fd);
    (r == 0).then(|| StatsRecord::decode(&buf)).flatten()
}

fn real_open(path: *const c_char, flags: c_int, mode: c_uint) -> Fd {
    match next_fn::open() {
        // SAFETY: a NUL-terminated path and the flags and mode open expects.
        Some(f) => unsafe { f(path, flags, mode) },
        None => sys_openat(libc::AT_FDCWD, path, flags, mode),
    }
}

fn sys_openat(dirfd: Fd, path: *const c_char, flags: c_int, mode: c_uint) -> Fd {
    sys_int(
        libc::SYS_openat,
        [dirfd.word(), path.word(), flags.word(), mode.word()],
    )
}

/// The next `open` or `open64`, or the system call before it is known; then the node check.
unsafe fn open_via(next: Option<OpenFn>, path: *const c_char, flags: c_int, mode: c_uint) -> Fd {
    let fd = match next {
        Some(f) => f(path, flags, mode),
        None => sys_openat(libc::AT_FDCWD, path, flags, mode),
    };
    after_open(fd, path, flags)
}

/// # Safety
/// As the C library's `open`.
#[no_mangle]
pub unsafe extern "C" fn open(path: *const c_char, flags: c_int, mode: c_uint) -> Fd {
    open_via(next_fn::open(), path, flags, mode)
}

/// # Safety
/// As the C library's `open64`.
#[no_mangle]
pub unsafe extern "C" fn open64(path: *const c_char, flags: c_int, mode: c_uint) -> Fd {
    open_via(next_fn::open64(), path, flags, mode)
}

/// The next `openat` or `openat64`, or the system call; then the node check.
unsafe fn openat_via(
    next: Option<OpenatFn>,
    dirfd: Fd,
    path: *const c_char,
    flags: c_int,
    mode: c_uint,
) -> Fd {
    let fd = match next {
        Some(f) => f(dirfd, path, flags, mode),
        None => sys_openat(dirfd, path, flags, mode),
    };
    after_open(fd, path, flags)
}

/// # Safety
/// As the C library's `openat`.
#[no_mangle]
pub unsafe extern "C" fn openat(dirfd: Fd, path: *const c_char, flags: c_int, mode: c_uint) -> Fd {
    openat_via(next_fn::openat(), dirfd, path, flags, mode)
}

/// # Safety
/// As the C library's `openat64`.
#[no_mangle]
pub unsafe extern "C" fn openat64(
    dirfd: Fd,
    path: *const c_char,
    flags: c_int,
    mode: c_uint,
) -> Fd {
    openat_via(next_fn::openat64(), dirfd, path, flags, mode)
}

/// The next `__open_2` or `__open64_2`, or the system call; then the node check.
unsafe fn open_2_via(next: Option<Open2Fn>, path: *const c_char, flags: c_int) -> Fd {
    let fd = match next {
        Some(f) => f(path, flags),
        None => sys_openat(libc::AT_FDCWD, path, flags, 0),
    };
    after_open(fd, path, flags)
}

/// # Safety
/// As the C library's `__open_2` (`open` under `_FORTIFY_SOURCE`).
#[no_mangle]
pub unsafe extern "C" fn __open_2(path: *const c_char, flags: c_int) -> Fd {
    open_2_via(next_fn::__open_2(), path, flags)
}

/// # Safety
/// As the C library's `__open64_2`.
#[no_mangle]
pub unsafe extern "C" fn __open64_2(path: *const c_char, flags: c_int) -> Fd {
    open_2_via(next_fn::__open64_2(), path, flags)
}

/// The next `__openat_2` or `__openat64_2`, or the system call; then the node check.
unsafe fn openat_2_via(
    next: Option<Openat2Fn>,
    dirfd: Fd,
    path: *const c_char,
    flags: c_int,
) -> Fd {
    let fd = match next {
        Some(f) => f(dirfd, path, flags),
        None => sys_openat(dirfd, path, flags, 0),
    };
    after_open(fd, path, flags)
}

/// # Safety
/// As the C library's `__openat_2`.
#[no_mangle]
pub unsafe extern "C" fn __openat_2(dirfd: Fd, path: *const c_char, flags: c_int) -> Fd {
    openat_2_via(next_fn::__openat_2(), dirfd, path, flags)
}

/// # Safety
/// As the C library's `__openat64_2`.
#[no_mangle]
pub unsafe extern "C" fn __openat64_2(dirfd: Fd, path: *const c_char, flags: c_int) -> Fd {
    openat_2_via(next_fn::__openat64_2(), dirfd, path, flags)
}

const CREAT_FLAGS: c_int = libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC;

/// The next `creat` or `creat64`, or the system call; then the node check.
unsafe fn creat_via(next: Option<CreatFn>, path: *const c_char, mode: libc::mode_t) -> Fd {
    let fd = match next {
        Some(f) => f(path, mode),
        None => sys_openat(libc::AT_FDCWD, path, CREAT_FLAGS, mode),
    };
    after_open(fd, path, CREAT_FLAGS)
}

/// # Safety
/// As the C library's `creat`.
#[no_mangle]
pub unsafe extern "C" fn creat(path: *const c_char, mode: libc::mode_t) -> Fd {
    creat_via(next_fn::creat(), path, mode)
}

/// # Safety
/// As the C library's `creat64`.
#[no_mangle]
pub unsafe extern "C" fn creat64(path: *const c_char, mode: libc::mode_t) -> Fd {
    creat_via(next_fn::creat64(), path, mode)
}

fn after_open(fd: Fd, path: *const c_char, flags: c_int) -> Fd {
    if inside() {
        return fd;
    }
    opened(fd, path, flags, false)
}

// -------------------------------------------------------------------------------- stdio

/// The open flags a stdio mode implies, as far as this library cares (read-only or not,
/// close-on-exec).
fn stdio_flags(mode: *const c_char) -> c_int {
    if mode.is_null() {
        return libc::O_RDWR;
    }
    // SAFETY: the program passed `mode` to fopen as a NUL-terminated string.
    let mode = unsafe { CStr::from_ptr(mode) }.to_bytes();
    let read_only = mode.first() == Some(&b'r') && !mode.contains(&b'+');
    let cloexec = if mode.contains(&b'e') {
        libc::O_CLOEXEC
    } else {
        0
    };
    cloexec
        | if read_only {
            libc::O_RDONLY
        } else {
            libc::O_RDWR
        }
}

fn fileno_of(stream: *mut libc::FILE) -> Fd {
    if stream.is_null() {
        return -1;
    }
    // SAFETY: a stream the C library returned (or the program passed to it), not yet closed.
    unsafe { libc::fileno(stream) }
}

fn after_fopen(
    stream: *mut libc::FILE,
    path: *const c_char,
    mode: *const c_char,
) -> *mut libc::FILE {
    if inside() {
        return stream;
    }
    let flags = stdio_flags(mode);
    if !stream.is_null() {
        let _ = opened(fileno_of(stream), path, flags, true);
        return stream;
    }
    let err = errno();
    let fd = opened(-1, path, flags, true);
    if fd < 0 {
        return stream;
    }
    let Some(fdopen) = next_fn::fdopen() else {
        real_close(fd);
        set_errno(err);
        return stream;
    };
    // SAFETY: `fd` is the library's new read-only descriptor; "r" is a valid mode.
    let wrapped = unsafe { fdopen(fd, c"r".as_ptr()) };
    if wrapped.is_null() {
        real_close(fd);
        set_errno(err);
    }
    wrapped
}

/// The next `fopen` or `fopen64` (ENOSYS before it is known); then the node check.
unsafe fn fopen_via(
    next: Option<FopenFn>,
    path: *const c_char,
    mode: *const c_char,
) -> *mut libc::FILE {
    let Some(f) = next else {
        set_errno(libc::ENOSYS);
        return std::ptr::null_mut();
    };
    after_fopen(f(path, mode), path, mode)
}

/// # Safety
/// As the C library's `fopen`.
#[no_mangle]
pub unsafe extern "C" fn fopen(path: *const c_char, mode: *const c_char) -> *mut libc::FILE {
    fopen_via(next_fn::fopen(), path, mode)
}

/// # Safety
/// As the C library's `fopen64`.
#[no_mangle]
pub unsafe extern "C" fn fopen64(path: *const c_char, mode: *const c_char) -> *mut libc::FILE {
    fopen_via(next_fn::fopen64(), path, mode)
}

/// The next `freopen` or `freopen64` (ENOSYS before it is known); then the node check.
unsafe fn freopen_via(
    next: Option<FreopenFn>,
    path: *const c_char,
    mode: *const c_char,
    stream: *mut libc::FILE,
) -> *mut libc::FILE {
    fds::clear(fileno_of(stream));
    let Some(f) = next else {
        set_errno(libc::ENOSYS);
        return std::ptr::null_mut();
    };
    let reopened = f(path, mode, stream);
    if !reopened.is_null() && !inside() {
        let _ = opened(fileno_of(reopened), path, stdio_flags(mode), true);
    }
    reopened
}

/// # Safety
/// As the C library's `freopen`.
#[no_mangle]
pub unsafe extern "C" fn freopen(
    path: *const c_char,
    mode: *const c_char,
    stream: *mut libc::FILE,
) -> *mut libc::FILE {
    freopen_via(next_fn::freopen(), path, mode, stream)
}

/// # Safety
/// As the C library's `freopen64`.
#[no_mangle]
pub unsafe extern "C" fn freopen64(
    path: *const c_char,
    mode: *const c_char,
    stream: *mut libc::FILE,
) -> *mut libc::FILE {
    freopen_via(next_fn::freopen64(), path, mode, stream)
}

/// # Safety
/// As the C library's `fclose`.
#[no_mangle]
pub unsafe extern "C" fn fclose(stream: *mut libc::FILE) -> c_int {
    fds::clear(fileno_of(stream));
    if let Some(f) = next_fn::fclose() {
        f(stream)
    } else {
        set_errno(libc::ENOSYS);
        libc::EOF
    }
}

/// # Safety
/// As the C library's `fcloseall`.
#[no_mangle]
pub unsafe extern "C" fn fcloseall() -> c_int {
    fds::clear_stdio();
    if let Some(f) = next_fn::fcloseall() {
        f()
    } else {
        set_errno(libc::ENOSYS);
        libc::EOF
    }
}

// --------------------------------------------------------------- closing and replacing

fn real_close(fd: Fd) -> c_int {
    match next_fn::close() {
        // SAFETY: closing a descriptor is safe for any number.
        Some(f) => unsafe { f(fd) },
        None => sys_int(libc::SYS_close, [fd.word(), 0, 0, 0]),
    }
}

/// # Safety
/// As the C library's `close`.
#[no_mangle]
pub unsafe extern "C" fn close(fd: Fd) -> c_int {
    fds::clear(fd);
    real_close(fd)
}

/// # Safety
/// As the C library's `close_range`.
#[no_mangle]
pub unsafe extern "C" fn close_range(first: c_uint, last: c_uint, flags: c_int) -> c_int {
    if flags & c_int::try_from(libc::CLOSE_RANGE_CLOEXEC).unwrap_or(0) == 0 {
        fds::clear_range(first, last);
    }
    match next_fn::close_range() {
        Some(f) => f(first, last, flags),
        None => sys_int(
            libc::SYS_close_range,
            [first.word(), last.word(), flags.word(), 0],
        ),
    }
}

/// # Safety
/// As the C library's `closefrom`.
#[no_mangle]
pub unsafe extern "C" fn closefrom(lowfd: Fd) {
    if let Ok(first) = c_uint::try_from(lowfd) {
        fds::clear_range(first, c_uint::MAX);
    }
    match next_fn::closefrom() {
        Some(f) => f(lowfd),
        None => {
            let _ = sys_int(
                libc::SYS_close_range,
                [lowfd.word(), c_uint::MAX.word(), 0, 0],
            );
        }
    }
}

/// After `new` became a copy of `old` (`r` is what the call returned).
fn duplicated(old: Fd, new: Fd, r: Fd) -> Fd {
    if r >= 0 {
        fds::set(new, fds::get(old));
    }
    r
}

/// # Safety
/// As the C library's `dup`.
#[no_mangle]
pub unsafe extern "C" fn dup(old: Fd) -> Fd {
    let r = match next_fn::dup() {
        Some(f) => f(old),
        None => sys_int(libc::SYS_dup, [old.word(), 0, 0, 0]),
    };
    duplicated(old, r, r)
}

/// # Safety
/// As the C library's `dup2`.
#[no_mangle]
pub unsafe extern "C" fn dup2(old: Fd, new: Fd) -> Fd {
    let r = match next_fn::dup2() {
        Some(f) => f(old, new),
        None if old == new => {
            let valid = sys_int(libc::SYS_fcntl, [old.word(), libc::F_GETFD.word(), 0, 0]);
            if valid < 0 {
                valid
            } else {
                new
            }
        }
        None => sys_int(libc::SYS_dup3, [old.word(), new.word(), 0, 0]),
    };
    duplicated(old, new, r)
}

/// # Safety
/// As the C library's `dup3`.
#[no_mangle]
pub unsafe extern "C" fn dup3(old: Fd, new: Fd, flags: c_int) -> Fd {
    let r = match next_fn::dup3() {
        Some(f) => f(old, new, flags),
        None => sys_int(libc::SYS_dup3, [old.word(), new.word(), flags.word(), 0]),
    };
    duplicated(old, new, r)
}

// ------------------------------------------------------------------- mapping changes

/// The next `mmap` or `mmap64`, or the system call; a fixed mapping may replace the caller's
/// memory, so the map of readable memory is dropped first.
unsafe fn mmap_via(
    next: Option<MmapFn>,
    addr: *mut c_void,
    len: usize,
    prot: c_int,
    flags: c_int,
    fd: Fd,
    offset: libc::off_t,
) -> *mut c_void {
    if flags & libc::MAP_FIXED != 0 {
        memmap::invalidate();
    }
    match next {
        Some(f) => f(addr, len, prot, flags, fd, offset),
        None => sys_ptr(
            libc::SYS_mmap,
            [
                addr.word(),
                len.word(),
                prot.word(),
                flags.word(),
                fd.word(),
                offset,
            ],
        ),
    }
}

/// # Safety
/// As the C library's `mmap`.
#[no_mangle]
pub unsafe extern "C" fn mmap(
    addr: *mut c_void,
    len: usize,
    prot: c_int,
    flags: c_int,
    fd: Fd,
    offset: libc::off_t,
) -> *mut c_void {
    mmap_via(next_fn::mmap(), addr, len, prot, flags, fd, offset)
}

/// # Safety
/// As the C library's `mmap64`.
#[no_mangle]
pub unsafe extern "C" fn mmap64(
    addr: *mut c_void,
    len: usize,
    prot: c_int,
    flags: c_int,
    fd: Fd,
    offset: libc::off_t,
) -> *mut c_void {
    mmap_via(next_fn::mmap64(), addr, len, prot, flags, fd, offset)
}

/// # Safety
/// As the C library's `munmap`.
#[no_mangle]
pub unsafe extern "C" fn munmap(addr: *mut c_void, len: usize) -> c_int {
    memmap::invalidate();
    match next_fn::munmap() {
        Some(f) => f(addr, len),
        None => sys_int(libc::SYS_munmap, [addr.word(), len.word(), 0, 0]),
    }
}

/// # Safety
/// As the C library's `mremap` (the fifth argument only with `MREMAP_FIXED`).
#[no_mangle]
pub unsafe extern "C" fn mremap(
    old: *mut c_void,
    old_len: usize,
    new_len: usize,
    flags: c_int,
    new_addr: *mut c_void,
) -> *mut c_void {
    memmap::invalidate();
    match next_fn::mremap() {
        Some(f) => f(old, old_len, new_len, flags, new_addr),
        None => sys_ptr(
            libc::SYS_mremap,
            [
                old.word(),
                old_len.word(),
                new_len.word(),
                flags.word(),
                new_addr.word(),
                0,
            ],
        ),
    }
}

/// # Safety
/// As the C library's `mprotect`.
#[no_mangle]
pub unsafe extern "C" fn mprotect(addr: *mut c_void, len: usize, prot: c_int) -> c_int {
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    if prot & rw != rw {
        memmap::invalidate();
    }
    match next_fn::mprotect() {
        Some(f) => f(addr, len, prot),
        None => sys_int(
            libc::SYS_mprotect,
            [addr.word(), len.word(), prot.word(), 0],
        ),
    }
}

/// # Safety
/// As the C library's `pkey_mprotect`.
#[no_mangle]
pub unsafe extern "C" fn pkey_mprotect(
    addr: *mut c_void,
    len: usize,
    prot: c_int,
    pkey: c_int,
) -> c_int {
    memmap::invalidate();
    match next_fn::pkey_mprotect() {
        Some(f) => f(addr, len, prot, pkey),
        None => sys_int(
            libc::SYS_pkey_mprotect,
            [addr.word(), len.word(), prot.word(), pkey.word()],
        ),
    }
}

/// # Safety
/// As the C library's `shmdt`.
#[no_mangle]
pub unsafe extern "C" fn shmdt(addr: *const c_void) -> c_int {
    memmap::invalidate();
    match next_fn::shmdt() {
        Some(f) => f(addr),
        None => sys_int(libc::SYS_shmdt, [addr.word(), 0, 0, 0]),
    }
}

/// # Safety
/// As the C library's `dlclose`.
#[no_mangle]
pub unsafe extern "C" fn dlclose(handle: *mut c_void) -> c_int {
    memmap::invalidate();
    match next_fn::dlclose() {
        Some(f) => f(handle),
        None => -1,
    }
}
