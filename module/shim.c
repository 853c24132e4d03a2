// SPDX-License-Identifier: GPL-2.0
/*
 * kdbt's C shim: see shim.h for why each function lives here rather than in Rust.
 */
#include <linux/capability.h>
#include <linux/cpu.h>
#include <linux/cpumask.h>
#include <linux/debugfs.h>
#include <linux/delay.h>
#include <linux/err.h>
#include <linux/execmem.h>
#include <linux/fs.h>
#include <linux/kernel.h>
#include <linux/log2.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/string.h>
#include <linux/panic.h>
#include <linux/seq_file.h>
#include <linux/set_memory.h>
#include <linux/slab.h>
#include <linux/smp.h>
#include <linux/uaccess.h>
#include <linux/vmalloc.h>
#include <linux/kdebug.h>
#include <linux/rcupdate.h>
#include <linux/workqueue.h>
#include <asm/pgtable_types.h>
#include <asm/gsseg.h>
#include <asm/segment.h>
#include <asm/traps.h>
#include <asm/trapnr.h>

#include "shim.h"

/* Largest status text, bytes. */
#define KDBT_STATUS_MAX 8192
/* Largest statistics text, bytes (per-CPU and per-vector lines). */
#define KDBT_STATS_MAX 65536

static struct dentry *kdbt_dir;

static int render_show(struct seq_file *m, size_t max,
		       ssize_t (*render)(void *ctx, char *buf, size_t len))
{
	char *buf = kvmalloc(max, GFP_KERNEL);
	ssize_t n;

	if (!buf)
		return -ENOMEM;
	n = render(m->private, buf, max);
	if (n > 0)
		seq_write(m, buf, n);
	kvfree(buf);
	return n < 0 ? n : 0;
}

static int status_show(struct seq_file *m, void *unused)
{
	return render_show(m, KDBT_STATUS_MAX, kdbt_status_render);
}
DEFINE_SHOW_ATTRIBUTE(status);

static int stats_show(struct seq_file *m, void *unused)
{
	return render_show(m, KDBT_STATS_MAX, kdbt_stats_render);
}
DEFINE_SHOW_ATTRIBUTE(stats);

static int funccount_show(struct seq_file *m, void *unused)
{
	return kdbt_funcs_show(m);
}
DEFINE_SHOW_ATTRIBUTE(funccount);

static u64 kdbt_invalidate(u64 lo, u64 hi);

/*
 * `invalidate`: "<native address, hex> <bytes>" drops the translations of those bytes as a
 * text poke there would, and retargets the entry stubs before the write returns.
 */
static ssize_t invalidate_write(struct file *file, const char __user *ubuf, size_t len,
				loff_t *ppos)
{
	char buf[64];
	u64 lo, n;
	int rc;

	if (len >= sizeof(buf))
		return -EINVAL;
	if (copy_from_user(buf, ubuf, len))
		return -EFAULT;
	buf[len] = 0;
	if (sscanf(buf, "%llx %llu", &lo, &n) != 2 || !n || lo + n < lo)
		return -EINVAL;
	kdbt_invalidate(lo, lo + n);
	rc = kdbt_stubs_retarget_now(file->private_data);
	return rc < 0 ? rc : len;
}

static const struct file_operations invalidate_fops = {
	.owner = THIS_MODULE,
	.open = simple_open,
	.write = invalidate_write,
	.llseek = noop_llseek,
};

int kdbt_debugfs_create(void *ctx)
{
	struct dentry *file;

	kdbt_dir = debugfs_create_dir("kdbt", NULL);
	if (IS_ERR(kdbt_dir))
		return PTR_ERR(kdbt_dir);
	file = debugfs_create_file("status", 0400, kdbt_dir, ctx, &status_fops);
	if (IS_ERR(file))
		goto fail;
	file = debugfs_create_file("stats", 0400, kdbt_dir, ctx, &stats_fops);
	if (IS_ERR(file))
		goto fail;
	file = debugfs_create_file("funccount", 0400, kdbt_dir, NULL, &funccount_fops);
	if (IS_ERR(file))
		goto fail;
	file = debugfs_create_file("invalidate", 0200, kdbt_dir, ctx, &invalidate_fops);
	if (IS_ERR(file))
		goto fail;
	return 0;
fail:
	debugfs_remove_recursive(kdbt_dir);
	kdbt_dir = NULL;
	return PTR_ERR(file);
}

void kdbt_debugfs_remove(void)
{
	debugfs_remove_recursive(kdbt_dir);
	kdbt_dir = NULL;
}

/* The control device and the context its ioctls act on. */
static struct {
	struct miscdevice misc;
	void *ctx;
} kdbt_control;

