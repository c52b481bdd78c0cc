; lab-dirty: a tiny multiboot (v1) kernel that keeps dirtying guest memory at
; a paced rate, so a bandwidth-limited live migration has real work to do.
;
; Why a flat binary with the multiboot "a.out kludge" (flag bit 16): QEMU's
; -kernel loader (libvirt <os><kernel>) takes it directly and nasm alone
; builds it; no ELF toolchain needed.
;
; Why long mode: the loader enters in 32-bit protected mode with paging off.
; Some nested KVM flavours (kvm_pvm, seen on the lab machine) reset the guest
; when it turns on 32-bit paging; 4-level paging works everywhere.
;
; Behaviour:
;   1. parse "rate_kib=<n>" from the multiboot command line (libvirt
;      <cmdline>): the dirty rate in KiB/s (0 = fill once, then only idle);
;   2. make every page of REGION_SIZE bytes at REGION_BASE non-zero, so the
;      first migration pass really copies them (zero pages cost nothing);
;   3. program PIT channel 0 at ~1 kHz, unmask only IRQ0 and `hlt` between
;      ticks, so the vCPU idles instead of spinning on a 2-core host;
;   4. on every tick, credit rate_kib to an accumulator and write one dword
;      into each of acc/4000 pages (4 KiB a page, 1000 ticks a second),
;      walking the region cyclically. One write per page is enough: dirty
;      tracking works per page and a dirty page is re-sent in full.
; COM1 gets a boot line and a "." per 1000 ticks, for debugging.

BITS 32
ORG 0x100000                    ; loaded at 1 MiB

REGION_BASE  equ 0x01000000     ; 16 MiB (the guest has 128 MiB)
REGION_SIZE  equ 48 * 1024 * 1024
COM1         equ 0x3F8
PIT_DIVISOR  equ 1193           ; 1193182 Hz / 1193 = ~1000 Hz

MB_MAGIC     equ 0x1BADB002
MB_FLAGS     equ 0x00010000     ; the address fields below are valid
mb_header:
    dd MB_MAGIC
    dd MB_FLAGS
    dd -(MB_MAGIC + MB_FLAGS)
    dd mb_header                ; header_addr
    dd mb_header                ; load_addr (the file starts with the header)
    dd data_end                 ; load_end_addr
    dd bss_end                  ; bss_end_addr (QEMU zeroes up to here)
    dd entry                    ; entry_addr

entry:
    cli
    mov esp, stack_top
    mov [mbi], ebx
    lgdt [gdt_desc]             ; the loader's GDT is not ours to trust
    jmp 0x08:.flat
.flat:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    ; identity-map the first 1 GiB with 2 MiB pages (tables are in .bss,
    ; already zeroed by the loader)
    mov dword [pml4], pdpt + 3
    mov dword [pdpt], page_dir + 3
    mov edi, page_dir
    mov eax, 0x83               ; present, writable, 2 MiB page
    mov ecx, 512
.pde:
    mov [edi], eax
    add eax, 0x200000
    add edi, 8
    dec ecx
    jnz .pde
    mov eax, cr4
    or eax, 1 << 5              ; PAE
    mov cr4, eax
    mov eax, pml4
    mov cr3, eax
    mov ecx, 0xC0000080         ; EFER
    rdmsr
    or eax, 1 << 8              ; LME
    wrmsr
    mov eax, cr0
    or eax, 1 << 31             ; PG (activates long mode)
    mov cr0, eax
    jmp 0x18:long_entry

BITS 64
long_entry:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov fs, ax
    mov gs, ax
    mov rsp, stack_top

    call parse_rate
    mov rsi, msg_boot
    call puts

    ; make every page of the region non-zero with one write per page:
    ; enough for QEMU to send it in full. (A dword-by-dword fill ran at
    ; ~1 MiB/s under kvm_pvm; this takes about a second there.)
    mov edi, REGION_BASE
    mov ecx, REGION_SIZE / 4096
.fill:
    mov [rdi], edi
    add edi, 4096
    dec ecx
    jnz .fill
    mov rsi, msg_filled
    call puts

    call setup_idt
    call setup_pic_pit
    sti

main_loop:
    hlt
    mov eax, [ticks]
    mov ecx, eax
    sub ecx, [last_ticks]       ; ticks since the last pass (normally 1)
    mov [last_ticks], eax
    cmp ecx, 1000               ; after a long stall, do not burst over 1 s
    jbe .credit
    mov ecx, 1000
.credit:
    mov eax, [rate_kib]
    mul ecx                     ; edx:eax = rate * ticks (fits in 32 bits)
    add eax, [acc]
    xor edx, edx
    mov ebx, 4000
    div ebx                     ; eax = pages to dirty, edx = remainder
    mov [acc], edx
    mov ecx, eax
    test ecx, ecx
    jz main_loop
    mov edi, [cursor]           ; byte offset into the region
    mov edx, [generation]
