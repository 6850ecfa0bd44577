//! RAID0, RAID1 and RAID5 combinations of block stores (`cli.md` §4.4–4.6,
//! reference `raid{0,1,5}_blockstore.py`). Nodes are any [`BlockStore`]s,
//! each keeping its own timeout and logging its own failures; the combinators
//! log the outcome that matters (a lost block, an operation that failed).
//!
//! Node calls run concurrently in the caller's task: when the outcome is
//! decided (first failure of a strict write, first successful RAID1 read,
//! second RAID5 failure), the calls still in flight are dropped, which
//! cancels them. Stores are idempotent, so a cancelled write only leaves a
//! key that a retry writes again with the same bytes.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use parsec_protocol::types::*;

use super::{BlockStore, BlockStoreError};

fn failed(text: String) -> BlockStoreError {
    BlockStoreError::Unavailable(anyhow::anyhow!(text))
}

// ------------------------------------------------------------------ RAID0

/// Striping by block: block `id` lives whole on node `id mod n`, where `id`
/// is the UUID read as a big-endian 128-bit integer. No redundancy.
pub struct Raid0BlockStore {
    nodes: Vec<Arc<dyn BlockStore>>,
}

impl Raid0BlockStore {
    pub fn new(nodes: Vec<Arc<dyn BlockStore>>) -> anyhow::Result<Self> {
        anyhow::ensure!(!nodes.is_empty(), "RAID0 block store needs at least 1 node");
        Ok(Self { nodes })
    }

    fn node_index(&self, block_id: Uuid) -> usize {
        // The remainder is below `nodes.len()`, so it fits a usize.
        (block_id.as_u128() % self.nodes.len() as u128) as usize
    }
}

#[async_trait]
impl BlockStore for Raid0BlockStore {
    async fn read(&self, org: &OrganizationId, block_id: Uuid) -> Result<Bytes, BlockStoreError> {
        self.nodes[self.node_index(block_id)].read(org, block_id).await
    }

    async fn create(&self, org: &OrganizationId, block_id: Uuid, block: Bytes) -> Result<(), BlockStoreError> {
        self.nodes[self.node_index(block_id)].create(org, block_id, block).await
    }

    async fn health(&self) -> Result<(), BlockStoreError> {
        nodes_health(&self.nodes, 0).await
    }
}

/// Readiness of a RAID: the nodes are probed at once; at most `tolerated`
/// of them may fail.
async fn nodes_health(nodes: &[Arc<dyn BlockStore>], tolerated: usize) -> Result<(), BlockStoreError> {
    let results = futures_util::future::join_all(nodes.iter().map(|node| node.health())).await;
    let failed: Vec<String> = results
        .into_iter()
        .enumerate()
        .filter_map(|(i, r)| r.err().map(|e| format!("node {i}: {e}")))
        .collect();
    if failed.len() <= tolerated {
        Ok(())
    } else {
        Err(BlockStoreError::Unavailable(anyhow::anyhow!("{}", failed.join("; "))))
    }
}

// ------------------------------------------------------------------ RAID1

/// Mirroring: every node holds the whole block.
pub struct Raid1BlockStore {
    nodes: Vec<Arc<dyn BlockStore>>,
    /// `false` (the CLI's choice): a write fails as soon as one node fails.
    /// `true`: a write fails only if every node failed.
    partial_create_ok: bool,
}

impl Raid1BlockStore {
    pub fn new(nodes: Vec<Arc<dyn BlockStore>>, partial_create_ok: bool) -> anyhow::Result<Self> {
        anyhow::ensure!(!nodes.is_empty(), "RAID1 block store needs at least 1 node");
        Ok(Self {
            nodes,
            partial_create_ok,
        })
    }
}

