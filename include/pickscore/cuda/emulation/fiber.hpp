// pickscore/cuda/emulation/fiber.hpp — the user-space context switch under the emulated GPU
// threads: every thread of a block is a fiber with its own small stack, and all fibers of a block
// run on one OS thread, switching only at barriers and warp-collective operations.
//
// On x86-64 the switch is a dozen instructions of assembly (callee-saved registers, the x87
// control word and MXCSR; the System V ABI makes everything else caller-saved). It is emitted
// as a weak symbol in a COMDAT section, so this header can be included in any number of
// translation units, like an inline function. Elsewhere (or with PICKSCORE_EMU_UCONTEXT defined)
// the portable but slower ucontext switch is used (it makes a system call per switch).
//
// Stacks are mmap'ed with a PROT_NONE guard page below them, so an overflowing kernel crashes
// at once instead of corrupting a neighbour. AddressSanitizer is told about every switch.
// pickscore-requires: pickscore::cuda_emulation
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <new>

#include "../../core/error.hpp"

#if !defined(__x86_64__) && !defined(PICKSCORE_EMU_UCONTEXT)
#define PICKSCORE_EMU_UCONTEXT 1
#endif
#if defined(PICKSCORE_EMU_UCONTEXT)
#include <ucontext.h>
#endif

#if defined(__SANITIZE_ADDRESS__)
#define PICKSCORE_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PICKSCORE_EMU_ASAN 1
#endif
#endif
#if defined(PICKSCORE_EMU_ASAN)
extern "C" {
void __sanitizer_start_switch_fiber(void** fake_stack_save, const void* bottom, std::size_t size);
void __sanitizer_finish_switch_fiber(void* fake_stack_save, const void** bottom_old, std::size_t* size_old);
void __asan_unpoison_memory_region(void const volatile* addr, std::size_t size);
}
#endif