.dirty:
    mov [REGION_BASE + rdi], edx
    add edi, 4096
    cmp edi, REGION_SIZE
    jb .next
    xor edi, edi
    inc edx                     ; a new value on every full sweep
    or edx, 1                   ; never zero
.next:
    dec ecx
    jnz .dirty
    mov [cursor], edi
    mov [generation], edx
    jmp main_loop

; ---- rate_kib=<decimal> from the multiboot command line, if present ----
parse_rate:
    mov ebx, [mbi]
    test dword [rbx], 1 << 2    ; mbi.flags bit 2: cmdline is valid
    jz .done
    mov esi, [rbx + 16]
.scan:
    mov al, [rsi]
    test al, al
    jz .done
    mov rdi, key
    mov ecx, key_len
    push rsi
    repe cmpsb
    pop rsi
    je .found
    inc rsi
    jmp .scan
.found:
    add rsi, key_len
    xor eax, eax
.digit:
    movzx edx, byte [rsi]
    sub edx, '0'
    cmp edx, 9
    ja .store
    imul eax, eax, 10
    add eax, edx
    inc rsi
    jmp .digit
.store:
    mov [rate_kib], eax
.done:
    ret

; ---- IDT: exceptions halt (a "!" on COM1), other IRQs just return ----
setup_idt:
    mov rdi, idt
    xor ecx, ecx
.entry:
    mov rax, isr_fault
    cmp ecx, 32
    jb .set
    mov rax, isr_ignore
    cmp ecx, 0x20
    jne .set
    mov rax, isr_timer
.set:
    mov [rdi], ax               ; offset 15..0
    mov word [rdi + 2], 0x18    ; 64-bit code selector
    mov word [rdi + 4], 0x8E00  ; present, ring 0, interrupt gate
    shr rax, 16
    mov [rdi + 6], ax           ; offset 31..16
    shr rax, 16
    mov [rdi + 8], eax          ; offset 63..32
    mov dword [rdi + 12], 0
    add rdi, 16
    inc ecx
    cmp ecx, 256
    jb .entry
    lidt [idt_desc]
    ret

; ---- PIC remapped to 0x20/0x28 with only IRQ0 unmasked; PIT ch0 ~1 kHz ----
setup_pic_pit:
    mov rsi, io_init
    mov ecx, io_init_count
.io:
    lodsw                       ; al = value, ah = port
    movzx edx, ah
    out dx, al
    loop .io
    ret

isr_timer:
    push rax
    inc dword [ticks]
    dec dword [dot_countdown]
    jnz .eoi
    mov dword [dot_countdown], 1000
    mov al, '.'
    call putc
.eoi:
    mov al, 0x20
    out 0x20, al
    pop rax
    iretq

isr_ignore:
    push rax
    mov al, 0x20
    out 0xA0, al
    out 0x20, al
    pop rax
    iretq

isr_fault:
    mov al, '!'
    call putc
.stop:
    cli
    hlt
    jmp .stop

; ---- COM1 output (QEMU's UART accepts bytes without any setup) ----
putc:
    push rdx
    mov dx, COM1
    out dx, al
    pop rdx
    ret

puts:
    lodsb
    test al, al
    jz .end
    call putc
    jmp puts
.end:
    ret

align 8
gdt:
    dq 0
    dq 0x00CF9A000000FFFF       ; 0x08: flat 32-bit code
    dq 0x00CF92000000FFFF       ; 0x10: flat data
    dq 0x00AF9A000000FFFF       ; 0x18: 64-bit code
gdt_desc:
    dw gdt_desc - gdt - 1
    dd gdt
idt_desc:
    dw 256 * 16 - 1
    dq idt

; (value, port) pairs: PIC ICW1-4 for master/slave, masks, then PIT channel 0
; in mode 2 (rate generator, lo/hi byte) with PIT_DIVISOR
io_init:    db 0x11, 0x20, 0x11, 0xA0, 0x20, 0x21, 0x28, 0xA1
            db 0x04, 0x21, 0x02, 0xA1, 0x01, 0x21, 0x01, 0xA1
            db 0xFE, 0x21, 0xFF, 0xA1, 0x34, 0x43
            db PIT_DIVISOR & 0xFF, 0x40, PIT_DIVISOR >> 8, 0x40
io_init_count equ ($ - io_init) / 2

key:        db "rate_kib="
key_len     equ $ - key
msg_boot:   db "lab-dirty: booted, filling region", 13, 10, 0
msg_filled: db "lab-dirty: region filled, dirtying", 13, 10, 0
rate_kib:   dd 65536            ; 64 MiB/s when the cmdline says nothing
cursor:     dd 0
dot_countdown: dd 1000
generation: dd 0x5A5A5A5B
data_end:

ABSOLUTE data_end
alignb 4096
pml4:       resq 512
pdpt:       resq 512
page_dir:   resq 512
idt:        resb 256 * 16
mbi:        resd 1
ticks:      resd 1
last_ticks: resd 1
acc:        resd 1
alignb 16
            resb 4096
stack_top:
bss_end:
