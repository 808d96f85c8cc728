//! `workers: N`: N single-threaded event loops, each with its own listener on the same address
//! (`SO_REUSEPORT`) and its own pool of backend connections; a session stays on the loop that accepted it.
//! Here two loops run in-process, as `main.rs` starts them: loop 0 with the background tasks on the test's
//! runtime, loop 1 on a thread of its own.

mod common;

use std::sync::Arc;

use common::proxy::config_yaml;
use common::Topology;
use mysql_async::prelude::Queryable;
use tokio_util::sync::CancellationToken;

fn reuse_port_listener(addr: std::net::SocketAddr) -> tokio::net::TcpListener {
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket.set_reuseport(true).expect("SO_REUSEPORT");
    socket.bind(addr).expect("bind");
    socket.listen(1024).expect("listen")
}

#[tokio::test(flavor = "multi_thread")]
async fn two_loops_share_the_port_and_each_keeps_its_own_connections() {
    let topo = Topology::shared();
    let config = rwsplit::Config::parse(&format!("{}workers: 2\n", config_yaml(topo)), "test").unwrap();
    let shared = rwsplit::Shared::new(config);
    assert_eq!(shared.pools.len(), 2);
    let shutdown = CancellationToken::new();
    let first = reuse_port_listener("127.0.0.1:0".parse().unwrap());
    let addr = first.local_addr().unwrap();
    tokio::spawn(rwsplit::serve(Arc::clone(&shared), first, shutdown.clone()));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let second = {
        let (shared, shutdown) = (Arc::clone(&shared), shutdown.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                let listener = reuse_port_listener(addr);
                ready_tx.send(()).unwrap();
                rwsplit::serve_loop(shared, listener, shutdown, 1).await;
            })
        })
    };
    tokio::task::block_in_place(|| ready_rx.recv()).unwrap();

    // Sequential sessions from fresh source ports: the kernel spreads them over both listeners.
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(addr.port())
        .user(Some("app"))
        .pass(Some("apppw"))
        .db_name(Some("app"))
        .prefer_socket(false);
    for i in 0..40u32 {
        let mut conn = mysql_async::Conn::new(opts.clone()).await.expect("connect");
        let (id, echo): (u32, u32) = conn.query_first(format!("SELECT @@server_id, {i}")).await.unwrap().unwrap();
        assert!((2..=3).contains(&id) && echo == i, "a plain read on a replica: {id}");
        conn.query_drop("CREATE TABLE IF NOT EXISTS workers_t (id INT PRIMARY KEY)").await.unwrap();
        conn.disconnect().await.unwrap();
    }
    // Each loop pooled the connections its sessions released; neither took the other's.
    let idle =
        |pool: &rwsplit::pool::Pool| topo.servers().iter().map(|a| pool.idle_count(&a.to_string())).sum::<usize>();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while idle(&shared.pools[0]) == 0 || idle(&shared.pools[1]) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "both loops served sessions and pooled their connections: {} / {}",
            idle(&shared.pools[0]),
            idle(&shared.pools[1])
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    tokio::task::block_in_place(|| second.join()).expect("loop 1 ends with the shutdown");
}
