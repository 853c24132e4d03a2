/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The C side of kdbt.ko: kernel APIs that Rust-for-Linux 6.12 has no abstraction for, and the
 * heap and panic hooks of the translator engine (module/engine/, a no_std Rust object).
 * Every function here has exactly one Rust caller or callee, declared in the Rust file that
 * wraps it (module/debugfs.rs, module/control.rs, module/code_cache.rs, module/cpu.rs,
 * module/engine/src/lib.rs).
 */
#ifndef KDBT_SHIM_H
#define KDBT_SHIM_H

#include <linux/types.h>

/*
 * debugfs (module/debugfs.rs): creates <debugfs>/kdbt/{status,stats}; 0 or -errno. `ctx` is
 * handed back to the render callbacks and must stay valid until kdbt_debugfs_remove returns.
 */
int kdbt_debugfs_create(void *ctx);
/* Removes everything kdbt_debugfs_create made, waiting for readers; once after a success. */
void kdbt_debugfs_remove(void);
/* Implemented in Rust (module/debugfs.rs): write the text, return bytes or -errno. */
ssize_t kdbt_status_render(void *ctx, char *buf, size_t len);
ssize_t kdbt_stats_render(void *ctx, char *buf, size_t len);

/*
 * The control device /dev/kdbt (module/control.rs): a misc device, mode 0600, whose open and
 * ioctl also require CAP_SYS_ADMIN. `ctx` is handed to kdbt_control_ioctl and must stay valid
 * until kdbt_control_unregister returns. 0 or -errno.
 */
int kdbt_control_register(void *ctx);
/* Removes /dev/kdbt; open files keep the module pinned (fops.owner), so none outlive ctx. */
void kdbt_control_unregister(void);
/* Implemented in Rust (module/control.rs): one ioctl; 0 or -errno. */
long kdbt_control_ioctl(void *ctx, unsigned int cmd, unsigned long arg);

/*
 * Code cache memory (module/code_cache.rs): `size` bytes (a multiple of PAGE_SIZE) from the
 * module area, mapped read-only and executable at *exec, and the same pages mapped writable
 * and non-executable at *alias. 0 or -errno.
 */
int kdbt_code_alloc(size_t size, void **exec, void **alias);
/* Unmaps and frees what kdbt_code_alloc returned (process context). */
void kdbt_code_free(void *exec, void *alias, size_t size);
/* `size` bytes of zeroed, writable, non-executable memory in the module area, or NULL. */
void *kdbt_data_alloc(size_t size);
/* Frees kdbt_data_alloc memory (process context). */
void kdbt_data_free(void *ptr);
/* The page-table flags (_PAGE_*) of the kernel mapping of `addr`, or 0 when unmapped. */
u64 kdbt_kernel_pte_flags(unsigned long addr);
/* _PAGE_RW and _PAGE_NX, for interpreting kdbt_kernel_pte_flags. */
u64 kdbt_pte_flag_rw(void);
u64 kdbt_pte_flag_nx(void);
/* Like copy_to_kernel_nofault: 0, or -EFAULT when `dst` cannot be written. */
long kdbt_write_nofault(void *dst, const void *src, size_t len);

/* CPUs (module/cpu.rs). Runs fn(info) on every online CPU, interrupts off, and waits. */
void kdbt_on_each_online_cpu(void (*fn)(void *info), void *info);
/* The CPU this runs on (callers have interrupts or preemption off). */
unsigned int kdbt_this_cpu(void);
/* nr_cpu_ids: one past the highest possible CPU number. */
unsigned int kdbt_nr_cpu_ids(void);
/* Whether `cpu` is online now. */
bool kdbt_cpu_online(unsigned int cpu);
/* Take and drop a reference on kdbt.ko: held while switched on, so rmmod says EBUSY. */
void kdbt_module_hold(void);
void kdbt_module_release(void);

/* The engine's heap: kmalloc(GFP_ATOMIC), since the dispatcher runs with interrupts off. */
void *kdbt_engine_alloc(size_t size, size_t align);
void kdbt_engine_free(void *ptr);
/* A Rust panic inside the engine: there is no unwinding in the kernel. */
void __noreturn kdbt_engine_panic(const char *msg, size_t len);

#endif
