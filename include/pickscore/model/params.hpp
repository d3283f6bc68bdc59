// pickscore/model/params.hpp — a model's parameters in one flat buffer, with named views.
//
// ParamStore lays every parameter tensor out in one flat buffer, in a fixed order, each starting
// on a 64-byte boundary; the gradients live in a second buffer with the same layout. So the
// optimizer and the global gradient norm can run over one flat tensor each, and zeroing the
// gradients is one fill. The gaps left by the alignment hold zeros in both buffers and stay zero
// under AdamW (a zero gradient, a zero weight and zero moments give a zero update) and add nothing
// to a norm; flat views include them, `num_parameters()` does not.
//
// Names and shapes are those of the checkpoint the model mirrors (Hugging Face `CLIPModel` for
// ClipModel), except that a scalar is stored with shape [1] (HF's `logit_scale` has shape []).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "../core/arena.hpp"
#include "../core/error.hpp"
#include "../core/shape.hpp"
#include "../core/tensor.hpp"
#include "../ops/elementwise.hpp"

namespace pickscore::model {

// One parameter (or gradient) tensor with its checkpoint name.
template <class T, class D = Cpu>
struct NamedTensor {
    std::string name;
    TensorView<T, D> view;
};

template <class T, class D = Cpu>
class ParamStore {
public:
    // Offsets are multiples of this many elements (64 bytes).
    static constexpr std::int64_t kAlign = std::int64_t(kArenaAlign / sizeof(T));

    ParamStore() = default;
    ParamStore(ParamStore&&) noexcept = default;
    ParamStore& operator=(ParamStore&&) noexcept = default;

    // Appends a tensor to the layout (before allocate()); returns its index. Names are unique.
    std::size_t add(std::string name, Shape shape) {
        require(values_.empty(), "ParamStore::add: '", name, "' added after the buffer was allocated");
        require(!find(name), "ParamStore::add: '", name, "' is already in the store");
        entries_.push_back({std::move(name), shape, total_});
        total_ += (shape.numel() + kAlign - 1) / kAlign * kAlign;
        return entries_.size() - 1;
    }

    // Allocates the value buffer and fills it with zeros (the alignment gaps must hold zeros).
    void allocate() {
        require(values_.empty(), "ParamStore::allocate: already allocated");
        values_ = Tensor<T, D>(Shape{total_});
        ops::fill(values_.view(), 0.0);
    }
    // Allocates the gradient buffer (zeros) unless it exists.
    void allocate_gradients() {
        if (!grads_.empty() || total_ == 0) return;
        grads_ = Tensor<T, D>(Shape{total_});
        ops::fill(grads_.view(), 0.0);
    }
    bool allocated() const { return !values_.empty() || total_ == 0; }
    bool has_gradients() const { return !grads_.empty(); }

    std::size_t size() const { return entries_.size(); }
    const std::string& name(std::size_t i) const { return entry(i).name; }
    const Shape& shape(std::size_t i) const { return entry(i).shape; }
    std::int64_t offset(std::size_t i) const { return entry(i).offset; }
    // Where tensor i's slot ends: its offset plus its size rounded up to the alignment (the next
    // tensor's offset, or flat_size() for the last), so the slots tile the flat buffers.
    std::int64_t end(std::size_t i) const {
        const Entry& e = entry(i);
        return e.offset + (e.shape.numel() + kAlign - 1) / kAlign * kAlign;
    }
    std::optional<std::size_t> find(const std::string& name) const {
        for (std::size_t i = 0; i < entries_.size(); ++i)
            if (entries_[i].name == name) return i;
        return std::nullopt;
    }

    TensorView<T, D> value(std::size_t i) const { return view_of(values_, i, "value"); }
    TensorView<T, D> gradient(std::size_t i) const { return view_of(grads_, i, "gradient"); }
    TensorView<T, D> value(const std::string& name) const { return value(index(name)); }
    TensorView<T, D> gradient(const std::string& name) const { return gradient(index(name)); }

    std::vector<NamedTensor<T, D>> values() const { return named(values_, "value"); }
    std::vector<NamedTensor<T, D>> gradients() const { return named(grads_, "gradient"); }
    TensorView<T, D> flat_values() const { return values_.view(); }
    TensorView<T, D> flat_gradients() const { return grads_.view(); }

    // Elements of all tensors together, without the alignment gaps.
    std::int64_t num_parameters() const {
        std::int64_t n = 0;
        for (const Entry& e : entries_) n += e.shape.numel();
        return n;
    }
    // Elements of the flat buffers, gaps included.
    std::int64_t flat_size() const { return total_; }

private:
    struct Entry {
        std::string name;
        Shape shape;
        std::int64_t offset;
    };
    const Entry& entry(std::size_t i) const {
        require<ShapeError>(i < entries_.size(), "ParamStore: index ", i, " out of range (", entries_.size(),
                            " tensors)");
        return entries_[i];
    }
    std::size_t index(const std::string& name) const {
        const auto i = find(name);
        require(i.has_value(), "ParamStore: no parameter named '", name, "'");
        return *i;
    }
    TensorView<T, D> view_of(const Tensor<T, D>& buffer, std::size_t i, const char* what) const {
        const Entry& e = entry(i);
        require(!buffer.empty(), "ParamStore: the ", what, " buffer of '", e.name, "' is not allocated");
        return TensorView<T, D>(buffer.data() + e.offset, e.shape);
    }
    std::vector<NamedTensor<T, D>> named(const Tensor<T, D>& buffer, const char* what) const {
        std::vector<NamedTensor<T, D>> out;
        out.reserve(entries_.size());
        for (std::size_t i = 0; i < entries_.size(); ++i) out.push_back({entries_[i].name, view_of(buffer, i, what)});
        return out;
    }

    std::vector<Entry> entries_;
    std::int64_t total_ = 0;
    Tensor<T, D> values_;
    Tensor<T, D> grads_;
};

}  // namespace pickscore::model
