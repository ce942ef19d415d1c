// What the time loops share: scratch buffers, the longest-first row order, the work split among
// threads. Included inside kernels_isa.cpp's per-ISA namespace.

// Small scratch blocks this thread freed, kept for its next call. A streaming step (T = B = 1) makes
// a dozen small buffers per call, and glibc's aligned_alloc, which its per-thread cache never serves,
// took about a third of a call with tiny weights (perf). Blocks come in power-of-two sizes from 64 bytes
// to kMaxBytes, at most kPerClass of each kept; bigger ones go straight to the system (the work that
// needs them dwarfs an allocation). A streaming step of an RNN with 8 units holds 13 blocks of 64 bytes at
// once: with 8 kept per class, 5 of them went to glibc on every call (Zen 5, 1 thread: 1.10 -> 0.96 us a
// call with 32 kept).
struct BlockCache {
    static constexpr int kClasses = 11;  // 64 B << 0 .. 64 B << 10 = 64 KB
    static constexpr size_t kMaxBytes = (size_t)64 << (kClasses - 1);
    static constexpr int kPerClass = 32;
    void *blocks[kClasses][kPerClass];
    int count[kClasses] = {};

    ~BlockCache() {
        for (int c = 0; c < kClasses; ++c)
            for (int i = 0; i < count[c]; ++i) free(blocks[c][i]);
    }
    static int size_class(size_t bytes) {  // bytes <= kMaxBytes
        int c = 0;
        while (((size_t)64 << c) < bytes) ++c;
        return c;
    }
    static BlockCache &of_this_thread() {
        static thread_local BlockCache cache;
        return cache;
    }
};

template <typename T> struct Buffer {  // aligned scratch memory, freed (or kept for reuse) on scope exit
    T *data = nullptr;
    size_t bytes = 0;
    bool allocate(int64_t count) {
        bytes = ((size_t)(count > 0 ? count : 1) * sizeof(T) + 63) / 64 * 64;
        if (bytes <= BlockCache::kMaxBytes) {
            const int c = BlockCache::size_class(bytes);
            bytes = (size_t)64 << c;
            BlockCache &cache = BlockCache::of_this_thread();
            data = cache.count[c] ? (T *)cache.blocks[c][--cache.count[c]] : (T *)aligned_alloc(64, bytes);
        } else {
            data = (T *)aligned_alloc(64, bytes);
        }
        return data != nullptr;
    }
    ~Buffer() {
        if (!data) return;
        if (bytes <= BlockCache::kMaxBytes) {
            const int c = BlockCache::size_class(bytes);
            BlockCache &cache = BlockCache::of_this_thread();
            if (cache.count[c] < BlockCache::kPerClass) {
                cache.blocks[c][cache.count[c]++] = data;
                return;
            }
        }
        free(data);
    }
};

inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }

// Rows ordered by length, longest first (stable), how many are active at each step, and the packed
// row layout of the tape: only valid (t, b) are stored, time-major, rows of each time in perm order
// (torch's PackedSequence layout). Without lengths the packed row of (t, b) is simply t * B + b.
struct RowOrder {
    Buffer<int64_t> lengths, perm, position, active, offset;
    int64_t n_packed = 0;  // number of valid (t, b): the row count of the tape and of the big GEMMs
    bool ragged = false;   // some sequence is shorter than T

