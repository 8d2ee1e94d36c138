//! Member and cluster ids, derived as etcd derives them, so that the same `--initial-cluster`
//! and `--initial-cluster-token` give the same ids on every member (and the same ids etcd would
//! give): a member's id is the first 8 bytes of SHA-1 over its sorted peer URLs and the
//! cluster token; the cluster id is the first 8 bytes of SHA-1 over the sorted member ids.
//! This module only computes; it stores nothing.

use sha1::{Digest, Sha1};

use super::NodeId;
use crate::config::InitialMember;

fn first_8(bytes: &[u8]) -> u64 {
    let digest = Sha1::digest(bytes);
    let mut id = [0u8; 8];
    id.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(id)
}

pub fn member_id(peer_urls: &[String], token: &str) -> NodeId {
    let mut urls = peer_urls.to_vec();
    urls.sort();
    let mut b = urls.concat().into_bytes();
    b.extend_from_slice(token.as_bytes());
    first_8(&b)
}

pub fn cluster_id(members: &[InitialMember], token: &str) -> u64 {
    let mut ids: Vec<NodeId> = members
        .iter()
        .map(|m| member_id(&m.peer_urls, token))
        .collect();
    ids.sort_unstable();
    let b: Vec<u8> = ids.iter().flat_map(|id| id.to_be_bytes()).collect();
    first_8(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_default_member_gets_etcds_well_known_ids() {
        // etcd's default single member (localhost peer URL, token "etcd-cluster") is
        // 8e9e05c52164694d in cluster cdf818194e3a8c32.
        let urls = vec!["http://localhost:2380".to_string()];
        assert_eq!(member_id(&urls, "etcd-cluster"), 0x8e9e05c52164694d);
        let ms = vec![InitialMember {
            name: "default".into(),
            peer_urls: urls,
        }];
        assert_eq!(cluster_id(&ms, "etcd-cluster"), 0xcdf818194e3a8c32);
    }

    #[test]
    fn ids_are_deterministic_and_distinct() {
        let a = vec!["http://127.0.0.1:2380".to_string()];
        let b = vec!["http://127.0.0.1:3380".to_string()];
        assert_eq!(member_id(&a, "t"), member_id(&a, "t"));
        assert_ne!(member_id(&a, "t"), member_id(&b, "t"));
        assert_ne!(member_id(&a, "t"), member_id(&a, "u"));
        let ms = vec![
            InitialMember {
                name: "a".into(),
                peer_urls: a,
            },
            InitialMember {
                name: "b".into(),
                peer_urls: b,
            },
        ];
        let mut rev = ms.clone();
        rev.reverse();
        assert_eq!(cluster_id(&ms, "t"), cluster_id(&rev, "t"));
    }
}
