//! The contract side of the host ABI (see `runtime/src/contract.rs` for the host side).
//! A contract is a function from its call input to `Result<(), Refusal>`, registered with
//! [`entry!`]; state, caller, block and seed come from the functions here.
//!
//! Memory: a bump allocator from the linker's `__heap_base` up, which frees only its last
//! allocation and starts over at each call: the host may run a block's next call to the
//! contract in the same instance (when this call succeeded without growing memory), so a
//! contract keeps nothing in statics. The host bounds how far memory may grow.

#![cfg_attr(not(test), no_std)]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;

pub use bidchain_trading as trading;
use bidchain_trading::{AccountKey, Decode, Digest, Encode, Refusal};

#[cfg(target_arch = "wasm32")]
mod wasm {
    use core::alloc::{GlobalAlloc, Layout};
    use core::cell::Cell;

    const PAGE_BYTES: usize = 65_536;

    unsafe extern "C" {
        /// The first byte above the stack and static data (set by the linker).
        static __heap_base: u8;
    }

    struct Bump {
        next: Cell<usize>,
        end: Cell<usize>,
    }

    // One thread: wasm32-unknown-unknown without the threads feature.
    unsafe impl Sync for Bump {}

    impl Bump {
        /// Empties the heap. It starts above the stack and data, where the linker says, and
        /// uses the memory there is before growing it: each growth costs the host a system
        /// call (and another to undo it when it reuses the memory). Unconditional, so that
        /// a call burns the same fuel in a fresh instance as in a kept one.
        fn reset(&self) {
            self.next.set(&raw const __heap_base as usize);
            self.end
                .set(core::arch::wasm32::memory_size(0) * PAGE_BYTES);
        }

        /// Only if `alloc_input` has not run, which the host always calls first.
        fn start(&self) {
            if self.end.get() == 0 {
                self.reset();
            }
        }

        /// Moves the top of the heap to `new_next`, growing memory if it must.
        fn set_top(&self, new_next: usize) -> bool {
            if new_next > self.end.get() {
                let pages = (new_next - self.end.get()).div_ceil(PAGE_BYTES);
                if core::arch::wasm32::memory_grow(0, pages) == usize::MAX {
                    return false;
                }
                self.end.set(self.end.get() + pages * PAGE_BYTES);
            }
            self.next.set(new_next);
            true
        }

        /// Whether `ptr..ptr + size` is the last allocation (the one at the top).
        fn is_top(&self, ptr: *mut u8, size: usize) -> bool {
            ptr as usize + size == self.next.get()
        }
    }

    // Every page a call writes is reset by the host when it lets the instance go (a copy
    // per page), and a vector that grows by reallocation would otherwise leave each smaller
    // copy behind: the last allocation grows, shrinks and is freed in place.
    unsafe impl GlobalAlloc for Bump {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            self.start();
            let align = layout.align();
            let start = (self.next.get() + align - 1) & !(align - 1);
            match start.checked_add(layout.size()) {
                Some(new_next) if self.set_top(new_next) => start as *mut u8,
                _ => core::ptr::null_mut(),
            }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            if self.is_top(ptr, layout.size()) {
                self.next.set(ptr as usize);
            }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            if self.is_top(ptr, layout.size()) {
                return match (ptr as usize).checked_add(new_size) {
                    Some(new_next) if self.set_top(new_next) => ptr,
                    _ => core::ptr::null_mut(),
                };
            }
            // Not at the top: a new block and a copy, as the default does.
            let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
            let new_ptr = unsafe { self.alloc(new_layout) };
            if !new_ptr.is_null() {
                let kept = layout.size().min(new_size);
                unsafe { core::ptr::copy_nonoverlapping(ptr, new_ptr, kept) };
            }
            new_ptr
        }
    }

    #[global_allocator]
    static ALLOCATOR: Bump = Bump {
        next: Cell::new(0),
        end: Cell::new(0),
    };

    /// Frees everything an earlier call in this instance allocated.
    pub(crate) fn start_call() {
        ALLOCATOR.reset();
    }

    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
        let message = alloc::format!("contract_panic: {}", info.message());
        super::abort(&message)
    }
}

