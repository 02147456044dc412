//! Stream contexts: the name a later write reports.

use super::*;

/// Header of our stream context; the path and volume bytes follow it.
#[repr(C)]
struct StreamNameHeader {
    magic: u32,
    capacity: u32,
    path_len: u32,
    volume_len: u32,
    truncated: u32,
    /// [`StreamState`] bits, changed after the context is published (the only mutable part).
    state: core::sync::atomic::AtomicU32,
}

/// What the sensor tracks for a stream besides its name (issue 27): whether a delete was
/// asked for (delete-on-close open, or a disposition set on a handle) and not cancelled, so the
/// cleanup that makes it real reports it, once.
pub struct StreamState;

impl StreamState {
    /// A delete is pending or asked for on close.
    pub const DELETE_CANDIDATE: u32 = 1 << 0;
    /// The delete asked for POSIX semantics.
    pub const POSIX: u32 = 1 << 1;
}

const STREAM_NAME_MAGIC: u32 = u32::from_le_bytes(*b"FsSc");
const STREAM_NAME_HEADER: usize = core::mem::size_of::<StreamNameHeader>();

/// A referenced stream context holding a name. Released (one reference) when dropped.
///
/// Invariant: `ctx` is non-null, aligned, a referenced context of ours whose header we wrote
/// (magic checked) and whose `capacity` bytes after the header are readable.
pub struct StreamName {
    ctx: PFLT_CONTEXT,
}

impl StreamName {
    /// Allocates and attaches a context holding `path` and `volume` to the file's stream, unless
    /// one is already there. Post-create only.
    pub(super) fn attach(
        data: &CallbackData<'_>,
        filter: isize,
        path: &[u8],
        volume: &[u8],
        truncated: bool,
    ) -> bool {
        Self::attach_with(data, filter, path, volume, truncated, 0, false)
    }

    /// [`StreamName::attach`] with an initial state, replacing the stream's context when
    /// `replace` (after a rename: the new name, and the old context's state carried over).
    /// Writes holding the old context keep it until they release it. IRQL <= APC_LEVEL.
    pub(super) fn attach_with(
        data: &CallbackData<'_>,
        filter: isize,
        path: &[u8],
        volume: &[u8],
        truncated: bool,
        state: u32,
        replace: bool,
    ) -> bool {
        // FltAllocateContext takes at most MAXUSHORT bytes (`nf-fltkernel-fltallocatecontext`:
        // "less than or equal to MAXUSHORT"): keep the volume and cut the path to fit, on a
        // UTF-16 unit boundary, marking it truncated.
        let room = (usize::from(u16::MAX) - STREAM_NAME_HEADER).saturating_sub(volume.len()) & !1;
        let (path, truncated) = match path.get(..room) {
            Some(cut) if cut.len() < path.len() => (cut, true),
            _ => (path, truncated),
        };
        if volume.len() > usize::from(u16::MAX) - STREAM_NAME_HEADER {
            return false;
        }
        let payload = path.len().saturating_add(volume.len());
        let Some(size) = STREAM_NAME_HEADER.checked_add(payload) else {
            return false;
        };
        let Ok(capacity) = u32::try_from(payload) else {
            return false;
        };
        let mut ctx: PFLT_CONTEXT = ptr::null_mut();
        // SAFETY: valid filter handle and out pointer; the context type was registered.
        let st = unsafe {
            FltAllocateContext(
                filter,
                FLT_STREAM_CONTEXT as u16,
                size,
                NON_PAGED_POOL_NX,
                &mut ctx,
            )
        };
        if !status::is_success(st) || ctx.is_null() || !ctx.cast::<StreamNameHeader>().is_aligned()
        {
            if !ctx.is_null() {
                // SAFETY: a context we allocated and own one reference of.
                unsafe { FltReleaseContext(ctx) };
            }
            return false;
        }
        // SAFETY: ctx points to `size` writable, exclusively owned bytes (just allocated, not yet
        // published), aligned for the header; the copies stay inside those bytes.
        unsafe {
            ctx.cast::<StreamNameHeader>().write(StreamNameHeader {
                magic: STREAM_NAME_MAGIC,
                capacity,
                path_len: path.len() as u32,
                volume_len: volume.len() as u32,
                truncated: u32::from(truncated),
                state: core::sync::atomic::AtomicU32::new(state),
            });
            let body = ctx.cast::<u8>().add(STREAM_NAME_HEADER);
            ptr::copy_nonoverlapping(path.as_ptr(), body, path.len());
            ptr::copy_nonoverlapping(volume.as_ptr(), body.add(path.len()), volume.len());
        }
        let mut old: PFLT_CONTEXT = ptr::null_mut();
        let operation = if replace {
            FLT_SET_CONTEXT_REPLACE_IF_EXISTS
        } else {
            FLT_SET_CONTEXT_KEEP_IF_EXISTS
        };
        // SAFETY: instance and file object come from this operation's parameter block; ctx is
        // ours.
        let st = unsafe {
            FltSetStreamContext(
                data.instance(),
                data.file_object(),
                operation,
                ctx,
                &mut old,
            )
        };
        // Replaced: the Filter Manager hands back the old context referenced for us
        // (`nf-fltkernel-fltsetstreamcontext`, OldContext); kept: the existing one likewise.
        if (replace || st == status::FLT_CONTEXT_ALREADY_DEFINED) && !old.is_null() {
            // SAFETY: on ALREADY_DEFINED the Filter Manager returns the existing context
            // referenced for us; we drop that reference.
            unsafe { FltReleaseContext(old) };
        }
        // SAFETY: we drop our allocation reference; when attached, the stream holds its own.
        unsafe { FltReleaseContext(ctx) };
        status::is_success(st)
    }

