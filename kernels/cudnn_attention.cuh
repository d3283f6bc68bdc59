// kernels/cudnn_attention.cuh — cuDNN's fused flash attention (bf16) through the cuDNN 9 backend
// graph API: the baseline for our kernels, selected with AttentionBackend::cudnn.
//
// There is no cudnn-frontend here, so the operation graphs are built directly with backend
// descriptors, op for op the way cudnn-frontend's SDPA nodes lower themselves (the runtime-fusion
// engines recognise that pattern):
//   forward:  S = Q·Kᵀ (matmul, f32) → ·scale → causal: BINARY_SELECT(S, lowest, row ≥ col) with
//             GEN_INDEX rows/cols → softmax with statistics: M = max, E = exp(S − M), Z = Σ E,
//             Stats = M + log Z (the natural log-sum-exp: our lse), P = E / Z (bf16) → O = P·V.
//   backward: Dsum = Σ_d dO∘O (f32, in scratch), S = Q·Kᵀ·scale − Stats → causal select → E = exp,
//             dV = Eᵀ·dO, dP = dO·Vᵀ, dS = (dP − Dsum)∘E·scale, dK = dSᵀ·Q, dQ_acc = dS·K (f32
//             scratch) → dQ = identity(dQ_acc).
// Q, K, V, O and the gradients keep our [B,T,H,Dh] layout (cuDNN's BSHD strides); Kᵀ and Vᵀ are
// the same memory with the last two strides swapped. Plans are built once per shape and device,
// with a cuDNN handle of this file's own (never destroyed, like the default context) whose
// stream is set to the current context's stream for each call (under a lock).
//
// Under PICKSCORE_CUDA_EMULATION cuDNN has handles only: every call throws pickscore::Error.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <pickscore/core/error.hpp>
#include <pickscore/core/tensor.hpp>
#include <pickscore/cuda/attention.hpp>
#include <pickscore/cuda/context.hpp>
#include <pickscore/cuda/libraries.hpp>
#include <pickscore/cuda/storage.hpp>

#include "common.cuh"

#if defined(PICKSCORE_CUDA_EMULATION)

namespace pickscore::cuda {

namespace detail {
[[noreturn]] inline void cudnn_attention_unavailable(const char* op) {
    fail<Error>(op, " with AttentionBackend::cudnn: cuDNN's fused attention is not available under the host emulation "
                    "(PICKSCORE_CUDA_EMULATION has cuDNN handles only); use AttentionBackend::flash");
}
}  // namespace detail

bool cudnn_attention_available() { return false; }

void cudnn_attention_forward(bf16*, float*, const bf16*, const bf16*, const bf16*, std::int64_t, std::int64_t,
                             std::int64_t, std::int64_t, std::int64_t, bool, double) {
    detail::cudnn_attention_unavailable("attention_forward");
}

void cudnn_attention_backward(bf16*, bf16*, bf16*, const bf16*, const bf16*, const bf16*, const bf16*, const bf16*,
                              const float*, std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t, bool,
                              double) {
    detail::cudnn_attention_unavailable("attention_backward");
}

}  // namespace pickscore::cuda

#else  // the real cuDNN

