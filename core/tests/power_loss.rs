#![cfg(unix)]
//! Power loss on the device store. A SQLite VFS registered as this test binary's default
//! forwards every call to the platform's VFS and remembers, per file, what each write or
//! truncate replaced since that file's last sync. Cutting the power makes every later write,
//! sync and delete a no-op (the dying process's last acts — closing its store — never reach
//! the disk); restoring puts back what the unsynced writes replaced, newest first, trims each
//! file to its length at its last sync and removes the shared-memory index, which lives in
//! memory. What is left is what a disk that lost its cache would hold. (The directory entry
//! of a file created since the last sync is assumed to survive.)
//!
//! One test per binary: the VFS and its power switch are process-wide.

use std::collections::BTreeMap;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Once};

use rusqlite::ffi;
use slowfast_core::{Config, Durability, SlowFast};

static POWER_CUT: AtomicBool = AtomicBool::new(false);

/// A file's length at its last sync and the bytes each unsynced change replaced, oldest first.
struct Unsynced {
    synced_len: i64,
    replaced: Vec<(i64, Vec<u8>)>,
}

static UNSYNCED: Mutex<BTreeMap<String, Unsynced>> = Mutex::new(BTreeMap::new());

/// Our file: the `sqlite3_file` SQLite sees, then the platform VFS's file right after it.
#[repr(C)]
struct File {
    base: ffi::sqlite3_file,
    real: *mut ffi::sqlite3_file,
    path: Option<String>,
}

unsafe fn real(f: *mut ffi::sqlite3_file) -> *mut ffi::sqlite3_file {
    (*(f as *mut File)).real
}

unsafe fn methods(f: *mut ffi::sqlite3_file) -> &'static ffi::sqlite3_io_methods {
    &*(*real(f)).pMethods
}

/// Remembers the `len` bytes at `offset` of `f` (as far as the file reaches) before they change.
unsafe fn remember(f: *mut ffi::sqlite3_file, offset: i64, len: i64) {
    let Some(path) = &(*(f as *mut File)).path else {
        return;
    };
    let m = methods(f);
    let mut size: ffi::sqlite3_int64 = 0;
    m.xFileSize.unwrap()(real(f), &mut size);
    let have = (size - offset).clamp(0, len.max(0));
    let mut old = vec![0u8; have as usize];
    if have > 0 {
        m.xRead.unwrap()(real(f), old.as_mut_ptr().cast(), have as c_int, offset);
    }
    UNSYNCED
        .lock()
        .unwrap()
        .entry(path.clone())
        .or_insert(Unsynced {
            synced_len: size,
            replaced: Vec::new(),
        })
        .replaced
        .push((offset, old));
}

unsafe extern "C" fn x_close(f: *mut ffi::sqlite3_file) -> c_int {
    let rc = methods(f).xClose.unwrap()(real(f));
    std::ptr::drop_in_place(&mut (*(f as *mut File)).path);
    rc
}

unsafe extern "C" fn x_read(
    f: *mut ffi::sqlite3_file,
    buf: *mut c_void,
    amt: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    methods(f).xRead.unwrap()(real(f), buf, amt, offset)
}

unsafe extern "C" fn x_write(
    f: *mut ffi::sqlite3_file,
    buf: *const c_void,
    amt: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    if POWER_CUT.load(Ordering::SeqCst) {
        return ffi::SQLITE_OK;
    }
    remember(f, offset, i64::from(amt));
    methods(f).xWrite.unwrap()(real(f), buf, amt, offset)
}

unsafe extern "C" fn x_truncate(f: *mut ffi::sqlite3_file, size: ffi::sqlite3_int64) -> c_int {
    if POWER_CUT.load(Ordering::SeqCst) {
        return ffi::SQLITE_OK;
    }
    remember(f, size, i64::MAX / 2);
    methods(f).xTruncate.unwrap()(real(f), size)
}

unsafe extern "C" fn x_sync(f: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    if POWER_CUT.load(Ordering::SeqCst) {
        return ffi::SQLITE_OK;
    }
    let rc = methods(f).xSync.unwrap()(real(f), flags);
    if rc == ffi::SQLITE_OK {
        if let Some(path) = &(*(f as *mut File)).path {
            UNSYNCED.lock().unwrap().remove(path);
        }
    }
    rc
}

