// SPDX-License-Identifier: GPL-2.0

//! Code cache memory (DESIGN §3/§4; BTKernel §3.1 places its cache where rel32 reaches): pages
//! in the module area, within ±2 GiB of kernel text so `jmp/call rel32` and RIP-relative
//! operands of translated code still reach native text and data. W^X: the pages are executed
//! through a read-only executable mapping and written through a separate writable,
//! non-executable alias of the same pages; no mapping is ever writable and executable.
//!
//! Also the data areas next to it: writable, non-executable module-area memory that code in
//! the cache addresses RIP-relative or absolutely (entry counters, the translator's jumptable).

use kernel::prelude::*;

extern "C" {
    fn kdbt_code_alloc(size: usize, exec: *mut *mut u8, alias: *mut *mut u8) -> i32;
    fn kdbt_code_free(exec: *mut u8, alias: *mut u8, size: usize);
    fn kdbt_data_alloc(size: usize) -> *mut u8;
    fn kdbt_data_free(ptr: *mut u8);
    fn kdbt_kernel_pte_flags(addr: usize) -> u64;
    fn kdbt_pte_flag_rw() -> u64;
    fn kdbt_pte_flag_nx() -> u64;
    fn kdbt_write_nofault(dst: *mut u8, src: *const u8, len: usize) -> isize;
}

/// Page size, bytes.
pub(crate) const PAGE: usize = 4096;
/// Reach of rel32 branches and RIP-relative operands, bytes.
pub(crate) const REL32_REACH: u64 = 1 << 31;

/// The code cache: `len` bytes executed at [`CodeCache::exec`], written at the alias.
pub(crate) struct CodeCache {
    exec: *mut u8,
    alias: *mut u8,
    len: usize,
}

// SAFETY: the mappings are plain kernel memory usable from any CPU; writes go through `write`,
// whose callers serialize them (the switch mutex).
unsafe impl Send for CodeCache {}
// SAFETY: as above; shared references only read addresses or memory.
unsafe impl Sync for CodeCache {}

impl CodeCache {
    /// Maps `len` bytes (rounded up to pages). Errors: `ENOMEM`, or the errno of mapping.
    pub(crate) fn new(len: usize) -> Result<Self> {
        let len = len.div_ceil(PAGE) * PAGE;
        let (mut exec, mut alias) = (core::ptr::null_mut(), core::ptr::null_mut());
        // SAFETY: the out pointers are valid locals; the shim validates `len`.
        kernel::error::to_result(unsafe { kdbt_code_alloc(len, &mut exec, &mut alias) })?;
        // The whole design rests on rel32 reach: refuse memory that does not give it.
        let text = crate::msr::read(crate::msr::MSR_LSTAR);
        let far = (exec as u64)
            .abs_diff(text)
            .max((exec as u64 + len as u64).abs_diff(text));
        let cache = CodeCache { exec, alias, len };
        if far >= REL32_REACH {
            pr_err!(
                "code cache at {:#x} is beyond rel32 reach of kernel text\n",
                exec as u64
            );
            return Err(ERANGE);
        }
        Ok(cache)
    }

    /// Address of the executable (read-only) view.
    pub(crate) fn exec(&self) -> u64 {
        self.exec as u64
    }

    /// Address of the writable (non-executable) alias.
    pub(crate) fn alias(&self) -> u64 {
        self.alias as u64
    }

