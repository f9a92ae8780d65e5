//! Fixed-offset fields in the sender's byte order: everything from the
//! totem header down (totem, totempg, the service messages) is written in
//! the native order of the node that sent it (knet-wire.md §1). The ring
//! id is the one compound field they all share.

/// A ring id: representative and ring seq (`rep.seq` in corosync's logs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RingId {
    pub rep: u32,
    pub seq: u64,
}

impl std::fmt::Display for RingId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:x}.{:x}", self.rep, self.seq)
    }
}

#[derive(Clone, Copy)]
pub struct Fields<'a> {
    pub bytes: &'a [u8],
    pub big_endian: bool,
}

macro_rules! field {
    ($name:ident, $t:ty) => {
        pub fn $name(&self, off: usize) -> Option<$t> {
            let end = off.checked_add(std::mem::size_of::<$t>())?;
            let a = self.bytes.get(off..end)?.try_into().ok()?;
            Some(if self.big_endian {
                <$t>::from_be_bytes(a)
            } else {
                <$t>::from_le_bytes(a)
            })
        }
    };
}

impl Fields<'_> {
    field!(u16, u16);
    field!(u32, u32);
    field!(u64, u64);

    /// A packed ring id: rep (u32), then seq (u64).
    pub fn ring(&self, off: usize) -> Option<RingId> {
        Some(RingId {
            rep: self.u32(off)?,
            seq: self.u64(off + 4)?,
        })
    }

    /// `n` node ids from `off`; `None` when the message cannot hold them.
    pub fn list(&self, off: usize, n: u32) -> Option<Vec<u32>> {
        if (n as usize).checked_mul(4)? > self.bytes.len().saturating_sub(off) {
            return None;
        }
        (0..n as usize).map(|k| self.u32(off + 4 * k)).collect()
    }
}
