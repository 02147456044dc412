//! The few A64 instruction forms the checks reason about, decoded by hand, and for every other
//! instruction the general-purpose register it writes.
//!
//! Why not a disassembler crate: the checks need what an instruction *does* to registers (which
//! one it writes, whether it reads memory through which base, where a branch goes), not its text.
//! The pure-Rust decoders (yaxpeax-arm 0.5, disarm64 0.2) give operand lists and text; the
//! read/write roles would still be ours to derive for every opcode, on top of a 10k-line
//! (yaxpeax-arm, plus bitvec and serde by default) or 100k-line generated (disarm64) decoder. A64
//! is fixed-width with the destination in bits 4:0 for every data-processing and load form, so
//! the forms the checks follow (ADRP/ADR, ADD/SUB immediate, MOV register, the loads and stores,
//! the branches) plus one rule per encoding group for the rest fit in this file, tested against
//! llvm-objdump's reading of words from the real image (`a64/tests.rs`; compared once over every
//! word of the ARM64 `fsense.sys`, they agreed on all 2,952: docs/windows.md). Encodings: Arm
//! Architecture Reference Manual for A-profile, "A64 Instruction Set Encoding" (the top-level
//! groups by bits 28:25 and the classes within them).

/// Register 31: the stack pointer or the zero register, by the instruction's context.
pub const SP_OR_ZR: u8 = 31;
/// The frame pointer (x29) and the link register (x30).
pub const FP: u8 = 29;
pub const LR: u8 = 30;

/// How a load or store addresses memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Address {
    /// `[base, #offset]`; `writeback` for the pre-index form `[base, #offset]!`.
    Offset { offset: i64, writeback: bool },
    /// `[base], #offset`: the access is at `base`, then `base += offset`.
    PostIndex { offset: i64 },
    /// `[base, index ...]`.
    Register { index: u8 },
}

/// A load or store through a base register (`base` 31 is SP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    pub load: bool,
    /// The data registers (31 is the zero register); `None` for SIMD/FP registers.
    pub rt: Option<u8>,
    pub rt2: Option<u8>,
    /// A register the instruction writes besides the data (store-exclusive status, CAS).
    pub status: Option<u8>,
    pub base: u8,
    pub address: Address,
    /// Bytes per register (for the listing and frame slots of pairs).
    pub size: u8,
    pub mnemonic: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `adrp rd, page` / `adr rd, target`: `target` as an offset from this instruction's RVA
    /// (for ADRP, from its 4 KiB page).
    Adrp {
        rd: u8,
        page_delta: i64,
    },
    Adr {
        rd: u8,
        delta: i64,
    },
    /// `add`/`sub` (immediate) without flags: `rd = rn ± imm` (31 is SP on both sides).
    AddImm {
        rd: u8,
        rn: u8,
        imm: i64,
    },
    /// `mov rd, rm` (ORR with the zero register, 64-bit).
    Mov {
        rd: u8,
        rm: u8,
    },
    Access(Access),
    /// `ldr rt, label` (PC-relative): `delta` from this instruction.
    LoadLiteral {
        rt: Option<u8>,
        delta: i64,
    },
    Branch {
        delta: i64,
    },
    Call {
        delta: i64,
    },
    /// `b.cond`, `cbz`/`cbnz`, `tbz`/`tbnz`.
    CondBranch {
        delta: i64,
        tested: Option<u8>,
    },
    /// `br rn`
    IndirectBranch {
        rn: u8,
    },
    /// `blr rn`
    IndirectCall {
        rn: u8,
    },
    Return,
    /// `brk`, `udf`, `hlt`, `svc`...: the path ends here.
    Exception,
    /// Anything else: the general-purpose register it writes, if any (31 excluded).
    Other {
        writes: Option<u8>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub word: u32,
    pub kind: Kind,
}

fn bits(word: u32, high: u32, low: u32) -> u32 {
    (word >> low) & ((1 << (high - low + 1)) - 1)
}

fn sign_extend(value: u32, width: u32) -> i64 {
    let shift = 64 - width;
    (i64::from(value) << shift) >> shift
}