unsafe extern "C" fn x_file_size(
    f: *mut ffi::sqlite3_file,
    size: *mut ffi::sqlite3_int64,
) -> c_int {
    methods(f).xFileSize.unwrap()(real(f), size)
}

unsafe extern "C" fn x_lock(f: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    methods(f).xLock.unwrap()(real(f), level)
}

unsafe extern "C" fn x_unlock(f: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    methods(f).xUnlock.unwrap()(real(f), level)
}

unsafe extern "C" fn x_check_reserved_lock(f: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    methods(f).xCheckReservedLock.unwrap()(real(f), out)
}

unsafe extern "C" fn x_file_control(
    f: *mut ffi::sqlite3_file,
    op: c_int,
    arg: *mut c_void,
) -> c_int {
    methods(f).xFileControl.unwrap()(real(f), op, arg)
}

unsafe extern "C" fn x_sector_size(f: *mut ffi::sqlite3_file) -> c_int {
    methods(f).xSectorSize.unwrap()(real(f))
}

unsafe extern "C" fn x_device_characteristics(f: *mut ffi::sqlite3_file) -> c_int {
    methods(f).xDeviceCharacteristics.unwrap()(real(f))
}

unsafe extern "C" fn x_shm_map(
    f: *mut ffi::sqlite3_file,
    page: c_int,
    size: c_int,
    extend: c_int,
    out: *mut *mut c_void,
) -> c_int {
    methods(f).xShmMap.unwrap()(real(f), page, size, extend, out)
}

unsafe extern "C" fn x_shm_lock(
    f: *mut ffi::sqlite3_file,
    offset: c_int,
    n: c_int,
    flags: c_int,
) -> c_int {
    methods(f).xShmLock.unwrap()(real(f), offset, n, flags)
}

unsafe extern "C" fn x_shm_barrier(f: *mut ffi::sqlite3_file) {
    methods(f).xShmBarrier.unwrap()(real(f))
}

unsafe extern "C" fn x_shm_unmap(f: *mut ffi::sqlite3_file, delete: c_int) -> c_int {
    methods(f).xShmUnmap.unwrap()(real(f), delete)
}

/// Version 2: no memory-mapped reads (`xFetch`), so every page goes through `x_read`.
static METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 2,
    xClose: Some(x_close),
    xRead: Some(x_read),
    xWrite: Some(x_write),
    xTruncate: Some(x_truncate),
    xSync: Some(x_sync),
    xFileSize: Some(x_file_size),
    xLock: Some(x_lock),
    xUnlock: Some(x_unlock),
    xCheckReservedLock: Some(x_check_reserved_lock),
    xFileControl: Some(x_file_control),
    xSectorSize: Some(x_sector_size),
    xDeviceCharacteristics: Some(x_device_characteristics),
    xShmMap: Some(x_shm_map),
    xShmLock: Some(x_shm_lock),
    xShmBarrier: Some(x_shm_barrier),
    xShmUnmap: Some(x_shm_unmap),
    xFetch: None,
    xUnfetch: None,
};

unsafe fn platform(vfs: *mut ffi::sqlite3_vfs) -> *mut ffi::sqlite3_vfs {
    (*vfs).pAppData.cast()
}

unsafe extern "C" fn x_open(
    vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    f: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let root = platform(vfs);
    let inner = f.cast::<u8>().add(std::mem::size_of::<File>()).cast();
    let rc = (*root).xOpen.unwrap()(root, name, inner, flags, out_flags);
    if rc != ffi::SQLITE_OK {
        (*f).pMethods = std::ptr::null();
        return rc;
    }
    let path = (!name.is_null()).then(|| CStr::from_ptr(name).to_string_lossy().into_owned());
    std::ptr::write(
        f.cast::<File>(),
        File {
            base: ffi::sqlite3_file { pMethods: &METHODS },
            real: inner,
            path,
        },
    );
    rc
}