static int control_open(struct inode *inode, struct file *file)
{
	/* The node is 0600 root; the capability check also covers root with it dropped. */
	if (!capable(CAP_SYS_ADMIN))
		return -EPERM;
	return 0;
}

static long control_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	/* An fd passed to an unprivileged process must not switch the kernel either. */
	if (!capable(CAP_SYS_ADMIN))
		return -EPERM;
	return kdbt_control_ioctl(kdbt_control.ctx, cmd, arg);
}

static const struct file_operations control_fops = {
	.owner = THIS_MODULE,
	.open = control_open,
	.unlocked_ioctl = control_ioctl,
	.llseek = noop_llseek,
};

int kdbt_control_register(void *ctx)
{
	kdbt_control.ctx = ctx;
	kdbt_control.misc.minor = MISC_DYNAMIC_MINOR;
	kdbt_control.misc.name = "kdbt";
	kdbt_control.misc.fops = &control_fops;
	kdbt_control.misc.mode = 0600;
	return misc_register(&kdbt_control.misc);
}

void kdbt_control_unregister(void)
{
	misc_deregister(&kdbt_control.misc);
	kdbt_control.ctx = NULL;
}

int kdbt_code_alloc(size_t size, void **exec, void **alias)
{
	unsigned int n = size >> PAGE_SHIFT, i;
	struct page **pages;
	void *x, *w;
	int err;

	if (!n || size & ~PAGE_MASK)
		return -EINVAL;
	/* The module area: within +-2 GiB of kernel text, mapped RW+NX (PAGE_KERNEL) for now. */
	x = execmem_alloc(EXECMEM_MODULE_TEXT, size);
	if (!x)
		return -ENOMEM;
	pages = kvmalloc_array(n, sizeof(*pages), GFP_KERNEL);
	if (!pages) {
		err = -ENOMEM;
		goto free_exec;
	}
	for (i = 0; i < n; i++)
		pages[i] = vmalloc_to_page(x + i * PAGE_SIZE);
	/* The writable alias: the same pages again, in the vmalloc area, RW+NX. */
	w = vmap(pages, n, VM_MAP, PAGE_KERNEL);
	kvfree(pages);
	if (!w) {
		err = -ENOMEM;
		goto free_exec;
	}
	/* RW+NX -> RO+X in one step, so no W+X mapping ever exists (also for the direct map). */
	err = set_memory_rox((unsigned long)x, n);
	if (err)
		goto unmap_alias;
	*exec = x;
	*alias = w;
	return 0;
unmap_alias:
	vunmap(w);
free_exec:
	execmem_free(x);
	return err;
}

void kdbt_code_free(void *exec, void *alias, size_t size)
{
	vunmap(alias);
	/* execmem memory is VM_FLUSH_RESET_PERMS: vfree restores the direct map's permissions. */
	execmem_free(exec);
}

void *kdbt_data_alloc(size_t size)
{
	void *p = execmem_alloc(EXECMEM_MODULE_DATA, size);

	if (p)
		memset(p, 0, size);
	return p;
}

void kdbt_data_free(void *ptr)
{
	execmem_free(ptr);
}

u64 kdbt_kernel_pte_flags(unsigned long addr)
{
	unsigned int level;
	pte_t *pte = lookup_address(addr, &level);

	if (!pte || !pte_present(*pte))
		return 0;
	return pte_flags(*pte);
}

u64 kdbt_pte_flag_rw(void)
{
	return _PAGE_RW;
}

u64 kdbt_pte_flag_nx(void)
{
	return _PAGE_NX;
}

long kdbt_write_nofault(void *dst, const void *src, size_t len)
{
	/*
	 * copy_to_kernel_nofault is not exported; its core, the extable-backed store macro, works
	 * in modules (their exception tables are searched too).
	 */
	pagefault_disable();
	for (; len; len--, dst++, src++)
		__put_kernel_nofault(dst, src, u8, fault);
	pagefault_enable();
	return 0;
fault:
	pagefault_enable();
	return -EFAULT;
}

void kdbt_on_each_online_cpu(void (*fn)(void *info), void *info)
{
	/* No CPU comes or goes while entries are switched. */
	cpus_read_lock();
	on_each_cpu(fn, info, 1);
	cpus_read_unlock();
}

unsigned int kdbt_this_cpu(void)
{
	return smp_processor_id();
}

unsigned int kdbt_nr_cpu_ids(void)
{
	return nr_cpu_ids;
}

bool kdbt_cpu_online(unsigned int cpu)
{
	return cpu_online(cpu);
}

void kdbt_module_hold(void)
{
	__module_get(THIS_MODULE);
}