fn reg(word: u32, low: u32) -> u8 {
    bits(word, low + 4, low) as u8
}

/// A register a data-processing instruction writes: bits 4:0 unless it is 31.
fn rd_written(word: u32) -> Option<u8> {
    Some(reg(word, 0)).filter(|&rd| rd != SP_OR_ZR)
}

pub fn decode(word: u32) -> Insn {
    let kind = match bits(word, 28, 25) {
        0b1000 | 0b1001 => data_immediate(word),
        0b1010 | 0b1011 => branch_system(word),
        0b0100 | 0b0110 | 0b1100 | 0b1110 => load_store(word),
        0b0101 | 0b1101 => data_register(word),
        0b0111 | 0b1111 => simd_fp(word),
        // 0000: reserved (UDF is 0x0000xxxx), SME, SVE: nothing this driver contains.
        _ if word >> 16 == 0 => Kind::Exception,
        _ => Kind::Other { writes: None },
    };
    Insn { word, kind }
}

fn data_immediate(word: u32) -> Kind {
    let rd = reg(word, 0);
    match bits(word, 28, 23) {
        0b100000 | 0b100001 => {
            let imm = bits(word, 23, 5) << 2 | bits(word, 30, 29);
            let value = sign_extend(imm, 21);
            if word >> 31 == 1 {
                Kind::Adrp {
                    rd,
                    page_delta: value << 12,
                }
            } else {
                Kind::Adr { rd, delta: value }
            }
        }
        0b100010 => {
            let sets_flags = bits(word, 29, 29) == 1;
            let sixty_four = word >> 31 == 1;
            let mut imm = i64::from(bits(word, 21, 10));
            if bits(word, 22, 22) == 1 {
                imm <<= 12;
            }
            if bits(word, 30, 30) == 1 {
                imm = -imm;
            }
            if sets_flags || !sixty_four {
                Kind::Other {
                    writes: rd_written(word),
                }
            } else {
                Kind::AddImm {
                    rd,
                    rn: reg(word, 5),
                    imm,
                }
            }
        }
        _ => Kind::Other {
            writes: rd_written(word),
        },
    }
}

fn branch_system(word: u32) -> Kind {
    if bits(word, 30, 26) == 0b00101 {
        let delta = sign_extend(bits(word, 25, 0), 26) << 2;
        return if word >> 31 == 1 {
            Kind::Call { delta }
        } else {
            Kind::Branch { delta }
        };
    }
    match bits(word, 31, 25) {
        0b0101010 if bits(word, 24, 24) == 0 => Kind::CondBranch {
            delta: sign_extend(bits(word, 23, 5), 19) << 2,
            tested: None,
        },
        0b0011010 | 0b1011010 => Kind::CondBranch {
            delta: sign_extend(bits(word, 23, 5), 19) << 2,
            tested: Some(reg(word, 0)),
        },
        0b0011011 | 0b1011011 => Kind::CondBranch {
            delta: sign_extend(bits(word, 18, 5), 14) << 2,
            tested: Some(reg(word, 0)),
        },
        0b1101011 => {
            let rn = reg(word, 5);
            match bits(word, 24, 21) {
                0b0000 | 0b1000 => Kind::IndirectBranch { rn },
                0b0001 | 0b1001 => Kind::IndirectCall { rn },
                0b0010 | 0b0100 | 0b0101 => Kind::Return,
                _ => Kind::Exception,
            }
        }
        // Exception generation: svc, hvc, smc, brk, hlt, dcps.
        0b1101010 if bits(word, 24, 24) == 0 => Kind::Exception,
        // System: mrs and sysl (L = 1) write Rt; msr, hints, barriers write nothing.
        0b1101010 if bits(word, 24, 22) == 0b100 => Kind::Other {
            writes: (bits(word, 21, 21) == 1)
                .then(|| rd_written(word))
                .flatten(),
        },
        _ => Kind::Other { writes: None },
    }
}

