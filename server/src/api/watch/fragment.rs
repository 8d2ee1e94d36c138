//! Splitting a watch response that is too large into fragments, as etcd does for watchers
//! created with `fragment: true`.
//!
//! A response under the limit, or with a single event, goes as it is. Otherwise the events
//! are cut into consecutive responses, each as full as the limit allows (at least one
//! event); every part but the last has `fragment` set, and clients join them back. This
//! module only splits; whether to split is the stream's decision.

use prost::Message;
use setpoint_proto::etcdserverpb::WatchResponse;

/// The responses to send for `resp` under a `max_bytes` limit per response.
pub fn split(resp: WatchResponse, max_bytes: usize) -> Vec<WatchResponse> {
    if resp.events.len() < 2 || resp.encoded_len() < max_bytes {
        return vec![resp];
    }
    let mut shell = resp.clone();
    shell.events.clear();
    shell.fragment = true;
    let shell_len = shell.encoded_len();
    let mut out = Vec::new();
    let mut current = shell.clone();
    let mut size = shell_len;
    for event in resp.events {
        // Each event costs its length plus the field tag and length prefix.
        let len = event.encoded_len();
        let cost = 1 + prost::length_delimiter_len(len) + len;
        if !current.events.is_empty() && size + cost >= max_bytes {
            out.push(std::mem::replace(&mut current, shell.clone()));
            size = shell_len;
        }
        size += cost;
        current.events.push(event);
    }
    current.fragment = false;
    out.push(current);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use setpoint_proto::mvccpb::{Event, KeyValue};

    fn resp(n: usize, value_len: usize) -> WatchResponse {
        WatchResponse {
            watch_id: 7,
            events: (0..n)
                .map(|i| Event {
                    kv: Some(KeyValue {
                        key: format!("k{i}").into_bytes(),
                        value: vec![b'x'; value_len],
                        mod_revision: 5,
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn small_or_single_event_responses_are_not_split() {
        assert_eq!(split(resp(3, 10), 1000).len(), 1);
        let one = split(resp(1, 5000), 1000);
        assert_eq!(one.len(), 1);
        assert!(!one[0].fragment);
    }

    #[test]
    fn large_responses_split_under_the_limit_and_keep_every_event_in_order() {
        let original = resp(10, 300);
        let parts = split(original.clone(), 1000);
        assert!(parts.len() > 1);
        for (i, p) in parts.iter().enumerate() {
            assert_eq!(p.fragment, i + 1 < parts.len());
            assert_eq!(p.watch_id, 7);
            assert!(p.encoded_len() < 1000 || p.events.len() == 1);
        }
        let joined: Vec<Event> = parts.into_iter().flat_map(|p| p.events).collect();
        assert_eq!(joined, original.events);
    }
}