void kdbt_module_release(void)
{
	module_put(THIS_MODULE);
}

void *kdbt_vmem_alloc(size_t size)
{
	/* vmalloc: guard pages around it, so a stack overflow faults instead of corrupting. */
	return vzalloc(size);
}

void kdbt_vmem_free(void *mem)
{
	vfree(mem);
}

u64 kdbt_per_cpu_offset(unsigned int cpu)
{
	/* What MSR_GS_BASE holds on that CPU while in the kernel. */
	return cpu_kernelmode_gs_base(cpu);
}

u16 kdbt_cpunode_selector(void)
{
	return __CPUNODE_SEG;
}

unsigned int kdbt_cpunode_cpu(void)
{
	unsigned int p;

	asm volatile("lsl %1, %0" : "=r"(p) : "r"((unsigned int)__CPUNODE_SEG));
	return p & VDSO_CPUNODE_MASK;
}

bool kdbt_core_kernel_text(u64 addr)
{
	return core_kernel_text(addr);
}

long kdbt_read_kernel_image(void *dst, u64 addr, size_t len)
{
	/* .rodata's bounds are not exported: the image's mapping, read without faulting. */
	if (addr < __START_KERNEL_map || addr + len > MODULES_VADDR || addr + len < addr)
		return -EFAULT;
	return copy_from_kernel_nofault(dst, (const void *)addr, len);
}

/* Exported by the guest kernel's patch 0003 (entry_64.S). */
extern const char native_irq_return_ldt[];

bool kdbt_kept_native(u64 addr)
{
	/*
	 * espfix64's return to a 16-bit user stack segment: user GS base, then espfix64's
	 * read-only stack, where no exit may push.
	 */
	if (addr == (u64)native_irq_return_ldt)
		return true;
	/*
	 * Loads %gs between two swapgs: a fault on the load is recognised by its native RIP
	 * (.Lgs_change) in error_entry, which must swap back to the kernel's GS base.
	 */
	if (addr == (u64)asm_load_gs_index)
		return true;
	return false;
}

u64 kdbt_irq_save(void)
{
	unsigned long flags;

	local_irq_save(flags);
	return flags;
}

void kdbt_irq_restore(u64 saved)
{
	unsigned long flags = saved;

	local_irq_restore(flags);
}

/*
 * The live translator, published for the kernel hooks (exception-table lookups, text
 * patching) and the die notifier. RCU: unpublishing waits for every hook that saw it.
 */
static void __rcu *kdbt_live;

static unsigned long kdbt_extable_native_hook(unsigned long addr)
{
	unsigned long native = 0;
	void *live;

	rcu_read_lock();
	live = rcu_dereference(kdbt_live);
	if (live)
		native = kdbt_engine_tx_to_native(live, addr);
	rcu_read_unlock();
	return native;
}

static void kdbt_serialize(void *unused)
{
	/* The IPI's return (iret) serializes this CPU's instruction stream. */
}

static atomic64_t kdbt_pokes_seen, kdbt_pokes_invalidating;
/* Set by an invalidation: an entry stub may lead to a poisoned block (kdbt_stubs_check_take). */
static atomic_t kdbt_stubs_check;

/* Drops the translations of native lo..hi (its text changed); returns the blocks poisoned. */
static u64 kdbt_invalidate(u64 lo, u64 hi)
{
	u64 poisoned = 0;
	void *live;

	rcu_read_lock();
	live = rcu_dereference(kdbt_live);
	if (live)
		poisoned = kdbt_engine_invalidate(live, lo, hi);
	rcu_read_unlock();
	if (!poisoned)
		return 0;
	atomic_set(&kdbt_stubs_check, 1);
	/* Make every CPU see the int3s before the new text is used (as text_poke_sync does). */
	if (!irqs_disabled())
		on_each_cpu(kdbt_serialize, NULL, 1);
	return poisoned;
}

bool kdbt_stubs_check_take(void)
{
	return atomic_xchg(&kdbt_stubs_check, 0);
}

static void kdbt_text_poked_hook(void *addr, size_t len)
{
	atomic64_inc(&kdbt_pokes_seen);
	if (!kdbt_invalidate((u64)addr, (u64)addr + len))
		return;
	atomic64_inc(&kdbt_pokes_invalidating);
	/* Any context: the flush work retargets the entry stubs if they lead to a poisoned block. */
	kdbt_flush_request();
}

void kdbt_text_pokes(u64 *seen, u64 *invalidating)
{
	*seen = atomic64_read(&kdbt_pokes_seen);
	*invalidating = atomic64_read(&kdbt_pokes_invalidating);
}

static atomic64_t kdbt_traps_redirected;

