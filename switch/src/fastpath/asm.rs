//! A small label assembler for the fast path's hand-written eBPF programs: forward
//! jumps name a label instead of a counted offset, and the few instruction shapes the
//! programs use have a name each.

use crate::bpf::{self, insn, BpfInsn};

/// A jump target, bound once with [`Asm::bind`].
#[derive(Clone, Copy)]
pub(super) struct Label(usize);

#[derive(Default)]
pub(super) struct Asm {
    code: Vec<BpfInsn>,
    fixups: Vec<(usize, Label)>,
    labels: Vec<Option<usize>>,
}

// Opcodes (linux/bpf.h: class | size/op | source).
pub(super) const LDX_W: u8 = 0x61;
pub(super) const LDX_H: u8 = 0x69;
pub(super) const LDX_B: u8 = 0x71;
pub(super) const LDX_DW: u8 = 0x79;
pub(super) const STX_W: u8 = 0x63;
pub(super) const STX_H: u8 = 0x6b;
pub(super) const STX_DW: u8 = 0x7b;
pub(super) const ST_W: u8 = 0x62;
pub(super) const ST_H: u8 = 0x6a;
pub(super) const MOV_REG: u8 = 0xbf;
pub(super) const MOV_IMM: u8 = 0xb7;
pub(super) const ADD_REG: u8 = 0x0f;
pub(super) const ADD_IMM: u8 = 0x07;
pub(super) const JEQ_IMM: u8 = 0x15;
pub(super) const JNE_IMM: u8 = 0x55;
pub(super) const JNE_REG: u8 = 0x5d;
pub(super) const JEQ_REG: u8 = 0x1d;
pub(super) const JGT_REG: u8 = 0x2d;
pub(super) const JSET_IMM: u8 = 0x45;
pub(super) const AND_IMM: u8 = 0x57;
pub(super) const OR_IMM: u8 = 0x47;
pub(super) const OR_REG: u8 = 0x4f;
pub(super) const LSH_IMM: u8 = 0x67;
pub(super) const XOR_IMM: u8 = 0xa7;
pub(super) const RSH_IMM: u8 = 0x77;
pub(super) const JGT_IMM: u8 = 0x25;
pub(super) const JA: u8 = 0x05;
pub(super) const JLE_IMM: u8 = 0xb5;
pub(super) const STX_B: u8 = 0x73;
pub(super) const CALL: u8 = 0x85;
pub(super) const EXIT: u8 = 0x95;