fn data_register(word: u32) -> Kind {
    let op1 = bits(word, 28, 28);
    let op2 = bits(word, 24, 21);
    // Conditional compare (ccmp/ccmn): bits 4:0 are flags, not a register.
    if op1 == 1 && op2 == 0b0010 {
        return Kind::Other { writes: None };
    }
    // Flag manipulation (rmif, setf8/16) in the add/sub-with-carry class.
    if op1 == 1 && op2 == 0b0000 && bits(word, 29, 29) == 1 && bits(word, 15, 10) != 0 {
        return Kind::Other { writes: None };
    }
    // mov xd, xm: orr xd, xzr, xm (64-bit, no shift).
    if word & 0xffe0_ffe0 == 0xaa00_03e0 {
        return Kind::Mov {
            rd: reg(word, 0),
            rm: reg(word, 16),
        };
    }
    Kind::Other {
        writes: rd_written(word),
    }
}

fn simd_fp(word: u32) -> Kind {
    // Conversion between floating point and integer: GPR destinations for opcode 000, 001,
    // 100, 101 (fcvt*) and 110 (fmov to general).
    if bits(word, 30, 30) == 0
        && bits(word, 28, 24) == 0b11110
        && bits(word, 21, 21) == 1
        && bits(word, 15, 10) == 0
        && matches!(bits(word, 18, 16), 0b000 | 0b001 | 0b100 | 0b101 | 0b110)
    {
        return Kind::Other {
            writes: rd_written(word),
        };
    }
    // Advanced SIMD copy: smov (imm4 0101), umov (imm4 0111).
    if bits(word, 31, 31) == 0
        && bits(word, 29, 21) == 0b001110000
        && bits(word, 15, 15) == 0
        && bits(word, 10, 10) == 1
        && matches!(bits(word, 14, 11), 0b0101 | 0b0111)
    {
        return Kind::Other {
            writes: rd_written(word),
        };
    }
    Kind::Other { writes: None }
}

fn access(
    load: bool,
    rt: Option<u8>,
    base: u8,
    address: Address,
    size: u8,
    mnemonic: &'static str,
) -> Kind {
    Kind::Access(Access {
        load,
        rt,
        rt2: None,
        status: None,
        base,
        address,
        size,
        mnemonic,
    })
}