namespace pickscore::cuda::cudnn_sdpa {

// Throws CudaError naming the call, with cuDNN's own description of the last error when it has one.
inline void ok(cudnnStatus_t status, const char* what) {
    if (status == CUDNN_STATUS_SUCCESS) return;
    char message[1024] = {};
    cudnnGetLastErrorString(message, sizeof(message));
    const std::string call = message[0] ? pickscore::detail::concat(what, " (", message, ")") : std::string(what);
    check(status, call.c_str());
}

// The handle attributes of the operation graph and the execution plan are deprecated in recent
// cuDNN 9 releases (in favour of device-property descriptors that older releases lack) but work
// in every 9.x; they are named by value so that the deprecation does not become a warning.
inline constexpr auto kOperationGraphHandle = static_cast<cudnnBackendAttributeName_t>(800);
inline constexpr auto kExecutionPlanHandle = static_cast<cudnnBackendAttributeName_t>(400);

class Desc {
public:
    Desc(cudnnBackendDescriptorType_t type, const char* what) { ok(cudnnBackendCreateDescriptor(type, &d_), what); }
    ~Desc() {
        if (d_ != nullptr) (void)cudnnBackendDestroyDescriptor(d_);
    }
    Desc(const Desc&) = delete;
    Desc& operator=(const Desc&) = delete;
    cudnnBackendDescriptor_t get() const { return d_; }
    void set(cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type, std::int64_t count, const void* values,
             const char* what) {
        ok(cudnnBackendSetAttribute(d_, name, type, count, values), what);
    }
    void set(cudnnBackendAttributeName_t name, const Desc& other, const char* what) {
        const cudnnBackendDescriptor_t o = other.get();
        set(name, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &o, what);
    }
    void finalize(const char* what) { ok(cudnnBackendFinalize(d_), what); }

private:
    cudnnBackendDescriptor_t d_ = nullptr;
};

using Dims = std::array<std::int64_t, 4>;

struct TensorRef {
    const Desc* desc;
    std::int64_t uid;
};

// A finalized execution plan and every descriptor it was built from (kept alive with it).
struct Plan {
    std::vector<std::unique_ptr<Desc>> parts;
    std::unique_ptr<Desc> plan;
    std::int64_t workspace_bytes = 0;
    std::vector<std::pair<std::int64_t, float>> constants;  // by-value scalars (uid, value)
};

// Collects tensors and operations, then finds an engine for them.
class GraphBuilder {
public:
    explicit GraphBuilder(cudnnHandle_t handle) : handle_(handle) {}

    TensorRef tensor(std::int64_t uid, cudnnDataType_t type, const Dims& dims, const Dims& strides, bool is_virtual,
                     bool by_value = false) {
        Desc& t = make(CUDNN_BACKEND_TENSOR_DESCRIPTOR, "cudnnBackendCreateDescriptor(TENSOR)");
        const std::int64_t alignment = 16;
        const bool virt = is_virtual;
        t.set(CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &type, "tensor data type");
        t.set(CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dims.data(), "tensor dimensions");
        t.set(CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, strides.data(), "tensor strides");
        t.set(CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid, "tensor unique id");
        t.set(CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &alignment, "tensor byte alignment");
        t.set(CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &virt, "tensor is-virtual flag");
        if (by_value) {
            const bool yes = true;
            t.set(CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, 1, &yes, "tensor by-value flag");
        }
        t.finalize("cudnnBackendFinalize(TENSOR)");
        return {&t, uid};
    }
    // An intermediate tensor (virtual), with a fresh id.
    TensorRef virt(cudnnDataType_t type, const Dims& dims, const Dims& strides) {
        return tensor(next_uid_++, type, dims, strides, true);
    }
    // A scalar passed by value (f32, broadcast over every dimension).
    TensorRef scalar(std::int64_t uid, float value) {
        constants_.push_back({uid, value});
        return tensor(uid, CUDNN_DATA_FLOAT, {1, 1, 1, 1}, {1, 1, 1, 1}, false, true);
    }
    // A scalar whose value is given at each execution (the attention scale).
    TensorRef runtime_scalar(std::int64_t uid) { return tensor(uid, CUDNN_DATA_FLOAT, {1, 1, 1, 1}, {1, 1, 1, 1}, false, true); }