impl Asm {
    pub(super) fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }
    pub(super) fn op(&mut self, code: u8, dst: u8, src: u8, off: i16, imm: i32) {
        self.code.push(insn(code, dst, src, off, imm));
    }
    pub(super) fn jump(&mut self, code: u8, dst: u8, src: u8, imm: i32, to: Label) {
        self.fixups.push((self.code.len(), to));
        self.op(code, dst, src, 0, imm);
    }
    pub(super) fn bind(&mut self, l: Label) {
        self.labels[l.0] = Some(self.code.len());
    }
    pub(super) fn call(&mut self, helper: i32) {
        self.op(CALL, 0, 0, 0, helper);
    }
    /// r0 = imm; exit
    pub(super) fn ret(&mut self, imm: i32) {
        self.op(MOV_IMM, 0, 0, 0, imm);
        self.op(EXIT, 0, 0, 0, 0);
    }
    /// dst = imm (64 bits, the two-slot load)
    pub(super) fn ld_imm64(&mut self, dst: u8, imm: u64) {
        self.op(0x18, dst, 0, 0, imm as u32 as i32);
        self.op(0, 0, 0, 0, (imm >> 32) as u32 as i32);
    }
    /// dst = the low 16 bits of dst in network order (a byte swap on this host)
    pub(super) fn bswap16(&mut self, dst: u8) {
        self.op(0xdc, dst, 0, 0, 16);
    }
    pub(super) fn load_map(&mut self, dst: u8, fd: i32) {
        self.op(0x18, dst, bpf::BPF_PSEUDO_MAP_FD, 0, fd);
        self.op(0, 0, 0, 0, 0);
    }
    /// r2 = fp + off; call bpf_map_lookup_elem(r1 = map, r2)
    pub(super) fn lookup(&mut self, map: i32, off: i32) {
        self.load_map(1, map);
        self.op(MOV_REG, 2, 10, 0, 0); // r2 = r10
        self.op(ADD_IMM, 2, 0, 0, off); // r2 += off
        self.call(FUNC_MAP_LOOKUP);
    }
    /// *(u64 *)(r0 + off) += reg (or 1 with reg None)
    pub(super) fn add_u64(&mut self, off: i16, reg: Option<u8>) {
        self.op(LDX_DW, 1, 0, off, 0); // r1 = *(u64 *)(r0 + off)
        match reg {
            Some(r) => self.op(ADD_REG, 1, r, 0, 0), // r1 += reg
            None => self.op(ADD_IMM, 1, 0, 0, 1),    // r1 += 1
        }
        self.op(STX_DW, 0, 1, off, 0); // *(u64 *)(r0 + off) = r1
    }
    /// Count on a port: look up the counters (`stats`, a per-CPU array of rx packets,
    /// rx bytes, tx packets, tx bytes) of the port whose id is on the stack at fp +
    /// `key`, and add `packets` (a register, or one) and `bytes` to its rx or tx pair;
    /// on to `missing` when it has none. Clobbers r0-r5.
    pub(super) fn count(&mut self, stats: i32, key: i32, c: Count, missing: Label) {
        self.lookup(stats, key);
        self.jump(JEQ_IMM, 0, 0, 0, missing);
        let bytes = match c.bytes {
            Amount::Reg(r) => r,
            Amount::Stack(at) => {
                self.op(LDX_W, 5, 10, at, 0);
                5
            }
        };
        let at = if c.tx { 16 } else { 0 };
        self.add_u64(at, c.packets);
        self.add_u64(at + 8, Some(bytes));
    }
    /// Look up the u32 value at the key on the stack at fp + `key` into register `reg`;
    /// on to `missing` when there is no entry or it is zero.
    pub(super) fn lookup_nonzero(&mut self, map: i32, key: i32, reg: u8, missing: Label) {
        self.lookup(map, key);
        self.jump(JEQ_IMM, 0, 0, 0, missing);
        self.op(LDX_W, reg, 0, 0, 0);
        self.jump(JEQ_IMM, reg, 0, 0, missing);
    }
    /// Set the u32 at `base` register + `off` to 1 unless it is set already: the entry is
    /// marked seen with a write only the first time, not one per packet. Clobbers r5.
    pub(super) fn mark_seen(&mut self, base: u8, off: i16) {
        let seen = self.label();
        self.op(LDX_W, 5, base, off, 0);
        self.jump(JNE_IMM, 5, 0, 0, seen);
        self.op(ST_W, base, 0, off, 1);
        self.bind(seen);
    }
    /// r0 (a one's complement sum of 16-bit words) folded to 16 bits and complemented,
    /// ready to store as a checksum (RFC 1624: HC' = ~(~HC + ~m + m')). Clobbers r4.
    pub(super) fn fold_checksum(&mut self) {
        for _ in 0..2 {
            self.op(MOV_REG, 4, 0, 0, 0);
            self.op(RSH_IMM, 4, 0, 0, 16);
            self.op(AND_IMM, 0, 0, 0, 0xffff);
            self.op(ADD_REG, 0, 4, 0, 0);
        }
        self.op(XOR_IMM, 0, 0, 0, 0xffff);
    }
    pub(super) fn finish(mut self) -> Vec<BpfInsn> {
        for (at, l) in self.fixups {
            let to = self.labels[l.0].expect("every label is bound");
            let off = to as i64 - at as i64 - 1;
            let i = &mut self.code[at];
            *i = insn(i.code(), i.dst(), i.src(), off as i16, i.imm());
        }
        self.code
    }
}

pub(super) const FUNC_MAP_LOOKUP: i32 = 1;

/// What [`Asm::count`] adds to a port's counters.
pub(super) struct Count {
    /// The tx pair (else rx).
    pub tx: bool,
    /// Register holding the packets (a GSO skb's segments); None: one.
    pub packets: Option<u8>,
    pub bytes: Amount,
}

/// A u32 amount: in a register, or on the stack at fp + offset.
#[derive(Clone, Copy)]
pub(super) enum Amount {
    Reg(u8),
    Stack(i16),
}
