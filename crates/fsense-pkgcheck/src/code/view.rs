//! The parts of a PE32+ image the code checks read: sections by RVA, the import address table
//! slots, the base relocations, the exports and the entry point.

use std::collections::BTreeMap;

use object::LittleEndian as LE;
use object::pe;
use object::read::pe::{ExportTarget, ImageNtHeaders, Import, PeFile64};

use super::finding::CodeError;

/// One section, as mapped.
#[derive(Debug, Clone)]
pub struct Section {
    pub name: String,
    pub rva: u32,
    pub size: u32,
    pub executable: bool,
    /// Raw bytes; the rest up to `size` reads as zeros.
    pub bytes: Vec<u8>,
}

/// One import address table slot: the loader writes the address of `module!name` there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub module: String,
    pub name: String,
}

/// The image, addressed by RVA.
#[derive(Debug, Clone)]
pub struct ImageView {
    pub machine: u16,
    pub image_base: u64,
    pub entry: u32,
    pub sections: Vec<Section>,
    /// IAT slot RVA -> the import it holds.
    pub slots: BTreeMap<u32, Slot>,
    /// RVA of each 64-bit absolute address the loader relocates -> the RVA it points at.
    pub pointers: BTreeMap<u32, u32>,
    /// Exported name -> RVA.
    pub exports: Vec<(String, u32)>,
    /// The exception directory (`.pdata`: RUNTIME_FUNCTION entries) as (rva, size).
    pub exception_directory: Option<(u32, u32)>,
}

fn malformed(table: &'static str) -> impl Fn(object::read::Error) -> CodeError {
    move |error| CodeError::Malformed {
        table,
        reason: error.to_string(),
    }
}

impl ImageView {
    pub fn parse(data: &[u8]) -> Result<Self, CodeError> {
        let file = PeFile64::parse(data).map_err(malformed("PE headers"))?;
        let headers = file.nt_headers();
        let image_base = headers.optional_header().image_base.get(LE);
        let sections = file
            .section_table()
            .iter()
            .map(|header| {
                let name = header.name.split(|&byte| byte == 0).next().unwrap_or(&[]);
                let bytes = header.pe_data(data).unwrap_or(&[]);
                let size = header.virtual_size.get(LE).max(bytes.len() as u32);
                Section {
                    name: String::from_utf8_lossy(name).into_owned(),
                    rva: header.virtual_address.get(LE),
                    size,
                    executable: header.characteristics.get(LE).0 & pe::IMAGE_SCN_MEM_EXECUTE.0 != 0,
                    bytes: bytes.get(..size as usize).unwrap_or(bytes).to_vec(),
                }
            })
            .collect();
        let mut view = Self {
            machine: headers.file_header().machine.get(LE).0,
            image_base,
            entry: headers.optional_header().address_of_entry_point.get(LE),
            sections,
            slots: BTreeMap::new(),
            pointers: BTreeMap::new(),
            exports: Vec::new(),
            exception_directory: file
                .data_directory(pe::IMAGE_DIRECTORY_ENTRY_EXCEPTION)
                .map(|directory| (directory.virtual_address.get(LE), directory.size.get(LE))),
        };
        view.read_slots(&file)?;
        view.read_relocations(&file, data)?;
        if let Some(table) = file.export_table().map_err(malformed("export table"))? {
            for export in table.exports().map_err(malformed("export table"))? {
                if let (Some(name), ExportTarget::Address(rva)) = (export.name, export.target) {
                    view.exports
                        .push((String::from_utf8_lossy(name).into_owned(), rva));
                }
            }
        }
        Ok(view)
    }

    fn read_slots(&mut self, file: &PeFile64<'_>) -> Result<(), CodeError> {
        let Some(table) = file.import_table().map_err(malformed("import table"))? else {
            return Ok(());
        };
        let mut descriptors = table.descriptors().map_err(malformed("import table"))?;
        while let Some(descriptor) = descriptors.next().map_err(malformed("import table"))? {
            let module = table
                .name(descriptor.name.get(LE))
                .map_err(malformed("import table"))?;
            let module = String::from_utf8_lossy(module).into_owned();
            let first_thunk = descriptor.first_thunk.get(LE);
            let lookup = match descriptor.original_first_thunk.get(LE) {
                0 => first_thunk,
                rva => rva,
            };
            let mut thunks = table.thunks(lookup).map_err(malformed("import table"))?;
            let mut slot = first_thunk;
            while let Some(thunk) = thunks
                .next::<pe::ImageNtHeaders64>()
                .map_err(malformed("import table"))?
            {
                let name = match table
                    .import::<pe::ImageNtHeaders64>(thunk)
                    .map_err(malformed("import table"))?
                {
                    Import::Name(_, name) => String::from_utf8_lossy(name).into_owned(),
                    Import::Ordinal(ordinal) => format!("#{ordinal}"),
                };
                self.slots.insert(
                    slot,
                    Slot {
                        module: module.clone(),
                        name,
                    },
                );
                slot = slot.wrapping_add(8);
            }
        }
        Ok(())
    }

    fn read_relocations(&mut self, file: &PeFile64<'_>, data: &[u8]) -> Result<(), CodeError> {
        let Some(mut blocks) = file
            .data_directories()
            .relocation_blocks(data, &file.section_table())
            .map_err(malformed("base relocations"))?
        else {
            return Ok(());
        };
        while let Some(block) = blocks.next().map_err(malformed("base relocations"))? {
            for relocation in block {
                if relocation.typ != pe::IMAGE_REL_BASED_DIR64 {
                    continue;
                }
                let Some(value) = self.u64_at(relocation.virtual_address) else {
                    continue;
                };
                if let Some(target) = value
                    .checked_sub(self.image_base)
                    .and_then(|rva| u32::try_from(rva).ok())
                {
                    self.pointers.insert(relocation.virtual_address, target);
                }
            }
        }
        Ok(())
    }

    pub fn section_at(&self, rva: u32) -> Option<&Section> {
        self.sections
            .iter()
            .find(|section| rva >= section.rva && rva - section.rva < section.size)
    }

    /// The mapped bytes from `rva` to the end of its section (raw bytes only).
    pub fn bytes_from(&self, rva: u32) -> Option<&[u8]> {
        let section = self.section_at(rva)?;
        section.bytes.get((rva - section.rva) as usize..)
    }

    pub fn bytes(&self, rva: u32, len: usize) -> Option<&[u8]> {
        self.bytes_from(rva)?.get(..len)
    }

    pub fn u16_at(&self, rva: u32) -> Option<u16> {
        self.bytes(rva, 2)
            .map(|bytes| u16::from_le_bytes([bytes[0], bytes[1]]))
    }

    pub fn u32_at(&self, rva: u32) -> Option<u32> {
        let bytes = self.bytes(rva, 4)?;
        Some(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    pub fn u64_at(&self, rva: u32) -> Option<u64> {
        let bytes = self.bytes(rva, 8)?;
        let mut word = [0; 8];
        word.copy_from_slice(bytes);
        Some(u64::from_le_bytes(word))
    }

    pub fn is_code(&self, rva: u32) -> bool {
        self.section_at(rva)
            .is_some_and(|section| section.executable)
    }

    /// The RVA a virtual address (as the linker wrote it, at the preferred base) stands for.
    pub fn rva_of(&self, address: u64) -> Option<u32> {
        address
            .checked_sub(self.image_base)
            .and_then(|rva| u32::try_from(rva).ok())
    }
}