#[async_trait]
impl BlockStore for Raid1BlockStore {
    /// Reads every node at once; the first success wins and the other reads
    /// are cancelled. An empty block is a success (unlike the reference,
    /// which took it for a failure).
    async fn read(&self, org: &OrganizationId, block_id: Uuid) -> Result<Bytes, BlockStoreError> {
        let mut reads: FuturesUnordered<_> = self.nodes.iter().map(|node| node.read(org, block_id)).collect();
        let mut last_error = None;
        while let Some(result) = reads.next().await {
            match result {
                Ok(block) => return Ok(block),
                Err(e) => last_error = Some(e),
            }
        }
        log::warn!(
            "RAID1 blockstore: block read error: all nodes have failed org={} block={}",
            org.as_str(),
            block_id.hyphenated()
        );
        Err(failed(match last_error {
            Some(e) => format!("All RAID1 nodes have failed (last: {e})"),
            None => "All RAID1 nodes have failed".to_string(),
        }))
    }

    async fn create(&self, org: &OrganizationId, block_id: Uuid, block: Bytes) -> Result<(), BlockStoreError> {
        let mut writes: FuturesUnordered<_> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(index, node)| {
                let block = block.clone();
                async move { (index, node.create(org, block_id, block).await) }
            })
            .collect();
        let mut successes = 0;
        let mut last_error = None;
        while let Some((index, result)) = writes.next().await {
            match result {
                Ok(()) => successes += 1,
                Err(e) if !self.partial_create_ok => {
                    // Early exit: the write cannot succeed any more.
                    log::warn!(
                        "RAID1 blockstore: block create error: node {index} has failed org={} block={}",
                        org.as_str(),
                        block_id.hyphenated()
                    );
                    return Err(failed(format!("A RAID1 node have failed (node {index}: {e})")));
                }
                Err(e) => last_error = Some((index, e)),
            }
        }
        if successes == 0 {
            log::warn!(
                "RAID1 blockstore: block create error: all nodes have failed org={} block={}",
                org.as_str(),
                block_id.hyphenated()
            );
            return Err(failed(match last_error {
                Some((index, e)) => format!("All RAID1 nodes have failed (node {index}: {e})"),
                None => "All RAID1 nodes have failed".to_string(),
            }));
        }
        Ok(())
    }

    /// Ready while writes can succeed: every node, or one with `partial_create_ok`.
    async fn health(&self) -> Result<(), BlockStoreError> {
        let tolerated = if self.partial_create_ok {
            self.nodes.len() - 1
        } else {
            0
        };
        nodes_health(&self.nodes, tolerated).await
    }
}

// ------------------------------------------------------------------ RAID5

/// Striping with XOR parity over `n >= 3` nodes: the block, prefixed with its
/// length (big-endian u32) and zero-padded, is cut into `n - 1` equal chunks
/// stored on nodes `0..n-1`; their XOR is stored on the last node. Reads
/// survive the loss of any one node.
pub struct Raid5BlockStore {
    nodes: Vec<Arc<dyn BlockStore>>,
    /// `false` (the CLI's choice): a write fails as soon as one node fails.
    /// `true`: a write tolerates exactly one failed node.
    partial_create_ok: bool,
}

/// Cuts `block` into `data_nodes` chunks of equal length (see
/// [`Raid5BlockStore`]). `None` for a block of 4 GiB or more, which the
/// length prefix cannot describe.
pub fn split_in_chunks(block: &[u8], data_nodes: usize) -> Option<Vec<Bytes>> {
    let data_nodes = data_nodes.max(1);
    let len = u32::try_from(block.len()).ok()?;
    let chunk_len = (block.len() + 4).div_ceil(data_nodes);
    let mut payload = Vec::with_capacity(chunk_len * data_nodes);
    payload.extend_from_slice(&len.to_be_bytes());
    payload.extend_from_slice(block);
    payload.resize(chunk_len * data_nodes, 0);
    let payload = Bytes::from(payload);
    Some(
        (0..data_nodes)
            .map(|i| payload.slice(i * chunk_len..(i + 1) * chunk_len))
            .collect(),
    )
}

/// Bytewise XOR of chunks of equal length (`None` if lengths differ).
pub fn xor_chunks<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Option<Vec<u8>> {
    let mut chunks = chunks.into_iter();
    let mut acc = chunks.next()?.to_vec();
    for chunk in chunks {
        if chunk.len() != acc.len() {
            return None;
        }
        for (a, b) in acc.iter_mut().zip(chunk) {
            *a ^= b;
        }
    }
    Some(acc)
}

