// SPDX-License-Identifier: GPL-2.0
/*
 * kdbt's C shim: see shim.h for why each function lives here rather than in Rust.
 */
#include <linux/capability.h>
#include <linux/cpu.h>
#include <linux/cpumask.h>
#include <linux/debugfs.h>
#include <linux/err.h>
#include <linux/execmem.h>
#include <linux/fs.h>
#include <linux/kernel.h>
#include <linux/log2.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/panic.h>
#include <linux/seq_file.h>
#include <linux/set_memory.h>
#include <linux/slab.h>
#include <linux/smp.h>
#include <linux/uaccess.h>
#include <linux/vmalloc.h>
#include <asm/pgtable_types.h>

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

void *kdbt_engine_alloc(size_t size, size_t align)
{
	/*
	 * kmalloc aligns power-of-two sizes naturally; beyond its minimum alignment, round the
	 * size up so the requested alignment follows.
	 */
	if (align > ARCH_KMALLOC_MINALIGN)
		size = roundup_pow_of_two(max(size, align));
	return kmalloc(size, GFP_ATOMIC);
}

void kdbt_engine_free(void *ptr)
{
	kfree(ptr);
}

void kdbt_engine_panic(const char *msg, size_t len)
{
	panic("kdbt engine: %.*s\n", (int)min_t(size_t, len, 512), msg);
}
