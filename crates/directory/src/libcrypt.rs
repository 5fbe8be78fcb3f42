//! yescrypt, gost-yescrypt and scrypt crypt(3) hashes through the system's
//! libxcrypt, loaded at run time with `dlopen("libcrypt.so.1")`.
//!
//! Why: `$y$` (yescrypt) is the default `/etc/shadow` hash of Debian 11+,
//! Ubuntu 22.04+ and Fedora 35+, and there is no pure-Rust implementation
//! in the workspace. Loading at run time (rather than linking `-lcrypt`)
//! keeps the build free of a `libcrypt-dev` requirement; where the library
//! or its `crypt_rn` entry point is missing, these hashes fail to verify
//! with [`SchemeError::Unavailable`](crate::scheme::SchemeError::Unavailable).
//!
//! Only the strong `$`-forms listed in [`crate::scheme`] reach this code:
//! DES and other legacy forms libxcrypt still knows are never passed here.

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::sync::OnceLock;

/// `sizeof(struct crypt_data)` in libxcrypt (output 384 + setting 384 +
/// input 512 + reserved 767 + initialized 1 + internal 30720).
const CRYPT_DATA_SIZE: usize = 32768;

/// `char *crypt_rn(const char *phrase, const char *setting, void *data, int size)`
type CryptRn =
    unsafe extern "C" fn(*const c_char, *const c_char, *mut c_void, c_int) -> *mut c_char;

fn crypt_rn() -> Option<CryptRn> {
    static ADDR: OnceLock<Option<usize>> = OnceLock::new();
    let addr = *ADDR.get_or_init(|| {
        // SAFETY: dlopen/dlsym with valid NUL-terminated names; the handle
        // is never closed, so the symbol stays valid for the process.
        unsafe {
            let h = libc::dlopen(c"libcrypt.so.1".as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
            if h.is_null() {
                return None;
            }
            let sym = libc::dlsym(h, c"crypt_rn".as_ptr());
            (!sym.is_null()).then_some(sym as usize)
        }
    });
    // SAFETY: the address is libxcrypt's `crypt_rn`, whose C signature is
    // `CryptRn` (documented in crypt(3) of libxcrypt).
    addr.map(|a| unsafe { std::mem::transmute::<usize, CryptRn>(a) })
}

/// Whether the system library is usable.
pub(crate) fn available() -> bool {
    crypt_rn().is_some()
}

/// `crypt(phrase, setting)`; `None` if the library is missing, the phrase
/// contains NUL, or libxcrypt refuses the setting.
pub(crate) fn crypt(phrase: &[u8], setting: &str) -> Option<String> {
    let f = crypt_rn()?;
    let phrase = CString::new(phrase).ok()?;
    let setting = CString::new(setting).ok()?;
    let mut data = vec![0u8; CRYPT_DATA_SIZE];
    // SAFETY: both strings are NUL-terminated and outlive the call; `data`
    // is a writable buffer of the size we pass, which crypt_rn checks
    // against sizeof(struct crypt_data). The result points into `data`
    // (or is NULL) and is copied before `data` is dropped.
    let out = unsafe {
        let p = f(
            phrase.as_ptr(),
            setting.as_ptr(),
            data.as_mut_ptr().cast(),
            CRYPT_DATA_SIZE as c_int,
        );
        if p.is_null() {
            None
        } else {
            CStr::from_ptr(p).to_str().ok().map(str::to_string)
        }
    };
    // The buffer held a copy of the passphrase.
    data.fill(0);
    std::hint::black_box(&data);
    // libxcrypt returns "*0"/"*1" failure tokens instead of NULL.
    out.filter(|s| !s.starts_with('*'))
}