/// The block from its data chunks, at most one of them missing, rebuilt
/// from `parity` then. Inconsistent chunks (storage corruption) are an error,
/// never a panic.
pub fn rebuild_block(chunks: Vec<Option<Bytes>>, parity: Option<Bytes>) -> Result<Bytes, String> {
    let missing: Vec<usize> = chunks
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.is_none().then_some(i))
        .collect();
    let mut chunks: Vec<Bytes> = match missing.as_slice() {
        [] => chunks.into_iter().flatten().collect(),
        [index] => {
            let parity = parity.ok_or("a chunk is missing and the parity too")?;
            let present = chunks.iter().flatten().map(|c| &c[..]);
            let rebuilt = xor_chunks(present.chain([&parity[..]])).ok_or("chunks of different lengths")?;
            let mut all = chunks;
            all[*index] = Some(Bytes::from(rebuilt));
            all.into_iter().flatten().collect()
        }
        _ => return Err(format!("{} chunks are missing", missing.len())),
    };
    let chunk_len = chunks.first().map_or(0, Bytes::len);
    if chunks.iter().any(|c| c.len() != chunk_len) {
        return Err("chunks of different lengths".into());
    }
    let payload: Bytes = if chunks.len() == 1 {
        chunks.remove(0)
    } else {
        chunks.concat().into()
    };
    let prefix: [u8; 4] = payload
        .get(..4)
        .and_then(|p| p.try_into().ok())
        .ok_or("payload shorter than its length prefix")?;
    let len = u32::from_be_bytes(prefix) as usize;
    if payload.len() - 4 < len {
        return Err(format!(
            "length prefix {len} beyond the {} payload bytes",
            payload.len() - 4
        ));
    }
    Ok(payload.slice(4..4 + len))
}

impl Raid5BlockStore {
    pub fn new(nodes: Vec<Arc<dyn BlockStore>>, partial_create_ok: bool) -> anyhow::Result<Self> {
        anyhow::ensure!(nodes.len() >= 3, "RAID5 block store needs at least 3 nodes");
        Ok(Self {
            nodes,
            partial_create_ok,
        })
    }

    fn parity_index(&self) -> usize {
        self.nodes.len() - 1
    }

    async fn read_node(
        &self,
        index: usize,
        org: &OrganizationId,
        block_id: Uuid,
    ) -> (usize, Result<Bytes, BlockStoreError>) {
        (index, self.nodes[index].read(org, block_id).await)
    }
}

#[async_trait]
impl BlockStore for Raid5BlockStore {
    /// Reads the data chunks; the parity only once a data chunk failed, and
    /// a second failure ends the read.
    async fn read(&self, org: &OrganizationId, block_id: Uuid) -> Result<Bytes, BlockStoreError> {
        let parity_index = self.parity_index();
        let mut reads: FuturesUnordered<_> = (0..parity_index)
            .map(|index| self.read_node(index, org, block_id))
            .collect();
        let mut chunks: Vec<Option<Bytes>> = vec![None; parity_index];
        let mut parity = None;
        let mut first_failure: Option<(usize, BlockStoreError)> = None;
        while let Some((index, result)) = reads.next().await {
            let e = match result {
                Ok(chunk) if index == parity_index => {
                    parity = Some(chunk);
                    continue;
                }
                Ok(chunk) => {
                    chunks[index] = Some(chunk);
                    continue;
                }
                Err(e) => e,
            };
            let Some((first, first_e)) = first_failure.take() else {
                first_failure = Some((index, e));
                // Try the parity, to rebuild the missing chunk.
                reads.push(self.read_node(parity_index, org, block_id));
                continue;
            };
            log::warn!(
                "RAID5 blockstore: block read error: more than 1 node has failed (nodes {first} and {index}) \
                 org={} block={}",
                org.as_str(),
                block_id.hyphenated()
            );
            return Err(failed(format!(
                "More than 1 RAID5 nodes have failed (node {first}: {first_e}; node {index}: {e})"
            )));
        }
        rebuild_block(chunks, parity).map_err(|why| {
            log::warn!(
                "RAID5 blockstore: block read error: inconsistent chunks org={} block={}: {why}",
                org.as_str(),
                block_id.hyphenated()
            );
            failed(format!("RAID5 chunks cannot be assembled: {why}"))
        })
    }