#if !defined(PICKSCORE_EMU_UCONTEXT)
// pickscore_emu_switch(save, next): pushes the callee-saved state, stores the stack pointer in
// *save, loads `next` as the stack pointer and pops the state saved there.
// pickscore_emu_fiber_start: where a fresh fiber begins; r12 holds the argument, r13 the entry.
extern "C" __attribute__((visibility("hidden"))) void pickscore_emu_switch(void** save, void* next);
extern "C" __attribute__((visibility("hidden"))) void pickscore_emu_fiber_start();
asm(R"(
    .pushsection .text.pickscore_emu_switch,"axG",@progbits,pickscore_emu_switch,comdat
    .weak pickscore_emu_switch
    .hidden pickscore_emu_switch
    .type pickscore_emu_switch,@function
pickscore_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $16, %rsp
    stmxcsr 8(%rsp)
    fnstcw (%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    fldcw (%rsp)
    ldmxcsr 8(%rsp)
    addq $16, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size pickscore_emu_switch, .-pickscore_emu_switch
    .popsection

    .pushsection .text.pickscore_emu_fiber_start,"axG",@progbits,pickscore_emu_fiber_start,comdat
    .weak pickscore_emu_fiber_start
    .hidden pickscore_emu_fiber_start
    .type pickscore_emu_fiber_start,@function
pickscore_emu_fiber_start:
    andq $-16, %rsp
    movq %r12, %rdi
    callq *%r13
    ud2
    .size pickscore_emu_fiber_start, .-pickscore_emu_fiber_start
    .popsection
)");
#endif

namespace pickscore::cuda::emu::detail {

// A fiber stack: `size` usable bytes above one guard page.
class FiberStack {
public:
    FiberStack() = default;
    explicit FiberStack(std::size_t size) {
        const std::size_t page = std::size_t(::sysconf(_SC_PAGESIZE));
        size_ = (size + page - 1) / page * page;
        guard_ = page;
        void* p = ::mmap(nullptr, size_ + guard_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                         -1, 0);
        if (p == MAP_FAILED) fail("CUDA emulation: cannot map a fiber stack of ", size_, " bytes");
        ::mprotect(p, guard_, PROT_NONE);
        base_ = static_cast<std::byte*>(p);
    }
    FiberStack(FiberStack&& o) noexcept { swap(o); }
    FiberStack& operator=(FiberStack&& o) noexcept {
        swap(o);
        return *this;
    }
    FiberStack(const FiberStack&) = delete;
    FiberStack& operator=(const FiberStack&) = delete;
    ~FiberStack() {
        if (base_) ::munmap(base_, size_ + guard_);
    }

    std::byte* bottom() const { return base_ + guard_; }  // lowest usable address
    std::byte* top() const { return base_ + guard_ + size_; }
    std::size_t size() const { return size_; }

private:
    void swap(FiberStack& o) noexcept {
        std::swap(base_, o.base_);
        std::swap(size_, o.size_);
        std::swap(guard_, o.guard_);
    }
    std::byte* base_ = nullptr;
    std::size_t size_ = 0;
    std::size_t guard_ = 0;
};

// The saved state of a suspended fiber (or of the scheduler that resumes fibers).
struct FiberContext {
#if defined(PICKSCORE_EMU_UCONTEXT)
    ucontext_t uc;
#else
    void* sp = nullptr;
#endif
    // The stack this context runs on (null for the OS thread's own stack), for the sanitizer.
    const void* stack_bottom = nullptr;
    std::size_t stack_size = 0;
#if defined(PICKSCORE_EMU_ASAN)
    void* fake_stack = nullptr;
#endif
};

#if defined(PICKSCORE_EMU_UCONTEXT)
extern "C" inline void pickscore_emu_ucontext_entry(unsigned hi_fn, unsigned lo_fn, unsigned hi_arg, unsigned lo_arg) {
    auto fn = reinterpret_cast<void (*)(void*)>((std::uintptr_t(hi_fn) << 32) | lo_fn);
    auto arg = reinterpret_cast<void*>((std::uintptr_t(hi_arg) << 32) | lo_arg);
    fn(arg);
}
#endif

// Prepares `ctx` so that the first switch to it calls entry(arg) on `stack`. entry must never
// return: it ends by switching away for the last time. `color` staggers where the stack starts
// within its page (by color % 64 cache lines), so that the hot top frames of many fibers do not
// all fall into the same cache sets.
inline void make_fiber(FiberContext& ctx, FiberStack& stack, void (*entry)(void*), void* arg, unsigned color = 0) {
    ctx.stack_bottom = stack.bottom();
    ctx.stack_size = stack.size();
#if defined(PICKSCORE_EMU_ASAN)
    // A reused stack still carries the redzones of the frames its last fiber left behind.
    __asan_unpoison_memory_region(stack.bottom(), stack.size());
#endif
#if defined(PICKSCORE_EMU_UCONTEXT)
    getcontext(&ctx.uc);
    ctx.uc.uc_stack.ss_sp = stack.bottom();
    ctx.uc.uc_stack.ss_size = stack.size() - (color % 64) * 64;
    ctx.uc.uc_link = nullptr;
    const auto f = reinterpret_cast<std::uintptr_t>(entry);
    const auto a = reinterpret_cast<std::uintptr_t>(arg);
    makecontext(&ctx.uc, reinterpret_cast<void (*)()>(&pickscore_emu_ucontext_entry), 4, unsigned(f >> 32),
                unsigned(f & 0xffffffffu), unsigned(a >> 32), unsigned(a & 0xffffffffu));
#else
    // The frame pickscore_emu_switch pops: x87 control word and MXCSR (16 bytes), r15, r14, r13,
    // r12, rbx, rbp, then the return address.
    auto* top = reinterpret_cast<std::uint64_t*>((reinterpret_cast<std::uintptr_t>(stack.top()) - (color % 64) * 64) &
                                                 ~std::uintptr_t(15));
    std::uint64_t* sp = top - 10;
    sp[0] = 0x037F;  // x87 control word: default precision and rounding, all exceptions masked
    sp[1] = 0x1F80;  // MXCSR: round to nearest, all exceptions masked
    sp[2] = 0;       // r15
    sp[3] = 0;       // r14
    sp[4] = reinterpret_cast<std::uint64_t>(entry);  // r13
    sp[5] = reinterpret_cast<std::uint64_t>(arg);    // r12
    sp[6] = 0;                                       // rbx
    sp[7] = 0;                                       // rbp
    sp[8] = reinterpret_cast<std::uint64_t>(&pickscore_emu_fiber_start);
    sp[9] = 0;
    ctx.sp = sp;
#endif
}

// Saves the running context into `from` and resumes `to`. `final` says that `from` will never
// be resumed (its stack may be reused), which the sanitizer needs to know.
inline void switch_fiber(FiberContext& from, FiberContext& to, bool final = false) {
#if defined(PICKSCORE_EMU_ASAN)
    __sanitizer_start_switch_fiber(final ? nullptr : &from.fake_stack, to.stack_bottom, to.stack_size);
#else
    (void)final;
#endif
#if defined(PICKSCORE_EMU_UCONTEXT)
    swapcontext(&from.uc, &to.uc);
#else
    pickscore_emu_switch(&from.sp, to.sp);
#endif
#if defined(PICKSCORE_EMU_ASAN)
    __sanitizer_finish_switch_fiber(from.fake_stack, nullptr, nullptr);
#endif
}

// Called first thing on a fresh fiber (the switch into it did not return through switch_fiber).
// Records the bounds of the stack that switched to it, so the way back is described correctly.
inline void fiber_started([[maybe_unused]] FiberContext& resumer) {
#if defined(PICKSCORE_EMU_ASAN)
    const void* bottom = nullptr;
    std::size_t size = 0;
    __sanitizer_finish_switch_fiber(nullptr, &bottom, &size);
    resumer.stack_bottom = bottom;
    resumer.stack_size = size;
#endif
}

}  // namespace pickscore::cuda::emu::detail
