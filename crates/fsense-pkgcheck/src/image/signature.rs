//! The Authenticode certificate table (the security directory).

use object::pe;
use object::read::pe::PeFile64;

use super::violation::Violation;

/// `WIN_CERTIFICATE` header: dwLength, wRevision, wCertificateType.
const WIN_CERTIFICATE_HEADER_LEN: usize = 8;
/// `WIN_CERT_REVISION_2_0`: the only revision Authenticode uses.
const WIN_CERT_REVISION_2_0: u16 = 0x0200;
/// `WIN_CERT_TYPE_PKCS_SIGNED_DATA`: an Authenticode PKCS#7 SignedData blob.
const WIN_CERT_TYPE_PKCS_SIGNED_DATA: u16 = 0x0002;

/// Whether `data` is a PE32+ image with a non-empty security directory (i.e. already signed).
pub fn has_signature(data: &[u8]) -> bool {
    PeFile64::parse(data).is_ok_and(|file| {
        file.data_directory(pe::IMAGE_DIRECTORY_ENTRY_SECURITY)
            .is_some_and(|directory| directory.size.get(object::LittleEndian) != 0)
    })
}

pub(super) fn check_signature(
    file: &PeFile64<'_>,
    data: &[u8],
    require_signature: bool,
    violations: &mut Vec<Violation>,
) {
    let directory = file.data_directory(pe::IMAGE_DIRECTORY_ENTRY_SECURITY);
    let (offset, size) = directory.map_or((0, 0), |directory| {
        (
            directory.virtual_address.get(object::LittleEndian) as usize,
            directory.size.get(object::LittleEndian) as usize,
        )
    });
    if size == 0 {
        if require_signature {
            violations.push(Violation::Unsigned);
        }
        return;
    }
    // The security directory holds a file offset (not an RVA) of WIN_CERTIFICATE entries.
    let Some(table) = offset
        .checked_add(size)
        .and_then(|end| data.get(offset..end))
    else {
        violations.push(Violation::MalformedSignature(
            "certificate table lies outside the file",
        ));
        return;
    };
    if offset % 8 != 0 {
        violations.push(Violation::MalformedSignature(
            "certificate table is not 8-byte aligned",
        ));
    }
    let Some(header) = table.get(..WIN_CERTIFICATE_HEADER_LEN) else {
        violations.push(Violation::MalformedSignature(
            "certificate table is shorter than a WIN_CERTIFICATE header",
        ));
        return;
    };
    let length = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let revision = u16::from_le_bytes([header[4], header[5]]);
    let certificate_type = u16::from_le_bytes([header[6], header[7]]);
    if length <= WIN_CERTIFICATE_HEADER_LEN || length > table.len() {
        violations.push(Violation::MalformedSignature(
            "WIN_CERTIFICATE length does not fit the table",
        ));
    }
    if revision != WIN_CERT_REVISION_2_0 {
        violations.push(Violation::MalformedSignature(
            "WIN_CERTIFICATE revision is not 2.0",
        ));
    }
    if certificate_type != WIN_CERT_TYPE_PKCS_SIGNED_DATA {
        violations.push(Violation::MalformedSignature(
            "WIN_CERTIFICATE is not PKCS#7 signed data",
        ));
    }
}
