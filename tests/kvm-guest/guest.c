/*
 * A freestanding 64-bit test guest for `saffron run --vmm builtin`.
 *
 * Entered at 1 MiB in long mode with the first 4 GiB identity-mapped (saffron_firmware::entry).
 * It sets VGA text mode 3 by hand (no BIOS), loads a font into plane 2, writes a line of text
 * and moves the cursor through the CRTC; then shows two pictures in a VBE mode (vbe_phase) and
 * the text again; then brings the QXL device up as Linux's driver does
 * (PCI BARs, ROM, RESET, interrupt mask, memslots, primary surface), draws a known picture
 * through the command ring, asks for UPDATE_AREA_ASYNC and waits for its interrupt (with
 * -DREAL_IRQ through its IDT, the local APIC and the IOAPIC; otherwise by watching IO_CMD in
 * int_pending, for PVM hosts); then resets the device, which shows the VGA text again. Each step prints a
 * marker on COM1. Built with -DHOSTILE it instead throws random values at every VGA, QXL and
 * PCI register and window the VMM exposes, then powers off; with -DBENCH it times port I/O
 * round trips for ci/bench-builtin.
 *
 * The test (tests/tests/builtin_vmm.rs) computes the same font, text and picture from the
 * constants below.
 */
#include "qxl_abi.h"

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;

#define COM1 0x3f8
#define POWER_OFF 0x604
#define QXL_SLOT 1