    async fn create(&self, org: &OrganizationId, block_id: Uuid, block: Bytes) -> Result<(), BlockStoreError> {
        let mut pieces = split_in_chunks(&block, self.parity_index())
            .ok_or_else(|| failed(format!("block of {} bytes too large for RAID5", block.len())))?;
        let parity = xor_chunks(pieces.iter().map(|c| &c[..])).unwrap_or_default();
        pieces.push(Bytes::from(parity));
        let mut writes: FuturesUnordered<_> = self
            .nodes
            .iter()
            .zip(pieces)
            .enumerate()
            .map(|(index, (node, piece))| async move { (index, node.create(org, block_id, piece).await) })
            .collect();
        let mut first_failure: Option<(usize, BlockStoreError)> = None;
        while let Some((index, result)) = writes.next().await {
            let Err(e) = result else { continue };
            if !self.partial_create_ok {
                // Early exit: the write cannot succeed any more.
                log::warn!(
                    "RAID5 blockstore: block create error: node {index} has failed org={} block={}",
                    org.as_str(),
                    block_id.hyphenated()
                );
                return Err(failed(format!("A RAID5 node have failed (node {index}: {e})")));
            }
            if let Some((first, first_e)) = &first_failure {
                log::warn!(
                    "RAID5 blockstore: block create error: more than 1 node has failed (nodes {first} and {index}) \
                     org={} block={}",
                    org.as_str(),
                    block_id.hyphenated()
                );
                return Err(failed(format!(
                    "More than 1 RAID5 nodes have failed (node {first}: {first_e}; node {index}: {e})"
                )));
            }
            first_failure = Some((index, e));
        }
        Ok(())
    }

    /// Ready while writes can succeed: every node, or all but one with `partial_create_ok`.
    async fn health(&self) -> Result<(), BlockStoreError> {
        nodes_health(&self.nodes, usize::from(self.partial_create_ok)).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::blockstore::MemoryBlockStore;

    /// A memory node that can be switched off, and counts its reads.
    #[derive(Default)]
    struct Node {
        store: MemoryBlockStore,
        down: AtomicBool,
        reads: AtomicUsize,
    }

    impl Node {
        fn set_down(&self, down: bool) {
            self.down.store(down, Ordering::SeqCst);
        }
        fn check(&self) -> Result<(), BlockStoreError> {
            if self.down.load(Ordering::SeqCst) {
                Err(BlockStoreError::Unavailable(anyhow::anyhow!("node down")))
            } else {
                Ok(())
            }
        }
    }

    #[async_trait]
    impl BlockStore for Node {
        async fn read(&self, org: &OrganizationId, block_id: Uuid) -> Result<Bytes, BlockStoreError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            self.check()?;
            self.store.read(org, block_id).await
        }
        async fn create(&self, org: &OrganizationId, block_id: Uuid, block: Bytes) -> Result<(), BlockStoreError> {
            self.check()?;
            self.store.create(org, block_id, block).await
        }
        async fn health(&self) -> Result<(), BlockStoreError> {
            self.check()
        }
    }

    /// A node whose calls each wait until `expected` calls are in flight at
    /// once (or fail after a while): proves the combinators do not call their
    /// nodes one after the other.
    struct Rendezvous {
        barrier: Arc<tokio::sync::Barrier>,
        store: MemoryBlockStore,
    }

    impl Rendezvous {
        async fn meet(&self) -> Result<(), BlockStoreError> {
            tokio::time::timeout(Duration::from_secs(5), self.barrier.wait())
                .await
                .map(|_| ())
                .map_err(|_| BlockStoreError::Unavailable(anyhow::anyhow!("calls were not concurrent")))
        }
    }

    #[async_trait]
    impl BlockStore for Rendezvous {
        async fn read(&self, org: &OrganizationId, block_id: Uuid) -> Result<Bytes, BlockStoreError> {
            self.meet().await?;
            self.store.read(org, block_id).await
        }
        async fn create(&self, org: &OrganizationId, block_id: Uuid, block: Bytes) -> Result<(), BlockStoreError> {
            self.meet().await?;
            self.store.create(org, block_id, block).await
        }
    }

