//! For rule tests: a pretend driver's callbacks registered for set-information, cleanup, file
//! system control and PREPARE_MDL_WRITE, and one handle's script run through them by the same
//! code that runs the real driver's, so a test can plant a violation and see its rule fire.

use super::*;
use crate::changes::{CleanupOp, FsctlOp, Hostile, MdlWriteOp, SetInfoKind, SetInfoOp};

/// One step of a planted script, on the handle the script opened.
#[derive(Debug, Clone)]
pub enum Step {
    /// A set-information; `post_at_dispatch`: its post-operation (if not synchronized) runs at
    /// DISPATCH_LEVEL this time.
    SetInfo {
        kind: SetInfoKind,
        target: Option<&'static str>,
        hostile: Option<Hostile>,
        post_at_dispatch: bool,
    },
    /// The handle's cleanup, then its close.
    Cleanup,
    MdlWrite {
        irp_fallback: bool,
    },
    Fsctl {
        code: u32,
        hostile: Option<Hostile>,
    },
}

/// For rule tests of functions that check their instance: makes `instance` an attached one.
pub fn planted_instance(instance: isize) {
    world::with_world(|w| w.instances = vec![(instance, true)]);
}

/// Registers `pre`/`post` for every operation but create (writes too: the IRP form of an MDL
/// write is one), opens one file (with
/// FILE_DELETE_ON_CLOSE if asked), runs `steps` on that handle, and unregisters.
pub fn run_planted(
    pre: PFLT_PRE_OPERATION_CALLBACK,
    post: PFLT_POST_OPERATION_CALLBACK,
    delete_on_close: bool,
    steps: &[Step],
) {
    let (instance, filter) = (0x4000, 0x77);
    world::with_world(|w| {
        w.registration = Some(Registration {
            pre_create: None,
            post_create: None,
            pre_write: pre,
            post_write: post,
            pre_set_info: pre,
            post_set_info: post,
            pre_cleanup: pre,
            post_cleanup: post,
            pre_fsctl: pre,
            post_fsctl: post,
            pre_prepare_mdl_write: pre,
            post_prepare_mdl_write: post,
            unload: None,
            instance_setup: None,
            stream_contexts_registered: true,
        });
        w.filter_handle = filter;
        w.instances = vec![(instance, true)];
    });
    let path: Arc<Vec<u16>> = Arc::new(format!("{VOLUME}\\planted.txt").encode_utf16().collect());
    let create = CreateOp {
        op_id: 1,
        pid: 1000,
        file: 0,
        stream_key: 0x6_0000,
        shape: NameShape::Valid,
        desired_access: 0x0011_0002,
        disposition: 2,
        options: if delete_on_close {
            FILE_DELETE_ON_CLOSE
        } else {
            0
        },
        share_access: 7,
        status: STATUS_SUCCESS,
        information: 2,
        directory_stream: false,
        target_directory: false,
    };
    let (open, _) = run_create(&create, path.clone(), instance, filter);
    let mut open = open;
    let le: Arc<Vec<u8>> = Arc::new(path.iter().flat_map(|u| u.to_le_bytes()).collect());
    for (i, step) in steps.iter().enumerate() {
        let Some(file) = &open else { break };
        let op_id = 2 + i as u32;
        match step {
            Step::SetInfo {
                kind,
                target,
                hostile,
                post_at_dispatch,
            } => {
                let target: Option<Vec<u16>> = target.map(|t| t.encode_utf16().collect());
                let op = SetInfoOp {
                    op_id,
                    pid: 1000,
                    file: 0,
                    create_op: 1,
                    kind: kind.clone(),
                    source: path.clone(),
                    source_le: le.clone(),
                    target_le: None,
                    target: target.map(Arc::new),
                    hostile: *hostile,
                    status: STATUS_SUCCESS,
                    post_at_dispatch: *post_at_dispatch,
                };
                run_set_info(&op, file, instance, filter);
            }
            Step::MdlWrite { irp_fallback } => {
                let op = MdlWriteOp {
                    op_id,
                    pid: 1000,
                    file: 0,
                    create_op: 1,
                    offset: 0,
                    length: 4096,
                    irp_fallback: *irp_fallback,
                    post_at_dispatch: false,
                };
                run_mdl_write(&op, file, instance, filter);
            }
            Step::Fsctl { code, hostile } => {
                let op = FsctlOp {
                    op_id,
                    pid: 1000,
                    file: 0,
                    create_op: 1,
                    code: *code,
                    target_offset: 0,
                    byte_count: 65536,
                    source_offset: 0,
                    hostile: *hostile,
                    status: STATUS_SUCCESS,
                    post_at_dispatch: false,
                };
                run_fsctl(&op, file, instance, filter);
            }
            Step::Cleanup => {
                let op = CleanupOp {
                    op_id,
                    pid: 1000,
                    file: 0,
                    create_op: 1,
                    name_le: le.clone(),
                    deletes: false,
                    posix: false,
                    cancelled: false,
                    post_at_dispatch: false,
                };
                if let Some(file) = open.take() {
                    run_cleanup(&op, file, instance, filter);
                }
            }
        }
    }
    world::with_world(|w| {
        w.registration = None;
        w.instances.clear();
    });
}