fn load_store(word: u32) -> Kind {
    let rt = reg(word, 0);
    let rn = reg(word, 5);
    let vector = bits(word, 26, 26) == 1;
    let gpr = (!vector).then_some(rt);
    let size_field = bits(word, 31, 30);
    // Load/store exclusive and ordered (ldxr, ldaxr, ldar, stxr, stlxr, stlr, cas...).
    if bits(word, 29, 24) == 0b001000 {
        let load = bits(word, 22, 22) == 1;
        let (o2, o1) = (bits(word, 23, 23), bits(word, 21, 21));
        let rs = reg(word, 16);
        let size = 1u8 << size_field;
        let cas = o1 == 1 && bits(word, 14, 10) == 0b11111 && (o2 == 1 || size_field <= 1);
        let mut access = Access {
            load,
            rt: Some(rt),
            rt2: None,
            status: None,
            base: rn,
            address: Address::Offset {
                offset: 0,
                writeback: false,
            },
            size,
            mnemonic: if load { "ldxr" } else { "stxr" },
        };
        if cas {
            access.load = true;
            access.rt = None;
            access.status = Some(rs);
            access.mnemonic = "cas";
        } else if o2 == 1 {
            access.mnemonic = if load { "ldar" } else { "stlr" };
        } else {
            if o1 == 1 {
                access.rt2 = Some(reg(word, 10));
            }
            if !load {
                access.status = Some(rs);
            }
        }
        return Kind::Access(access);
    }
    // Load register (literal).
    if bits(word, 29, 27) == 0b011 && bits(word, 25, 24) == 0b00 {
        let prefetch = !vector && size_field == 0b11;
        return Kind::LoadLiteral {
            rt: if prefetch { None } else { gpr },
            delta: sign_extend(bits(word, 23, 5), 19) << 2,
        };
    }
    // Load/store pair (post-index, offset, pre-index, no-allocate).
    if bits(word, 29, 27) == 0b101 {
        let load = bits(word, 22, 22) == 1;
        let scale = if vector {
            2 + size_field
        } else if size_field == 0b10 {
            3
        } else {
            2
        };
        let offset = sign_extend(bits(word, 21, 15), 7) << scale;
        let address = match bits(word, 24, 23) {
            0b01 => Address::PostIndex { offset },
            0b11 => Address::Offset {
                offset,
                writeback: true,
            },
            _ => Address::Offset {
                offset,
                writeback: false,
            },
        };
        return Kind::Access(Access {
            load,
            rt: gpr,
            rt2: (!vector).then(|| reg(word, 10)),
            status: None,
            base: rn,
            address,
            size: 1 << scale,
            mnemonic: if load { "ldp" } else { "stp" },
        });
    }
    // Advanced SIMD load/store structures: vector data; post-index writes the base.
    if bits(word, 31, 31) == 0 && bits(word, 29, 27) == 0b001 && vector {
        let address = if bits(word, 23, 23) == 1 {
            Address::PostIndex { offset: 0 }
        } else {
            Address::Offset {
                offset: 0,
                writeback: false,
            }
        };
        return access(bits(word, 22, 22) == 1, None, rn, address, 16, "ld/st1");
    }
    if bits(word, 29, 27) != 0b111 {
        return Kind::Other { writes: None };
    }
    let opc = bits(word, 23, 22);
    // V=0: opc 00 store, 01 load, 10 load signed (64), 11 load signed (32); size 11 opc 10 is
    // prfm. V=1: opc bit 0 is load, opc bit 1 widens to 128 bits.
    let (load, scale, prefetch) = if vector {
        let load = opc & 1 == 1;
        let scale = if opc & 2 == 2 { 4 } else { size_field };
        (load, scale, false)
    } else {
        (opc != 0, size_field, size_field == 0b11 && opc == 0b10)
    };
    let rt = if prefetch { None } else { gpr };
    let size = 1u8 << scale;
    let mnemonic = |unscaled: bool| match (load, unscaled) {
        (true, false) => "ldr",
        (true, true) => "ldur",
        (false, false) => "str",
        (false, true) => "stur",
    };
    if bits(word, 25, 24) == 0b01 {
        // Unsigned immediate, scaled.
        let offset = i64::from(bits(word, 21, 10)) << scale;
        return access(
            load,
            rt,
            rn,
            Address::Offset {
                offset,
                writeback: false,
            },
            size,
            mnemonic(false),
        );
    }
    if bits(word, 21, 21) == 0 {
        let offset = sign_extend(bits(word, 20, 12), 9);
        let address = match bits(word, 11, 10) {
            0b01 => Address::PostIndex { offset },
            0b11 => Address::Offset {
                offset,
                writeback: true,
            },
            _ => Address::Offset {
                offset,
                writeback: false,
            },
        };
        let unscaled = bits(word, 11, 10) != 0b01 && bits(word, 11, 10) != 0b11;
        return access(load, rt, rn, address, size, mnemonic(unscaled));
    }
    match bits(word, 11, 10) {
        0b10 => access(
            load,
            rt,
            rn,
            Address::Register {
                index: reg(word, 16),
            },
            size,
            mnemonic(false),
        ),
        // Atomic memory operations (ldadd, swp, ...): read-modify-write, the old value to Rt.
        0b00 => Kind::Access(Access {
            load: true,
            rt: gpr,
            rt2: None,
            status: None,
            base: rn,
            address: Address::Offset {
                offset: 0,
                writeback: false,
            },
            size,
            mnemonic: "ld<op>",
        }),
        // Pointer-authenticated loads (ldraa/ldrab) and others: read through the base.
        _ => access(
            true,
            gpr,
            rn,
            Address::Offset {
                offset: 0,
                writeback: bits(word, 11, 11) == 1,
            },
            8,
            "ldra",
        ),
    }
}

