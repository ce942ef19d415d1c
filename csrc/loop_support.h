// What the time loops share: scratch buffers, the longest-first row order, the work split among
// threads. Included inside kernels_isa.cpp's per-ISA namespace.

template <typename T> struct Buffer {  // aligned scratch memory, freed on scope exit
    T *data = nullptr;
    bool allocate(int64_t count) {
        size_t bytes = ((size_t)(count > 0 ? count : 1) * sizeof(T) + 63) / 64 * 64;
        data = (T *)aligned_alloc(64, bytes);
        return data != nullptr;
    }
    ~Buffer() { free(data); }
};

inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }

// Rows ordered by length, longest first (stable), and how many are active at each step.
struct RowOrder {
    Buffer<int64_t> lengths, perm, active;  // lengths (B), perm (B), active (T + 1): active[s + 1] for s = -1..T-1
    bool build(const int64_t *given, int64_t T, int64_t B) {
        if (!lengths.allocate(B) || !perm.allocate(B) || !active.allocate(T + 1)) return false;
        for (int64_t b = 0; b < B; ++b) lengths.data[b] = given ? given[b] : T;
        // counting sort by length, descending, stable
        Buffer<int64_t> count;
        if (!count.allocate(T + 2)) return false;
        for (int64_t i = 0; i <= T + 1; ++i) count.data[i] = 0;
        for (int64_t b = 0; b < B; ++b) count.data[T - lengths.data[b]]++;
        int64_t start = 0;
        for (int64_t i = 0; i <= T + 1; ++i) { int64_t c = count.data[i]; count.data[i] = start; start += c; }
        for (int64_t b = 0; b < B; ++b) perm.data[count.data[T - lengths.data[b]]++] = b;
        active.data[0] = B;
        for (int64_t s = 0; s < T; ++s) {
            int64_t n = active.data[s];  // lengths only shrink along perm
            while (n > 0 && lengths.data[perm.data[n - 1]] <= s) --n;
            active.data[s + 1] = n;
        }
        return true;
    }
    int64_t active_rows(int64_t s) const { return active.data[s + 1]; }
};

// Call f(std::integral_constant<int, n>) for n = n_rows in 1..MAX: the row count becomes a template
// argument, so every block size gets its own fully unrolled micro-kernel.
template <int MAX, class F> inline void dispatch_rows(int64_t n_rows, F &&f) {
    if constexpr (MAX > 1) {
        if (n_rows < MAX) { dispatch_rows<MAX - 1>(n_rows, f); return; }
    }
    f(std::integral_constant<int, MAX>());
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

// Run one phase of a step: items = (blocks of at most RMAX active rows) x (n_panels panels), shared out
// in contiguous ranges; f(first_row_in_perm, n_rows, panel). The caller puts a barrier after it.
template <int RMAX, class F>
inline void run_items(int64_t n_rows, int64_t n_panels, int tid, int nth, F &&f) {
    const int64_t n_blocks = (n_rows + RMAX - 1) / RMAX;
    int64_t begin, end;
    thread_range(n_blocks * n_panels, tid, nth, begin, end);
    for (int64_t i = begin; i < end; ++i) {
        const int64_t panel = i / n_blocks, r0 = (i % n_blocks) * RMAX;
        f(r0, imin(RMAX, n_rows - r0), panel);
    }
}

// Zero the rows (t, b) past each sequence's end in a (T, B, width) array with row stride ld.
template <typename T> void zero_padding(T *base, int64_t ld, int64_t width, const RowOrder &order, int64_t T_steps,
                                        int64_t B) {
    for (int64_t b = 0; b < B; ++b)
        for (int64_t t = order.lengths.data[b]; t < T_steps; ++t)
            for (int64_t k = 0; k < width; ++k) base[(t * B + b) * ld + k] = T(0);
}