    /// Size, bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Copies `bytes` to tx address `tx` through the writable alias.
    ///
    /// # Safety
    /// No CPU may be executing the bytes replaced (or the write must be an atomic patch the
    /// running code tolerates); callers serialize writes.
    pub(crate) unsafe fn write(&self, tx: u64, bytes: &[u8]) {
        let off = tx
            .checked_sub(self.exec())
            .expect("tx address below the cache") as usize;
        assert!(off + bytes.len() <= self.len, "write past the code cache");
        // SAFETY: the range is inside the alias mapping (checked above); exclusivity is the
        // caller's contract.
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), self.alias.add(off), bytes.len()) };
    }

    /// Checks the W^X layout on `probe_len` bytes at offset `off` of the cache (which must be
    /// unused): what each view's page-table entry allows, whether a write through the
    /// executable view is refused, and whether a write through the alias shows in the
    /// executable view.
    pub(crate) fn probe_at(&self, off: usize, probe_len: usize) -> WxProbe {
        assert!(
            off + probe_len <= self.len && probe_len >= 8,
            "probe outside the cache"
        );
        // SAFETY: lookups of kernel addresses, no preconditions.
        let (exec_pte, alias_pte, rw, nx) = unsafe {
            (
                kdbt_kernel_pte_flags(self.exec as usize + off),
                kdbt_kernel_pte_flags(self.alias as usize + off),
                kdbt_pte_flag_rw(),
                kdbt_pte_flag_nx(),
            )
        };
        // SAFETY: the executable view at `off` is mapped; copy_to_kernel_nofault returns
        // -EFAULT instead of faulting when the page is read-only.
        let byte = 0xccu8;
        let exec_write = unsafe { kdbt_write_nofault(self.exec.add(off), &byte, 1) };
        let stamp = (self.exec as u64) ^ 0x6b64_6274_7072_6f62;
        // SAFETY: the probe bytes are unused by code (caller's contract) and inside both views.
        let seen = unsafe {
            core::ptr::write_volatile(self.alias.add(off) as *mut u64, stamp);
            core::ptr::read_volatile(self.exec.add(off) as *const u64)
        };
        WxProbe {
            exec_writable: exec_pte & rw != 0,
            exec_executable: exec_pte != 0 && exec_pte & nx == 0,
            alias_writable: alias_pte & rw != 0,
            alias_executable: alias_pte != 0 && alias_pte & nx == 0,
            exec_write_errno: exec_write as i32,
            alias_write_visible: seen == stamp,
        }
    }
}

impl Drop for CodeCache {
    fn drop(&mut self) {
        // SAFETY: both mappings came from kdbt_code_alloc with this length; the owner drops the
        // cache only once no CPU can enter it (entries restored, no stack returns into it).
        unsafe { kdbt_code_free(self.exec, self.alias, self.len) };
    }
}

/// What [`CodeCache::probe`] found.
pub(crate) struct WxProbe {
    /// The executable view's PTE has RW.
    pub(crate) exec_writable: bool,
    /// The executable view's PTE lacks NX.
    pub(crate) exec_executable: bool,
    /// The alias's PTE has RW.
    pub(crate) alias_writable: bool,
    /// The alias's PTE lacks NX.
    pub(crate) alias_executable: bool,
    /// `copy_to_kernel_nofault` into the executable view: 0 or -errno (-EFAULT expected).
    pub(crate) exec_write_errno: i32,
    /// A store through the alias read back through the executable view.
    pub(crate) alias_write_visible: bool,
}

/// Zeroed, writable, non-executable memory in the module area, for data that code in the
/// cache reaches RIP-relative. Holds `T`s; freed when dropped.
pub(crate) struct DataArea<T> {
    ptr: *mut T,
    count: usize,
}

// SAFETY: plain kernel memory; T's own Sync/Send (atomics) govern concurrent use.
unsafe impl<T: Sync> Sync for DataArea<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Send for DataArea<T> {}

impl<T> DataArea<T> {
    /// `count` zeroed `T`s. `T` must be valid when all-zero (counters) and aligned to at most a
    /// page (module-area allocations are page aligned). Errors: `ENOMEM`.
    pub(crate) fn zeroed(count: usize) -> Result<Self> {
        const { assert!(core::mem::align_of::<T>() <= PAGE) };
        let size = (count * core::mem::size_of::<T>()).div_ceil(PAGE) * PAGE;
        // SAFETY: any size is accepted; the shim zeroes what it returns.
        let ptr = unsafe { kdbt_data_alloc(size) } as *mut T;
        if ptr.is_null() {
            return Err(ENOMEM);
        }
        Ok(DataArea { ptr, count })
    }

    /// The elements.
    pub(crate) fn get(&self) -> &[T] {
        // SAFETY: `count` zero-initialized T's (valid when zero, per `zeroed`'s contract) live
        // as long as `self`.
        unsafe { core::slice::from_raw_parts(self.ptr, self.count) }
    }
}

impl<T> Drop for DataArea<T> {
    fn drop(&mut self) {
        // SAFETY: from kdbt_data_alloc; owners drop it only after code using it is unreachable.
        unsafe { kdbt_data_free(self.ptr as *mut u8) };
    }
}