    // y = mode(x[, b][, t]); math in `precision`; axis for GEN_INDEX.
    void pointwise(cudnnPointwiseMode_t mode, TensorRef x, TensorRef y, const TensorRef* b = nullptr,
                   const TensorRef* t = nullptr, cudnnDataType_t precision = CUDNN_DATA_FLOAT, std::int64_t axis = -1) {
        Desc& pw = make(CUDNN_BACKEND_POINTWISE_DESCRIPTOR, "cudnnBackendCreateDescriptor(POINTWISE)");
        pw.set(CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode, "pointwise mode");
        pw.set(CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, 1, &precision, "pointwise math precision");
        if (axis >= 0) pw.set(CUDNN_ATTR_POINTWISE_AXIS, CUDNN_TYPE_INT64, 1, &axis, "pointwise axis");
        pw.finalize("cudnnBackendFinalize(POINTWISE)");
        Desc& op = make(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR, "cudnnBackendCreateDescriptor(OPERATION_POINTWISE)");
        op.set(CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, pw, "pointwise operation: descriptor");
        op.set(CUDNN_ATTR_OPERATION_POINTWISE_XDESC, *x.desc, "pointwise operation: x");
        if (b) op.set(CUDNN_ATTR_OPERATION_POINTWISE_BDESC, *b->desc, "pointwise operation: b");
        if (t) op.set(CUDNN_ATTR_OPERATION_POINTWISE_TDESC, *t->desc, "pointwise operation: t");
        op.set(CUDNN_ATTR_OPERATION_POINTWISE_YDESC, *y.desc, "pointwise operation: y");
        op.finalize("cudnnBackendFinalize(OPERATION_POINTWISE)");
        ops_.push_back(op.get());
    }
    void reduction(cudnnReduceTensorOp_t mode, TensorRef x, TensorRef y) {
        Desc& r = make(CUDNN_BACKEND_REDUCTION_DESCRIPTOR, "cudnnBackendCreateDescriptor(REDUCTION)");
        const cudnnDataType_t f32 = CUDNN_DATA_FLOAT;
        r.set(CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, 1, &mode, "reduction operator");
        r.set(CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &f32, "reduction compute type");
        r.finalize("cudnnBackendFinalize(REDUCTION)");
        Desc& op = make(CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR, "cudnnBackendCreateDescriptor(OPERATION_REDUCTION)");
        op.set(CUDNN_ATTR_OPERATION_REDUCTION_DESC, r, "reduction operation: descriptor");
        op.set(CUDNN_ATTR_OPERATION_REDUCTION_XDESC, *x.desc, "reduction operation: x");
        op.set(CUDNN_ATTR_OPERATION_REDUCTION_YDESC, *y.desc, "reduction operation: y");
        op.finalize("cudnnBackendFinalize(OPERATION_REDUCTION)");
        ops_.push_back(op.get());
    }
    void matmul(TensorRef a, TensorRef b, TensorRef c) {
        Desc& m = make(CUDNN_BACKEND_MATMUL_DESCRIPTOR, "cudnnBackendCreateDescriptor(MATMUL)");
        const cudnnDataType_t f32 = CUDNN_DATA_FLOAT;
        m.set(CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &f32, "matmul compute type");
        m.finalize("cudnnBackendFinalize(MATMUL)");
        Desc& op = make(CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR, "cudnnBackendCreateDescriptor(OPERATION_MATMUL)");
        op.set(CUDNN_ATTR_OPERATION_MATMUL_ADESC, *a.desc, "matmul operation: a");
        op.set(CUDNN_ATTR_OPERATION_MATMUL_BDESC, *b.desc, "matmul operation: b");
        op.set(CUDNN_ATTR_OPERATION_MATMUL_CDESC, *c.desc, "matmul operation: c");
        op.set(CUDNN_ATTR_OPERATION_MATMUL_DESC, m, "matmul operation: descriptor");
        op.finalize("cudnnBackendFinalize(OPERATION_MATMUL)");
        ops_.push_back(op.get());
    }
    void reshape(TensorRef x, TensorRef y) {
        Desc& op = make(CUDNN_BACKEND_OPERATION_RESHAPE_DESCRIPTOR, "cudnnBackendCreateDescriptor(OPERATION_RESHAPE)");
        op.set(CUDNN_ATTR_OPERATION_RESHAPE_XDESC, *x.desc, "reshape operation: x");
        op.set(CUDNN_ATTR_OPERATION_RESHAPE_YDESC, *y.desc, "reshape operation: y");
        op.finalize("cudnnBackendFinalize(OPERATION_RESHAPE)");
        ops_.push_back(op.get());
    }