/* What the test expects. */
#define TEXT_ROW 2
#define TEXT_ATTR 0x1e
static const char TEXT[] = "SAFFRON BUILTIN VMM: VGA TEXT";
#define PRIMARY_W 640
#define PRIMARY_H 480

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outw(u16 port, u16 v) { __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outl(u16 port, u32 v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline u32 inl(u16 port) { u32 v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline u64 rdtsc(void) { u32 lo, hi; __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi)); return ((u64)hi << 32) | lo; }

static inline void w8(u64 a, u8 v) { *(volatile u8 *)a = v; }
static inline void w16(u64 a, u16 v) { *(volatile u16 *)a = v; }
static inline void w32(u64 a, u32 v) { *(volatile u32 *)a = v; }
static inline void w64(u64 a, u64 v) { *(volatile u64 *)a = v; }
static inline u8 r8(u64 a) { return *(volatile u8 *)a; }
static inline u32 r32(u64 a) { return *(volatile u32 *)a; }

static void putc_serial(char c) {
    while (!(inb(COM1 + 5) & 0x20)) {
    }
    outb(COM1, (u8)c);
}

static void puts_serial(const char *s) {
    while (*s)
        putc_serial(*s++);
}

static void put_hex(u64 v) {
    for (int i = 60; i >= 0; i -= 4)
        putc_serial("0123456789abcdef"[(v >> i) & 15]);
}

static void marker(const char *what) {
    puts_serial("SAFFRON-GUEST ");
    puts_serial(what);
    putc_serial('\n');
}

static void __attribute__((noreturn)) fail(const char *what, u64 v) {
    puts_serial("SAFFRON-GUEST FAIL ");
    puts_serial(what);
    putc_serial(' ');
    put_hex(v);
    putc_serial('\n');
    outw(POWER_OFF, 0x2000);
    for (;;)
        __asm__ volatile("cli; hlt");
}

/* Busy-waits about `cycles` TSC ticks: the test takes its screendumps meanwhile. */
static void hold(u64 cycles) {
    u64 t0 = rdtsc();
    while (rdtsc() - t0 < cycles)
        __asm__ volatile("pause");
}

/* The font: row r of glyph c. */
static u8 glyph_row(u8 c, u32 r) { return (u8)((c * 7u + r * 29u) ^ ((r & 1) ? 0x81 : 0x18)); }

static void seq(u8 i, u8 v) { outb(0x3c4, i); outb(0x3c5, v); }
static void crtc(u8 i, u8 v) { outb(0x3d4, i); outb(0x3d5, v); }
static void gfx(u8 i, u8 v) { outb(0x3ce, i); outb(0x3cf, v); }

/* Mode 3 (80x25 text, 9x16 cells) as a VGA BIOS programs it. */
static void vga_text(void) {
    static const u8 sr[] = {0x03, 0x00, 0x03, 0x00, 0x02};
    static const u8 cr[] = {0x5f, 0x4f, 0x50, 0x82, 0x55, 0x81, 0xbf, 0x1f, 0x00, 0x4f, 0x0d, 0x0e, 0x00,
                            0x00, 0x00, 0x00, 0x9c, 0x8e, 0x8f, 0x28, 0x1f, 0x96, 0xb9, 0xa3, 0xff};
    static const u8 gr[] = {0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x0e, 0x0f, 0xff};
    static const u8 ar[] = {0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x14, 0x07, 0x38, 0x39, 0x3a,
                            0x3b, 0x3c, 0x3d, 0x3e, 0x3f, 0x0c, 0x00, 0x0f, 0x08, 0x00};
    outb(0x3c2, 0x67);
    for (u32 i = 0; i < sizeof(sr); i++)
        seq((u8)i, sr[i]);
    crtc(0x11, 0x00); /* unprotect CRTC 0-7, which the table's 0x11 protects again */
    for (u32 i = 0; i < sizeof(cr); i++)
        crtc((u8)i, cr[i]);
    /* Plane 2, sequential: the font, 32 bytes per glyph. */
    seq(2, 0x04);
    seq(4, 0x06);
    gfx(4, 0x02);
    gfx(5, 0x00);
    gfx(6, 0x04);
    gfx(8, 0xff);
    for (u32 c = 0; c < 256; c++)
        for (u32 r = 0; r < 16; r++)
            w8(0xa0000 + c * 32 + r, glyph_row((u8)c, r));
    seq(2, 0x03);
    seq(4, 0x02);
    for (u32 i = 0; i < sizeof(gr); i++)
        gfx((u8)i, gr[i]);
    (void)inb(0x3da);
    for (u32 i = 0; i < sizeof(ar); i++) {
        outb(0x3c0, (u8)i);
        outb(0x3c0, ar[i]);
    }
    outb(0x3c0, 0x20);
    /* The 64-colour EGA palette in the DAC. */
    outb(0x3c8, 0);
    for (u32 i = 0; i < 64; i++) {
        outb(0x3c9, (u8)(((i >> 2) & 1) * 0x2a + ((i >> 5) & 1) * 0x15));
        outb(0x3c9, (u8)(((i >> 1) & 1) * 0x2a + ((i >> 4) & 1) * 0x15));
        outb(0x3c9, (u8)((i & 1) * 0x2a + ((i >> 3) & 1) * 0x15));
    }
    /* Clear the screen, write the text, put the cursor after it. */
    for (u32 cell = 0; cell < 80 * 25; cell++)
        w16(0xb8000 + cell * 2, 0x0000);
    u32 n = sizeof(TEXT) - 1;
    for (u32 i = 0; i < n; i++)
        w16(0xb8000 + (TEXT_ROW * 80 + i) * 2, (u16)((TEXT_ATTR << 8) | (u8)TEXT[i]));
    u32 cursor = TEXT_ROW * 80 + n;
    w16(0xb8000 + cursor * 2, (u16)((TEXT_ATTR << 8) | ' '));
    crtc(0x0e, (u8)(cursor >> 8));
    crtc(0x0f, (u8)cursor);
}

static u32 pci_read(u32 slot, u32 reg) {
    outl(0xcf8, 0x80000000u | (slot << 11) | reg);
    return inl(0xcfc);
}

static void pci_write(u32 slot, u32 reg, u32 v) {
    outl(0xcf8, 0x80000000u | (slot << 11) | reg);
    outl(0xcfc, v);
}

/* A BAR's size, by the usual all-ones probe (decoding stays on: nobody else runs). */
static u32 bar_size(u32 slot, u32 index) {
    u32 reg = 0x10 + 4 * index;
    u32 old = pci_read(slot, reg);
    pci_write(slot, reg, 0xffffffffu);
    u32 mask = pci_read(slot, reg);
    pci_write(slot, reg, old);
    return ~(mask & ~0xfu) + 1;
}

/*
 * The QXL interrupt for real: an IDT whose vector IRQ_VECTOR runs irq_entry, the local APIC
 * enabled, and the IOAPIC pin the firmware named in the PCI interrupt line routed to that
 * vector, level-triggered (INTx is a level: the VMM's irqfd with a resample eventfd).
 */
#ifdef REAL_IRQ
#define IRQ_VECTOR 0x30
#define LAPIC 0xfee00000ull
#define IOAPIC 0xfec00000ull

struct idt_entry {
    u16 offset_lo, selector;
    u8 ist, flags;
    u16 offset_mid;
    u32 offset_hi, zero;
} __attribute__((packed));

static struct idt_entry idt[256] __attribute__((aligned(16)));
static volatile u32 irqs_seen, irq_pending_bits;
static u64 irq_ram;
static u16 irq_io;

void irq_handler(void) {
    u32 pending = r32(irq_ram + RAM_INT_PENDING);
    irq_pending_bits |= pending;
    w32(irq_ram + RAM_INT_PENDING, 0);
    outb(irq_io + IO_UPDATE_IRQ, 0);
    irqs_seen++;
    w32(LAPIC + 0xb0, 0); /* EOI */
}

void irq_entry(void);
__asm__(".text\n"
        ".global irq_entry\n"
        "irq_entry:\n"
        "  push %rax; push %rcx; push %rdx; push %rsi; push %rdi\n"
        "  push %r8; push %r9; push %r10; push %r11\n"
        "  call irq_handler\n"
        "  pop %r11; pop %r10; pop %r9; pop %r8\n"
        "  pop %rdi; pop %rsi; pop %rdx; pop %rcx; pop %rax\n"
        "  iretq\n");

static void ioapic_write(u32 reg, u32 v) {
    w32(IOAPIC, reg);
    w32(IOAPIC + 0x10, v);
}

static void irq_setup(u8 pin) {
    u64 h = (u64)irq_entry;
    struct idt_entry *e = &idt[IRQ_VECTOR];
    e->offset_lo = (u16)h;
    e->selector = 0x08;
    e->ist = 0;
    e->flags = 0x8e; /* present, ring 0, interrupt gate */
    e->offset_mid = (u16)(h >> 16);
    e->offset_hi = (u32)(h >> 32);
    e->zero = 0;
    struct {
        u16 limit;
        u64 base;
    } __attribute__((packed)) idtr = {sizeof(idt) - 1, (u64)idt};
    __asm__ volatile("lidt %0" : : "m"(idtr));
    w32(LAPIC + 0xf0, 0x1ff); /* spurious vector 0xff, APIC enabled */
    ioapic_write(0x10 + 2 * pin + 1, 0); /* destination: APIC 0 */
    ioapic_write(0x10 + 2 * pin, IRQ_VECTOR | (1u << 15)); /* level, active high, unmasked */
    __asm__ volatile("sti");
}
#endif

/*
 * A Bochs VBE mode (VBE_W x VBE_H, 32 bpp) whose linear framebuffer is BAR0, as in qxl-vga.
 * The first picture follows the mode switch (port writes the VMM traps); the second is only
 * plain memory writes to BAR0, which nobody traps: the display can only learn of it from the
 * VMM's dirty log of BAR0. Then VBE is turned off and the text is drawn again.
 */
#define VBE_W 64
#define VBE_H 48
static u32 vbe_pixel(int second, u32 x, u32 y) {
    return second ? ((x * 4u) << 16) | ((y * 5u) << 8) | 0x40u : 0x00203040u;
}
static void vbe_reg(u16 index, u16 v) { outw(0x1ce, index); outw(0x1cf, v); }
static void vbe_draw(u64 fb, int second) {
    for (u32 y = 0; y < VBE_H; y++)
        for (u32 x = 0; x < VBE_W; x++)
            w32(fb + (y * VBE_W + x) * 4u, vbe_pixel(second, x, y));
}
static void vbe_phase(void) {
    u64 fb = pci_read(QXL_SLOT, 0x10) & ~0xfu;
    vbe_reg(1, VBE_W);
    vbe_reg(2, VBE_H);
    vbe_reg(3, 32);
    vbe_draw(fb, 0);
    vbe_reg(4, 0xc1); /* enabled, linear framebuffer, memory kept */
    marker("vbe-first");
    hold(3000000000ull);
    vbe_draw(fb, 1);
    marker("vbe-second");
    hold(6000000000ull);
    vbe_reg(4, 0);
    vga_text();
    marker("vbe-off");
}

static u64 bar0, bar1, rom, ram, vram_size;
static u16 io;
static u8 gen;

static u64 phys(u8 slot, u64 offset) { return ((u64)slot << 56) | ((u64)gen << 48) | offset; }

static void qxl_up(void) {
    u32 id = pci_read(QXL_SLOT, 0);
    if (id != 0x01001b36u)
        fail("no QXL device in slot 1", id);
    bar0 = pci_read(QXL_SLOT, 0x10) & ~0xfu;
    bar1 = pci_read(QXL_SLOT, 0x14) & ~0xfu;
    rom = pci_read(QXL_SLOT, 0x18) & ~0xfu;
    io = (u16)(pci_read(QXL_SLOT, 0x1c) & ~0x3u);
    vram_size = bar_size(QXL_SLOT, 1);
    if (r32(rom) != 0x4f525851u) /* "QXRO" */
        fail("bad ROM magic", r32(rom));
    ram = bar0 + r32(rom + ROM_RAM_HEADER_OFFSET);
#ifdef REAL_IRQ
    irq_ram = ram;
    irq_io = io;
    irq_setup((u8)pci_read(QXL_SLOT, 0x3c));
#endif
    outb(io + IO_RESET, 0);
    w32(ram + RAM_INT_MASK, INTERRUPT_DISPLAY | INTERRUPT_IO_CMD);
    /* Slot 1: all of BAR1 (surfaces); slot 2: BAR0 up to the RAM header (commands). */
    w64(ram + RAM_MEM_SLOT, bar1);
    w64(ram + RAM_MEM_SLOT + 8, bar1 + vram_size);
    outb(io + IO_MEMSLOT_ADD, 1);
    w64(ram + RAM_MEM_SLOT, bar0);
    w64(ram + RAM_MEM_SLOT + 8, ram);
    outb(io + IO_MEMSLOT_ADD, 2);
    gen = r8(rom + ROM_SLOT_GENERATION);
    u64 sc = ram + RAM_CREATE_SURFACE;
    for (u32 i = 0; i < 40; i += 4)
        w32(sc + i, 0);
    w32(sc + SC_WIDTH, PRIMARY_W);
    w32(sc + SC_HEIGHT, PRIMARY_H);
    w32(sc + SC_STRIDE, PRIMARY_W * 4);
    w32(sc + SC_FORMAT, SURFACE_FMT_32_XRGB);
    w64(sc + SC_MEM, phys(1, 0));
    outb(io + IO_CREATE_PRIMARY, 0);
    marker("qxl-primary");
}

/* One solid fill of the primary, built in BAR0 at `off` and pushed on the command ring. */
static void fill(u32 n, u64 off, int left, int top, int right, int bottom, u32 color) {
    u64 d = bar0 + off;
    for (u32 i = 0; i < DRAWABLE_SIZE; i++)
        w8(d + i, 0);
    w64(d, n + 1); /* release id */
    w32(d + DRAWABLE_SURFACE_ID, 0);
    w8(d + DRAWABLE_EFFECT, QXL_EFFECT_OPAQUE);
    w8(d + DRAWABLE_TYPE, QXL_DRAW_FILL);
    w32(d + DRAWABLE_BBOX, (u32)top);
    w32(d + DRAWABLE_BBOX + 4, (u32)left);
    w32(d + DRAWABLE_BBOX + 8, (u32)bottom);
    w32(d + DRAWABLE_BBOX + 12, (u32)right);
    for (u32 i = 0; i < 3; i++)
        w32(d + DRAWABLE_SURFACES_DEST + 4 * i, 0xffffffffu);
    w32(d + DRAWABLE_U, BRUSH_TYPE_SOLID);
    w32(d + DRAWABLE_U + BRUSH_COLOR, color);
    w16(d + DRAWABLE_U + FILL_ROP, ROPD_OP_PUT);
    u64 ring = ram + RAM_CMD_RING;
    u32 prod = r32(ring + RING_PROD);
    while (prod - r32(ring + RING_CONS) >= CMD_RING_SIZE)
        __asm__ volatile("pause");
    u64 item = ring + RING_ITEMS + (u64)(prod % CMD_RING_SIZE) * CMD_SIZE;
    w64(item, phys(2, off));
    w32(item + 8, QXL_CMD_DRAW);
    w32(ring + RING_PROD, prod + 1);
    outb(io + IO_NOTIFY_CMD, 0);
}

static void draw_picture(void) {
    const int w = PRIMARY_W, h = PRIMARY_H;
    fill(0, 0x200000, 0, 0, w / 2, h / 2, 0xff0000);
    fill(1, 0x200100, w / 2, 0, w, h / 2, 0x00ff00);
    fill(2, 0x200200, 0, h / 2, w / 2, h, 0x0000ff);
    fill(3, 0x200300, w / 2, h / 2, w, h, 0xffffff);
    fill(4, 0x200400, 270, 190, 370, 290, 0xffff00);
    /* UPDATE_AREA_ASYNC of the whole primary; its completion is the IO_CMD interrupt. */
    w32(ram + RAM_UPDATE_AREA, 0);
    w32(ram + RAM_UPDATE_AREA + 4, 0);
    w32(ram + RAM_UPDATE_AREA + 8, PRIMARY_H);
    w32(ram + RAM_UPDATE_AREA + 12, PRIMARY_W);
    w32(ram + RAM_UPDATE_SURFACE, 0);
    outb(io + IO_UPDATE_AREA_ASYNC, 0);
    u64 t0 = rdtsc();
#ifdef REAL_IRQ
    /* Sleep until the interrupt handler has seen IO_CMD (hlt wakes on any interrupt). */
    while (!(irq_pending_bits & INTERRUPT_IO_CMD)) {
        if (rdtsc() - t0 > 60000000000ull)
            fail("no IO_CMD interrupt", r32(ram + RAM_INT_PENDING));
        __asm__ volatile("sti; hlt; cli");
    }
    __asm__ volatile("sti");
    marker("qxl-interrupt");
#else
    /* PVM (this CI's KVM) cannot deliver interrupts to a guest that is not PVM-aware: watch
     * the interrupt's pending bit instead, as the guest's handler would read it. */
    while (!(r32(ram + RAM_INT_PENDING) & INTERRUPT_IO_CMD)) {
        if (rdtsc() - t0 > 60000000000ull)
            fail("no IO_CMD interrupt", r32(ram + RAM_INT_PENDING));
        __asm__ volatile("pause");
    }
    w32(ram + RAM_INT_PENDING, 0);
    outb(io + IO_UPDATE_IRQ, 0);
    marker("qxl-interrupt-pending");
#endif
}

#ifdef HOSTILE
static u64 rng = 0x9e3779b97f4a7c15ull;
static u64 next(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void hostile(void) {
    u64 bar0h = pci_read(QXL_SLOT, 0x10) & ~0xfu;
    u64 romh = pci_read(QXL_SLOT, 0x18) & ~0xfu;
    u16 ioh = (u16)(pci_read(QXL_SLOT, 0x1c) & ~0x3u);
    for (u32 i = 0; i < 50000; i++) {
        u64 r = next();
        u8 v = (u8)(r >> 40);
        switch ((r >> 8) % 8) {
        case 0: outb((u16)(0x3b0 + (r >> 16) % 0x30), v); break;
        case 1: outw((u16)(0x1ce + (r >> 16) % 2), (u16)(r >> 32)); break;
        case 2: w8(0xa0000 + (r >> 16) % 0x20000, v); break;
        case 3: (void)r8(0xa0000 + (r >> 16) % 0x20000); (void)inb((u16)(0x3b0 + (r >> 24) % 0x30)); break;
        case 4: outb((u16)(ioh + (r >> 16) % 32), v); break;
        case 5: pci_write((u32)((r >> 16) % 32), (u32)((r >> 24) % 64) * 4, (u32)(r >> 32)); break;
        case 6: w32(bar0h + ((r >> 16) % 0x4000000 & ~3ull), (u32)(r >> 32)); break;
        default: w8(romh + (r >> 16) % 8192, v); break;
        }
        if (i % 10000 == 0)
            marker("hostile-progress");
    }
}
#endif

#ifdef BENCH
/* ci/bench-builtin times these between their markers. */
#define BENCH_ROUNDS 200000
static void bench(void) {
    u16 ioh = (u16)(pci_read(QXL_SLOT, 0x1c) & ~0x3u);
    marker("pio-write-start");
    for (u32 i = 0; i < BENCH_ROUNDS; i++)
        outb(ioh + IO_UPDATE_IRQ, 0);
    marker("pio-write-done");
    marker("pio-read-start");
    for (u32 i = 0; i < BENCH_ROUNDS; i++)
        (void)inb(0x3da);
    marker("pio-read-done");
}
#endif

void __attribute__((section(".text.start"), noreturn)) _start(void) {
    marker("start");
#ifdef BENCH
    bench();
    outw(POWER_OFF, 0x2000);
#elif defined(HOSTILE)
    hostile();
    marker("hostile-done");
    outw(POWER_OFF, 0x2000);
#else
    vga_text();
    marker("vga-text");
    hold(6000000000ull);
    vbe_phase();
    qxl_up();
    draw_picture();
    marker("qxl-picture");
    hold(4000000000ull);
    outb(io + IO_RESET, 0);
    marker("reset");
    marker("done");
#endif
    for (;;)
        __asm__ volatile("cli; hlt");
}