    fn nodes(n: usize) -> (Vec<Arc<Node>>, Vec<Arc<dyn BlockStore>>) {
        let nodes: Vec<Arc<Node>> = (0..n).map(|_| Arc::new(Node::default())).collect();
        let dyns = nodes.iter().map(|n| n.clone() as Arc<dyn BlockStore>).collect();
        (nodes, dyns)
    }

    fn org() -> OrganizationId {
        OrganizationId::parse("Org").unwrap()
    }

    fn random_block(len: usize) -> Bytes {
        (0..len).map(|_| rand::random::<u8>()).collect::<Vec<u8>>().into()
    }

    fn message(e: BlockStoreError) -> String {
        e.to_string()
    }

    #[test]
    fn raid5_layout_matches_the_reference() {
        // cli.md §4.6: L = 10, n = 3 → k = 2, 14-byte payload, chunks of 7.
        let block = b"0123456789";
        let chunks = split_in_chunks(block, 2).unwrap();
        assert_eq!(chunks.len(), 2);
        assert_eq!(&chunks[0][..], b"\0\0\0\x0a012");
        assert_eq!(&chunks[1][..], b"3456789");
        // Padding: L = 1, k = 2 → payload 5 bytes, chunks of 3, one zero byte.
        let chunks = split_in_chunks(b"x", 2).unwrap();
        assert_eq!(&chunks[0][..], b"\0\0\0");
        assert_eq!(&chunks[1][..], b"\x01x\0");
        // An empty block still has its length prefix.
        let chunks = split_in_chunks(b"", 4).unwrap();
        assert_eq!(chunks.iter().map(Bytes::len).collect::<Vec<_>>(), [1, 1, 1, 1]);
        assert_eq!(xor_chunks([&b"\x0f\xf0"[..], b"\xff\x00"]).unwrap(), b"\xf0\xf0");
        assert_eq!(xor_chunks([&b"ab"[..], b"a"]), None);
    }

    #[test]
    fn raid5_rebuilds_any_single_missing_chunk() {
        for data_nodes in 2..6 {
            for len in [0, 1, 2, 3, 4, 5, 7, 100, 4099] {
                let block = random_block(len);
                let chunks = split_in_chunks(&block, data_nodes).unwrap();
                let parity = Bytes::from(xor_chunks(chunks.iter().map(|c| &c[..])).unwrap());
                let all: Vec<Option<Bytes>> = chunks.iter().cloned().map(Some).collect();
                assert_eq!(rebuild_block(all.clone(), None).unwrap(), block);
                for lost in 0..data_nodes {
                    let mut some = all.clone();
                    some[lost] = None;
                    assert_eq!(
                        rebuild_block(some, Some(parity.clone())).unwrap(),
                        block,
                        "k={data_nodes} L={len}"
                    );
                }
                let mut two_lost = all.clone();
                two_lost[0] = None;
                two_lost[1] = None;
                assert!(rebuild_block(two_lost, Some(parity.clone())).is_err());
            }
        }
    }

    #[test]
    fn raid5_corruption_is_an_error_not_a_panic() {
        let c = |b: &'static [u8]| Some(Bytes::from_static(b));
        assert!(rebuild_block(vec![c(b"\0\0"), c(b"\0")], None).is_err());
        assert!(rebuild_block(vec![c(b"\0\0"), c(b"\0\x09")], None).is_err()); // length 9 > 0 bytes
        assert!(rebuild_block(vec![c(b"\0\0"), None], Some(Bytes::from_static(b"\0"))).is_err());
        assert!(rebuild_block(vec![c(b"\0\0"), None], None).is_err());
        assert_eq!(rebuild_block(vec![c(b"\0\0"), c(b"\0\0")], None).unwrap(), Bytes::new());
    }

    #[test]
    fn constructors_check_node_counts() {
        assert!(Raid0BlockStore::new(vec![]).is_err());
        assert!(Raid1BlockStore::new(vec![], false).is_err());
        assert!(Raid5BlockStore::new(nodes(2).1, false).is_err());
        assert!(Raid5BlockStore::new(nodes(3).1, false).is_ok());
    }