    // The operation graph, the heuristics' engine configurations in order, and the first that
    // finalizes into an execution plan. `what` names the graph in errors.
    std::unique_ptr<Plan> build(const char* what) {
        Desc& graph = make(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR, "cudnnBackendCreateDescriptor(OPERATIONGRAPH)");
        graph.set(CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, std::int64_t(ops_.size()), ops_.data(),
                  "operation graph: operations");
        graph.set(kOperationGraphHandle, CUDNN_TYPE_HANDLE, 1, &handle_, "operation graph: handle");
        graph.finalize(pickscore::detail::concat("cudnnBackendFinalize(OPERATIONGRAPH) of ", what).c_str());

        std::string declined;
        for (cudnnBackendHeurMode_t mode : {CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_FALLBACK}) {
            Desc heur(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR, "cudnnBackendCreateDescriptor(ENGINEHEUR)");
            heur.set(CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, graph, "heuristics: operation graph");
            heur.set(CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode, "heuristics: mode");
            if (cudnnBackendFinalize(heur.get()) != CUDNN_STATUS_SUCCESS) continue;
            std::int64_t count = 0;
            if (cudnnBackendGetAttribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 0,
                                         &count, nullptr) != CUDNN_STATUS_SUCCESS ||
                count <= 0)
                continue;
            std::vector<std::unique_ptr<Desc>> configs;
            std::vector<cudnnBackendDescriptor_t> raw;
            for (std::int64_t i = 0; i < count; ++i) {
                configs.push_back(std::make_unique<Desc>(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR,
                                                         "cudnnBackendCreateDescriptor(ENGINECFG)"));
                raw.push_back(configs.back()->get());
            }
            std::int64_t got = 0;
            ok(cudnnBackendGetAttribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, count,
                                        &got, raw.data()),
               "heuristics: results");
            for (std::int64_t i = 0; i < got; ++i) {
                auto plan = std::make_unique<Desc>(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR,
                                                   "cudnnBackendCreateDescriptor(EXECUTION_PLAN)");
                plan->set(kExecutionPlanHandle, CUDNN_TYPE_HANDLE, 1, &handle_, "execution plan: handle");
                plan->set(CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, *configs[std::size_t(i)], "execution plan: engine");
                const cudnnStatus_t s = cudnnBackendFinalize(plan->get());
                if (s != CUDNN_STATUS_SUCCESS) {
                    declined = cudnnGetErrorString(s);
                    continue;
                }
                auto result = std::make_unique<Plan>();
                ok(cudnnBackendGetAttribute(plan->get(), CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64, 1,
                                            &got, &result->workspace_bytes),
                   "execution plan: workspace size");
                result->plan = std::move(plan);
                for (auto& c : configs) parts_.push_back(std::move(c));
                result->parts = std::move(parts_);
                result->constants = std::move(constants_);
                return result;
            }
        }
        fail<Error>("cuDNN offers no engine for ", what, declined.empty() ? "" : " (last engine declined with ",
                    declined, declined.empty() ? "" : ")");
    }

private:
    Desc& make(cudnnBackendDescriptorType_t type, const char* what) {
        parts_.push_back(std::make_unique<Desc>(type, what));
        return *parts_.back();
    }

    cudnnHandle_t handle_;
    std::vector<std::unique_ptr<Desc>> parts_;
    std::vector<cudnnBackendDescriptor_t> ops_;
    std::vector<std::pair<std::int64_t, float>> constants_;
    std::int64_t next_uid_ = 1000;
};

// Tensor ids of the graphs' inputs and outputs.
enum Uid : std::int64_t {
    kQ = 1, kK, kV, kO, kStats, kScale, kLowest, kOne, kdO, kdQ, kdK, kdV, kSoftmaxSum, kdQAccum
};

struct Shape4 {
    std::int64_t B, Tq, Tk, H, D;
    Dims q_dims() const { return {B, H, Tq, D}; }
    Dims q_strides() const { return {Tq * H * D, D, H * D, 1}; }   // [B,Tq,H,D] memory
    Dims k_dims() const { return {B, H, Tk, D}; }
    Dims k_strides() const { return {Tk * H * D, D, H * D, 1}; }
    Dims kt_dims() const { return {B, H, D, Tk}; }                 // Kᵀ: the same memory
    Dims kt_strides() const { return {Tk * H * D, D, 1, H * D}; }
    Dims s_dims() const { return {B, H, Tq, Tk}; }
    Dims s_strides() const { return {H * Tq * Tk, Tq * Tk, Tk, 1}; }
    Dims st_dims() const { return {B, H, Tk, Tq}; }                // Sᵀ of the packed S
    Dims st_strides() const { return {H * Tq * Tk, Tq * Tk, 1, Tk}; }
    Dims row_dims() const { return {B, H, Tq, 1}; }                // Stats: our lse [B,H,Tq]
    Dims row_strides() const { return {H * Tq, Tq, 1, 1}; }
};