    /// The stream's name context, if one was attached. Pre-write (IRQL <= APC_LEVEL).
    pub(super) fn get(data: &CallbackData<'_>) -> Option<Self> {
        let mut ctx: PFLT_CONTEXT = ptr::null_mut();
        // SAFETY: instance and file object come from this write's parameter block.
        let st = unsafe { FltGetStreamContext(data.instance(), data.file_object(), &mut ctx) };
        if !status::is_success(st) || ctx.is_null() {
            return None;
        }
        let candidate = Self { ctx };
        if !ctx.cast::<StreamNameHeader>().is_aligned() || candidate.header().is_none() {
            return None; // dropped: the reference is released
        }
        Some(candidate)
    }

    /// The pre-operation's last step for a write-like operation (write, MDL write, clone): hands
    /// the stream's saved name (a reference, or null when it has none) to the post-operation
    /// through `completion` and asks for that post-operation, which takes the reference back
    /// exactly once (it is always called after `FLT_PREOP_SUCCESS_WITH_CALLBACK`).
    ///
    /// # Safety
    /// `completion` is the pre-operation's completion-context out pointer, checked non-null and
    /// aligned by the caller.
    pub(super) unsafe fn hand_to_post(
        data: &CallbackData<'_>,
        completion: *mut *mut c_void,
    ) -> FLT_PREOP_CALLBACK_STATUS {
        let raw = Self::get(data).map_or(ptr::null_mut(), Self::into_raw);
        // SAFETY: the caller's contract: a non-null, aligned out pointer.
        unsafe { *completion = raw };
        FLT_PREOP_SUCCESS_WITH_CALLBACK
    }

    fn header(&self) -> Option<&StreamNameHeader> {
        // SAFETY: ctx is a referenced, aligned context of ours (allocated with at least the header).
        let h = unsafe { &*self.ctx.cast::<StreamNameHeader>() };
        let fits = (h.path_len as u64 + h.volume_len as u64) <= u64::from(h.capacity);
        (h.magic == STREAM_NAME_MAGIC && fits && h.path_len % 2 == 0 && h.volume_len % 2 == 0)
            .then_some(h)
    }

    /// The path bytes, the volume bytes and whether the path was truncated.
    pub fn parts(&self) -> (&[u8], &[u8], bool) {
        let Some(h) = self.header() else {
            return (&[], &[], false);
        };
        // SAFETY: header() checked magic and that path_len + volume_len <= capacity, and the
        // context holds `capacity` bytes after the header, written once in `attach` and never
        // changed; the context stays referenced while self lives.
        unsafe {
            let body = self.ctx.cast::<u8>().add(STREAM_NAME_HEADER);
            let path = core::slice::from_raw_parts(body, h.path_len as usize);
            let volume =
                core::slice::from_raw_parts(body.add(h.path_len as usize), h.volume_len as usize);
            (path, volume, h.truncated != 0)
        }
    }

    /// The stream's [`StreamState`] bits.
    pub fn state(&self) -> u32 {
        self.header()
            .map_or(0, |h| h.state.load(core::sync::atomic::Ordering::Acquire))
    }

    /// Sets `set`, then clears `clear`, in the stream's state; returns the state before.
    pub fn update_state(&self, set: u32, clear: u32) -> u32 {
        let Some(h) = self.header() else {
            return 0;
        };
        // Two single atomic operations (no retry loop); callers never set and clear one bit.
        let before = h.state.fetch_or(set, core::sync::atomic::Ordering::AcqRel);
        h.state
            .fetch_and(!clear, core::sync::atomic::Ordering::AcqRel);
        before
    }

    /// Clears `bits` and returns whether any of them was set: the one caller that sees `true`
    /// reports (a delete reported once, whichever cleanup finds the file gone).
    pub fn take_state(&self, bits: u32) -> bool {
        self.header().is_some_and(|h| {
            h.state
                .fetch_and(!bits, core::sync::atomic::Ordering::AcqRel)
                & bits
                != 0
        })
    }

    /// Hands the reference to post-write through the completion context.
    pub(super) fn into_raw(self) -> *mut c_void {
        let ctx = self.ctx;
        core::mem::forget(self);
        ctx
    }

    /// Takes back a reference handed over by `into_raw`.
    ///
    /// # Safety
    /// `raw` must come from `into_raw` and be taken back exactly once.
    pub(super) unsafe fn from_raw(raw: *const c_void) -> Option<Self> {
        // `then`, not `then_some`: an eagerly built value would be dropped (released) when null.
        (!raw.is_null()).then(|| Self {
            ctx: raw.cast_mut(),
        })
    }
}

impl Drop for StreamName {
    fn drop(&mut self) {
        // SAFETY: type invariant: one reference of ours, released exactly once (here). Callable
        // at DISPATCH_LEVEL.
        unsafe { FltReleaseContext(self.ctx) };
    }
}
