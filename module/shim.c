// SPDX-License-Identifier: GPL-2.0
/*
 * kdbt's C shim: see shim.h for why each function lives here rather than in Rust.
 */
#include <linux/debugfs.h>
#include <linux/err.h>
#include <linux/kernel.h>
#include <linux/log2.h>
#include <linux/panic.h>
#include <linux/seq_file.h>
#include <linux/slab.h>

#include "shim.h"

static struct dentry *kdbt_dir;

static int status_show(struct seq_file *m, void *unused)
{
	char *buf = kmalloc(KDBT_STATUS_MAX, GFP_KERNEL);
	ssize_t n;

	if (!buf)
		return -ENOMEM;
	n = kdbt_status_render(buf, KDBT_STATUS_MAX);
	if (n > 0)
		seq_write(m, buf, n);
	kfree(buf);
	return n < 0 ? n : 0;
}
DEFINE_SHOW_ATTRIBUTE(status);

int kdbt_debugfs_create(void)
{
	struct dentry *file;

	kdbt_dir = debugfs_create_dir("kdbt", NULL);
	if (IS_ERR(kdbt_dir))
		return PTR_ERR(kdbt_dir);
	file = debugfs_create_file("status", 0400, kdbt_dir, NULL, &status_fops);
	if (IS_ERR(file)) {
		debugfs_remove_recursive(kdbt_dir);
		return PTR_ERR(file);
	}
	return 0;
}

void kdbt_debugfs_remove(void)
{
	debugfs_remove_recursive(kdbt_dir);
	kdbt_dir = NULL;
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