/*
 * int3 at a code-cache address: an invalidated translation (the native text changed).
 * #UD at a code-cache address: a copied BUG/WARN ud2, which the kernel finds in its bug table
 * by native address only. Either way the state at that boundary is the native state: resume
 * at the native instruction, where the kernel handles it as if never translated.
 */
static int kdbt_die_notify(struct notifier_block *nb, unsigned long val, void *data)
{
	struct die_args *args = data;
	struct pt_regs *regs = args->regs;
	unsigned long tx, native = 0;
	void *live;

	if (!regs || user_mode(regs))
		return NOTIFY_DONE;
	if (val == DIE_INT3)
		tx = regs->ip - 1;
	else if (val == DIE_TRAP && args->trapnr == X86_TRAP_UD)
		tx = regs->ip;
	else
		return NOTIFY_DONE;
	rcu_read_lock();
	live = rcu_dereference(kdbt_live);
	if (live)
		native = kdbt_engine_tx_to_native(live, tx);
	rcu_read_unlock();
	if (!native)
		return NOTIFY_DONE;
	regs->ip = native;
	atomic64_inc(&kdbt_traps_redirected);
	return NOTIFY_STOP;
}

static struct notifier_block kdbt_die_nb = {
	.notifier_call = kdbt_die_notify,
	.priority = INT_MAX,
};

u64 kdbt_traps_redirected_count(void)
{
	return atomic64_read(&kdbt_traps_redirected);
}

void kdbt_hooks_reset_counts(void)
{
	atomic64_set(&kdbt_pokes_seen, 0);
	atomic64_set(&kdbt_pokes_invalidating, 0);
	atomic64_set(&kdbt_traps_redirected, 0);
}

int kdbt_hooks_register(void)
{
	int rc = register_die_notifier(&kdbt_die_nb);

	if (rc)
		return rc;
	WRITE_ONCE(kdbt_extable_native, kdbt_extable_native_hook);
	WRITE_ONCE(kdbt_text_poked, kdbt_text_poked_hook);
	return 0;
}

void kdbt_hooks_unregister(void)
{
	WRITE_ONCE(kdbt_text_poked, NULL);
	WRITE_ONCE(kdbt_extable_native, NULL);
	unregister_die_notifier(&kdbt_die_nb);
	synchronize_rcu();
}

void kdbt_publish(void *instance)
{
	rcu_assign_pointer(kdbt_live, instance);
	if (!instance)
		synchronize_rcu();
}

/*
 * Fault injection for tests, as the kernel's own fault-injection knobs: writing "build" or
 * "cpus" to /sys/module/kdbt/parameters/fail_next_switch_on makes the next switch-on fail at
 * that stage (before any CPU switches; after every CPU switched, as when one ran an IDT of
 * its own), once.
 */
static char kdbt_fail_next[16];
module_param_string(fail_next_switch_on, kdbt_fail_next, sizeof(kdbt_fail_next), 0600);
MODULE_PARM_DESC(fail_next_switch_on, "fail the next switch-on at stage build or cpus (tests)");

int kdbt_take_injected_failure(void)
{
	int stage = 0;

	kernel_param_lock(THIS_MODULE);
	if (sysfs_streq(kdbt_fail_next, "build"))
		stage = 1;
	else if (sysfs_streq(kdbt_fail_next, "cpus"))
		stage = 2;
	kdbt_fail_next[0] = '\0';
	kernel_param_unlock(THIS_MODULE);
	return stage;
}

static void *kdbt_drain_ctx;

static void kdbt_drain_fn(struct work_struct *work);
static DECLARE_DELAYED_WORK(kdbt_drain_work, kdbt_drain_fn);

static void kdbt_drain_fn(struct work_struct *work)
{
	if (kdbt_drain_tick(kdbt_drain_ctx))
		schedule_delayed_work(&kdbt_drain_work, msecs_to_jiffies(KDBT_DRAIN_PERIOD_MS));
}

void kdbt_drain_schedule(void *ctx)
{
	kdbt_drain_ctx = ctx;
	/* Soon: the caller is about to return to user mode (its frames need no rewriting then). */
	mod_delayed_work(system_wq, &kdbt_drain_work, msecs_to_jiffies(KDBT_DRAIN_FIRST_MS));
}

void kdbt_drain_cancel(void)
{
	cancel_delayed_work_sync(&kdbt_drain_work);
}

void kdbt_drain_pause(void)
{
	msleep(KDBT_DRAIN_RETRY_MS);
}

void kdbt_engine_panic(const char *msg, size_t len)
{
	panic("kdbt engine: %.*s\n", (int)min_t(size_t, len, 512), msg);
}