    bool build(const int64_t *given, int64_t T, int64_t B) {
        if (!lengths.allocate(B) || !perm.allocate(B) || !position.allocate(B) || !active.allocate(T + 1) ||
            !offset.allocate(T + 1))
            return false;
        for (int64_t b = 0; b < B; ++b) lengths.data[b] = given ? given[b] : T;
        // counting sort by length, descending, stable
        Buffer<int64_t> count;
        if (!count.allocate(T + 2)) return false;
        for (int64_t i = 0; i <= T + 1; ++i) count.data[i] = 0;
        for (int64_t b = 0; b < B; ++b) count.data[T - lengths.data[b]]++;
        int64_t start = 0;
        for (int64_t i = 0; i <= T + 1; ++i) { int64_t c = count.data[i]; count.data[i] = start; start += c; }
        for (int64_t b = 0; b < B; ++b) perm.data[count.data[T - lengths.data[b]]++] = b;
        for (int64_t i = 0; i < B; ++i) position.data[perm.data[i]] = i;
        active.data[0] = B;  // active[s + 1] for s = -1..T-1
        for (int64_t s = 0; s < T; ++s) {
            int64_t n = active.data[s];  // lengths only shrink along perm
            while (n > 0 && lengths.data[perm.data[n - 1]] <= s) --n;
            active.data[s + 1] = n;
        }
        n_packed = 0;
        for (int64_t t = 0; t < T; ++t) { offset.data[t] = n_packed; n_packed += active.data[t + 1]; }
        ragged = n_packed != T * B;
        return true;
    }
    int64_t active_rows(int64_t s) const { return active.data[s + 1]; }
    int64_t packed(int64_t t, int64_t b) const { return offset.data[t] + position.data[b]; }
};

// IN x (T, B, width); OUT out (n_packed, width): the valid rows in packed order.
template <typename T> void gather_rows(T *out, const T *x, int64_t width, const RowOrder &order, int64_t T_steps, int64_t B) {
    for (int64_t t = 0; t < T_steps; ++t)
        for (int64_t i = 0; i < order.active_rows(t); ++i)
            __builtin_memcpy(out + (order.offset.data[t] + i) * width, x + (t * B + order.perm.data[i]) * width,
                             width * sizeof(T));
}

// IN rows (n_packed, width); OUT x (T, B, width): valid rows set (or added into), padded rows zeroed
// unless accumulating.
template <typename T> void scatter_rows(T *x, const T *rows, int64_t width, const RowOrder &order, int64_t T_steps,
                                        int64_t B, bool accumulate) {
    for (int64_t t = 0; t < T_steps; ++t)
        for (int64_t b = 0; b < B; ++b) {
            T *dst = x + (t * B + b) * width;
            if (t < order.lengths.data[b]) {
                const T *src = rows + order.packed(t, b) * width;
                for (int64_t k = 0; k < width; ++k) dst[k] = accumulate ? dst[k] + src[k] : src[k];
            } else if (!accumulate) {
                for (int64_t k = 0; k < width; ++k) dst[k] = T(0);
            }
        }
}

// Call f(std::integral_constant<int, n>) for n = n_rows in 1..MAX: the row count becomes a template
// argument, so every block size gets its own fully unrolled micro-kernel.
template <int MAX, class F> inline void dispatch_rows(int64_t n_rows, F &&f) {
    if constexpr (MAX > 1) {
        if (n_rows < MAX) { dispatch_rows<MAX - 1>(n_rows, f); return; }
    }
    f(std::integral_constant<int, MAX>());
}

// The barrier that ends every step. OpenMP's barrier spins for milliseconds before it sleeps; when
// another process (or another OpenMP runtime in the process, e.g. torch's) holds a core, the thread
// we wait for is not running and every step costs a scheduler time slice. This one spins briefly (a
// step's worth of waiting when both threads are on a core) and then yields the core.
// Sense-reversing: the last thread to arrive bumps the generation; acquire/release on it publishes
// everything written before the barrier.
struct StepBarrier {
    int count = 0;
    int waiting = 0;
    unsigned generation = 0;

    void wait() {
        const unsigned gen = __atomic_load_n(&generation, __ATOMIC_ACQUIRE);
        if (__atomic_add_fetch(&waiting, 1, __ATOMIC_ACQ_REL) == count) {
            __atomic_store_n(&waiting, 0, __ATOMIC_RELAXED);
            __atomic_store_n(&generation, gen + 1, __ATOMIC_RELEASE);
            return;
        }
        for (int spin = 0; __atomic_load_n(&generation, __ATOMIC_ACQUIRE) == gen; ++spin) {
            if (spin < 4000) {
#if defined(__x86_64__) || defined(__i386__)
                __builtin_ia32_pause();
#endif
            } else {
                sched_yield();
            }
        }
    }
};

