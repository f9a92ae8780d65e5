//! errno values as the FUSE and IPC edges answer them: positive numbers,
//! the same on every Linux platform PVE runs on.

/// A positive errno value.
pub type Errno = i32;

pub use libc::{
    EACCES, EBUSY, ECHRNG, EEXIST, EFBIG, EINVAL, EIO, EISDIR, ENOENT, ENOMEM, ENOSYS, ENOTDIR,
    ENOTEMPTY, ENOTSUP, EOVERFLOW, EPERM,
};
