// SPDX-License-Identifier: GPL-2.0
/*
 * Taking every reference to a code cache off the stacks, with every CPU stopped: to flush a
 * full cache while switched on, and to drain a switched-off one (module/flush.rs says when).
 *
 * The dispatcher asks for a flush when a cache passes its watermark; it runs with interrupts
 * off, possibly inside any kernel lock, so it only queues an irq_work, whose handler queues
 * the flush work. A drain runs from the drain work after switch-off, or from a switch-on to
 * another mode. Either stops every CPU and, on one of them, walks every sleeping task's
 * frames: each return address or interrupted RIP in the cache is replaced by the native
 * address it stands for (identity call/ret leaves code-cache return addresses there; an
 * interrupted frame may hold a code-cache RIP). When every such word had one, a flush empties
 * the caches and rewrites the entry stubs before any CPU runs on, and a drain is done: no
 * task can return into the cache any more. Otherwise (a frame stopped inside an expansion)
 * the work retries shortly. Rewriting is safe either way: at a clean instruction boundary the
 * native address continues exactly as the translation would.
 *
 * Why every CPU stops in a native function, and not only one CPU walks: where return
 * addresses are native (drk, fast:no-callret), a CPU runs in the cache without any task's
 * stack saying so. It got there through a translated `ret` or `iretq`, and a translated
 * context switch carries it into the next task, even an idle task, which may then loop in the
 * cache. Each CPU calls kdbt_flush_fn from its stopper and returns from it natively, so after
 * the stop no CPU executes in the cache, and only stacks lead back there: the stoppers' own
 * (each CPU checks its own) and those of the tasks not running (one CPU walks them).
 *
 * Idle tasks are not on the task list and are not walked: none holds a code-cache address
 * while switched out. They are never preempted (they run with preemption off), and they leave
 * switched out through a call that pushed a native return address (drk, no-callret) or never
 * entered the cache (fast with callret: their stack's return addresses are native and the
 * entries are native when off; docs/ARCHITECTURE.md, "Flushing a full cache").
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/atomic.h>
#include <linux/irq_work.h>
#include <linux/printk.h>
#include <linux/rcupdate.h>
#include <linux/sched/signal.h>
#include <linux/sched/task_stack.h>
#include <linux/stop_machine.h>
#include <linux/string.h>
#include <linux/workqueue.h>
#include <asm/unwind.h>

#include "shim.h"

struct kdbt_flush {
	unsigned long lo, hi;
	void *ctx;
	/* Empty the caches when no word is left (a flush), or only release them (a drain). */
	bool flush;
	/* CPUs in the stop, and whether one took the walk. */
	atomic_t arrived, claimed;
	/* Stopper stacks holding a cache address (none expected: they run module code). */
	atomic_t own;
	/* 0 while walking; 1 flushed, -1 left. */
	int outcome;
	unsigned long rewritten, unmovable;
	/* The first word held back, for the log. */
	pid_t held_pid;
	char held_comm[TASK_COMM_LEN];
	unsigned long held_word, held_depth;
};

static bool kdbt_in_cache(const struct kdbt_flush *f, unsigned long w)
{
	return w - f->lo < f->hi - f->lo;
}

static void kdbt_hold(struct kdbt_flush *f, struct task_struct *t, unsigned long *at,
		      unsigned long word)
{
	if (f->unmovable++)
		return;
	f->held_pid = t->pid;
	memcpy(f->held_comm, t->comm, TASK_COMM_LEN);
	f->held_word = word;
	f->held_depth = (unsigned long)task_stack_page(t) + THREAD_SIZE - (unsigned long)at;
}

/*
 * Where the unwinder read state->ip from: an interrupt frame's saved RIP, or else the word
 * below the caller's stack pointer, where `call` pushed it (ORC unwinder state; the kernel's
 * own accessor for this is not exported).
 */
static unsigned long *kdbt_ip_slot(struct unwind_state *state)
{
	if (unwind_done(state))
		return NULL;
	if (state->regs)
		return &state->regs->ip;
	return state->sp ? (unsigned long *)state->sp - 1 : NULL;
}

/*
 * Rewrites task t's frames: the ORC unwinder walks them, and where a frame's return address
 * (or an interrupt frame's RIP) is in the cache, its slot and the unwinder's own copy become
 * the native address, so the walk goes on through the native ORC data (a translated frame at
 * a clean boundary has the native layout). Only when the walk fails elsewhere does every
 * word of the live stack from sp count (conservative: a stale word no frame uses may then
 * hold the flush back).
 */
