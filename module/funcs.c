// SPDX-License-Identifier: GPL-2.0
/*
 * The function set of kdbt's instrumentation comparison (docs/INSTRUMENT.md): the kernel
 * functions whose entries are counted, and the three ways of counting them.
 *
 *  - kdbt: translated code adds to column 0 itself (client `funccount`, kdbt_modes::funccount).
 *  - kprobes: one kprobe per function, just after its ftrace NOP, so that it is an int3 probe
 *    and not an ftrace-based one; its pre-handler adds to column 1.
 *  - ftrace: one ftrace_ops filtered to the set; its callback adds to column 2.
 *
 * Each column is per CPU, and every method adds with one %gs-relative instruction (as
 * this_cpu_inc does), so no counter's cache line moves between CPUs and the methods pay alike.
 * Translated code reaches kdbt's column by a disp32 %gs offset, which Linux's per-CPU
 * allocator gives only in its first chunk (tens of KiB, shared with the rest of the kernel).
 * When kdbt's column does not land there, kdbt counts into one array shared by every CPU in
 * the module area instead, with `lock add` (kdbt_modes::funccount). The header of
 * <debugfs>/kdbt/funccount says which.
 * All state changes are under kdbt_funcs_lock; the counting paths take no lock.
 */
#include <linux/bsearch.h>
#include <linux/errno.h>
#include <linux/ftrace.h>
#include <linux/hash.h>
#include <linux/kallsyms.h>
#include <linux/kernel.h>
#include <linux/kprobes.h>
#include <linux/log2.h>
#include <linux/mutex.h>
#include <linux/percpu.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/sort.h>
#include <linux/uaccess.h>
#include <linux/vmalloc.h>

#include "shim.h"

/* The NOP every traceable function starts with while ftrace does not trace it (x86_nops[5]). */
static const u8 ftrace_nop5[5] = { 0x0f, 0x1f, 0x44, 0x00, 0x00 };

static DEFINE_MUTEX(kdbt_funcs_lock);

/* Counters per per-CPU allocation: the per-CPU allocator's largest. */
#define PIECE ((u32)(PCPU_MIN_UNIT_SIZE / sizeof(u64)))

/* One method's per-CPU counters, counter k in pieces[k / PIECE][k % PIECE]. */
struct column {
	u64 __percpu **pieces;
};

static struct {
	u32 n;
	u64 *addrs;
	struct column cols[KDBT_FUNCS_METHODS];
	/* kdbt's counters when its column is out of %gs disp32 reach (NULL otherwise). */
	u64 *shared;
	/* Open-addressing table: addrs index + 1 by hash of the address, 0 = empty. */
	u32 *slots;
	u32 slot_bits;
	struct kprobe *kprobes;
	/* &kprobes[k], for unregistering them in one batch (one RCU grace period, not n). */
	struct kprobe **kprobe_ptrs;
	int method;
} set;

static int cmp_u64(const void *a, const void *b)
{
	u64 x = *(const u64 *)a, y = *(const u64 *)b;

	return x < y ? -1 : x > y;
}

static u32 slot_of(u64 addr)
{
	return hash_64(addr, set.slot_bits);
}

/* The index of `addr` in the set, or U32_MAX. */
static u32 lookup(u64 addr)
{
	u32 mask = (1U << set.slot_bits) - 1, i, k;

	for (i = slot_of(addr);; i = (i + 1) & mask) {
		k = set.slots[i];
		if (!k)
			return U32_MAX;
		if (set.addrs[k - 1] == addr)
			return k - 1;
	}
}

static u32 pieces_for(u32 n)
{
	return DIV_ROUND_UP(n, PIECE);
}

static void column_free(struct column *c, u32 n)
{
	u32 p;

	if (!c->pieces)
		return;
	for (p = 0; p < pieces_for(n); p++)
		free_percpu(c->pieces[p]);
	kfree(c->pieces);
	c->pieces = NULL;
}

/* Zeroed counters for `n` functions, or -ENOMEM. */
static int column_alloc(struct column *c, u32 n)
{
	u32 p;

	c->pieces = kcalloc(pieces_for(n), sizeof(*c->pieces), GFP_KERNEL);
	if (!c->pieces)
		return -ENOMEM;
	for (p = 0; p < pieces_for(n); p++) {
		c->pieces[p] = __alloc_percpu(min(PIECE, n - p * PIECE) * sizeof(u64),
					      sizeof(u64));
		if (!c->pieces[p]) {
			column_free(c, n);
			return -ENOMEM;
		}
	}
	return 0;
}

