//! The state a freestanding 64-bit program starts in: long mode with paging on, the first
//! 4 GiB identity-mapped with 2 MiB pages (so it reaches RAM, the legacy VGA window and the
//! PCI hole alike), a flat GDT, interrupts off, a stack in low RAM. This is what Linux's
//! 64-bit boot protocol and Firecracker's x86_64 setup also give a kernel; the VMM writes the
//! tables with [`write_tables`] and loads [`EntryState`] into the vCPU.

use vm_memory::{Bytes, GuestAddress, GuestMemory};

/// Where the GDT goes (low RAM, clear of the real-mode IVT).
pub const GDT_ADDR: u64 = 0x500;
/// The PML4; the PDPT and the four page directories follow, one page each.
pub const PML4_ADDR: u64 = 0x9000;
const PDPT_ADDR: u64 = PML4_ADDR + 0x1000;
const PD_ADDR: u64 = PDPT_ADDR + 0x1000;
/// Top of the initial stack (grows down, below the page tables).
pub const STACK_TOP: u64 = 0x8ff0;
/// Where flat binaries are loaded and entered.
pub const LOAD_ADDR: u64 = 0x10_0000;

/// Code and data selectors of the flat GDT.
pub const CODE_SELECTOR: u16 = 0x08;
pub const DATA_SELECTOR: u16 = 0x10;
/// 64-bit code (L=1, present, ring 0, execute/read, accessed) and flat data descriptors.
const GDT: [u64; 3] = [0, 0x00af_9b00_0000_ffff, 0x00cf_9300_0000_ffff];

const CR0_PE: u64 = 1;
const CR0_ET: u64 = 1 << 4;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;

/// Errors writing the boot tables.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    /// Guest memory does not hold the tables' addresses.
    #[error("cannot write the boot tables into guest memory: {0}")]
    Memory(#[from] vm_memory::GuestMemoryError),
}

/// The control registers and descriptor tables of the entry state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryState {
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
    pub gdt_base: u64,
    pub gdt_limit: u16,
    pub code_selector: u16,
    pub data_selector: u16,
    /// The first instruction.
    pub rip: u64,
    pub rsp: u64,
}

/// The entry state for a program entered at `rip`.
pub fn entry_state(rip: u64) -> EntryState {
    EntryState {
        cr0: CR0_PE | CR0_ET | CR0_PG,
        cr3: PML4_ADDR,
        cr4: CR4_PAE,
        efer: EFER_LME | EFER_LMA,
        gdt_base: GDT_ADDR,
        gdt_limit: (GDT.len() * 8 - 1) as u16,
        code_selector: CODE_SELECTOR,
        data_selector: DATA_SELECTOR,
        rip,
        rsp: STACK_TOP,
    }
}

/// Writes the GDT and the identity page tables into `mem`.
pub fn write_tables<M: GuestMemory>(mem: &M) -> Result<(), EntryError> {
    for (i, d) in GDT.iter().enumerate() {
        mem.write_obj(*d, GuestAddress(GDT_ADDR + 8 * i as u64))?;
    }
    // PML4[0] -> PDPT; PDPT[0..4] -> four page directories of 512 2 MiB pages each.
    const PRESENT_RW: u64 = 0x3;
    const PAGE_2M: u64 = 0x80;
    mem.write_obj(PDPT_ADDR | PRESENT_RW, GuestAddress(PML4_ADDR))?;
    for gib in 0..4u64 {
        let pd = PD_ADDR + gib * 0x1000;
        mem.write_obj(pd | PRESENT_RW, GuestAddress(PDPT_ADDR + 8 * gib))?;
        for i in 0..512u64 {
            let frame = (gib << 30) | (i << 21);
            mem.write_obj(frame | PRESENT_RW | PAGE_2M, GuestAddress(pd + 8 * i))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryMmap;

    #[test]
    fn tables_map_the_first_4_gib_identically() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0xa0000)]).unwrap();
        write_tables(&mem).unwrap();
        // Walk the tables for a VGA window address and one in the PCI hole.
        for addr in [0xb8000u64, 0xc400_1234] {
            let pml4e: u64 = mem.read_obj(GuestAddress(PML4_ADDR)).unwrap();
            let pdpte: u64 = mem
                .read_obj(GuestAddress((pml4e & !0xfff) + 8 * ((addr >> 30) & 511)))
                .unwrap();
            let pde: u64 = mem
                .read_obj(GuestAddress((pdpte & !0xfff) + 8 * ((addr >> 21) & 511)))
                .unwrap();
            assert_eq!(pde & 0x83, 0x83, "present, writable, 2 MiB");
            assert_eq!((pde & !0x1f_ffff & !0xfff) | (addr & 0x1f_ffff), addr);
        }
        let gdt: u64 = mem.read_obj(GuestAddress(GDT_ADDR + 8)).unwrap();
        assert_eq!(gdt >> 53 & 1, 1, "L bit: 64-bit code");
        let s = entry_state(LOAD_ADDR);
        assert_eq!(s.efer & EFER_LMA, EFER_LMA);
        assert!(s.rsp < PML4_ADDR && s.gdt_base + 24 <= s.rsp);
    }

    #[test]
    fn too_little_memory_is_an_error() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x1000)]).unwrap();
        assert!(write_tables(&mem).is_err());
    }
}