// Threads for the time loop: every step ends in a barrier (about a microsecond, far more when another
// process holds a core), so steps with little work run on one thread. Results do not depend on it:
// the items are the same whatever the thread count.
inline int loop_threads(int requested, int64_t batch, int64_t gate_rows, int64_t state_size) {
    const double flops_per_step = 2.0 * (double)batch * (double)gate_rows * (double)state_size;
    return flops_per_step < 4e5 ? 1 : requested;
}

// Split n_items among threads in contiguous ranges (panel-major items keep each thread on the same
// slice of W_hh across steps, so it stays in that core's cache).
inline void thread_range(int64_t n_items, int tid, int nth, int64_t &begin, int64_t &end) {
    begin = n_items * tid / nth;
    end = n_items * (tid + 1) / nth;
}

inline void current_thread(int &tid, int &nth) {
#ifdef _OPENMP
    tid = omp_get_thread_num();
    nth = omp_get_num_threads();
#else
    tid = 0;
    nth = 1;
#endif
}

// The OpenMP region a time loop runs its steps in (one region for the whole loop; steps end in
// barrier.wait()): body(tid, nth, barrier) on num_threads threads sharing one StepBarrier.
template <class F> inline void step_region(int num_threads, F &&body) {
    StepBarrier barrier;
    if (num_threads <= 1) {  // no region: entering one costs about a microsecond, a streaming step's worth
        barrier.count = 1;
        body(0, 1, barrier);
        return;
    }
#pragma omp parallel num_threads(num_threads)
    {
        int tid, nth;
        current_thread(tid, nth);
#pragma omp single
        barrier.count = nth;  // (the single's implied barrier publishes it)
        body(tid, nth, barrier);
    }
}

// f(i) for i in [begin, end), from end - 1 down when backwards. Steps alternate direction so that the
// weights a step read last, still in this core's L2, are the ones the next step reads first: weights
// larger than the L2 then come from the L3 only in part (db-b4 LSTM, W_hh 4 MB, 2 MB of L2). The callers'
// items are independent, so the order changes no bits.
template <class F> inline void walk_range(int64_t begin, int64_t end, bool backwards, F &&f) {
    for (int64_t n = 0; n < end - begin; ++n) f(backwards ? end - 1 - n : begin + n);
}

// Run one phase of a step: items = (blocks of at most RMAX active rows) x (n_panels panels), shared out
// in contiguous ranges; f(first_row_in_perm, n_rows, panel). The caller puts a barrier after it.
// backwards: the thread's range from its end (walk_range).
template <int RMAX, class F>
inline void run_items(int64_t n_rows, int64_t n_panels, int tid, int nth, F &&f, bool backwards = false) {
    const int64_t n_blocks = (n_rows + RMAX - 1) / RMAX;
    int64_t begin, end;
    thread_range(n_blocks * n_panels, tid, nth, begin, end);
    walk_range(begin, end, backwards, [&](int64_t i) {
        const int64_t panel = i / n_blocks, r0 = (i % n_blocks) * RMAX;
        f(r0, imin(RMAX, n_rows - r0), panel);
    });
}

// Zero the rows (t, b) past each sequence's end in a (T, B, width) array with row stride ld.
template <typename T> void zero_padding(T *base, int64_t ld, int64_t width, const RowOrder &order, int64_t T_steps,
                                        int64_t B) {
    for (int64_t b = 0; b < B; ++b)
        for (int64_t t = order.lengths.data[b]; t < T_steps; ++t)
            for (int64_t k = 0; k < width; ++k) base[(t * B + b) * ld + k] = T(0);
}
