// pybind11 module tinyae._C: im2col / col2im, batch norm's passes and Adam's update, for float32
// and float64 NumPy arrays; and a direct conv2d forward for float32 on CPUs with AVX-512.
//
// The convolution kernels take one geometry object, tinyae.kernels.Geometry (or anything with its
// attributes kernel, stride, padding, dilation: pairs of ints, and groups: an int), read into
// ConvParams below. Python validates arguments at the public entry; what is checked again here is
// what memory safety needs, since _C can be called directly: a bad call raises ValueError /
// TypeError and never reads or writes out of bounds.
// The GIL is released while the kernels run, so other Python threads can proceed.
//
// Both functions take an optional `out` buffer (keyword `out=None`): exactly the result's shape and
// dtype, C-contiguous, writeable and not overlapping the input. Every element of it is written
// (col2im overwrites, it does not accumulate onto `out`), and `out` itself is returned.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "activation.h"
#include "adam.h"
#include "batch_norm.h"
#include "conv_direct.h"
#include "gemm.h"
#include "geometry.h"
#include "parallel.h"

namespace py = pybind11;
using tinyae::Geometry;

// The Python Geometry's fields, as plain integers.
struct ConvParams {
    int64_t kh = 1, kw = 1, sh = 1, sw = 1, ph = 0, pw = 0, dh = 1, dw = 1, groups = 1;
};

namespace pybind11::detail {
// Reads a tinyae.kernels.Geometry (duck-typed: its five attributes) into ConvParams.
template <>
struct type_caster<ConvParams> {
    PYBIND11_TYPE_CASTER(ConvParams, const_name("Geometry"));

    static void pair(const handle& src, const char* name, int64_t& a, int64_t& b) {
        if (!hasattr(src, name)) {
            throw type_error(std::string("geometry: expected a tinyae.kernels.Geometry, which has '") + name + "'");
        }
        const object t = src.attr(name);
        if (!isinstance<tuple>(t) || len(t) != 2) {
            throw type_error(std::string("geometry: '") + name + "' must be a pair of ints, got " +
                             std::string(str(t)));
        }
        const auto pair = reinterpret_borrow<tuple>(t);
        a = pair[0].cast<int64_t>();
        b = pair[1].cast<int64_t>();
    }

    bool load(handle src, bool) {
        if (src.is_none()) return false;
        pair(src, "kernel", value.kh, value.kw);
        pair(src, "stride", value.sh, value.sw);
        pair(src, "padding", value.ph, value.pw);
        pair(src, "dilation", value.dh, value.dw);
        value.groups = src.attr("groups").cast<int64_t>();
        return true;
    }
};
}  // namespace pybind11::detail

