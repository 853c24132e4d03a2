/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The C side of kdbt.ko: kernel APIs that Rust-for-Linux 6.12 has no abstraction for, and the
 * heap and panic hooks of the translator engine (module/engine/, a no_std Rust object).
 * Every function here has exactly one Rust caller or callee, declared in the Rust file that
 * wraps it (module/status_file.rs, module/engine/src/lib.rs).
 */
#ifndef KDBT_SHIM_H
#define KDBT_SHIM_H

#include <linux/types.h>

/* Largest status text, bytes. */
#define KDBT_STATUS_MAX 8192

/* debugfs: creates <debugfs>/kdbt/status; 0 or -errno. */
int kdbt_debugfs_create(void);
/* Removes everything kdbt_debugfs_create made; safe to call once after a success. */
void kdbt_debugfs_remove(void);
/* Implemented in Rust (module/kdbt_main.rs): writes the status text, returns bytes or -errno. */
ssize_t kdbt_status_render(char *buf, size_t len);

/* The engine's heap: kmalloc(GFP_ATOMIC), since the dispatcher runs with interrupts off. */
void *kdbt_engine_alloc(size_t size, size_t align);
void kdbt_engine_free(void *ptr);
/* A Rust panic inside the engine: there is no unwinding in the kernel. */
void __noreturn kdbt_engine_panic(const char *msg, size_t len);

#endif