static void kdbt_rewrite_stack(struct kdbt_flush *f, struct task_struct *t, unsigned long *sp)
{
	struct unwind_state state;
	unsigned long *base = task_stack_page(t);
	unsigned long *top = (unsigned long *)((char *)base + THREAD_SIZE);
	unsigned long *slot;
	u64 native;

	for (unwind_start(&state, t, NULL, NULL); !unwind_done(&state);
	     unwind_next_frame(&state)) {
		if (!kdbt_in_cache(f, state.ip))
			continue;
		slot = kdbt_ip_slot(&state);
		native = kdbt_flush_native_of(f->ctx, state.ip);
		if (!slot || *slot != state.ip || !native) {
			kdbt_hold(f, t, slot ? slot : sp, state.ip);
			return;
		}
		*slot = native;
		state.ip = native;
		f->rewritten++;
	}
	if (!unwind_error(&state))
		return;
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
			kdbt_hold(f, t, sp, *sp);
		}
	}
}

/*
 * Whether this CPU's own stack (its stopper's, running module code) can return into the cache.
 * The ORC unwinder walks its frames until one is in the cache (it cannot unwind past one: no
 * ORC data there, and one is enough); only when the walk fails elsewhere does every word of
 * the live stack count (conservative: a stale word may hold the stop back).
 */
static bool kdbt_own_frames_in_cache(struct kdbt_flush *f)
{
	struct unwind_state state;
	unsigned long *sp = (unsigned long *)current_stack_pointer;
	unsigned long *base = task_stack_page(current);
	unsigned long *top = (unsigned long *)((char *)base + THREAD_SIZE);

	for (unwind_start(&state, current, NULL, NULL); !unwind_done(&state);
	     unwind_next_frame(&state)) {
		if (kdbt_in_cache(f, state.ip))
			return true;
	}
	if (!unwind_error(&state))
		return false;
	if (sp < base || sp >= top)
		sp = base;
	for (; sp < top; sp++)
		if (kdbt_in_cache(f, *sp))
			return true;
	return false;
}

static int kdbt_flush_fn(void *arg)
{
	struct kdbt_flush *f = arg;
	struct task_struct *g, *t;
	int outcome;

	if (kdbt_own_frames_in_cache(f))
		atomic_inc(&f->own);
	atomic_inc(&f->arrived);
	if (atomic_xchg(&f->claimed, 1)) {
		/* No CPU may run on before the entries lead to the new cache. */
		while (!smp_load_acquire(&f->outcome))
			cpu_relax();
		kdbt_entries_reload(f->ctx);
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
	outcome = !f->unmovable && !atomic_read(&f->own) && kdbt_flush_finish(f->ctx, f->flush) ?
		1 : -1;
	smp_store_release(&f->outcome, outcome);
	kdbt_entries_reload(f->ctx);
	return 0;
}

long kdbt_flush_stacks(u64 lo, u64 hi, void *ctx, bool flush, u64 *rewritten, u64 *held)
{
	static unsigned long refusals;
	struct kdbt_flush f = { .lo = lo, .hi = hi, .ctx = ctx, .flush = flush };
	int rc = stop_machine(kdbt_flush_fn, &f, cpu_online_mask);

	*rewritten = f.rewritten;
	*held = f.unmovable;
	if (rc)
		return rc;
	/* Say what holds a flush back, now and then (every 200th refusal). */
	if (f.outcome < 0 && refusals++ % 200 == 0) {
		if (f.unmovable)
			kdbt_flush_report(ctx, f.held_comm, f.held_pid, f.held_word, f.held_depth,
					  f.unmovable);
		else
			pr_info("code cache held: %d stopper stacks, or a drk interrupt pending\n",
				atomic_read(&f.own));
	}
	return f.outcome > 0;
}

struct kdbt_stop {
	int (*fn)(void *);
	void (*each)(void *);
	void *ctx;
	atomic_t claimed;
	int done, rc;
};

/* One CPU runs fn while the others wait; then each CPU runs each (stop_machine has every
 * online CPU here with interrupts off before any runs this). */
static int kdbt_stop_fn(void *arg)
{
	struct kdbt_stop *s = arg;

	if (!atomic_xchg(&s->claimed, 1)) {
		s->rc = s->fn(s->ctx);
		smp_store_release(&s->done, 1);
	} else {
		while (!smp_load_acquire(&s->done))
			cpu_relax();
	}
	s->each(s->ctx);
	return 0;
}

int kdbt_stop_cpus(int (*fn)(void *), void (*each)(void *), void *ctx)
{
	struct kdbt_stop s = { .fn = fn, .each = each, .ctx = ctx };
	int rc = stop_machine(kdbt_stop_fn, &s, cpu_online_mask);

	return rc ? rc : s.rc;
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