/* The %gs offset of a column that one disp32 reaches throughout, or -1. */
static long column_gs_offset(const struct column *c, u32 n)
{
	long off;

	if (!c->pieces || pieces_for(n) != 1)
		return -1;
	off = (long)(__force unsigned long)c->pieces[0];
	if (off < S32_MIN || off + (long)n * (long)sizeof(u64) > S32_MAX)
		return -1;
	return off;
}

static u64 column_sum(const struct column *c, u32 k)
{
	u64 sum = 0;
	int cpu;

	for_each_possible_cpu(cpu)
		sum += READ_ONCE(*per_cpu_ptr(&c->pieces[k / PIECE][k % PIECE], cpu));
	return sum;
}

static void column_zero(struct column *c, u32 n)
{
	u32 p;
	int cpu;

	for (p = 0; p < pieces_for(n); p++)
		for_each_possible_cpu(cpu)
			memset(per_cpu_ptr(c->pieces[p], cpu), 0,
			       min(PIECE, n - p * PIECE) * sizeof(u64));
}

/* Entries of function k counted by `column`. */
static u64 counted(int column, u32 k)
{
	if (column == KDBT_FUNCS_KDBT && set.shared)
		return READ_ONCE(set.shared[k]);
	return column_sum(&set.cols[column], k);
}

static void count(int column, u32 k)
{
	this_cpu_inc(set.cols[column].pieces[k / PIECE][k % PIECE]);
}

static int kprobe_hit(struct kprobe *p, struct pt_regs *regs)
{
	count(KDBT_FUNCS_KPROBES, p - set.kprobes);
	return 0;
}

static void ftrace_hit(unsigned long ip, unsigned long parent_ip, struct ftrace_ops *op,
		       struct ftrace_regs *fregs)
{
	u32 k = lookup(ip);

	if (k != U32_MAX)
		count(KDBT_FUNCS_FTRACE, k);
}

/*
 * The ftrace_ops while ftrace counts: allocated per use, since ftrace_free_filter leaves an
 * ops' filter pointing at the freed hash (6.12), so an ops is not reused.
 */
static struct ftrace_ops *ftrace_counter;

/* Stops ftrace counting and frees its ops (unregistering waits until no CPU is in it). */
static void ftrace_off(void)
{
	unregister_ftrace_function(ftrace_counter);
	ftrace_free_filter(ftrace_counter);
	kfree(ftrace_counter);
	ftrace_counter = NULL;
}

static int ftrace_on(void)
{
	int err;

	ftrace_counter = kzalloc(sizeof(*ftrace_counter), GFP_KERNEL);
	if (!ftrace_counter)
		return -ENOMEM;
	ftrace_counter->func = ftrace_hit;
	/*
	 * The callback calls nothing that ftrace traces, so it needs no recursion guard: ftrace's
	 * cheapest counting callback (no FTRACE_OPS_FL_SAVE_REGS either).
	 */
	ftrace_counter->flags = FTRACE_OPS_FL_RECURSION;
	err = ftrace_set_filter_ips(ftrace_counter, (unsigned long *)set.addrs, set.n, 0, 1);
	if (!err)
		err = register_ftrace_function(ftrace_counter);
	if (err) {
		ftrace_free_filter(ftrace_counter);
		kfree(ftrace_counter);
		ftrace_counter = NULL;
	}
	return err;
}

/* Why `addr` cannot be counted, or NULL. */
static const char *refusal(u64 addr)
{
	char name[KSYM_SYMBOL_LEN];
	u8 head[sizeof(ftrace_nop5)];

	if (!core_kernel_text(addr))
		return "not core kernel text";
	sprint_symbol(name, addr);
	if (!strstr(name, "+0x0/"))
		return "not the start of a function";
	if (copy_from_kernel_nofault(head, (const void *)addr, sizeof(head)) ||
	    memcmp(head, ftrace_nop5, sizeof(head)))
		return "no ftrace NOP at its entry (notrace, or traced right now)";
	return NULL;
}