// S (f32, virtual) with the causal mask applied when asked: BINARY_SELECT(S, lowest, row ≥ col).
inline TensorRef causal_select(GraphBuilder& g, const Shape4& s, TensorRef scores) {
    const TensorRef row = g.virt(CUDNN_DATA_INT32, s.s_dims(), s.s_strides());
    const TensorRef col = g.virt(CUDNN_DATA_INT32, s.s_dims(), s.s_strides());
    g.pointwise(CUDNN_POINTWISE_GEN_INDEX, scores, row, nullptr, nullptr, CUDNN_DATA_FLOAT, 2);
    g.pointwise(CUDNN_POINTWISE_GEN_INDEX, scores, col, nullptr, nullptr, CUDNN_DATA_FLOAT, 3);
    const TensorRef keep = g.virt(CUDNN_DATA_BOOLEAN, s.s_dims(), s.s_strides());
    g.pointwise(CUDNN_POINTWISE_CMP_GE, row, keep, &col, nullptr, CUDNN_DATA_BOOLEAN);
    const TensorRef lowest = g.scalar(kLowest, std::numeric_limits<float>::lowest());
    const TensorRef out = g.virt(CUDNN_DATA_FLOAT, s.s_dims(), s.s_strides());
    g.pointwise(CUDNN_POINTWISE_BINARY_SELECT, scores, out, &lowest, &keep);
    return out;
}

inline std::unique_ptr<Plan> forward_plan(cudnnHandle_t handle, const Shape4& s, bool causal, bool with_stats) {
    GraphBuilder g(handle);
    const TensorRef q = g.tensor(kQ, CUDNN_DATA_BFLOAT16, s.q_dims(), s.q_strides(), false);
    const TensorRef kt = g.tensor(kK, CUDNN_DATA_BFLOAT16, s.kt_dims(), s.kt_strides(), false);
    const TensorRef v = g.tensor(kV, CUDNN_DATA_BFLOAT16, s.k_dims(), s.k_strides(), false);
    const TensorRef o = g.tensor(kO, CUDNN_DATA_BFLOAT16, s.q_dims(), s.q_strides(), false);
    const TensorRef stats = g.tensor(kStats, CUDNN_DATA_FLOAT, s.row_dims(), s.row_strides(), !with_stats);
    const TensorRef scale = g.runtime_scalar(kScale);

    const TensorRef raw = g.virt(CUDNN_DATA_FLOAT, s.s_dims(), s.s_strides());
    g.matmul(q, kt, raw);
    TensorRef scores = g.virt(CUDNN_DATA_FLOAT, s.s_dims(), s.s_strides());
    g.pointwise(CUDNN_POINTWISE_MUL, raw, scores, &scale);
    if (causal) scores = causal_select(g, s, scores);
    // softmax with statistics
    const TensorRef m = g.virt(CUDNN_DATA_FLOAT, s.row_dims(), s.row_strides());
    g.reduction(CUDNN_REDUCE_TENSOR_MAX, scores, m);
    const TensorRef shifted = g.virt(CUDNN_DATA_FLOAT, s.s_dims(), s.s_strides());
    g.pointwise(CUDNN_POINTWISE_SUB, scores, shifted, &m);
    const TensorRef e = g.virt(CUDNN_DATA_FLOAT, s.s_dims(), s.s_strides());
    g.pointwise(CUDNN_POINTWISE_EXP, shifted, e);
    const TensorRef z = g.virt(CUDNN_DATA_FLOAT, s.row_dims(), s.row_strides());
    g.reduction(CUDNN_REDUCE_TENSOR_ADD, e, z);
    const TensorRef log_z = g.virt(CUDNN_DATA_FLOAT, s.row_dims(), s.row_strides());
    g.pointwise(CUDNN_POINTWISE_LOG, z, log_z);
    g.pointwise(CUDNN_POINTWISE_ADD, m, stats, &log_z);
    const TensorRef p = g.virt(CUDNN_DATA_BFLOAT16, s.s_dims(), s.s_strides());  // bmm2 takes P in the I/O type
    g.pointwise(CUDNN_POINTWISE_DIV, e, p, &z);
    g.matmul(p, v, o);
    return g.build(causal ? "the causal SDPA forward graph" : "the SDPA forward graph");
}

