//! Tests of `proxy`: known-good and known-bad inputs, each able to fail.

use super::*;
use rand::{Rng, RngCore, SeedableRng};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(5);

/// Pids saying this test process is member `k`.
fn me(k: usize) -> Pids {
    let pid = std::process::id();
    Arc::new(move || vec![(k, pid)])
}

fn nobody() -> Pids {
    Arc::new(Vec::new)
}

fn blocked() -> LinkFault {
    LinkFault {
        blocked: true,
        ..LinkFault::default()
    }
}

async fn setup(n: usize, owner: usize, pids: Pids) -> (Arc<Links>, Proxy, TcpListener) {
    let target = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let links = Links::new(n);
    let proxy = start(
        "127.0.0.1:0".parse().unwrap(),
        target.local_addr().unwrap(),
        owner,
        links.clone(),
        pids,
    )
    .await
    .unwrap();
    (links, proxy, target)
}

/// A connection through the proxy: (dialer's end, listener's end).
async fn connect(proxy: &Proxy, target: &TcpListener) -> (TcpStream, TcpStream) {
    let client = timeout(WAIT, TcpStream::connect(proxy.local_addr()))
        .await
        .expect("connect to the proxy in time")
        .unwrap();
    let (server, _) = timeout(WAIT, target.accept())
        .await
        .expect("the proxy reaches the target in time")
        .unwrap();
    (client, server)
}

/// Reads exactly `n` bytes within `within`; `None` if they did not all come.
async fn read_n(s: &mut TcpStream, n: usize, within: Duration) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; n];
    match timeout(within, s.read_exact(&mut buf)).await {
        Ok(r) => {
            r.expect("read");
            Some(buf)
        }
        Err(_) => None,
    }
}