/* Unregisters the first `n` kprobes and frees them all. */
static void kprobes_off(u32 n)
{
	if (n)
		unregister_kprobes(set.kprobe_ptrs, n);
	kvfree(set.kprobe_ptrs);
	kvfree(set.kprobes);
	set.kprobe_ptrs = NULL;
	set.kprobes = NULL;
}

static void probes_off(void)
{
	if (set.method == KDBT_FUNCS_KPROBES)
		kprobes_off(set.n);
	else if (set.method == KDBT_FUNCS_FTRACE)
		ftrace_off();
	set.method = 0;
}

static void columns_free(struct column *cols, u64 *shared, u32 n)
{
	int c;

	for (c = 0; c < KDBT_FUNCS_METHODS; c++)
		column_free(&cols[c], n);
	if (shared)
		kdbt_data_free(shared);
}

/*
 * Every method's counters for `n` functions, zeroed; kdbt's first, for the best chance of the
 * first per-CPU chunk, else *shared (module area, for `lock add`).
 */
static int columns_alloc(struct column *cols, u64 **shared, u32 n)
{
	int c, err = 0;

	*shared = NULL;
	for (c = 0; c < KDBT_FUNCS_METHODS && !err; c++)
		err = column_alloc(&cols[c], n);
	if (!err && column_gs_offset(&cols[KDBT_FUNCS_KDBT], n) < 0) {
		*shared = kdbt_data_alloc(PAGE_ALIGN((size_t)n * sizeof(u64)));
		if (!*shared)
			err = -ENOMEM;
	}
	if (err)
		columns_free(cols, *shared, n);
	return err;
}

static void free_set(void)
{
	probes_off();
	kvfree(set.addrs);
	kvfree(set.slots);
	columns_free(set.cols, set.shared, set.n);
	set.shared = NULL;
	set.addrs = NULL;
	set.slots = NULL;
	set.n = 0;
}

int kdbt_funcs_load(unsigned long uaddrs, u32 n, u32 *bad, const char **why)
{
	struct column cols[KDBT_FUNCS_METHODS] = {};
	u64 *addrs, *shared = NULL;
	u32 *slots, bits, k, m;
	int err = 0;

	*bad = U32_MAX;
	*why = NULL;
	if (!n) {
		*why = "the function set is empty";
		return -EINVAL;
	}
	if (n > KDBT_FUNCS_MAX) {
		*why = "more functions than kdbt counts at once";
		return -E2BIG;
	}
	addrs = kvmalloc_array(n, sizeof(*addrs), GFP_KERNEL);
	if (!addrs)
		return -ENOMEM;
	if (copy_from_user(addrs, (const void __user *)uaddrs, (size_t)n * sizeof(*addrs))) {
		kvfree(addrs);
		return -EFAULT;
	}
	for (k = 0; k < n; k++) {
		*why = refusal(addrs[k]);
		if (*why) {
			*bad = k;
			kvfree(addrs);
			return -EINVAL;
		}
	}
	sort(addrs, n, sizeof(*addrs), cmp_u64, NULL);
	for (m = 1, k = 1; k < n; k++)
		if (addrs[k] != addrs[m - 1])
			addrs[m++] = addrs[k];
	n = m;
	bits = order_base_2(2 * n);
	slots = kvcalloc(1U << bits, sizeof(*slots), GFP_KERNEL);
	if (!slots || columns_alloc(cols, &shared, n)) {
		err = -ENOMEM;
		goto fail;
	}
	mutex_lock(&kdbt_funcs_lock);
	if (set.method) {
		mutex_unlock(&kdbt_funcs_lock);
		*why = "kprobes or ftrace are counting: `kdbtctl probe off` first";
		err = -EBUSY;
		columns_free(cols, shared, n);
		goto fail;
	}
	free_set();
	set.n = n;
	set.addrs = addrs;
	memcpy(set.cols, cols, sizeof(cols));
	set.shared = shared;
	set.slots = slots;
	set.slot_bits = bits;
	for (k = 0; k < n; k++) {
		u32 i = slot_of(addrs[k]);

		while (slots[i])
			i = (i + 1) & ((1U << bits) - 1);
		slots[i] = k + 1;
	}
	mutex_unlock(&kdbt_funcs_lock);
	return 0;
fail:
	kvfree(addrs);
	kvfree(slots);
	return err;
}