inline std::unique_ptr<Plan> backward_plan(cudnnHandle_t handle, const Shape4& s, bool causal) {
    GraphBuilder g(handle);
    const TensorRef q = g.tensor(kQ, CUDNN_DATA_BFLOAT16, s.q_dims(), s.q_strides(), false);
    const TensorRef kt = g.tensor(kK, CUDNN_DATA_BFLOAT16, s.kt_dims(), s.kt_strides(), false);
    const TensorRef vt = g.tensor(kV, CUDNN_DATA_BFLOAT16, s.kt_dims(), s.kt_strides(), false);
    const TensorRef o = g.tensor(kO, CUDNN_DATA_BFLOAT16, s.q_dims(), s.q_strides(), false);
    const TensorRef d_o = g.tensor(kdO, CUDNN_DATA_BFLOAT16, s.q_dims(), s.q_strides(), false);
    const TensorRef stats = g.tensor(kStats, CUDNN_DATA_FLOAT, s.row_dims(), s.row_strides(), false);
    const TensorRef dq = g.tensor(kdQ, CUDNN_DATA_BFLOAT16, s.q_dims(), s.q_strides(), false);
    const TensorRef dk = g.tensor(kdK, CUDNN_DATA_BFLOAT16, s.k_dims(), s.k_strides(), false);
    const TensorRef dv = g.tensor(kdV, CUDNN_DATA_BFLOAT16, s.k_dims(), s.k_strides(), false);
    const TensorRef scale = g.runtime_scalar(kScale);
    const TensorRef one = g.scalar(kOne, 1.0f);
    const TensorRef softmax_sum = g.tensor(kSoftmaxSum, CUDNN_DATA_FLOAT, s.row_dims(), s.row_strides(), false);
    const TensorRef dq_acc = g.tensor(kdQAccum, CUDNN_DATA_FLOAT, s.q_dims(),
                                      {s.H * s.Tq * s.D, s.Tq * s.D, s.D, 1}, false);

    // softmax_sum = Σ_d dO ∘ O
    const TensorRef d_o_o = g.virt(CUDNN_DATA_FLOAT, s.q_dims(), {s.H * s.Tq * s.D, s.Tq * s.D, s.H * s.D, 1});
    g.pointwise(CUDNN_POINTWISE_MUL, d_o, d_o_o, &o);
    const TensorRef row_sum = g.virt(CUDNN_DATA_FLOAT, s.row_dims(), s.row_strides());
    g.reduction(CUDNN_REDUCE_TENSOR_ADD, d_o_o, row_sum);
    g.pointwise(CUDNN_POINTWISE_MUL, row_sum, softmax_sum, &one);
    // E = exp(scale·Q Kᵀ − Stats), masked
    const TensorRef raw = g.virt(CUDNN_DATA_FLOAT, s.s_dims(), s.s_strides());
    g.matmul(q, kt, raw);
    const TensorRef scaled = g.virt(CUDNN_DATA_FLOAT, s.s_dims(), s.s_strides());
    g.pointwise(CUDNN_POINTWISE_MUL, raw, scaled, &scale);
    TensorRef shifted = g.virt(CUDNN_DATA_FLOAT, s.s_dims(), s.s_strides());
    g.pointwise(CUDNN_POINTWISE_SUB, scaled, shifted, &stats);
    if (causal) shifted = causal_select(g, s, shifted);
    const TensorRef e = g.virt(CUDNN_DATA_FLOAT, s.s_dims(), s.s_strides());
    g.pointwise(CUDNN_POINTWISE_EXP, shifted, e);
    // dV = Eᵀ dO
    const TensorRef et = g.virt(CUDNN_DATA_BFLOAT16, s.st_dims(), s.st_strides());
    g.reshape(e, et);
    g.matmul(et, d_o, dv);
    // dS = (dO Vᵀ − softmax_sum) ∘ E · scale
    const TensorRef dp = g.virt(CUDNN_DATA_FLOAT, s.s_dims(), s.s_strides());
    g.matmul(d_o, vt, dp);
    const TensorRef dp1 = g.virt(CUDNN_DATA_FLOAT, s.s_dims(), s.s_strides());
    g.pointwise(CUDNN_POINTWISE_MUL, dp, dp1, &one);
    const TensorRef dp2 = g.virt(CUDNN_DATA_FLOAT, s.s_dims(), s.s_strides());
    g.pointwise(CUDNN_POINTWISE_SUB, dp1, dp2, &softmax_sum);
    const TensorRef ds0 = g.virt(CUDNN_DATA_FLOAT, s.s_dims(), s.s_strides());
    g.pointwise(CUDNN_POINTWISE_MUL, dp2, ds0, &e);
    const TensorRef ds = g.virt(CUDNN_DATA_FLOAT, s.s_dims(), s.s_strides());
    g.pointwise(CUDNN_POINTWISE_MUL, ds0, ds, &scale);
    // dK = dSᵀ Q
    const TensorRef dst = g.virt(CUDNN_DATA_BFLOAT16, s.st_dims(), s.st_strides());
    g.reshape(ds, dst);
    g.matmul(dst, q, dk);
    // dQ = dS K, accumulated in f32
    const TensorRef k = g.virt(CUDNN_DATA_FLOAT, s.k_dims(), s.k_strides());
    g.reshape(kt, k);
    g.matmul(ds, k, dq_acc);
    g.pointwise(CUDNN_POINTWISE_IDENTITY, dq_acc, dq);
    return g.build(causal ? "the causal SDPA backward graph" : "the SDPA backward graph");
}