impl Insn {
    /// The general-purpose registers (0..=30) the instruction writes.
    pub fn written(&self) -> Vec<u8> {
        let mut written = Vec::new();
        match self.kind {
            Kind::Adrp { rd, .. } | Kind::Adr { rd, .. } | Kind::Mov { rd, .. } => {
                written.push(rd);
            }
            Kind::AddImm { rd, .. } => written.push(rd),
            Kind::Access(access) => {
                if access.load {
                    written.extend(access.rt);
                    written.extend(access.rt2);
                }
                written.extend(access.status);
                let writeback = matches!(
                    access.address,
                    Address::PostIndex { .. }
                        | Address::Offset {
                            writeback: true,
                            ..
                        }
                );
                if writeback {
                    written.push(access.base);
                }
            }
            Kind::LoadLiteral { rt, .. } => written.extend(rt),
            Kind::Call { .. } | Kind::IndirectCall { .. } => written.push(LR),
            Kind::Other { writes } => written.extend(writes),
            Kind::Branch { .. }
            | Kind::CondBranch { .. }
            | Kind::IndirectBranch { .. }
            | Kind::Return
            | Kind::Exception => {}
        }
        written.retain(|&register| register != SP_OR_ZR);
        written
    }

    /// A readable form for the report; `rva` places PC-relative targets.
    pub fn text(&self, rva: u32, image_base: u64) -> String {
        let x = |register: u8| match register {
            SP_OR_ZR => "sp".to_string(),
            _ => format!("x{register}"),
        };
        let data = |register: Option<u8>, size: u8| match register {
            Some(SP_OR_ZR) if size == 8 => "xzr".to_string(),
            Some(SP_OR_ZR) => "wzr".to_string(),
            Some(register) if size == 8 => format!("x{register}"),
            Some(register) => format!("w{register}"),
            None => "v".to_string(),
        };
        let target = |delta: i64| {
            image_base
                .wrapping_add(u64::from(rva))
                .wrapping_add(delta as u64)
        };
        match self.kind {
            Kind::Adrp { rd, page_delta } => format!(
                "adrp {}, {:#x}",
                x(rd),
                (image_base.wrapping_add(u64::from(rva)) & !0xfff).wrapping_add(page_delta as u64)
            ),
            Kind::Adr { rd, delta } => format!("adr {}, {:#x}", x(rd), target(delta)),
            Kind::AddImm { rd, rn, imm } if imm < 0 => {
                format!("sub {}, {}, #{}", x(rd), x(rn), -imm)
            }
            Kind::AddImm { rd, rn, imm } => format!("add {}, {}, #{imm}", x(rd), x(rn)),
            Kind::Mov { rd, rm } => format!("mov {}, {}", x(rd), x(rm)),
            Kind::Access(access) => {
                let mut registers = data(access.rt, access.size.min(8));
                if let Some(rt2) = access.rt2 {
                    registers.push_str(&format!(", {}", data(Some(rt2), access.size.min(8))));
                }
                let base = x(access.base);
                let address = match access.address {
                    Address::Offset {
                        offset: 0,
                        writeback: false,
                    } => format!("[{base}]"),
                    Address::Offset { offset, writeback } => {
                        format!("[{base}, #{offset}]{}", if writeback { "!" } else { "" })
                    }
                    Address::PostIndex { offset } => format!("[{base}], #{offset}"),
                    Address::Register { index } => format!("[{base}, x{index}]"),
                };
                format!("{} {registers}, {address}", access.mnemonic)
            }
            Kind::LoadLiteral { rt, delta } => {
                format!("ldr {}, {:#x}", data(rt, 8), target(delta))
            }
            Kind::Branch { delta } => format!("b {:#x}", target(delta)),
            Kind::Call { delta } => format!("bl {:#x}", target(delta)),
            Kind::CondBranch { delta, .. } => format!("b.cond {:#x}", target(delta)),
            Kind::IndirectBranch { rn } => format!("br {}", x(rn)),
            Kind::IndirectCall { rn } => format!("blr {}", x(rn)),
            Kind::Return => "ret".to_string(),
            Kind::Exception | Kind::Other { .. } => format!(".inst {:#010x}", self.word),
        }
    }
}
