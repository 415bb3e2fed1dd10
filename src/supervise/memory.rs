//! Gives back the pages of Visor's own code and constants that only a passing piece of work
//! needed (the start-up, an install), so that what stays resident while Visor supervises is
//! what its steady work runs.
//!
//! The kernel maps a page of a program's file when it is first run or read, together with
//! up to 15 cached neighbours ("fault-around"), and keeps it mapped: the start-up (config and
//! run-config parsing, checks, the first spawn) and an install (TLS, zip) leave most of the
//! binary resident for good, although an idle Visor runs a small part of it. When the core
//! has answered for 30 s since it last started (at start, after a restart or an upgrade) or
//! since an install ended, the coordinator calls [`release_read_only_pages`], which tells the
//! kernel (`madvise(MADV_DONTNEED)`) that the executable's read-only, file-backed segments
//! (code, constants) are not needed; the pages Visor runs next are mapped again from the page
//! cache, as at start. The binary's file cannot change while it runs (the kernel refuses to
//! write to a running executable), so these pages always read back as they were. Writable
//! segments, the RELRO part (relocated at start) and a binary with text relocations are
//! never touched. The release build groups the code of the idle loop in one place
//! (`release/idle-code.ld`, see `bench/idle_code.sh`), so that few pages come back.
//!
//! This lowers Visor's resident set (what `ps`, `top` and `/proc` show); the file's pages stay
//! in the page cache, shared and reclaimable, until the kernel needs the memory.

use std::ffi::c_void;

/// The bytes of the executable's read-only segments given back (0 when nothing was, for
/// example under a dynamic loader that applied text relocations).
pub fn release_read_only_pages() -> usize {
    let mut released = 0usize;
    // SAFETY: `callback` only reads the program headers the C library hands it, for the
    // duration of the call, and writes through `data` to `released`, which outlives it.
    unsafe {
        libc::dl_iterate_phdr(Some(callback), (&raw mut released).cast::<c_void>());
    }
    released
}

/// One entry of the dynamic section (`Elf64_Dyn`).
#[repr(C)]
struct Dyn {
    tag: i64,
    val: u64,
}

const DT_NULL: i64 = 0;
const DT_TEXTREL: i64 = 22;
const DT_FLAGS: i64 = 30;
const DF_TEXTREL: u64 = 0x4;
const PF_W: u32 = 0x2;

/// Called for each loaded object, the executable first: handles it and stops.
unsafe extern "C" fn callback(
    info: *mut libc::dl_phdr_info,
    _size: libc::size_t,
    data: *mut c_void,
) -> libc::c_int {
    // SAFETY: the C library passes a valid `dl_phdr_info` whose `dlpi_phdr` points to
    // `dlpi_phnum` program headers, valid during this call; `data` is `released`.
    unsafe {
        let info = &*info;
        if info.dlpi_phdr.is_null() {
            return 1;
        }
        let headers = std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum));
        let base = info.dlpi_addr as usize;
        if has_text_relocations(base, headers) {
            return 1;
        }
        let relro = headers
            .iter()
            .find(|h| h.p_type == libc::PT_GNU_RELRO)
            .map(|h| {
                (
                    base + h.p_vaddr as usize,
                    base + (h.p_vaddr + h.p_memsz) as usize,
                )
            });
        let page = page_size();
        let mut released = 0usize;
        for header in headers {
            if header.p_type != libc::PT_LOAD || header.p_flags & PF_W != 0 {
                continue;
            }
            let start = base + header.p_vaddr as usize;
            let Some((from, to)) = whole_pages(start, start + header.p_memsz as usize, page) else {
                continue;
            };
            // Never a page the start-up wrote to.
            if relro.is_some_and(|(lo, hi)| from < hi && lo < to) {
                continue;
            }
            if libc::madvise(from as *mut c_void, to - from, libc::MADV_DONTNEED) == 0 {
                released += to - from;
            }
        }
        *data.cast::<usize>() = released;
    }
    1
}

/// Whether the dynamic section asks for relocations in read-only segments: their pages were
/// written at start and must not be read back from the file.
///
/// # Safety
/// `headers` are the loaded object's program headers and `base` its load address.
unsafe fn has_text_relocations(base: usize, headers: &[libc::Elf64_Phdr]) -> bool {
    let Some(dynamic) = headers.iter().find(|h| h.p_type == libc::PT_DYNAMIC) else {
        return false;
    };
    let mut entry = (base + dynamic.p_vaddr as usize) as *const Dyn;
    // SAFETY: the dynamic section is mapped and ends with a DT_NULL entry.
    unsafe {
        loop {
            let Dyn { tag, val } = std::ptr::read(entry);
            match tag {
                DT_NULL => return false,
                DT_TEXTREL => return true,
                DT_FLAGS if val & DF_TEXTREL != 0 => return true,
                _ => entry = entry.add(1),
            }
        }
    }
}

/// The whole pages inside `[start, end)`: a page shared with another segment is left alone.
fn whole_pages(start: usize, end: usize, page: usize) -> Option<(usize, usize)> {
    let from = start.checked_add(page - 1)? / page * page;
    let to = end / page * page;
    (from < to).then_some((from, to))
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size)
        .ok()
        .filter(|s| s.is_power_of_two())
        .unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whole_pages_inside_the_segment_are_given_back() {
        assert_eq!(whole_pages(0x1000, 0x3000, 0x1000), Some((0x1000, 0x3000)));
        assert_eq!(whole_pages(0x1010, 0x3010, 0x1000), Some((0x2000, 0x3000)));
        assert_eq!(whole_pages(0x1010, 0x1ff0, 0x1000), None);
        assert_eq!(whole_pages(usize::MAX - 10, usize::MAX, 0x1000), None);
    }

    /// Pages of this test binary's code given back are mapped again when run: the code and
    /// constants still read as they were, and so does relocated data (a table of `&str`).
    #[test]
    fn code_and_data_still_work_after_their_pages_are_given_back() {
        static WORDS: [&str; 3] = ["lighter", "at", "rest"];
        let before: Vec<String> = WORDS.iter().map(|w| w.to_uppercase()).collect();
        // (What it does to the resident set is checked on the release build by CI's
        // footprint step: in a test binary a cold page cache makes it move either way.)
        let released = release_read_only_pages();
        assert!(released > 0, "nothing given back");
        let after: Vec<String> = WORDS.iter().map(|w| w.to_uppercase()).collect();
        assert_eq!(before, after);
        assert_eq!(format!("{:?}", after), r#"["LIGHTER", "AT", "REST"]"#);
    }
}