// Plans and the handle they run on, per device.
struct DeviceState {
    cudnnHandle_t handle = nullptr;
    std::mutex m;
    std::map<std::tuple<int, bool, bool, std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t>,
             std::unique_ptr<Plan>>
        plans;  // key: (kind, causal, with_stats, B, Tq, Tk, H, D)
};

inline DeviceState& device_state() {
    static std::mutex m;
    static std::map<int, std::unique_ptr<DeviceState>>* states = new std::map<int, std::unique_ptr<DeviceState>>();
    int device = 0;
    check(cudaGetDevice(&device), "cudaGetDevice");
    std::lock_guard<std::mutex> lk(m);
    std::unique_ptr<DeviceState>& s = (*states)[device];
    if (!s) {
        auto fresh = std::make_unique<DeviceState>();
        ok(cudnnCreate(&fresh->handle), "cudnnCreate");
        s = std::move(fresh);
    }
    return *s;
}

// Runs `plan` on the current context's stream with the given tensors bound (uid, device pointer).
inline void execute(DeviceState& st, const Plan& plan, std::vector<std::pair<std::int64_t, void*>> bindings,
                    float scale) {
    Tensor<float, Cuda> workspace(Shape{(plan.workspace_bytes + 3) / 4});
    std::vector<float> values;  // the by-value scalars (stable storage for the pointers)
    values.reserve(plan.constants.size() + 1);
    values.push_back(scale);
    bindings.push_back({kScale, &values.back()});
    for (const auto& [uid, value] : plan.constants) {
        values.push_back(value);
        bindings.push_back({uid, &values.back()});
    }
    std::vector<std::int64_t> uids;
    std::vector<void*> pointers;
    for (const auto& [uid, ptr] : bindings) {
        uids.push_back(uid);
        pointers.push_back(ptr);
    }
    void* ws = plan.workspace_bytes > 0 ? static_cast<void*>(workspace.data()) : nullptr;
    Desc pack(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, "cudnnBackendCreateDescriptor(VARIANT_PACK)");
    pack.set(CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, std::int64_t(uids.size()), uids.data(),
             "variant pack: ids");
    pack.set(CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, std::int64_t(pointers.size()), pointers.data(),
             "variant pack: pointers");
    pack.set(CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &ws, "variant pack: workspace");
    pack.finalize("cudnnBackendFinalize(VARIANT_PACK)");
    ok(cudnnSetStream(st.handle, current().stream()), "cudnnSetStream");
    ok(cudnnBackendExecute(st.handle, plan.plan->get(), pack.get()), "cudnnBackendExecute");
}