namespace {

enum class DType { f32, f64 };

DType check_dtype(const char* op, const char* name, const py::array& a) {
    // equal() is NumPy dtype ==: native-order float32 / float64 only (">f4" is rejected).
    if (a.dtype().equal(py::dtype::of<float>())) return DType::f32;
    if (a.dtype().equal(py::dtype::of<double>())) return DType::f64;
    throw py::type_error(std::string(op) + ": argument '" + name + "' must be float32 or float64, got dtype " +
                         std::string(py::str(a.dtype())));
}

void check_ndim(const char* op, const char* name, const py::array& a, py::ssize_t ndim) {
    if (a.ndim() != ndim) {
        throw py::value_error(std::string(op) + ": argument '" + name + "' must be " + std::to_string(ndim) +
                              "-D, got " + std::to_string(a.ndim()) + "-D");
    }
}

// The geometry's numbers in range: what the kernels' index arithmetic relies on.
void check_params(const char* op, const ConvParams& p) {
    tinyae::check_param(op, "kernel", std::min(p.kh, p.kw), 1);
    tinyae::check_param(op, "kernel", std::max(p.kh, p.kw), 1);
    tinyae::check_param(op, "stride", std::min(p.sh, p.sw), 1);
    tinyae::check_param(op, "stride", std::max(p.sh, p.sw), 1);
    tinyae::check_param(op, "padding", std::min(p.ph, p.pw), 0);
    tinyae::check_param(op, "padding", std::max(p.ph, p.pw), 0);
    tinyae::check_param(op, "dilation", std::min(p.dh, p.dw), 1);
    tinyae::check_param(op, "dilation", std::max(p.dh, p.dw), 1);
    tinyae::check_param(op, "groups", p.groups, 1);
}

// The per-call geometry of an image (N, C, H, W) under p; the grid (OH, OW) is computed.
Geometry geometry_of(int64_t n, int64_t c, int64_t h, int64_t w, const ConvParams& p) {
    return Geometry{n, c, h, w, p.kh, p.kw, p.sh, p.sw, p.ph, p.pw, p.dh, p.dw,
                    tinyae::out_size(h, p.kh, p.sh, p.ph, p.dh), tinyae::out_size(w, p.kw, p.sw, p.pw, p.dw)};
}

void check_kernel_matches(const char* op, const char* name, const py::array& a, const ConvParams& p) {
    if (a.shape(2) != p.kh || a.shape(3) != p.kw) {
        throw py::value_error(std::string(op) + ": argument '" + name + "' has kernel size (" +
                              std::to_string(a.shape(2)) + ", " + std::to_string(a.shape(3)) +
                              ") but the geometry says (" + std::to_string(p.kh) + ", " + std::to_string(p.kw) + ")");
    }
}

void check_output_size(const char* op, const Geometry& g) {
    if (g.oh < 1 || g.ow < 1) {
        throw py::value_error(std::string(op) + ": kernel (" + std::to_string(g.kh) + ", " + std::to_string(g.kw) +
                              ") does not fit the padded input (" + std::to_string(g.h + 2 * g.ph) + ", " +
                              std::to_string(g.w + 2 * g.pw) + "); output size would be (" +
                              std::to_string(g.oh) + ", " + std::to_string(g.ow) + ")");
    }
}

// A C-contiguous view of `a` with element type T. pybind11's ensure() returns `a` itself when it
// already is C-contiguous (no copy); otherwise it makes one contiguous copy.
template <typename T>
py::array_t<T, py::array::c_style> contiguous(const char* op, const char* name, const py::array& a) {
    auto c = py::array_t<T, py::array::c_style>::ensure(a);
    if (!c) throw py::value_error(std::string(op) + ": cannot read argument '" + name + "' as a contiguous array");
    return c;
}

std::string shape_str(const py::ssize_t* shape, py::ssize_t ndim) {
    std::string s = "(";
    for (py::ssize_t k = 0; k < ndim; ++k) s += (k ? ", " : "") + std::to_string(shape[k]);
    return s + (ndim == 1 ? ",)" : ")");
}

// Whether two contiguous buffers share a byte.
bool overlap(const py::array& a, const py::array& b) {
    const auto* a0 = static_cast<const char*>(a.data());
    const auto* b0 = static_cast<const char*>(b.data());
    return a.nbytes() > 0 && b.nbytes() > 0 && a0 < b0 + b.nbytes() && b0 < a0 + a.nbytes();
}

// Validates a caller's `out` buffer against the result's shape and the input `src` (dtype, memory),
// and returns it as an array. Everything the kernel relies on to write only inside `out` is checked
// here: exact shape, contiguity, element type; plus writeability and no aliasing of the input.
template <typename T, size_t D>
py::array checked_out(const char* op, const py::object& out, const int64_t (&shape)[D], const char* src_name,
                      const py::array& src) {
    if (!py::isinstance<py::array>(out)) {
        throw py::type_error(std::string(op) + ": argument 'out' must be a NumPy array, got " +
                             std::string(py::str(py::type::of(out).attr("__name__"))));
    }
    auto a = py::reinterpret_borrow<py::array>(out);
    if (!a.dtype().equal(py::dtype::of<T>())) {
        throw py::type_error(std::string(op) + ": argument 'out' must have dtype " +
                             std::string(py::str(py::dtype::of<T>())) + " like '" + src_name + "', got " +
                             std::string(py::str(a.dtype())));
    }
    bool same = a.ndim() == static_cast<py::ssize_t>(D);
    for (size_t k = 0; same && k < D; ++k) same = a.shape(k) == shape[k];
    if (!same) {
        std::vector<py::ssize_t> want(shape, shape + D);
        throw py::value_error(std::string(op) + ": argument 'out' must have shape " +
                              shape_str(want.data(), D) + ", got " + shape_str(a.shape(), a.ndim()));
    }
    if (!(a.flags() & py::array::c_style)) {
        throw py::value_error(std::string(op) + ": argument 'out' must be C-contiguous (shape " +
                              shape_str(a.shape(), a.ndim()) + ")");
    }
    if (!a.writeable()) throw py::value_error(std::string(op) + ": argument 'out' is read-only");
    // The kernel reads src while it writes out.
    if (overlap(a, src)) {
        throw py::value_error(std::string(op) + ": argument 'out' overlaps the memory of '" + src_name + "'");
    }
    return a;
}

template <typename T>
py::array im2col_typed(const py::array& x, Geometry g, const py::object& out, int threads) {
    const int64_t dims[6] = {g.c, g.kh, g.kw, g.n, g.oh, g.ow};
    tinyae::checked_numel("im2col", dims, sizeof(T));  // before x is copied: a refusal costs nothing
    auto xc = contiguous<T>("im2col", "x", x);
    py::array col;
    if (out.is_none()) {
        col = py::array_t<T>({g.c, g.kh, g.kw, g.n, g.oh, g.ow});
    } else {
        col = checked_out<T>("im2col", out, dims, "x", xc);
    }
    const T* src = xc.data();
    T* dst = static_cast<T*>(col.mutable_data());
    {
        py::gil_scoped_release release;
        tinyae::im2col<T>(src, dst, g, threads);
    }
    return col;
}

py::array im2col(const py::array& x, const ConvParams& p, const py::object& out, int threads) {
    const char* op = "im2col";
    check_ndim(op, "x", x, 4);
    const DType dt = check_dtype(op, "x", x);
    check_params(op, p);
    const Geometry g = geometry_of(x.shape(0), x.shape(1), x.shape(2), x.shape(3), p);
    check_output_size(op, g);
    return dt == DType::f32 ? im2col_typed<float>(x, g, out, threads) : im2col_typed<double>(x, g, out, threads);
}

template <typename T>
py::array col2im_typed(const py::array& col, Geometry g, const py::object& out, int threads) {
    auto cc = contiguous<T>("col2im", "col", col);
    const int64_t dims[4] = {g.n, g.c, g.h, g.w};
    tinyae::checked_numel("col2im", dims, sizeof(T));
    // The kernel zeroes each output plane before adding into it, so `out` is overwritten.
    py::array x;
    if (out.is_none()) {
        x = py::array_t<T>({g.n, g.c, g.h, g.w});
    } else {
        x = checked_out<T>("col2im", out, dims, "col", cc);
    }
    const T* src = cc.data();
    T* dst = static_cast<T*>(x.mutable_data());
    {
        py::gil_scoped_release release;
        tinyae::col2im<T>(src, dst, g, threads);
    }
    return x;
}

py::array col2im(const py::array& col, const std::pair<int64_t, int64_t>& hw, const ConvParams& p,
                 const py::object& out, int threads) {
    const char* op = "col2im";
    check_ndim(op, "col", col, 6);
    const DType dt = check_dtype(op, "col", col);
    check_params(op, p);
    const auto [h, w] = hw;
    tinyae::check_param(op, "output_size", std::min(h, w), 1);
    tinyae::check_param(op, "output_size", std::max(h, w), 1);
    // col is (C, KH, KW, N, OH, OW): its kernel and grid must be what the geometry gives for (h, w).
    const Geometry g = geometry_of(col.shape(3), col.shape(0), h, w, p);
    if (col.shape(1) != g.kh || col.shape(2) != g.kw || g.oh < 1 || g.ow < 1 || col.shape(4) != g.oh ||
        col.shape(5) != g.ow) {
        throw py::value_error("col2im: argument 'col' has shape " + shape_str(col.shape(), 6) +
                              " but the output size (" + std::to_string(h) + ", " + std::to_string(w) +
                              ") and geometry give (C, " + std::to_string(g.kh) + ", " + std::to_string(g.kw) +
                              ", N, " + std::to_string(g.oh) + ", " + std::to_string(g.ow) + ")");
    }
    return dt == DType::f32 ? col2im_typed<float>(col, g, out, threads) : col2im_typed<double>(col, g, out, threads);
}


// A second array of an op that must match the first one: its dtype (TypeError) and shape.
void check_like(const char* op, const char* name, const py::array& a, const char* ref_name, const py::array& ref) {
    if (!a.dtype().equal(ref.dtype())) {
        throw py::type_error(std::string(op) + ": arguments '" + name + "' and '" + ref_name +
                             "' must have the same dtype, got " + std::string(py::str(a.dtype())) + " and " +
                             std::string(py::str(ref.dtype())));
    }
    bool same = a.ndim() == ref.ndim();
    for (py::ssize_t d = 0; same && d < ref.ndim(); ++d) same = a.shape(d) == ref.shape(d);
    if (!same) {
        throw py::value_error(std::string(op) + ": argument '" + name + "' must have the shape of '" + ref_name +
                              "' " + shape_str(ref.shape(), ref.ndim()) + ", got " + shape_str(a.shape(), a.ndim()));
    }
}

// ---------------------------------------------------------------- direct convolution
// x and a second operand (weight or gy) of a direct kernel: 4-D float32 arrays.
void check_float32_4d(const char* op, const py::array& x, const char* name, const py::array& other) {
    check_ndim(op, "x", x, 4);
    check_ndim(op, name, other, 4);
    for (const auto& [label, a] : {std::pair<const char*, const py::array*>{"x", &x}, {name, &other}}) {
        if (!a->dtype().equal(py::dtype::of<float>())) {
            throw py::type_error(std::string(op) + ": argument '" + label + "' must be float32 (the direct kernel " +
                                 "has no float64 version), got dtype " + std::string(py::str(a->dtype())));
        }
    }
}

// A direct kernel's per-thread scratch: `what` (a padded sample of x, or the 32 output planes of
// one channel block that the forwards stage) must have at most kDirectMaxScratch elements.
void check_scratch(const char* op, const std::string& what, int64_t elements) {
    if (elements > tinyae::kDirectMaxScratch) {
        throw py::value_error(std::string(op) + ": " + what + " more than " +
                              std::to_string(tinyae::kDirectMaxScratch) + " elements");
    }
}

std::string planes_str(int64_t oh, int64_t ow) {
    return "32 output planes of (" + std::to_string(oh) + ", " + std::to_string(ow) + ") have";
}

// The bias of a direct convolution: a float32 array (C_out,).
py::array_t<float, py::array::c_style> direct_bias(const char* op, const py::object& b, int64_t cout) {
    if (!py::isinstance<py::array>(b)) {
        throw py::type_error(std::string(op) + ": argument 'bias' must be a NumPy array or None, got " +
                             std::string(py::str(py::type::of(b).attr("__name__"))));
    }
    auto ba = py::reinterpret_borrow<py::array>(b);
    if (!ba.dtype().equal(py::dtype::of<float>())) {
        throw py::type_error(std::string(op) + ": argument 'bias' must be float32 like 'x', got dtype " +
                             std::string(py::str(ba.dtype())));
    }
    if (ba.ndim() != 1 || ba.shape(0) != cout) {
        throw py::value_error(std::string(op) + ": argument 'bias' must have shape (" + std::to_string(cout) +
                              ",) (C_out), got " + shape_str(ba.shape(), ba.ndim()));
    }
    return contiguous<float>(op, "bias", ba);
}
// x (N, C, H, W) and weight (C_out, C/G, KH, KW) float32; bias None or (C_out,) float32.
py::array conv2d_direct(const py::array& x, const py::array& w, const py::object& b, const ConvParams& p,
                        int threads) {
    const char* op = "conv2d_direct";
    check_float32_4d(op, x, "weight", w);
    check_params(op, p);
    check_kernel_matches(op, "weight", w, p);
    const int64_t groups = p.groups;
    const Geometry g = geometry_of(x.shape(0), x.shape(1), x.shape(2), x.shape(3), p);
    const int64_t cout = w.shape(0);
    if (cout < 1 || g.kh < 1 || g.kw < 1 || g.c % groups != 0 || cout % groups != 0 || w.shape(1) * groups != g.c) {
        throw py::value_error(std::string(op) + ": argument 'weight' must have shape (C_out, C/groups, KH, KW) " +
                              "with C_out a multiple of groups=" + std::to_string(groups) + ", for x " +
                              shape_str(x.shape(), 4) + ", got " + shape_str(w.shape(), 4));
    }
    check_output_size(op, g);
    const int64_t dims[4] = {g.n, cout, g.oh, g.ow};
    tinyae::checked_numel(op, dims, sizeof(float));
    check_scratch(op, "one zero-padded sample of x has", g.c * (g.h + 2 * g.ph) * (g.w + 2 * g.pw));
    check_scratch(op, planes_str(g.oh, g.ow), 32 * g.oh * g.ow);
    py::array_t<float, py::array::c_style> bc;
    if (!b.is_none()) bc = direct_bias(op, b, cout);
    auto xc = contiguous<float>(op, "x", x);
    auto wc = contiguous<float>(op, "weight", w);
    py::array_t<float> y({g.n, cout, g.oh, g.ow});
    const float* bp = b.is_none() ? nullptr : bc.data();
    float* yp = y.mutable_data();
    {
        py::gil_scoped_release release;
        tinyae::conv2d_direct(xc.data(), wc.data(), bp, yp, g, cout, groups, threads);
    }
    return y;
}

// x (N, C, H, W) and weight (C, C_out/G, KH, KW) float32; bias None or (C_out,) float32; dilation 1.
py::array conv_transpose2d_direct(const py::array& x, const py::array& w, const py::object& b,
                                  const std::pair<int64_t, int64_t>& out_hw, const ConvParams& p, int threads) {
    const char* op = "conv_transpose2d_direct";
    check_float32_4d(op, x, "weight", w);
    check_params(op, p);
    check_kernel_matches(op, "weight", w, p);
    const int64_t groups = p.groups;
    const auto [out_h, out_w] = out_hw;
    const int64_t c = x.shape(1), cout = w.shape(1) * groups;
    if (w.shape(0) != c || c % groups != 0 || w.shape(1) < 1 || w.shape(2) < 1 || w.shape(3) < 1) {
        throw py::value_error(std::string(op) + ": argument 'weight' must have shape (C, C_out/groups, KH, KW) with " +
                              "C a multiple of groups=" + std::to_string(groups) + ", for x " +
                              shape_str(x.shape(), 4) + ", got " + shape_str(w.shape(), 4));
    }
    tinyae::check_param(op, "output_size", std::min(out_h, out_w), 1);
    tinyae::check_param(op, "output_size", std::max(out_h, out_w), 1);
    if (p.dh != 1 || p.dw != 1) {
        throw py::value_error(std::string(op) + ": the direct kernel needs dilation 1, got (" + std::to_string(p.dh) +
                              ", " + std::to_string(p.dw) + ")");
    }
    const Geometry g = geometry_of(x.shape(0), c, out_h, out_w, p);
    if (g.oh != x.shape(2) || g.ow != x.shape(3)) {
        throw py::value_error(std::string(op) + ": argument 'x' has (H, W) = (" + std::to_string(x.shape(2)) + ", " +
                              std::to_string(x.shape(3)) + ") but the output size (" + std::to_string(out_h) + ", " +
                              std::to_string(out_w) + ") and parameters give (" + std::to_string(g.oh) + ", " +
                              std::to_string(g.ow) + ")");
    }
    const int64_t dims[4] = {g.n, cout, out_h, out_w};
    tinyae::checked_numel(op, dims, sizeof(float));
    check_scratch(op, "one padded sample of x would have", c * (g.oh + 2 * g.kh) * (g.ow + 2 * g.kw));
    check_scratch(op, planes_str(out_h, out_w), 32 * out_h * out_w);
    py::array_t<float, py::array::c_style> bc;
    if (!b.is_none()) bc = direct_bias(op, b, cout);
    auto xc = contiguous<float>(op, "x", x);
    auto wc = contiguous<float>(op, "weight", w);
    py::array_t<float> y({g.n, cout, out_h, out_w});
    const float* bp = b.is_none() ? nullptr : bc.data();
    float* yp = y.mutable_data();
    {
        py::gil_scoped_release release;
        tinyae::conv_transpose2d_direct(xc.data(), wc.data(), bp, yp, g, cout, groups, threads);
    }
    return y;
}

// x (N, C, H, W) and gy (N, C_out, OH, OW) float32 -> gw (C_out, C/G, KH, KW).
py::array conv2d_weight_grad_direct(const py::array& x, const py::array& gy, const ConvParams& p, int threads) {
    const char* op = "conv2d_weight_grad_direct";
    check_float32_4d(op, x, "gy", gy);
    check_params(op, p);
    const int64_t groups = p.groups, kh = p.kh, kw = p.kw;
    const Geometry g = geometry_of(x.shape(0), x.shape(1), x.shape(2), x.shape(3), p);
    check_output_size(op, g);
    const int64_t cout = gy.shape(1);
    if (gy.shape(0) != g.n || gy.shape(2) != g.oh || gy.shape(3) != g.ow || cout < 1 || cout % groups != 0 ||
        g.c % groups != 0) {
        throw py::value_error(std::string(op) + ": argument 'gy' must have shape (N, C_out, OH, OW) = (" +
                              std::to_string(g.n) + ", C_out, " + std::to_string(g.oh) + ", " + std::to_string(g.ow) +
                              ") with C and C_out multiples of groups=" + std::to_string(groups) + ", for x " +
                              shape_str(x.shape(), 4) + "; got " + shape_str(gy.shape(), 4));
    }
    check_scratch(op, "one zero-padded sample of x has", g.c * (g.h + 2 * g.ph) * (g.w + 2 * g.pw));
    const int64_t gw_dims[4] = {cout, g.c / groups, kh, kw};
    tinyae::checked_numel(op, gw_dims, sizeof(float));
    auto xc = contiguous<float>(op, "x", x);
    auto gc = contiguous<float>(op, "gy", gy);
    py::array_t<float> gw({cout, g.c / groups, kh, kw});
    float* gp = gw.mutable_data();
    {
        py::gil_scoped_release release;
        tinyae::conv2d_weight_grad_direct(xc.data(), gc.data(), gp, g, cout, groups, threads);
    }
    return gw;
}

// ---------------------------------------------------------------- batch norm
// x (N, C, L); per-channel vectors (C,) of x's dtype. Optional ones may be None.
template <typename T>
py::array_t<T, py::array::c_style> channel_vector(const char* op, const char* name, const py::object& v, int64_t c,
                                                  bool optional) {
    if (v.is_none()) {
        if (optional) return py::array_t<T, py::array::c_style>();
        throw py::type_error(std::string(op) + ": argument '" + name + "' must be an array, got None");
    }
    if (!py::isinstance<py::array>(v)) {
        throw py::type_error(std::string(op) + ": argument '" + name + "' must be a NumPy array, got " +
                             std::string(py::str(py::type::of(v).attr("__name__"))));
    }
    auto a = py::reinterpret_borrow<py::array>(v);
    if (!a.dtype().equal(py::dtype::of<T>())) {
        throw py::type_error(std::string(op) + ": argument '" + name + "' must have dtype " +
                             std::string(py::str(py::dtype::of<T>())) + " like 'x', got " +
                             std::string(py::str(a.dtype())));
    }
    if (a.ndim() != 1 || a.shape(0) != c) {
        throw py::value_error(std::string(op) + ": argument '" + name + "' must have shape (" + std::to_string(c) +
                              ",) for x with C=" + std::to_string(c) + " channels, got " +
                              shape_str(a.shape(), a.ndim()));
    }
    return contiguous<T>(op, name, a);
}

template <typename T>
py::tuple bn_forward_typed(const py::array& x, const py::object& w, const py::object& b, double eps, int threads) {
    const char* op = "batch_norm_forward";
    auto xc = contiguous<T>(op, "x", x);
    const int64_t n = x.shape(0), c = x.shape(1), l = x.shape(2);
    auto wc = channel_vector<T>(op, "weight", w, c, true);
    auto bc = channel_vector<T>(op, "bias", b, c, true);
    py::array_t<T> y({n, c, l}), mean(c), var(c), inv_std(c);
    const T* wp = w.is_none() ? nullptr : wc.data();
    const T* bp = b.is_none() ? nullptr : bc.data();
    {
        py::gil_scoped_release release;
        tinyae::batch_norm_forward<T>(xc.data(), wp, bp, y.mutable_data(), mean.mutable_data(), var.mutable_data(),
                                      inv_std.mutable_data(), n, c, l, eps, threads);
    }
    return py::make_tuple(y, mean, var, inv_std);
}

py::tuple batch_norm_forward(const py::array& x, const py::object& w, const py::object& b, double eps, int threads) {
    const char* op = "batch_norm_forward";
    check_ndim(op, "x", x, 3);
    if (!(eps >= 0)) throw py::value_error(std::string(op) + ": argument 'eps' must be >= 0, got " + std::to_string(eps));
    return check_dtype(op, "x", x) == DType::f32 ? bn_forward_typed<float>(x, w, b, eps, threads)
                                                : bn_forward_typed<double>(x, w, b, eps, threads);
}

template <typename T>
py::tuple bn_backward_typed(const py::array& x, const py::array& gy, const py::object& mean,
                            const py::object& inv_std, const py::object& w, bool need_gx, int threads) {
    const char* op = "batch_norm_backward";
    auto xc = contiguous<T>(op, "x", x);
    auto gc = contiguous<T>(op, "gy", gy);
    const int64_t n = x.shape(0), c = x.shape(1), l = x.shape(2);
    auto mc = channel_vector<T>(op, "mean", mean, c, false);
    auto ic = channel_vector<T>(op, "inv_std", inv_std, c, false);
    auto wc = channel_vector<T>(op, "weight", w, c, true);
    py::array_t<T> gw(c), gb(c);
    py::object gx = py::none();
    T* gxp = nullptr;
    if (need_gx) {
        py::array_t<T> a({n, c, l});
        gxp = a.mutable_data();
        gx = a;
    }
    const T* wp = w.is_none() ? nullptr : wc.data();
    {
        py::gil_scoped_release release;
        tinyae::batch_norm_backward<T>(xc.data(), gc.data(), mc.data(), ic.data(), wp, gxp, gw.mutable_data(),
                                       gb.mutable_data(), n, c, l, threads);
    }
    return py::make_tuple(gx, gw, gb);
}

py::tuple batch_norm_backward(const py::array& x, const py::array& gy, const py::object& mean,
                              const py::object& inv_std, const py::object& w, bool need_gx, int threads) {
    const char* op = "batch_norm_backward";
    check_ndim(op, "x", x, 3);
    check_ndim(op, "gy", gy, 3);
    const DType dt = check_dtype(op, "x", x);
    check_like(op, "gy", gy, "x", x);
    return dt == DType::f32 ? bn_backward_typed<float>(x, gy, mean, inv_std, w, need_gx, threads)
                            : bn_backward_typed<double>(x, gy, mean, inv_std, w, need_gx, threads);
}

// ---------------------------------------------------------------- Adam
// p, m, v (and v_max) are updated in place, so they must be the caller's own C-contiguous,
// writeable arrays (never a copy); g only needs the same dtype and size.
py::array inplace(const char* op, const char* name, const py::object& a, const py::array& p) {
    if (!py::isinstance<py::array>(a)) {
        throw py::type_error(std::string(op) + ": argument '" + name + "' must be a NumPy array, got " +
                             std::string(py::str(py::type::of(a).attr("__name__"))));
    }
    auto arr = py::reinterpret_borrow<py::array>(a);
    if (!arr.dtype().equal(p.dtype())) {
        throw py::type_error(std::string(op) + ": argument '" + name + "' must have dtype " +
                             std::string(py::str(p.dtype())) + " like 'param', got " +
                             std::string(py::str(arr.dtype())));
    }
    if (arr.size() != p.size()) {
        throw py::value_error(std::string(op) + ": argument '" + name + "' must have the size of 'param' (" +
                              std::to_string(p.size()) + " elements), got shape " +
                              shape_str(arr.shape(), arr.ndim()));
    }
    if (std::string(name) != "grad") {
        if (!(arr.flags() & py::array::c_style)) {
            throw py::value_error(std::string(op) + ": argument '" + name + "' must be C-contiguous");
        }
        if (!arr.writeable()) throw py::value_error(std::string(op) + ": argument '" + name + "' is read-only");
    }
    return arr;
}

template <typename T>
void adam_step_typed(py::array p, const py::array& g, py::array m, py::array v, const py::object& vmax_or_none,
                     const tinyae::AdamScalars& s, int threads) {
    const char* op = "adam_step";
    auto gc = contiguous<T>(op, "grad", g);  // the buffer the kernel reads: g itself, or a copy
    // The in-place arrays are written while the others are read: no two may share memory.
    std::vector<std::pair<const char*, py::array>> all = {{"param", p}, {"grad", gc}, {"exp_avg", m}, {"exp_avg_sq", v}};
    const bool amsgrad = !vmax_or_none.is_none();
    py::array vmax;  // (a default py::array is an empty array, not a null handle: test amsgrad instead)
    if (amsgrad) {
        vmax = py::reinterpret_borrow<py::array>(vmax_or_none);
        all.emplace_back("max_exp_avg_sq", vmax);
    }
    for (size_t a = 0; a < all.size(); ++a) {
        for (size_t b = a + 1; b < all.size(); ++b) {
            if (overlap(all[a].second, all[b].second)) {
                throw py::value_error(std::string(op) + ": arguments '" + all[a].first + "' and '" + all[b].first +
                                      "' share memory");
            }
        }
    }
    T* vm = amsgrad ? static_cast<T*>(vmax.mutable_data()) : nullptr;
    T* pp = static_cast<T*>(p.mutable_data());
    T* mp = static_cast<T*>(m.mutable_data());
    T* vp = static_cast<T*>(v.mutable_data());
    py::gil_scoped_release release;
    tinyae::adam_step<T>(pp, gc.data(), mp, vp, vm, p.size(), s, threads);
}

void adam_step(const py::object& param, const py::object& grad, const py::object& exp_avg,
               const py::object& exp_avg_sq, const py::object& max_exp_avg_sq, double beta1, double beta2,
               double step_size, double bias2_sqrt, double eps, double weight_decay, bool maximize, int threads) {
    const char* op = "adam_step";
    if (!py::isinstance<py::array>(param)) {
        throw py::type_error(std::string(op) + ": argument 'param' must be a NumPy array, got " +
                             std::string(py::str(py::type::of(param).attr("__name__"))));
    }
    auto p = py::reinterpret_borrow<py::array>(param);
    const DType dt = check_dtype(op, "param", p);
    inplace(op, "param", param, p);
    auto g = inplace(op, "grad", grad, p);
    auto m = inplace(op, "exp_avg", exp_avg, p);
    auto v = inplace(op, "exp_avg_sq", exp_avg_sq, p);
    if (!max_exp_avg_sq.is_none()) inplace(op, "max_exp_avg_sq", max_exp_avg_sq, p);
    const tinyae::AdamScalars s{beta1, beta2, step_size, bias2_sqrt, eps, weight_decay, maximize};
    if (dt == DType::f32) {
        adam_step_typed<float>(p, g, m, v, max_exp_avg_sq, s, threads);
    } else {
        adam_step_typed<double>(p, g, m, v, max_exp_avg_sq, s, threads);
    }
}


// `a` as sgemm can read it: aligned floats at whole-element strides and, for A (`rows_or_cols`),
// contiguous along its rows or its columns. Anything else is copied into a C-contiguous array.
py::array gemm_operand(const py::array& a, bool rows_or_cols) {
    const int64_t s0 = a.strides(0), s1 = a.strides(1);
    const bool aligned = reinterpret_cast<uintptr_t>(a.data()) % alignof(float) == 0 && s0 % 4 == 0 && s1 % 4 == 0;
    if (aligned && (!rows_or_cols || s0 == 4 || s1 == 4)) return a;
    return py::array(py::module_::import("numpy").attr("array")(a, py::arg("order") = "C"));  // a fresh copy
}

// Whether the byte ranges spanned by two arrays of any strides intersect.
bool spans_overlap(const py::array& a, const py::array& b) {
    if (a.size() == 0 || b.size() == 0) return false;
    auto span = [](const py::array& x) {
        const char* lo = static_cast<const char*>(x.data());
        const char* hi = lo + x.itemsize();
        for (py::ssize_t d = 0; d < x.ndim(); ++d) {
            const py::ssize_t reach = (x.shape(d) - 1) * x.strides(d);
            (reach < 0 ? lo : hi) += reach;
        }
        return std::pair<const char*, const char*>(lo, hi);
    };
    const auto [a0, a1] = span(a);
    const auto [b0, b1] = span(b);
    return a0 < b1 && b0 < a1;
}

py::array matmul_f32(const py::array& a, const py::array& b, const py::object& out, int threads) {
    const char* op = "matmul";
    for (const auto& [name, arr] : {std::pair<const char*, const py::array*>{"a", &a}, {"b", &b}}) {
        if (!arr->dtype().equal(py::dtype::of<float>())) {
            throw py::type_error(std::string(op) + ": argument '" + name + "' must have dtype float32, got " +
                                 std::string(py::str(arr->dtype())));
        }
        check_ndim(op, name, *arr, 2);
    }
    if (a.shape(1) != b.shape(0)) {
        throw py::value_error(std::string(op) + ": a " + shape_str(a.shape(), 2) + " and b " +
                              shape_str(b.shape(), 2) + " do not chain (a.shape[1] != b.shape[0])");
    }
    if (!tinyae::gemm_available()) throw std::runtime_error("matmul: this CPU has no AVX-512F (see gemm_supported)");
    const int64_t m = a.shape(0), k = a.shape(1), n = b.shape(1);
    const py::array a_read = gemm_operand(a, true), b_read = gemm_operand(b, false);
    const int64_t sa0 = a_read.strides(0) / 4, sa1 = a_read.strides(1) / 4;
    const int64_t sb0 = b_read.strides(0) / 4, sb1 = b_read.strides(1) / 4;
    py::array c;
    if (out.is_none()) {
        c = py::array_t<float>({m, n});
    } else {
        const int64_t dims[2] = {m, n};
        c = checked_out<float>(op, out, dims, "a", a);  // checks out against a's first m*k elements only:
        if (spans_overlap(c, a) || spans_overlap(c, b)) {   // a and b may be strided views
            throw py::value_error(std::string(op) + ": argument 'out' overlaps the memory of 'a' or 'b'");
        }
    }
    const auto* pa = static_cast<const float*>(a_read.data());
    const auto* pb = static_cast<const float*>(b_read.data());
    auto* pc = static_cast<float*>(c.mutable_data());
    {
        py::gil_scoped_release release;
        tinyae::sgemm(m, n, k, pa, sa0, sa1, pb, sb0, sb1, pc, n, threads);
    }
    return c;
}

// Leaky ReLU (ReLU: slope 0) and its gradient, float32 or float64, any shape.
template <typename T>
py::array leaky_relu_typed(const py::array& x, double slope, int threads) {
    const auto xc = contiguous<T>("leaky_relu", "x", x);
    py::array_t<T> y(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
    {
        py::gil_scoped_release release;
        tinyae::leaky_relu<T>(xc.data(), y.mutable_data(), xc.size(), static_cast<T>(slope), threads);
    }
    return y;
}

py::array leaky_relu(const py::array& x, double slope, int threads) {
    return check_dtype("leaky_relu", "x", x) == DType::f32 ? leaky_relu_typed<float>(x, slope, threads)
                                                          : leaky_relu_typed<double>(x, slope, threads);
}

template <typename T>
py::array leaky_relu_backward_typed(const py::array& a, const py::array& gy, double slope, int threads) {
    const auto ac = contiguous<T>("leaky_relu_backward", "a", a);
    const auto gc = contiguous<T>("leaky_relu_backward", "gy", gy);
    py::array_t<T> gx(std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim()));
    {
        py::gil_scoped_release release;
        tinyae::leaky_relu_backward<T>(ac.data(), gc.data(), gx.mutable_data(), ac.size(), static_cast<T>(slope),
                                       threads);
    }
    return gx;
}

py::array leaky_relu_backward(const py::array& a, const py::array& gy, double slope, int threads) {
    const char* op = "leaky_relu_backward";
    const DType t = check_dtype(op, "a", a);
    check_like(op, "gy", gy, "a", a);
    return t == DType::f32 ? leaky_relu_backward_typed<float>(a, gy, slope, threads)
                           : leaky_relu_backward_typed<double>(a, gy, slope, threads);
}
}  // namespace

