// SPDX-License-Identifier: GPL-2.0
/*
 * Flushing a full code cache while the kernel runs translated (module/flush.rs says when).
 *
 * The dispatcher asks for a flush when a cache passes its watermark; it runs with interrupts
 * off, possibly inside any kernel lock, so it only queues an irq_work, whose handler queues
 * the flush work. The work stops every CPU and, on one of them, walks every sleeping task's
 * live stack: each word that holds a code-cache address is replaced by the native address it
 * stands for (identity call/ret leaves code-cache return addresses there; an interrupted frame
 * may hold a code-cache RIP). When every such word had one, the caches are emptied and the
 * entry stubs rewritten before any CPU runs on; otherwise (a frame stopped inside an
 * expansion) the caches stay and the work retries shortly. Rewriting is safe either way: at a
 * clean instruction boundary the native address continues exactly as the translation would.
 *
 * Idle tasks are not on the task list and are not walked: none holds a code-cache address
 * while switched out (docs/ARCHITECTURE.md, "Flushing a full cache").
 */
#include <linux/atomic.h>
#include <linux/irq_work.h>
#include <linux/rcupdate.h>
#include <linux/sched/signal.h>
#include <linux/sched/task_stack.h>
#include <linux/stop_machine.h>
#include <linux/workqueue.h>

#include "shim.h"

struct kdbt_flush {
	unsigned long lo, hi;
	void *ctx;
	/* CPUs in the stop, and whether one took the walk. */
	atomic_t arrived, claimed;
	/* Stopper stacks holding a cache address (none expected: they run module code). */
	atomic_t own;
	/* 0 while walking; 1 flushed, -1 left. */
	int outcome;
	unsigned long rewritten, unmovable;
};

static bool kdbt_in_cache(const struct kdbt_flush *f, unsigned long w)
{
	return w - f->lo < f->hi - f->lo;
}

/* Rewrites task t's live stack from sp (see the top of this file). */
static void kdbt_rewrite_stack(struct kdbt_flush *f, struct task_struct *t, unsigned long *sp)
{
	unsigned long *base = task_stack_page(t);
	unsigned long *top = (unsigned long *)((char *)base + THREAD_SIZE);
	u64 native;

	if (sp < base || sp >= top)
		sp = base;
	for (; sp < top; sp++) {
		if (!kdbt_in_cache(f, *sp))
			continue;
		native = kdbt_flush_native_of(f->ctx, *sp);
		if (native) {
			*sp = native;
			f->rewritten++;
		} else {
			f->unmovable++;
		}
	}
}

static int kdbt_flush_fn(void *arg)
{
	struct kdbt_flush *f = arg;
	unsigned long *sp = (unsigned long *)current_stack_pointer;
	unsigned long *top = (unsigned long *)((char *)task_stack_page(current) + THREAD_SIZE);
	struct task_struct *g, *t;
	int outcome;

	for (; sp < top; sp++)
		if (kdbt_in_cache(f, *sp)) {
			atomic_inc(&f->own);
			break;
		}
	atomic_inc(&f->arrived);
	if (atomic_xchg(&f->claimed, 1)) {
		/* No CPU may run on before the stubs lead to the new cache. */
		while (!smp_load_acquire(&f->outcome))
			cpu_relax();
		return 0;
	}
	while (atomic_read(&f->arrived) < num_online_cpus())
		cpu_relax();
	rcu_read_lock();
	for_each_process_thread(g, t) {
		/* Running now: the stopper threads, checked above. */
		if (READ_ONCE(t->on_cpu) || !t->stack)
			continue;
		kdbt_rewrite_stack(f, t, (unsigned long *)t->thread.sp);
	}
	rcu_read_unlock();
	outcome = !f->unmovable && !atomic_read(&f->own) && kdbt_flush_now(f->ctx) ? 1 : -1;
	smp_store_release(&f->outcome, outcome);
	return 0;
}

long kdbt_flush_stacks(u64 lo, u64 hi, void *ctx, u64 *rewritten)
{
	struct kdbt_flush f = { .lo = lo, .hi = hi, .ctx = ctx };
	int rc = stop_machine(kdbt_flush_fn, &f, cpu_online_mask);

	*rewritten = f.rewritten;
	if (rc)
		return rc;
	return f.outcome > 0;
}

static void *kdbt_flush_ctx;

static void kdbt_flush_work_fn(struct work_struct *work);
static DECLARE_DELAYED_WORK(kdbt_flush_work, kdbt_flush_work_fn);

static void kdbt_flush_work_fn(struct work_struct *work)
{
	void *ctx = READ_ONCE(kdbt_flush_ctx);

	if (ctx && kdbt_flush_tick(ctx))
		queue_delayed_work(system_wq, &kdbt_flush_work,
				   msecs_to_jiffies(KDBT_FLUSH_RETRY_MS));
}

static void kdbt_flush_kick(struct irq_work *work)
{
	queue_delayed_work(system_wq, &kdbt_flush_work, 0);
}

static DEFINE_IRQ_WORK(kdbt_flush_irq_work, kdbt_flush_kick);

void kdbt_flush_request(void)
{
	if (READ_ONCE(kdbt_flush_ctx))
		irq_work_queue(&kdbt_flush_irq_work);
}

void kdbt_flush_start(void *ctx)
{
	WRITE_ONCE(kdbt_flush_ctx, ctx);
}

void kdbt_flush_stop(void)
{
	WRITE_ONCE(kdbt_flush_ctx, NULL);
	irq_work_sync(&kdbt_flush_irq_work);
	cancel_delayed_work_sync(&kdbt_flush_work);
}