inline void check_supported(const char* op, std::int64_t Dh, std::initializer_list<const void*> pointers) {
    require<Error>(Dh % 8 == 0 && Dh <= 256, op, " with AttentionBackend::cudnn: head dim ", Dh,
                   " is not supported by cuDNN's fused attention (a multiple of 8, at most 256)");
    for (const void* p : pointers)
        require<Error>(reinterpret_cast<std::uintptr_t>(p) % 16 == 0, op,
                       " with AttentionBackend::cudnn: every tensor must be 16-byte aligned");
}

}  // namespace pickscore::cuda::cudnn_sdpa

namespace pickscore::cuda {

bool cudnn_attention_available() { return true; }

void cudnn_attention_forward(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v, std::int64_t B,
                             std::int64_t Tq, std::int64_t Tk, std::int64_t H, std::int64_t Dh, bool causal,
                             double scale) {
    using namespace cudnn_sdpa;
    check_supported("attention_forward", Dh, {out, q, k, v});
    if (B * H == 0 || Tq == 0) return;
    DeviceState& st = device_state();
    std::lock_guard<std::mutex> lk(st.m);
    const bool with_stats = lse != nullptr;
    auto& plan = st.plans[{0, causal, with_stats, B, Tq, Tk, H, Dh}];
    if (!plan) plan = forward_plan(st.handle, Shape4{B, Tq, Tk, H, Dh}, causal, with_stats);
    std::vector<std::pair<std::int64_t, void*>> bind = {
        {kQ, const_cast<bf16*>(q)}, {kK, const_cast<bf16*>(k)}, {kV, const_cast<bf16*>(v)}, {kO, out}};
    if (with_stats) bind.push_back({kStats, lse});
    execute(st, *plan, std::move(bind), float(scale));
}

void cudnn_attention_backward(bf16* dq, bf16* dk, bf16* dv, const bf16* dout, const bf16* q, const bf16* k,
                              const bf16* v, const bf16* out, const float* lse, std::int64_t B, std::int64_t Tq,
                              std::int64_t Tk, std::int64_t H, std::int64_t Dh, bool causal, double scale) {
    using namespace cudnn_sdpa;
    check_supported("attention_backward", Dh, {dq, dk, dv, dout, q, k, v, out});
    if (B * H == 0) return;
    if (Tq == 0) {  // no queries: the key gradients are zero
        check(cudaMemsetAsync(dk, 0, std::size_t(B * Tk * H * Dh) * sizeof(bf16), current().stream()), "cudaMemsetAsync");
        check(cudaMemsetAsync(dv, 0, std::size_t(B * Tk * H * Dh) * sizeof(bf16), current().stream()), "cudaMemsetAsync");
        return;
    }
    DeviceState& st = device_state();
    std::lock_guard<std::mutex> lk(st.m);
    auto& plan = st.plans[{1, causal, true, B, Tq, Tk, H, Dh}];
    if (!plan) plan = backward_plan(st.handle, Shape4{B, Tq, Tk, H, Dh}, causal);
    Tensor<float, Cuda> softmax_sum(Shape{B * H * Tq}), dq_acc(Shape{B * H * Tq * Dh});
    // cuDNN before 9.6 expects the dQ accumulator zeroed by the caller (later releases clear it).
    if (cudnnGetVersion() < 90600) zero(dq_acc.view());
    std::vector<std::pair<std::int64_t, void*>> bind = {
        {kQ, const_cast<bf16*>(q)},    {kK, const_cast<bf16*>(k)},        {kV, const_cast<bf16*>(v)},
        {kO, const_cast<bf16*>(out)},  {kdO, const_cast<bf16*>(dout)},    {kStats, const_cast<float*>(lse)},
        {kdQ, dq},                     {kdK, dk},                         {kdV, dv},
        {kSoftmaxSum, softmax_sum.data()}, {kdQAccum, dq_acc.data()}};
    execute(st, *plan, std::move(bind), float(scale));
}

}  // namespace pickscore::cuda

#endif  // PICKSCORE_CUDA_EMULATION
