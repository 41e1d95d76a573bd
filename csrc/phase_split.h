// The phase-split scratch plane shared by im2col's and col2im's fast paths.
//
// Both kernels visit, for each kernel tap (i, j), the padded pixels (oh*SH + i*DH, ow*SW + j*DW):
// im2col copies them out, col2im adds into them. Stored phase by phase (below), those pixels are
// contiguous runs, one per output row, so both kernels' inner loops become plain contiguous
// copies or adds, with the zero padding already in place.
#pragma once

#include <cstdint>
#include <vector>

#include "geometry.h"

namespace tinyae {

// The fast path is used when strides are at most this and the scratch plane is at most
// kMaxScratch elements (per thread).
constexpr int64_t kMaxFastStride = 4;
constexpr int64_t kMaxScratch = int64_t(1) << 20;

// Layout of the fast path's scratch: the padded plane (HP, WP) = (H + 2PH, W + 2PW), split by
// phase. Padded pixel (r, s) is stored at [r % SH][s % SW][r / SH][s / SW] in a buffer of shape
// (SH, SW, HQ, WQ), HQ = ceil(HP / SH), WQ = ceil(WP / SW). Why: output pixel (oh, ow) of tap
// (i, j) reads padded pixel (oh*SH + i*DH, ow*SW + j*DW), which is element (oh + i*DH/SH,
// ow + j*DW/SW) of phase ((i*DH) % SH, (j*DW) % SW). The stride disappears: each output row is a
// contiguous run of one phase row, and the zeros of the padding are already in place.
struct PhaseLayout {
    int64_t hq, wq;

    explicit PhaseLayout(const Geometry& g)
        : hq((g.h + 2 * g.ph + g.sh - 1) / g.sh), wq((g.w + 2 * g.pw + g.sw - 1) / g.sw) {}

    int64_t size(const Geometry& g) const { return g.sh * g.sw * hq * wq; }

    int64_t offset(const Geometry& g, int64_t r, int64_t s) const {
        return (((r % g.sh) * g.sw + s % g.sw) * hq + r / g.sh) * wq + s / g.sw;
    }
};

inline bool use_fast_path(const Geometry& g) {
    if (g.sh > kMaxFastStride || g.sw > kMaxFastStride) return false;
    if (g.h + 2 * g.ph > kMaxScratch || g.w + 2 * g.pw > kMaxScratch) return false;
    return PhaseLayout(g).size(g) <= kMaxScratch;
}

// Where the pixels of an (H, W) plane go in the scratch, computed once per call (integer divisions
// are slow, so none happen in the per-plane loops): row r starts at rows[r]; the columns
// q, q + SW, q + 2SW, ... of a row go, next to each other, to offset cols[q] from that start.
struct SplitOffsets {
    std::vector<int64_t> rows;
    int64_t cols[kMaxFastStride];
    int64_t phases;  // number of column phases that hold pixels: min(SW, W)

    // Empty (unused) unless `fast`: the general path has no scratch, and its strides may exceed
    // kMaxFastStride.
    SplitOffsets(const Geometry& g, const PhaseLayout& lay, bool fast)
        : rows(fast ? g.h : 0), cols{}, phases(fast ? std::min(g.sw, g.w) : 0) {
        if (!fast) return;
        // offset(r, s) == offset(r, 0) + offset(0, s): the row and column parts add up.
        for (int64_t r = 0; r < g.h; ++r) rows[r] = lay.offset(g, r + g.ph, 0);
        for (int64_t q = 0; q < phases; ++q) cols[q] = lay.offset(g, 0, q + g.pw);
    }
};

// What a loop over planes needs, built once per call: whether the fast path applies, its layout and
// offsets, and one zero-initialised scratch plane per thread (none on the general path). The
// scratch is allocated here, outside the loop, so that an allocation failure is an ordinary C++
// exception (-> MemoryError) raised before any work.
template <typename T>
struct PhasePlan {
    bool fast;
    PhaseLayout lay;
    SplitOffsets at;
    int64_t scratch_size;
    std::vector<T> scratch;

    PhasePlan(const Geometry& g, int threads)
        : fast(use_fast_path(g)),
          lay(g),
          at(g, lay, fast),
          scratch_size(fast ? lay.size(g) : 0),
          scratch(static_cast<size_t>(scratch_size * threads)) {}

    T* scratch_for(int slot) { return scratch.data() + slot * scratch_size; }
};

}  // namespace tinyae