    #[actix_web::test]
    async fn raid0_places_each_block_on_id_mod_n() {
        let (raw, dyns) = nodes(3);
        let raid = Raid0BlockStore::new(dyns).unwrap();
        for _ in 0..30 {
            let id = Uuid::new_v4();
            let block = random_block(10);
            raid.create(&org(), id, block.clone()).await.unwrap();
            let home = (id.as_u128() % 3) as usize;
            for (i, node) in raw.iter().enumerate() {
                assert_eq!(node.store.read(&org(), id).await.is_ok(), i == home);
            }
            assert_eq!(raid.read(&org(), id).await.unwrap(), block);
        }
        // No redundancy: the block's node down, the block is unreadable.
        let id = Uuid::from_u128(4); // node 1
        raid.create(&org(), id, random_block(3)).await.unwrap();
        raw[1].set_down(true);
        assert!(raid.read(&org(), id).await.is_err());
        assert!(raid.create(&org(), Uuid::from_u128(7), random_block(3)).await.is_err());
        raid.create(&org(), Uuid::from_u128(6), random_block(3)).await.unwrap();
    }

    #[actix_web::test]
    async fn raid1_reads_through_the_loss_of_all_but_one_node() {
        let (raw, dyns) = nodes(3);
        let raid = Raid1BlockStore::new(dyns, false).unwrap();
        let blocks: Vec<(Uuid, Bytes)> = [0, 1, 1000]
            .iter()
            .map(|&n| (Uuid::new_v4(), random_block(n)))
            .collect();
        for (id, block) in &blocks {
            raid.create(&org(), *id, block.clone()).await.unwrap();
            for node in &raw {
                assert_eq!(&node.store.read(&org(), *id).await.unwrap(), block);
            }
        }
        raw[0].set_down(true);
        raw[2].set_down(true);
        for (id, block) in &blocks {
            assert_eq!(&raid.read(&org(), *id).await.unwrap(), block, "empty blocks included");
        }
        // A strict write fails as soon as a node fails.
        let e = raid.create(&org(), Uuid::new_v4(), random_block(5)).await.unwrap_err();
        assert!(message(e).contains("A RAID1 node have failed"));
        raw[1].set_down(true);
        let e = raid.read(&org(), blocks[0].0).await.unwrap_err();
        assert!(message(e).contains("All RAID1 nodes have failed"));
        assert!(matches!(
            raid.read(&org(), Uuid::new_v4()).await,
            Err(BlockStoreError::Unavailable(_))
        ));
    }

    #[actix_web::test]
    async fn health_follows_the_nodes_writes_need() {
        let (raw, dyns) = nodes(3);
        let raid0 = Raid0BlockStore::new(dyns.clone()).unwrap();
        let strict1 = Raid1BlockStore::new(dyns.clone(), false).unwrap();
        let partial1 = Raid1BlockStore::new(dyns.clone(), true).unwrap();
        let strict5 = Raid5BlockStore::new(dyns.clone(), false).unwrap();
        let partial5 = Raid5BlockStore::new(dyns, true).unwrap();
        for raid in [&raid0 as &dyn BlockStore, &strict1, &partial1, &strict5, &partial5] {
            raid.health().await.unwrap();
        }
        raw[1].set_down(true);
        for raid in [&raid0 as &dyn BlockStore, &strict1, &strict5] {
            assert!(message(raid.health().await.unwrap_err()).contains("node 1"));
        }
        partial1.health().await.unwrap();
        partial5.health().await.unwrap();
        raw[2].set_down(true);
        partial1.health().await.unwrap();
        assert!(partial5.health().await.is_err());
        raw[0].set_down(true);
        assert!(partial1.health().await.is_err());
    }

    #[actix_web::test]
    async fn raid1_partial_create() {
        let (raw, dyns) = nodes(2);
        let raid = Raid1BlockStore::new(dyns, true).unwrap();
        raw[0].set_down(true);
        let id = Uuid::new_v4();
        raid.create(&org(), id, random_block(5)).await.unwrap();
        raw[1].set_down(true);
        let e = raid.create(&org(), Uuid::new_v4(), random_block(5)).await.unwrap_err();
        assert!(message(e).contains("All RAID1 nodes have failed"));
    }