/// Whether `s` is closed (EOF or error) within `within`, discarding any data.
async fn closed(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    timeout(within, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

async fn send(from: &mut TcpStream, to: &mut TcpStream, msg: &[u8]) {
    from.write_all(msg).await.unwrap();
    let got = read_n(to, msg.len(), WAIT)
        .await
        .expect("delivered in time");
    assert_eq!(got, msg);
}

#[test]
#[cfg(target_endian = "little")]
fn parses_proc_net_addresses() {
    assert_eq!(
        parse_proc_addr("0100007F:0016"),
        Some("127.0.0.1:22".parse().unwrap())
    );
    assert_eq!(
        parse_proc_addr("00000000000000000000000001000000:1F90"),
        Some("[::1]:8080".parse().unwrap())
    );
    // ::ffff:127.0.0.1 comes back as plain IPv4.
    assert_eq!(
        parse_proc_addr("0000000000000000FFFF00000100007F:0050"),
        Some("127.0.0.1:80".parse().unwrap())
    );
    assert_eq!(parse_proc_addr("0100007F"), None);
    assert_eq!(parse_proc_addr("0100007:0016"), None);
    assert_eq!(parse_proc_addr("zz00007F:0016"), None);
}

#[test]
#[cfg(target_endian = "little")]
fn finds_inode_in_table() {
    let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 111 1 0000000000000000 100 0 0 10 0\n\
   1: 0100007F:A000 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000        0 222 1 0000000000000000 20 4 30 10 -1\n\
   2: 0100007F:1F90 0100007F:A000 01 00000000:00000000 00:00000000 00000000  1000        0 333 1 0000000000000000 20 4 30 10 -1\n\
   3: 0100007F:A001 0100007F:1F90 06 00000000:00000000 03:00000000 00000000     0        0 0 3 0000000000000000\n";
    let proxy: SocketAddr = "127.0.0.1:8080".parse().unwrap();
    let dialer: SocketAddr = "127.0.0.1:40960".parse().unwrap();
    assert_eq!(find_inode(table, dialer, proxy), Some(222));
    assert_eq!(find_inode(table, proxy, dialer), Some(333));
    // TIME_WAIT sockets have inode 0: not a live socket.
    assert_eq!(
        find_inode(table, "127.0.0.1:40961".parse().unwrap(), proxy),
        None
    );
}

#[tokio::test]
async fn identifies_the_dialing_process() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let local = listener.local_addr().unwrap();
    let _dialer = TcpStream::connect(local).await.unwrap();
    let (_accepted, peer) = listener.accept().await.unwrap();
    let pid = std::process::id();
    let found = tokio::task::spawn_blocking(move || {
        let mine: Pids = Arc::new(move || vec![(3, 1), (7, pid)]);
        let other: Pids = Arc::new(|| vec![(3, 1), (4, u32::MAX)]);
        (
            identify(peer, local, &mine),
            identify(peer, local, &other),
            identify(peer, local, &nobody()),
        )
    })
    .await
    .unwrap();
    assert_eq!(found, (Some(7), None, None));
}

#[tokio::test]
async fn links_set_get_heal() {
    let links = Links::new(3);
    assert_eq!(links.n(), 3);
    assert!(links.faulty().is_empty());
    let slow = LinkFault {
        delay: Duration::from_millis(50),
        drop: 0.1,
        ..LinkFault::default()
    };
    links.set(0, 2, blocked());
    links.set(2, 1, slow);
    assert_eq!(links.get(0, 2), blocked());
    assert_eq!(links.get(2, 0), LinkFault::default());
    assert_eq!(links.get(2, 1), slow);
    assert_eq!(links.faulty(), vec![(0, 2, blocked()), (2, 1, slow)]);
    links.heal();
    assert!(links.faulty().is_empty());
    assert_eq!(links.block_limit(), DEFAULT_BLOCK_LIMIT);
    links.set_block_limit(Duration::from_secs(1));
    assert_eq!(links.block_limit(), Duration::from_secs(1));
}

#[tokio::test]
async fn owner_out_of_range_is_refused() {
    let links = Links::new(2);
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let err = start(addr, addr, 2, links, nobody()).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}

#[tokio::test]
async fn passes_through_both_directions() {
    for pids in [me(1), nobody()] {
        let (_links, proxy, target) = setup(3, 0, pids).await;
        assert_ne!(proxy.local_addr().port(), 0);
        let (mut client, mut server) = connect(&proxy, &target).await;
        for i in 0..20u32 {
            let msg = format!("ping {i}").repeat(i as usize + 1);
            send(&mut client, &mut server, msg.as_bytes()).await;
            let msg = format!("pong {i}").repeat(i as usize + 1);
            send(&mut server, &mut client, msg.as_bytes()).await;
        }
    }
}

#[tokio::test]
async fn identified_dialer_blocked_toward_listener() {
    let (owner, k) = (0, 2);
    let (links, proxy, target) = setup(3, owner, me(k)).await;
    // Blocked before the connection exists: it is accepted, then stalled.
    links.set(k, owner, blocked());
    let (mut client, mut server) = connect(&proxy, &target).await;
    client.write_all(b"request one;").await.unwrap();
    assert_eq!(
        read_n(&mut server, 12, Duration::from_millis(300)).await,
        None,
        "a blocked dialer->listener link delivered"
    );
    // The other direction is not affected.
    send(&mut server, &mut client, b"the listener still talks").await;
    client.write_all(b"request two;").await.unwrap();
    assert_eq!(
        read_n(&mut server, 1, Duration::from_millis(300)).await,
        None
    );
    links.set(k, owner, LinkFault::default());
    let got = read_n(&mut server, 24, WAIT)
        .await
        .expect("delivered after unblock");
    assert_eq!(got, b"request one;request two;");
    send(&mut client, &mut server, b"and more").await;
}

#[tokio::test]
async fn blocked_link_stalls_the_sender() {
    let (owner, k) = (0, 1);
    let (links, proxy, target) = setup(2, owner, me(k)).await;
    let (client, mut server) = connect(&proxy, &target).await;
    links.set(k, owner, blocked());
    let data: Arc<Vec<u8>> = Arc::new((0..32u32 << 20).map(|i| (i % 251) as u8).collect());
    let writer = {
        let data = data.clone();
        let mut client = client;
        tokio::spawn(async move {
            client.write_all(&data).await.unwrap();
            client
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!writer.is_finished(), "32 MiB went into a blocked link");
    assert_eq!(
        read_n(&mut server, 1, Duration::from_millis(100)).await,
        None
    );
    links.set(k, owner, LinkFault::default());
    let got = read_n(&mut server, data.len(), Duration::from_secs(30))
        .await
        .expect("delivered after unblock");
    assert!(got == *data, "bytes corrupted");
    timeout(WAIT, writer).await.unwrap().unwrap();
}

#[tokio::test]
async fn one_way_block_listener_to_dialer() {
    let (owner, k) = (1, 0);
    let (links, proxy, target) = setup(3, owner, me(k)).await;
    let (mut client, mut server) = connect(&proxy, &target).await;
    send(&mut client, &mut server, b"warm up").await;
    // Other members' links do not matter to this connection.
    links.set(2, owner, blocked());
    links.set(owner, 2, blocked());
    send(&mut client, &mut server, b"unrelated links").await;
    links.set(owner, k, blocked());
    server.write_all(b"response").await.unwrap();
    assert_eq!(
        read_n(&mut client, 1, Duration::from_millis(300)).await,
        None,
        "a blocked listener->dialer link delivered"
    );
    send(&mut client, &mut server, b"dialer still heard").await;
    server.write_all(b" continued").await.unwrap();
    links.set(owner, k, LinkFault::default());
    let got = read_n(&mut client, 18, WAIT)
        .await
        .expect("delivered after unblock");
    assert_eq!(got, b"response continued");
}

#[tokio::test]
async fn unidentified_connections_close_when_their_member_is_cut() {
    let not_me: Pids = Arc::new(|| vec![(0, 1), (2, u32::MAX)]);
    for pids in [nobody(), not_me] {
        let owner = 1;
        let (links, proxy, target) = setup(3, owner, pids).await;
        // Faults elsewhere, or only slow links, leave it alone.
        links.set(0, 2, blocked());
        links.set(
            0,
            owner,
            LinkFault {
                delay: Duration::from_millis(10),
                ..LinkFault::default()
            },
        );
        let (mut client, mut server) = connect(&proxy, &target).await;
        send(&mut client, &mut server, b"through").await;
        send(&mut server, &mut client, b"back").await;
        assert_eq!(links.unidentified(), 1);
        // A blocked link of its member closes it: it might be that link.
        links.set(owner, 2, blocked());
        assert!(closed(&mut client, WAIT).await, "dialer side not closed");
        assert!(closed(&mut server, WAIT).await, "listener side not closed");
        assert_eq!(links.unidentified_closed(), 1);
        // One opened while the block lasts is closed at once.
        let (mut client, mut server) = connect(&proxy, &target).await;
        assert!(closed(&mut client, WAIT).await);
        assert!(closed(&mut server, WAIT).await);
        assert_eq!(links.unidentified_closed(), 2);
        // Healed: they pass again.
        links.heal();
        let (mut client, mut server) = connect(&proxy, &target).await;
        send(&mut client, &mut server, b"healed").await;
        assert_eq!(links.unidentified(), 3);
    }
}

#[tokio::test]
async fn delay_adds_latency_without_limiting_throughput() {
    let (owner, k) = (0, 1);
    let delay = Duration::from_millis(400);
    let (links, proxy, target) = setup(2, owner, me(k)).await;
    let (mut client, mut server) = connect(&proxy, &target).await;
    send(&mut client, &mut server, b"warm up").await;
    links.set(
        k,
        owner,
        LinkFault {
            delay,
            ..LinkFault::default()
        },
    );
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        for i in 0..10u8 {
            client.write_all(&[i; 100]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        client
    });
    let first = read_n(&mut server, 100, WAIT).await.expect("first chunk");
    assert_eq!(first, [0u8; 100]);
    assert!(
        started.elapsed() >= delay,
        "arrived after {:?}",
        started.elapsed()
    );
    let rest = read_n(&mut server, 900, WAIT).await.expect("the rest");
    let expected: Vec<u8> = (1..10u8).flat_map(|i| [i; 100]).collect();
    assert_eq!(rest, expected);
    // One chunk per delay would take 4 s.
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "took {:?}",
        started.elapsed()
    );
    let mut client = writer.await.unwrap();
    // The reverse direction is not delayed.
    let started = Instant::now();
    send(&mut server, &mut client, b"fast back").await;
    assert!(started.elapsed() < Duration::from_millis(300));
}

#[tokio::test]
async fn chunk_read_before_a_block_waits_for_the_unblock() {
    let (owner, k) = (0, 1);
    let (links, proxy, target) = setup(2, owner, me(k)).await;
    let (mut client, mut server) = connect(&proxy, &target).await;
    send(&mut client, &mut server, b"warm up").await;
    let delayed = LinkFault {
        delay: Duration::from_millis(300),
        ..LinkFault::default()
    };
    links.set(k, owner, delayed);
    client.write_all(b"in flight").await.unwrap();
    // Read by the proxy and waiting out its delay when the block starts.
    tokio::time::sleep(Duration::from_millis(100)).await;
    links.set(
        k,
        owner,
        LinkFault {
            blocked: true,
            ..delayed
        },
    );
    assert_eq!(
        read_n(&mut server, 1, Duration::from_millis(600)).await,
        None,
        "a chunk was written during the block"
    );
    links.set(k, owner, LinkFault::default());
    let got = read_n(&mut server, 9, WAIT)
        .await
        .expect("delivered after unblock");
    assert_eq!(got, b"in flight");
}

#[tokio::test]
async fn dropped_chunks_arrive_late_and_intact() {
    let (owner, k) = (0, 1);
    let (links, proxy, target) = setup(2, owner, me(k)).await;
    let (mut client, mut server) = connect(&proxy, &target).await;
    send(&mut client, &mut server, b"warm up").await;
    links.set(
        k,
        owner,
        LinkFault {
            drop: 1.0,
            ..LinkFault::default()
        },
    );
    let started = Instant::now();
    send(&mut client, &mut server, b"lost and retransmitted").await;
    assert!(started.elapsed() >= RETRANSMIT_DELAY);
}

#[tokio::test]
async fn long_block_closes_the_connection() {
    let (owner, k) = (0, 1);
    let (links, proxy, target) = setup(2, owner, me(k)).await;
    let limit = Duration::from_millis(400);
    links.set_block_limit(limit);
    let (mut client, mut server) = connect(&proxy, &target).await;
    send(&mut client, &mut server, b"warm up").await;
    let started = Instant::now();
    links.set(owner, k, blocked());
    assert!(closed(&mut client, WAIT).await, "dialer side not closed");
    assert!(closed(&mut server, WAIT).await, "listener side not closed");
    assert!(
        started.elapsed() >= limit - Duration::from_millis(50),
        "closed after {:?}",
        started.elapsed()
    );
    // A new connection on the blocked link is accepted, stalled, and closed again.
    let (mut client, mut server) = connect(&proxy, &target).await;
    server.write_all(b"stalled").await.unwrap();
    assert_eq!(
        read_n(&mut client, 1, Duration::from_millis(200)).await,
        None
    );
    assert!(closed(&mut client, WAIT).await);
    assert!(closed(&mut server, WAIT).await);
}

#[tokio::test]
async fn short_block_keeps_the_connection() {
    let (owner, k) = (0, 1);
    let (links, proxy, target) = setup(2, owner, me(k)).await;
    links.set_block_limit(Duration::from_millis(600));
    let (mut client, mut server) = connect(&proxy, &target).await;
    for _ in 0..3 {
        links.set(k, owner, blocked());
        tokio::time::sleep(Duration::from_millis(300)).await;
        links.set(k, owner, LinkFault::default());
        send(&mut client, &mut server, b"still here").await;
        send(&mut server, &mut client, b"me too").await;
    }
}

#[tokio::test]
async fn stop_closes_connections_and_listener() {
    let (_links, proxy, target) = setup(2, 0, me(1)).await;
    let (mut client, mut server) = connect(&proxy, &target).await;
    send(&mut client, &mut server, b"hello").await;
    let addr = proxy.local_addr();
    proxy.stop();
    assert!(closed(&mut client, WAIT).await, "dialer side not closed");
    assert!(closed(&mut server, WAIT).await, "listener side not closed");
    let refused = timeout(WAIT, async {
        while TcpStream::connect(addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(refused.is_ok(), "still accepting after stop");

    // Dropping does the same.
    let (_links, proxy, target) = setup(2, 0, nobody()).await;
    let (mut client, mut server) = connect(&proxy, &target).await;
    send(&mut client, &mut server, b"hello").await;
    drop(proxy);
    assert!(closed(&mut client, WAIT).await);
    assert!(closed(&mut server, WAIT).await);
}

#[tokio::test]
async fn half_close_propagates() {
    let (_links, proxy, target) = setup(2, 0, me(1)).await;
    let (mut client, mut server) = connect(&proxy, &target).await;
    client.write_all(b"last words").await.unwrap();
    client.shutdown().await.unwrap();
    let mut got = Vec::new();
    timeout(WAIT, server.read_to_end(&mut got))
        .await
        .expect("EOF reaches the listener")
        .unwrap();
    assert_eq!(got, b"last words");
    // The other direction still works until it is closed too.
    send(&mut server, &mut client, b"a reply after EOF").await;
    server.shutdown().await.unwrap();
    let mut rest = Vec::new();
    timeout(WAIT, client.read_to_end(&mut rest))
        .await
        .expect("EOF reaches the dialer")
        .unwrap();
    assert!(rest.is_empty());
}

#[tokio::test]
async fn unreachable_target_closes_the_client() {
    let gone = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = gone.local_addr().unwrap();
    drop(gone);
    let proxy = start(
        "127.0.0.1:0".parse().unwrap(),
        target,
        0,
        Links::new(1),
        nobody(),
    )
    .await
    .unwrap();
    let mut client = TcpStream::connect(proxy.local_addr()).await.unwrap();
    assert!(closed(&mut client, WAIT).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_survive_random_faults() {
    let (owner, k) = (1, 0);
    let (links, proxy, target) = setup(2, owner, me(k)).await;
    let (client, server) = connect(&proxy, &target).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5e7_9017);
    let mut up = vec![0u8; 3 << 20];
    let mut down = vec![0u8; 3 << 20];
    rng.fill_bytes(&mut up);
    rng.fill_bytes(&mut down);
    let up = Arc::new(up);
    let down = Arc::new(down);

    let (stop_tx, mut stop_rx) = watch::channel(false);
    let nemesis_links = links.clone();
    let nemesis = tokio::spawn(async move {
        let mut toggles = 0u32;
        while !*stop_rx.borrow() {
            let (from, to) = if rng.gen_bool(0.5) {
                (k, owner)
            } else {
                (owner, k)
            };
            let fault = LinkFault {
                blocked: rng.gen_bool(0.4),
                delay: Duration::from_millis(rng.gen_range(0..5)),
                drop: 0.02,
            };
            nemesis_links.set(from, to, fault);
            toggles += 1;
            let pause = Duration::from_millis(rng.gen_range(2..15));
            let _ = timeout(pause, stop_rx.changed()).await;
        }
        nemesis_links.heal();
        toggles
    });

    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let send_all = |mut w: OwnedWriteHalf, data: Arc<Vec<u8>>| async move {
        // Uneven, paced writes, so chunks straddle every boundary and the transfer lasts
        // through many fault changes.
        let mut rng = rand::rngs::StdRng::seed_from_u64(data.len() as u64);
        let mut at = 0;
        while at < data.len() {
            let end = (at + rng.gen_range(1..20_000)).min(data.len());
            w.write_all(&data[at..end]).await.unwrap();
            at = end;
            tokio::time::sleep(Duration::from_millis(rng.gen_range(0..4))).await;
        }
        w.shutdown().await.unwrap();
    };
    let recv_all = |mut r: OwnedReadHalf| async move {
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.unwrap();
        got
    };
    let transfer = async {
        tokio::join!(
            tokio::spawn(send_all(client_write, up.clone())),
            tokio::spawn(send_all(server_write, down.clone())),
            tokio::spawn(recv_all(server_read)),
            tokio::spawn(recv_all(client_read)),
        )
    };
    let result = timeout(Duration::from_secs(60), transfer).await;
    stop_tx.send(true).unwrap();
    let toggles = nemesis.await.unwrap();
    let (a, b, got_up, got_down) = result.expect("transfer finished in time");
    a.unwrap();
    b.unwrap();
    let (got_up, got_down) = (got_up.unwrap(), got_down.unwrap());
    assert_eq!(got_up.len(), up.len());
    assert!(got_up == *up, "dialer->listener bytes corrupted");
    assert_eq!(got_down.len(), down.len());
    assert!(got_down == *down, "listener->dialer bytes corrupted");
    assert!(toggles > 20, "only {toggles} fault changes");
}
