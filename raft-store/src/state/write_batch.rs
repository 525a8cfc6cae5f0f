//! The rows an apply changes, written atomically by the store.

/// One row change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
}

/// The row changes of one or more applied entries, in order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WriteBatch {
    pub ops: Vec<WriteOp>,
}

impl WriteBatch {
    pub fn put(&mut self, key: impl Into<Vec<u8>>, value: Vec<u8>) {
        self.ops.push(WriteOp::Put(key.into(), value));
    }

    pub fn delete(&mut self, key: impl Into<Vec<u8>>) {
        self.ops.push(WriteOp::Delete(key.into()));
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Converts into a sled batch (applied atomically by `Tree::apply_batch`).
    pub fn to_sled(&self) -> sled::Batch {
        let mut batch = sled::Batch::default();
        for op in &self.ops {
            match op {
                WriteOp::Put(k, v) => batch.insert(k.as_slice(), v.as_slice()),
                WriteOp::Delete(k) => batch.remove(k.as_slice()),
            }
        }
        batch
    }
}