mod host {
    #[link(wasm_import_module = "env")]
    unsafe extern "C" {
        pub fn storage_get(key: *const u8, key_len: i32, out: *mut u8, out_cap: i32) -> i32;
        pub fn storage_get_from(
            contract: *const u8,
            contract_len: i32,
            key: *const u8,
            key_len: i32,
            out: *mut u8,
            out_cap: i32,
        ) -> i32;
        pub fn storage_set(key: *const u8, key_len: i32, value: *const u8, value_len: i32);
        pub fn storage_delete(key: *const u8, key_len: i32);
        pub fn caller(out: *mut u8);
        pub fn tx_hash(out: *mut u8);
        pub fn caller_role() -> i32;
        pub fn block_height() -> i64;
        pub fn block_time_ms() -> i64;
        pub fn random_seed(out: *mut u8);
        pub fn seed_at(height: i64, out: *mut u8) -> i32;
        pub fn sha256(data: *const u8, len: i32, out: *mut u8);
        pub fn emit_event(kind: *const u8, kind_len: i32, data: *const u8, data_len: i32);
        pub fn set_output(data: *const u8, len: i32);
        pub fn abort(msg: *const u8, msg_len: i32) -> !;
    }
}

fn len_i32(bytes: &[u8]) -> i32 {
    cap_i32(bytes.len())
}

fn cap_i32(len: usize) -> i32 {
    // The host refuses anything near this size anyway.
    i32::try_from(len).unwrap_or(i32::MAX)
}

/// The first guess at the size of a value read.
const READ_GUESS_BYTES: usize = 4096;

/// Reads with a first guess at the size, then once more with the exact size. The buffer
/// is neither zeroed first (the host writes the whole value) nor left larger than the
/// value: the host resets every page an instance touched, and zeroing the guess cost a
/// bid call a 4 KiB memory fill and a fresh page per read.
fn read_value(read: impl Fn(*mut u8, i32) -> i32) -> Option<Vec<u8>> {
    let mut buf: Vec<u8> = Vec::with_capacity(READ_GUESS_BYTES);
    let len = usize::try_from(read(buf.as_mut_ptr(), cap_i32(buf.capacity()))).ok()?;
    if len > buf.capacity() {
        // Freed first, so the exact buffer takes its place at the top of the heap.
        drop(buf);
        buf = Vec::with_capacity(len);
        if usize::try_from(read(buf.as_mut_ptr(), cap_i32(len))).ok() != Some(len) {
            abort("contract_panic: a stored value changed between two reads");
        }
    }
    // SAFETY: the host wrote the whole value, `len` bytes, at the start of `buf`, whose
    // capacity is at least `len`.
    unsafe { buf.set_len(len) };
    // The last allocation: the bump allocator shrinks it in place.
    buf.shrink_to_fit();
    Some(buf)
}

/// This contract's value at `key`.
pub fn get(key: &[u8]) -> Option<Vec<u8>> {
    read_value(|out, cap| unsafe { host::storage_get(key.as_ptr(), len_i32(key), out, cap) })
}

/// Another contract's value at `key` (read-only).
pub fn get_from(contract: &str, key: &[u8]) -> Option<Vec<u8>> {
    read_value(|out, cap| unsafe {
        host::storage_get_from(
            contract.as_ptr(),
            len_i32(contract.as_bytes()),
            key.as_ptr(),
            len_i32(key),
            out,
            cap,
        )
    })
}

fn decode_stored<T: Decode>(key: &[u8], bytes: Option<Vec<u8>>) -> Result<Option<T>, Refusal> {
    bytes
        .map(|b| T::decode(&b))
        .transpose()
        .map_err(|e| Refusal::new("corrupt_state", alloc::format!("entry {key:?}: {e}")))
}

pub fn load<T: Decode>(key: &[u8]) -> Result<Option<T>, Refusal> {
    decode_stored(key, get(key))
}

pub fn load_from<T: Decode>(contract: &str, key: &[u8]) -> Result<Option<T>, Refusal> {
    decode_stored(key, get_from(contract, key))
}

pub fn store<T: Encode>(key: &[u8], value: &T) {
    let bytes = value.encode();
    unsafe { host::storage_set(key.as_ptr(), len_i32(key), bytes.as_ptr(), len_i32(&bytes)) }
}

pub fn delete(key: &[u8]) {
    unsafe { host::storage_delete(key.as_ptr(), len_i32(key)) }
}

pub fn caller() -> AccountKey {
    let mut out = [0u8; 32];
    unsafe { host::caller(out.as_mut_ptr()) };
    AccountKey(out)
}

/// The hash of the transaction making this call.
pub fn tx_hash() -> Digest {
    let mut out = [0u8; 32];
    unsafe { host::tx_hash(out.as_mut_ptr()) };
    Digest(out)
}

/// See `bidchain_trading::roles`.
pub fn caller_role() -> i32 {
    unsafe { host::caller_role() }
}

pub fn block_height() -> u64 {
    unsafe { host::block_height() as u64 }
}

pub fn block_time_ms() -> u64 {
    unsafe { host::block_time_ms() as u64 }
}

/// The block's seed: unknown before the block, the same on every validator.
pub fn random_seed() -> Digest {
    let mut out = [0u8; 32];
    unsafe { host::random_seed(out.as_mut_ptr()) };
    Digest(out)
}