unsafe extern "C" fn x_delete(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    sync_dir: c_int,
) -> c_int {
    if POWER_CUT.load(Ordering::SeqCst) {
        return ffi::SQLITE_OK;
    }
    let root = platform(vfs);
    let rc = (*root).xDelete.unwrap()(root, name, sync_dir);
    if rc == ffi::SQLITE_OK && !name.is_null() {
        let path = CStr::from_ptr(name).to_string_lossy().into_owned();
        UNSYNCED.lock().unwrap().remove(&path);
    }
    rc
}

unsafe extern "C" fn x_access(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    flags: c_int,
    out: *mut c_int,
) -> c_int {
    let root = platform(vfs);
    (*root).xAccess.unwrap()(root, name, flags, out)
}

unsafe extern "C" fn x_full_pathname(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    n: c_int,
    out: *mut c_char,
) -> c_int {
    let root = platform(vfs);
    (*root).xFullPathname.unwrap()(root, name, n, out)
}

/// Registers the power-cut VFS as the process's default.
fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| unsafe {
        let root = ffi::sqlite3_vfs_find(std::ptr::null());
        assert!(!root.is_null(), "no default SQLite VFS");
        let mut vfs = *root;
        vfs.szOsFile = std::mem::size_of::<File>() as c_int + (*root).szOsFile;
        vfs.pNext = std::ptr::null_mut();
        vfs.zName = c"power-cut".as_ptr();
        vfs.pAppData = root.cast();
        vfs.xOpen = Some(x_open);
        vfs.xDelete = Some(x_delete);
        vfs.xAccess = Some(x_access);
        vfs.xFullPathname = Some(x_full_pathname);
        let vfs = Box::leak(Box::new(vfs));
        assert_eq!(ffi::sqlite3_vfs_register(vfs, 1), ffi::SQLITE_OK);
    });
}

/// Turns the power back on over what a disk that lost its cache would hold (see the module
/// docs); call once every connection is closed.
fn restore(dir: &Path) {
    use std::os::unix::fs::FileExt;
    let unsynced = std::mem::take(&mut *UNSYNCED.lock().unwrap());
    for (path, u) in unsynced {
        let Ok(file) = std::fs::OpenOptions::new().write(true).open(&path) else {
            continue;
        };
        for (offset, old) in u.replaced.iter().rev() {
            file.write_all_at(old, *offset as u64).unwrap();
        }
        file.set_len(u.synced_len as u64).unwrap();
    }
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().ends_with("-shm") {
            std::fs::remove_file(path).unwrap();
        }
    }
    POWER_CUT.store(false, Ordering::SeqCst);
}

const EVENTS: usize = 120;

/// Records [`EVENTS`] events (each acknowledged by its call's return), cuts the power, then
/// reopens the store: how many acknowledged events are gone.
fn lost_on_power_cut(durability: Durability) -> usize {
    install();
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path(), "http://127.0.0.1:9", "token", "user");
    config.durability = durability;
    {
        let sf = SlowFast::open(config.clone()).unwrap();
        for i in 0..EVENTS {
            let item = format!("item-{i}");
            if i % 4 == 0 {
                sf.record_click(&item, i as i64).unwrap();
            } else {
                sf.record_exposure(&item, i as i64).unwrap();
            }
        }
        POWER_CUT.store(true, Ordering::SeqCst);
    }
    restore(dir.path());
    let sf = SlowFast::open(config).expect("the store opens after a power cut");
    EVENTS - sf.pending_uploads().unwrap()
}

#[test]
fn acknowledged_events_survive_a_power_cut_with_power_loss_durability() {
    let with_sync = lost_on_power_cut(Durability::PowerLoss);
    let without = lost_on_power_cut(Durability::Process);
    println!("events lost of {EVENTS}: power-loss durability {with_sync}, process {without}");
    assert_eq!(
        with_sync, 0,
        "Durability::PowerLoss lost acknowledged events"
    );
    // The fault injection bites: without a sync per commit, the cut loses what was recorded.
    assert!(
        without > 0,
        "Durability::Process lost nothing: the power cut did not cut"
    );
}
