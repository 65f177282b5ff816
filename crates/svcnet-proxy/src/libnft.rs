//! nftables transactions through libnftables in this process, instead of
//! starting the `nft` binary for each one.
//!
//! Starting `nft` costs a fork, an exec and the dynamic loading of its
//! libraries: about 4 ms of the 10 ms an incremental sync took (add one
//! Service to 10,000; `examples/bench_sync.rs`). libnftables is the library
//! behind the binary (Debian's `libnftables1`, a dependency of `nftables`);
//! it is opened with dlopen at run time, so building svcnet needs no
//! development package, and a machine without it falls back to the binary.
//! Scripts are the same text `nft -f` reads, run as one transaction.
//!
//! The context opens its netlink socket in the network namespace of the
//! thread that creates it: the backend creates it on its own thread, on
//! first use, as the `nft` child processes inherited that thread's namespace.
//!
//! The workspace denies unsafe code; this module is the one exception: the
//! FFI calls into libnftables, each with its safety argument.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_char, c_int, c_void};

/// `struct nft_ctx *nft_ctx_new(uint32_t flags)`
type CtxNew = unsafe extern "C" fn(u32) -> *mut c_void;
/// `void nft_ctx_free(struct nft_ctx *ctx)`
type CtxFree = unsafe extern "C" fn(*mut c_void);
/// `int nft_ctx_buffer_output(struct nft_ctx *ctx)` (and `_error`)
type CtxBuffer = unsafe extern "C" fn(*mut c_void) -> c_int;
/// `const char *nft_ctx_get_error_buffer(struct nft_ctx *ctx)`
type CtxGetBuffer = unsafe extern "C" fn(*mut c_void) -> *const c_char;
/// `int nft_run_cmd_from_buffer(struct nft_ctx *nft, const char *buf)`
type RunCmd = unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int;

const LIBRARY: &str = "libnftables.so.1";

/// One libnftables context.
pub struct LibNft {
    ctx: *mut c_void,
    free: CtxFree,
    run: RunCmd,
    error_buffer: CtxGetBuffer,
    output_buffer: CtxGetBuffer,
    /// Keeps the library mapped while `ctx` and the function pointers live.
    _lib: libloading::Library,
}

// SAFETY: the context is only ever used through `&mut self`, by one thread
// at a time; libnftables keeps no thread-local state for a context.
unsafe impl Send for LibNft {}

impl std::fmt::Debug for LibNft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LibNft")
    }
}

impl LibNft {
    /// Opens libnftables and a context, or says why not.
    pub fn open() -> Result<LibNft, String> {
        // SAFETY: loading libnftables runs its (trivial) initialisers; the
        // symbols are looked up with the C signatures documented in
        // libnftables(3) and used only with those signatures.
        unsafe {
            let lib = libloading::Library::new(LIBRARY).map_err(|e| e.to_string())?;
            let sym = |name: &[u8]| -> Result<*const c_void, String> {
                lib.get::<*const c_void>(name)
                    .map(|s| *s)
                    .map_err(|e| e.to_string())
            };
            let new: CtxNew = std::mem::transmute(sym(b"nft_ctx_new\0")?);
            let free: CtxFree = std::mem::transmute(sym(b"nft_ctx_free\0")?);
            let buffer_output: CtxBuffer = std::mem::transmute(sym(b"nft_ctx_buffer_output\0")?);
            let buffer_error: CtxBuffer = std::mem::transmute(sym(b"nft_ctx_buffer_error\0")?);
            let error_buffer: CtxGetBuffer =
                std::mem::transmute(sym(b"nft_ctx_get_error_buffer\0")?);
            let output_buffer: CtxGetBuffer =
                std::mem::transmute(sym(b"nft_ctx_get_output_buffer\0")?);
            let run: RunCmd = std::mem::transmute(sym(b"nft_run_cmd_from_buffer\0")?);
            let ctx = new(0); // NFT_CTX_DEFAULT
            if ctx.is_null() {
                return Err("nft_ctx_new failed".into());
            }
            // Output and errors go to buffers, not to this process's stdout/stderr.
            if buffer_output(ctx) != 0 || buffer_error(ctx) != 0 {
                free(ctx);
                return Err("nft_ctx_buffer_output/error failed".into());
            }
            Ok(LibNft {
                ctx,
                free,
                run,
                error_buffer,
                output_buffer,
                _lib: lib,
            })
        }
    }

    /// Runs `script` (what `nft -f` reads) as one transaction; returns its
    /// output, or the error text nft would have printed.
    pub fn run(&mut self, script: &str) -> Result<String, String> {
        let text = CString::new(script).map_err(|_| "script contains a NUL byte".to_string())?;
        // SAFETY: `ctx` is a live context owned by `self`; `text` outlives the
        // call; the returned buffers are owned by the context and copied out
        // before the next call on it.
        unsafe {
            let rc = (self.run)(self.ctx, text.as_ptr());
            let read = |p: *const c_char| {
                if p.is_null() {
                    String::new()
                } else {
                    CStr::from_ptr(p).to_string_lossy().trim().to_string()
                }
            };
            let out = read((self.output_buffer)(self.ctx));
            let err = read((self.error_buffer)(self.ctx));
            if rc == 0 {
                Ok(out)
            } else if err.is_empty() {
                Err(format!("libnftables returned {rc}"))
            } else {
                Err(err)
            }
        }
    }
}

impl Drop for LibNft {
    fn drop(&mut self) {
        // SAFETY: `ctx` came from nft_ctx_new and is freed once, here.
        unsafe { (self.free)(self.ctx) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Needs root and libnftables (installed with nftables by scripts/setup.sh):
    /// a table made, listed and deleted in a network namespace of the test's own.
    #[test]
    fn runs_transactions_and_reports_errors() {
        let ns = format!("svcnet-libnft-{}", std::process::id());
        let ok = std::process::Command::new("ip")
            .args(["netns", "add", &ns])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "ip netns add");
        struct Del(String);
        impl Drop for Del {
            fn drop(&mut self) {
                let _ = std::process::Command::new("ip")
                    .args(["netns", "del", &self.0])
                    .status();
            }
        }
        let _del = Del(ns.clone());
        let ns2 = ns.clone();
        let result = std::thread::spawn(move || {
            let f = std::fs::File::open(format!("/var/run/netns/{ns2}")).expect("netns");
            nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            let mut nft = LibNft::open().expect("libnftables");
            nft.run("add table ip t\nadd set ip t s { type ipv4_addr; }\nadd element ip t s { 10.0.0.1 }\n")
                .expect("transaction");
            let listed = nft.run("list set ip t s").expect("list");
            let bad = nft.run("add element ip t nosuchset { 10.0.0.2 }");
            // A failed transaction changes nothing, also what came before the error.
            let partial = nft.run("add element ip t s { 10.0.0.3 }\nadd element ip t nosuchset { 1.2.3.4 }");
            let after = nft.run("list set ip t s").expect("list");
            (listed, bad, partial, after)
        })
        .join()
        .expect("thread");
        let (listed, bad, partial, after) = result;
        assert!(listed.contains("10.0.0.1"), "{listed}");
        let e = bad.expect_err("missing set is an error");
        assert!(e.contains("No such file or directory"), "{e}");
        assert!(partial.is_err());
        assert!(!after.contains("10.0.0.3"), "{after}");
        // The host namespace never saw the table.
        let host = std::process::Command::new("nft")
            .args(["list", "table", "ip", "t"])
            .output()
            .expect("nft");
        assert!(!host.status.success());
    }
}
