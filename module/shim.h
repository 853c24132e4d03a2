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
/*
 * Translator hooks (module/hooks.rs): the kernel patch's extable and text-poke hooks, the
 * die notifier for int3/#UD at code-cache addresses, the RCU-published live translator, and
 * the delayed work that drains a switched-off code cache (kdbt_drain_tick(ctx), again after
 * KDBT_DRAIN_PERIOD_MS while it answers true).
 */
#define KDBT_DRAIN_FIRST_MS 20
#define KDBT_DRAIN_PERIOD_MS 200
/* A switch-on that drains another mode's cache sleeps this long between attempts. */
#define KDBT_DRAIN_RETRY_MS 10
int kdbt_hooks_register(void);
void kdbt_hooks_unregister(void);
void kdbt_publish(void *instance);
void kdbt_text_pokes(u64 *seen, u64 *invalidating);
u64 kdbt_traps_redirected_count(void);
/* Zeroes the text-poke and trap counters (`kdbtctl reset`). */
void kdbt_hooks_reset_counts(void);
/* The stage the next switch-on is to fail at (0 none, 1 build, 2 cpus), cleared. */
int kdbt_take_injected_failure(void);
void kdbt_drain_schedule(void *ctx);
void kdbt_drain_cancel(void);
/* Sleeps KDBT_DRAIN_RETRY_MS: a frame stopped inside an expansion belongs to a runnable task. */
void kdbt_drain_pause(void);
bool kdbt_drain_tick(void *ctx);
bool kdbt_core_kernel_text(u64 addr);
/*
 * Flushing a full code cache (module/flush_stop.c, module/flush.rs). kdbt_flush_request is
 * the engine's call (any context); the work runs kdbt_flush_tick(ctx) between start and stop,
 * again after KDBT_FLUSH_RETRY_MS while it answers true. kdbt_flush_stacks stops every CPU,
 * rewrites stacks in lo..hi with kdbt_flush_native_of and, when no word is left, finishes with
 * kdbt_flush_finish(ctx, flush): empties the caches (flush) or only checks that nothing else
 * holds them (a drain). Returns 1 finished, 0 left, or a negative errno; *held is the number
 * of words left. Before leaving the stop, every CPU calls kdbt_entries_reload(ctx): a flush
 * may have moved the translation MSR_LSTAR points at, and LSTAR is per CPU.
 */
#define KDBT_FLUSH_RETRY_MS 5
void kdbt_flush_request(void);
void kdbt_flush_start(void *ctx);
void kdbt_flush_stop(void);
bool kdbt_flush_tick(void *ctx);
long kdbt_flush_stacks(u64 lo, u64 hi, void *ctx, bool flush, u64 *rewritten, u64 *held);
u64 kdbt_flush_native_of(void *ctx, u64 tx);
bool kdbt_flush_finish(void *ctx, bool flush);
void kdbt_entries_reload(void *ctx);
/*
 * After an invalidation: kdbt_stubs_check_take says whether one happened since the last
 * call; kdbt_stubs_retarget_now(ctx) points the entry stubs at fresh translations if one
 * leads to an invalidated block (0 or -errno); kdbt_stop_cpus runs fn(ctx) on one CPU with
 * every other CPU stopped, then each(ctx) on every CPU before any leaves the stop (fn's
 * result, or stop_machine's).
 */
bool kdbt_stubs_check_take(void);
int kdbt_stubs_retarget_now(void *ctx);
int kdbt_stop_cpus(int (*fn)(void *), void (*each)(void *), void *ctx);
/* Logs the first word that held a flush back: its task, value and depth below the top. */
void kdbt_flush_report(void *ctx, const char *comm, int pid, u64 word, u64 depth, u64 words);
/*
 * Reads len bytes of the kernel image's mapping at addr without faulting (a compiler's jump
 * table, referenced from core kernel text). Returns 0 or -EFAULT.
 */
long kdbt_read_kernel_image(void *dst, u64 addr, size_t len);
/*
 * Whether native kernel code at addr must run natively, never translated: the entry code
 * that runs with the user's GS base and whose faults Linux recognises by native RIP, or on a
 * stack translated code may not write (docs/ARCHITECTURE.md, "Entry code kept native").
 */
bool kdbt_kept_native(u64 addr);
void *kdbt_vmem_alloc(size_t size);
void kdbt_vmem_free(void *mem);
u16 kdbt_cpunode_selector(void);
u64 kdbt_per_cpu_offset(unsigned int cpu);
unsigned int kdbt_cpunode_cpu(void);
u64 kdbt_irq_save(void);
void kdbt_irq_restore(u64 flags);

/* The kernel's hooks (harness/guest/patches/0002-hooks-for-kdbt.patch). */
extern unsigned long (*kdbt_extable_native)(unsigned long addr);
extern void (*kdbt_text_poked)(void *addr, size_t len);

/* The engine (module/engine/src/instance.rs). */
u64 kdbt_engine_tx_to_native(void *instance, u64 tx);
u64 kdbt_engine_invalidate(void *instance, u64 lo, u64 hi);

/* A Rust panic inside the engine: there is no unwinding in the kernel. */
void __noreturn kdbt_engine_panic(const char *msg, size_t len);

/*
 * The function set of the instrumentation comparison (module/funcs.c, called from
 * module/funcs.rs under the interposer's mutex). Counter column per method:
 */
#define KDBT_FUNCS_KDBT 0
#define KDBT_FUNCS_KPROBES 1
#define KDBT_FUNCS_FTRACE 2
#define KDBT_FUNCS_METHODS 3
/* Most functions in one set. */
#define KDBT_FUNCS_MAX 65536
/*
 * Replaces the set with the `n` addresses at user address `uaddrs`; zeroes the counters. Each
 * must be the start of a core-kernel function with an ftrace NOP. 0 or -errno: -EINVAL with
 * *bad the index of the refused address (U32_MAX: the set itself) and *why the reason,
 * -EBUSY while kprobes or ftrace count, -E2BIG, -EFAULT, -ENOMEM.
 */
int kdbt_funcs_load(unsigned long uaddrs, u32 n, u32 *bad, const char **why);
/*
 * Starts counting with `method` (KDBT_FUNCS_KPROBES or KDBT_FUNCS_FTRACE), or stops (0).
 * 0 or -errno: -ENOENT no set, -EBUSY another method counts, -EINVAL unknown method, or the
 * kprobes/ftrace error (*bad: the function whose kprobe was refused, else U32_MAX).
 */
int kdbt_funcs_probe(int method, u32 *bad);
/* The method counting now (0: none). */
int kdbt_funcs_method(void);
/*
 * The set for a translator: its size, sorted addresses and kdbt's counters: their %gs offset
 * (*per_cpu) or the address of the array shared by all CPUs.
 */
u32 kdbt_funcs_for_translator(const u64 **addrs, u64 *counts, bool *per_cpu);
/* Entries counted so far, every method's together (one counts at a time). */
u64 kdbt_funcs_hits(void);
/* Zeroes every counter. */
void kdbt_funcs_reset(void);
/* Stops probing and frees the set (module exit, after every translator is gone). */
void kdbt_funcs_free(void);
/* <debugfs>/kdbt/funccount: the counts per method, one line per function. */
struct seq_file;
int kdbt_funcs_show(struct seq_file *m);

#endif
