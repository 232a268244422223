/* SPDX-License-Identifier: MIT */
/*
 * Context switch for x86-64 System V.
 *
 * Saved on the suspended stack, from high to low addresses: return address, rbp, rbx, r12-r15,
 * then one 8-byte slot holding MXCSR (low half) and the x87 control word (high half): all that
 * the ABI requires a callee to preserve. A fresh context is built by weft__ctx_make to look as if
 * it had been suspended right before `ret` into weft__ctx_trampoline, with the entry function in
 * r12 and its argument in r13.
 *
 * The control words are loaded only where the two contexts' differ: the program almost never
 * changes them, and ldmxcsr and fldcw each cost several cycles, on every switch, where a
 * compare of what was just saved with what is about to be loaded costs one.
 */
    .text
    .globl weft__ctx_switch
    .hidden weft__ctx_switch
    .type weft__ctx_switch, @function
    .p2align 4
weft__ctx_switch:
    .cfi_startproc
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movl (%rsp), %eax
    movzwl 4(%rsp), %ecx
    movq %rsp, (%rdi)
    movq (%rsi), %rsp
    cmpl (%rsp), %eax
    jne 1f
    cmpw 4(%rsp), %cx
    jne 1f
2:
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
1:
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    jmp 2b
    .cfi_endproc
    .size weft__ctx_switch, .-weft__ctx_switch

    .globl weft__ctx_trampoline
    .hidden weft__ctx_trampoline
    .type weft__ctx_trampoline, @function
    .p2align 4
weft__ctx_trampoline:
    .cfi_startproc
    .cfi_undefined rip
    xorl %ebp, %ebp
    movq %r13, %rdi
    callq *%r12
    ud2
    .cfi_endproc
    .size weft__ctx_trampoline, .-weft__ctx_trampoline

    .section .note.GNU-stack,"",@progbits