/// The seed of the block at `height`, while the chain keeps it (the last 256 blocks).
pub fn seed_at(height: u64) -> Option<Digest> {
    let mut out = [0u8; 32];
    let height = i64::try_from(height).ok()?;
    match unsafe { host::seed_at(height, out.as_mut_ptr()) } {
        0 => Some(Digest(out)),
        _ => None,
    }
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    unsafe { host::sha256(data.as_ptr(), len_i32(data), out.as_mut_ptr()) };
    out
}

/// Emits an event into the receipt: a kind and key/value attributes in words.
pub fn emit(kind: &str, attributes: &[(&str, String)]) {
    // Encodes as the `Vec<(String, String)>` the host decodes, without copying each text.
    let data = attributes.encode();
    unsafe {
        host::emit_event(
            kind.as_ptr(),
            len_i32(kind.as_bytes()),
            data.as_ptr(),
            len_i32(&data),
        )
    }
}

pub fn set_output(bytes: &[u8]) {
    unsafe { host::set_output(bytes.as_ptr(), len_i32(bytes)) }
}

/// Stops the call: nothing it wrote is kept, and `message` is the receipt's reason.
pub fn abort(message: &str) -> ! {
    unsafe { host::abort(message.as_ptr(), len_i32(message.as_bytes())) }
}

/// Requires the caller to hold `role` (a `bidchain_trading::roles` value).
pub fn require_role(role: i32, action: &str) -> Result<(), Refusal> {
    let held = caller_role();
    if held == role {
        return Ok(());
    }
    Err(Refusal::new(
        "not_permitted",
        alloc::format!(
            "a {} account may not {action}; only a {} may",
            bidchain_trading::roles::name(held),
            bidchain_trading::roles::name(role)
        ),
    ))
}

/// Starts a call (the host calls `alloc` first): frees what an earlier call allocated and
/// returns the input buffer, where the host writes the call input.
pub fn alloc_input(len: i32) -> i32 {
    #[cfg(target_arch = "wasm32")]
    wasm::start_call();
    let len = usize::try_from(len).unwrap_or(0);
    // Not zeroed: the host writes all `len` bytes before `call` reads them.
    let mut buf = core::mem::ManuallyDrop::new(Vec::<u8>::with_capacity(len));
    buf.as_mut_ptr() as i32
}

/// Runs `handler` on the input at `ptr`; a refusal aborts the call with its message.
pub fn dispatch(ptr: i32, len: i32, handler: fn(&[u8]) -> Result<(), Refusal>) {
    let len = usize::try_from(len).unwrap_or(0);
    // The host wrote exactly `len` bytes at `ptr`, which `alloc_input` returned.
    let input = unsafe { core::slice::from_raw_parts(ptr as *const u8, len) };
    if let Err(refusal) = handler(input) {
        abort(&refusal.message());
    }
}

/// Defines the module's `alloc` and `call` exports around `handler`.
#[macro_export]
macro_rules! entry {
    ($handler:path) => {
        #[unsafe(no_mangle)]
        pub extern "C" fn alloc(len: i32) -> i32 {
            $crate::alloc_input(len)
        }

        #[unsafe(no_mangle)]
        pub extern "C" fn call(ptr: i32, len: i32) {
            $crate::dispatch(ptr, len, $handler)
        }
    };
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;

    /// A host read of `value`: written whole when it fits `cap`, its length returned.
    fn host_read(value: &[u8], calls: &core::cell::Cell<u32>) -> impl Fn(*mut u8, i32) -> i32 {
        move |out, cap| {
            calls.set(calls.get() + 1);
            if value.len() <= usize::try_from(cap).unwrap() {
                // SAFETY: `out` has room for `cap` bytes, as read_value promises the host.
                unsafe { core::ptr::copy_nonoverlapping(value.as_ptr(), out, value.len()) };
            }
            cap_i32(value.len())
        }
    }

    #[test]
    fn values_are_read_whole_around_the_first_guess() {
        for len in [
            0,
            1,
            READ_GUESS_BYTES - 1,
            READ_GUESS_BYTES,
            READ_GUESS_BYTES + 1,
            70_000,
        ] {
            let value: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let calls = core::cell::Cell::new(0);
            let read = read_value(host_read(&value, &calls));
            assert_eq!(read.as_deref(), Some(&value[..]), "{len} bytes");
            assert_eq!(read.unwrap().capacity(), len, "kept no more than the value");
            assert_eq!(calls.get(), if len > READ_GUESS_BYTES { 2 } else { 1 });
        }
    }

    #[test]
    fn an_absent_value_reads_as_none() {
        assert_eq!(read_value(|_, _| -1), None);
    }
}