PYBIND11_MODULE(_C, m) {
    m.doc() = "tinyae C++ kernels: im2col / col2im, a direct conv2d (float32, AVX-512), batch norm and Adam, "
              "run on a small thread pool.";
    m.def("im2col", &im2col, py::arg("x"), py::arg("geometry"), py::arg("out") = py::none(),
          py::arg("threads") = 0,
          "Unfold x (N, C, H, W) into columns (C, KH, KW, N, OH, OW), into `out` when given (returned).\n"
          "A non-contiguous x is copied once. At most `threads` threads (<= 0: all hardware threads).");
    m.def("col2im", &col2im, py::arg("col"), py::arg("output_size"), py::arg("geometry"),
          py::arg("out") = py::none(), py::arg("threads") = 0,
          "Fold columns (C, KH, KW, N, OH, OW) into an image (N, C, *output_size), summing overlaps.\n"
          "With `out` the image overwrites it (no accumulation) and `out` is returned.\n"
          "At most `threads` threads (<= 0: all hardware threads).");
    m.def("conv2d_direct", &conv2d_direct, py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("geometry"),
          py::arg("threads") = 0,
          "y = conv2d(x, weight) + bias for float32 x (N, C, H, W) and weight (C_out, C/groups, KH, KW), computed\n"
          "directly (no column buffer) with AVX-512; bias (C_out,) or None. RuntimeError on a CPU without\n"
          "AVX-512F (see conv2d_direct_supported). At most `threads` threads (<= 0: all hardware threads).");
    m.def("conv_transpose2d_direct", &conv_transpose2d_direct, py::arg("x"), py::arg("weight"), py::arg("bias"),
          py::arg("output_size"), py::arg("geometry"), py::arg("threads") = 0,
          "y = conv_transpose2d(x, weight) + bias, (N, C_out, *output_size), for float32 x (N, C, H, W) and weight\n"
          "(C, C_out/groups, KH, KW), dilation 1, computed directly (one stride-1 sum per output phase, no column\n"
          "buffer) with AVX-512; (H, W) must be the conv size of output_size. RuntimeError without AVX-512F.");
    m.def("conv2d_weight_grad_direct", &conv2d_weight_grad_direct, py::arg("x"), py::arg("gy"), py::arg("geometry"),
          py::arg("threads") = 0,
          "The weight gradient (C_out, C/groups, KH, KW) of conv2d(x, w) for the upstream gradient gy (N, C_out,\n"
          "OH, OW), float32, computed directly (no column buffer) with AVX-512. RuntimeError without AVX-512F.");
    m.def("conv2d_direct_supported", &tinyae::conv2d_direct_supported,
          "Whether conv2d_direct can run here: an x86-64 build and a CPU with AVX-512F.");
    m.attr("DIRECT_MAX_SCRATCH") = tinyae::kDirectMaxScratch;
    m.def("matmul", &matmul_f32, py::arg("a"), py::arg("b"), py::arg("out") = py::none(), py::arg("threads") = 0,
          "a @ b for float32 2-D a (M, K) and b (K, N) of any strides (a transposed view is read in place),\n"
          "with AVX-512 (RuntimeError without it: see gemm_supported); into `out` (M, N) when given. Each\n"
          "element is summed in the order of k, by one thread: the result does not depend on `threads`.");
    m.def("leaky_relu", &leaky_relu, py::arg("x"), py::arg("slope"), py::arg("threads") = 0,
          "y = x where x > 0, slope * x elsewhere (ReLU: slope 0), one pass; float32/float64, any shape.");
    m.def("leaky_relu_backward", &leaky_relu_backward, py::arg("a"), py::arg("gy"), py::arg("slope"),
          py::arg("threads") = 0,
          "gx = gy where a > 0, slope * gy elsewhere (a: the input, or the output when slope >= 0).");
    m.def("gemm_supported", &tinyae::gemm_available, "Whether matmul can run here: x86-64 and AVX-512F.");
    m.def("batch_norm_forward", &batch_norm_forward, py::arg("x"), py::arg("weight"), py::arg("bias"),
          py::arg("eps"), py::arg("threads") = 0,
          "Batch norm of x (N, C, L) with batch statistics: returns (y, mean, var, inv_std), the vectors (C,).\n"
          "weight and bias (C,) may be None.");
    m.def("batch_norm_backward", &batch_norm_backward, py::arg("x"), py::arg("gy"), py::arg("mean"),
          py::arg("inv_std"), py::arg("weight"), py::arg("need_gx") = true, py::arg("threads") = 0,
          "Gradients of batch_norm_forward for the upstream gradient gy (N, C, L): returns (gx, gw, gb);\n"
          "gx is None unless need_gx.");
    m.def("adam_step", &adam_step, py::arg("param"), py::arg("grad"), py::arg("exp_avg"), py::arg("exp_avg_sq"),
          py::arg("max_exp_avg_sq"), py::arg("beta1"), py::arg("beta2"), py::arg("step_size"),
          py::arg("bias2_sqrt"), py::arg("eps"), py::arg("weight_decay") = 0.0, py::arg("maximize") = false,
          py::arg("threads") = 0,
          "Adam's update of one parameter in place (param, exp_avg, exp_avg_sq and max_exp_avg_sq unless None):\n"
          "step_size = lr / (1 - beta1^k), bias2_sqrt = sqrt(1 - beta2^k). The arrays must not share memory.");
}