    #[actix_web::test]
    async fn raid5_reads_through_the_loss_of_any_one_node() {
        for n in [3, 4, 5] {
            let (raw, dyns) = nodes(n);
            let raid = Raid5BlockStore::new(dyns, false).unwrap();
            let blocks: Vec<(Uuid, Bytes)> = [0, 1, 2, 513, 4096]
                .iter()
                .map(|&len| (Uuid::new_v4(), random_block(len)))
                .collect();
            for (id, block) in &blocks {
                raid.create(&org(), *id, block.clone()).await.unwrap();
            }
            // All up: the parity node is not read.
            for (id, block) in &blocks {
                assert_eq!(&raid.read(&org(), *id).await.unwrap(), block);
            }
            assert_eq!(raw[n - 1].reads.load(Ordering::SeqCst), 0);
            for (lost, node) in raw.iter().enumerate() {
                node.set_down(true);
                for (id, block) in &blocks {
                    assert_eq!(&raid.read(&org(), *id).await.unwrap(), block, "n={n}, node {lost} down");
                }
                // A strict write needs every node.
                let e = raid.create(&org(), Uuid::new_v4(), random_block(9)).await.unwrap_err();
                assert!(message(e).contains("A RAID5 node have failed"), "n={n}");
                node.set_down(false);
            }
            raw[0].set_down(true);
            raw[n - 1].set_down(true);
            let e = raid.read(&org(), blocks[1].0).await.unwrap_err();
            assert!(message(e).contains("More than 1 RAID5 nodes have failed"), "n={n}");
            raw[n - 1].set_down(false);
            raw[1].set_down(true);
            let e = raid.read(&org(), blocks[1].0).await.unwrap_err();
            assert!(message(e).contains("More than 1 RAID5 nodes have failed"), "n={n}");
        }
    }

    #[actix_web::test]
    async fn raid5_partial_create_tolerates_one_node() {
        let (raw, dyns) = nodes(3);
        let raid = Raid5BlockStore::new(dyns, true).unwrap();
        raw[1].set_down(true);
        let id = Uuid::new_v4();
        let block = random_block(100);
        raid.create(&org(), id, block.clone()).await.unwrap();
        assert_eq!(raid.read(&org(), id).await.unwrap(), block);
        raw[2].set_down(true);
        let e = raid.create(&org(), Uuid::new_v4(), block).await.unwrap_err();
        assert!(message(e).contains("More than 1 RAID5 nodes have failed"));
    }

    #[actix_web::test]
    async fn node_calls_are_concurrent() {
        let rendezvous = |count: usize| -> Vec<Arc<dyn BlockStore>> {
            let barrier = Arc::new(tokio::sync::Barrier::new(count));
            (0..count)
                .map(|_| {
                    Arc::new(Rendezvous {
                        barrier: barrier.clone(),
                        store: MemoryBlockStore::default(),
                    }) as Arc<dyn BlockStore>
                })
                .collect()
        };
        let id = Uuid::new_v4();
        let raid1 = Raid1BlockStore::new(rendezvous(3), false).unwrap();
        raid1.create(&org(), id, random_block(10)).await.unwrap();
        // RAID5 writes all 4 pieces at once, and reads the 3 data chunks at once.
        let raid5 = Raid5BlockStore::new(rendezvous(4), false).unwrap();
        raid5.create(&org(), id, random_block(10)).await.unwrap();
        let barrier = Arc::new(tokio::sync::Barrier::new(3));
        let store = MemoryBlockStore::default();
        let data = split_in_chunks(b"hello", 3).unwrap();
        let mut dyns: Vec<Arc<dyn BlockStore>> = Vec::new();
        for chunk in &data {
            let node = Rendezvous {
                barrier: barrier.clone(),
                store: MemoryBlockStore::default(),
            };
            node.store.create(&org(), id, chunk.clone()).await.unwrap();
            dyns.push(Arc::new(node));
        }
        dyns.push(Arc::new(store));
        let raid5 = Raid5BlockStore::new(dyns, false).unwrap();
        assert_eq!(&raid5.read(&org(), id).await.unwrap()[..], b"hello");
    }
}