int kdbt_funcs_probe(int method, u32 *bad)
{
	int err = 0;
	u32 k;

	*bad = U32_MAX;
	mutex_lock(&kdbt_funcs_lock);
	if (method == 0) {
		probes_off();
		goto out;
	}
	if (!set.n) {
		err = -ENOENT;
		goto out;
	}
	if (set.method) {
		err = -EBUSY;
		goto out;
	}
	if (method == KDBT_FUNCS_KPROBES) {
		set.kprobes = kvcalloc(set.n, sizeof(*set.kprobes), GFP_KERNEL);
		set.kprobe_ptrs = kvcalloc(set.n, sizeof(*set.kprobe_ptrs), GFP_KERNEL);
		if (!set.kprobes || !set.kprobe_ptrs) {
			kprobes_off(0);
			err = -ENOMEM;
			goto out;
		}
		/* One by one, not register_kprobes(), to name the function a refusal concerns. */
		for (k = 0; k < set.n; k++) {
			set.kprobes[k].addr = (kprobe_opcode_t *)(set.addrs[k] + sizeof(ftrace_nop5));
			set.kprobes[k].pre_handler = kprobe_hit;
			set.kprobe_ptrs[k] = &set.kprobes[k];
			err = register_kprobe(&set.kprobes[k]);
			if (err) {
				*bad = k;
				kprobes_off(k);
				goto out;
			}
		}
	} else if (method == KDBT_FUNCS_FTRACE) {
		err = ftrace_on();
		if (err)
			goto out;
	} else {
		err = -EINVAL;
		goto out;
	}
	set.method = method;
out:
	mutex_unlock(&kdbt_funcs_lock);
	return err;
}

int kdbt_funcs_method(void)
{
	return READ_ONCE(set.method);
}

u32 kdbt_funcs_for_translator(const u64 **addrs, u64 *counts, bool *per_cpu)
{
	u32 n;

	mutex_lock(&kdbt_funcs_lock);
	*addrs = set.addrs;
	*per_cpu = !set.shared;
	*counts = set.shared ? (u64)set.shared : (u64)column_gs_offset(&set.cols[0], set.n);
	n = set.n;
	mutex_unlock(&kdbt_funcs_lock);
	return n;
}

u64 kdbt_funcs_hits(void)
{
	u64 sum = 0;
	u32 k;
	int c;

	mutex_lock(&kdbt_funcs_lock);
	for (c = 0; c < KDBT_FUNCS_METHODS; c++)
		for (k = 0; k < set.n; k++)
			sum += counted(c, k);
	mutex_unlock(&kdbt_funcs_lock);
	return sum;
}

void kdbt_funcs_reset(void)
{
	int c;

	mutex_lock(&kdbt_funcs_lock);
	if (set.n) {
		for (c = 0; c < KDBT_FUNCS_METHODS; c++)
			column_zero(&set.cols[c], set.n);
		if (set.shared)
			memset(set.shared, 0, (size_t)set.n * sizeof(u64));
	}
	mutex_unlock(&kdbt_funcs_lock);
}

void kdbt_funcs_free(void)
{
	mutex_lock(&kdbt_funcs_lock);
	free_set();
	mutex_unlock(&kdbt_funcs_lock);
}

static const char *const method_names[KDBT_FUNCS_METHODS] = { "kdbt", "kprobes", "ftrace" };

int kdbt_funcs_show(struct seq_file *m)
{
	u32 k;
	int c;

	mutex_lock(&kdbt_funcs_lock);
	seq_printf(m, "# %u functions; probing: %s\n", set.n,
		   set.method ? method_names[set.method] : "none");
	if (set.n && set.shared)
		seq_puts(m, "# kdbt counts into one array for all CPUs (lock add): the set is too large for the first per-CPU chunk\n");
	else if (set.n)
		seq_printf(m, "# kdbt counts per CPU at %%gs:%#lx\n",
			   column_gs_offset(&set.cols[0], set.n));
	seq_printf(m, "# %s %s %s address symbol\n", method_names[0], method_names[1],
		   method_names[2]);
	for (k = 0; k < set.n; k++) {
		for (c = 0; c < KDBT_FUNCS_METHODS; c++)
			seq_printf(m, "%llu ", counted(c, k));
		seq_printf(m, "%#llx %ps\n", set.addrs[k], (void *)set.addrs[k]);
	}
	mutex_unlock(&kdbt_funcs_lock);
	return 0;
}
