//! reqwest with the crate's hygiene against a real nginx on loopback: the socket policy as
//! reqwest's settings (read back with getsockopt from the socket reqwest made), a response
//! held unread reported as a leak with the line that sent it, its connection listed for the
//! census with that line, and the TIME_WAIT reqwest leaves toward nginx attributed to it.
#![cfg(all(feature = "reqwest", feature = "census"))]

#[path = "support/nginx.rs"]
mod nginx;

use std::time::Duration;

use conn_hygiene::{
    census::{AttributionSource, Sampler},
    client::{ReqwestHygiene, SendTracked},
    lease::LeaseTracker,
    policy::{EffectiveOptions, Keepalive, SocketPolicy},
};
use conn_hygiene_test_support::{eventually, own_socket};
use nginx::{Nginx, NginxConfig};

const LIMIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reqwest_gets_the_policy_leases_with_their_lines_and_census_attribution() {
    let nginx = Nginx::start(&NginxConfig {
        keepalive_timeout_secs: 1,
        keepalive_requests: 1000,
        tls: None,
    });
    let url = nginx.url("/").to_string();
    let tracker = LeaseTracker::builder("nginx-reqwest")
        .leak_threshold(Some(Duration::from_millis(300)))
        .build()
        .unwrap();
    let hygiene = ReqwestHygiene::new(tracker);
    let keepalive = Keepalive::new(Duration::from_secs(41), Duration::from_secs(5), 3);
    let policy = SocketPolicy::builder()
        .keepalive(keepalive)
        .user_timeout(Duration::from_secs(67))
        .nodelay(true)
        .build()
        .unwrap();
    let client = hygiene
        .configure(
            reqwest::Client::builder(),
            &policy,
            Some(Duration::from_secs(1)),
        )
        .build()
        .unwrap();

    // Read to the end: each lease ends with its body.
    for _ in 0..5 {
        let res = tokio::time::timeout(LIMIT, hygiene.send(client.get(&url)))
            .await
            .expect("response in time")
            .expect("response");
        assert_eq!(res.status(), 200);
        assert_eq!(&res.bytes().await.unwrap()[..], b"ok\n");
    }
    assert_eq!(hygiene.tracker().outstanding(), 0);

    // Held unread: a leak, reported with this line.
    let held = tokio::time::timeout(LIMIT, client.get(&url).send_tracked(&hygiene))
        .await
        .expect("response in time")
        .expect("response");
    let line = line!() - 4;
    let local = held.local_addr().expect("reqwest says which connection");
    let leaked = eventually("the held response reported as a leak", LIMIT, || {
        let snap = hygiene.tracker().snapshot();
        let leaked = snap.leaked().next().cloned();
        leaked
    })
    .await;
    assert_eq!(leaked.site.line(), line, "{leaked:?}");
    assert!(
        leaked.site.file().ends_with("reqwest_hygiene.rs"),
        "{leaked:?}"
    );
    assert_eq!(held.site().map(|s| s.line()), Some(line));

    // The policy is on the socket reqwest made, as getsockopt reads it.
    let fd = own_socket(local).expect("this process holds reqwest's socket");
    let eff = EffectiveOptions::read(socket2::SockRef::from(&fd)).unwrap();
    assert_eq!(eff.keepalive, Some(keepalive), "{eff:?}");
    assert_eq!(eff.user_timeout, Some(Duration::from_secs(67)), "{eff:?}");
    assert!(eff.nodelay, "{eff:?}");
    drop(fd);

    // The census is told the held connection and its line.
    let claims = hygiene.claims();
    assert_eq!(claims.len(), 1, "{claims:?}");
    assert_eq!(claims[0].name(), "nginx-reqwest");
    let conns = hygiene.connections("nginx-reqwest");
    assert_eq!(conns.len(), 1, "{conns:?}");
    assert_eq!(conns[0].local, local);
    assert_eq!(conns[0].remote, nginx.addr());
    assert_eq!(conns[0].lease_site.map(|s| s.line()), Some(line));

    // Dropped, the lease ends; reqwest closes its idle connections before nginx's 1 s
    // keep-alive (its pool idle timeout is 375 ms, looked at every 375 ms), so the TIME_WAIT
    // is the client's, and the census attributes it to the reqwest client.
    drop(held);
    assert_eq!(hygiene.tracker().outstanding(), 0);
    assert!(hygiene.connections("nginx-reqwest").is_empty());
    let sampler = Sampler::builder()
        .interval(Duration::from_secs(3600))
        .source(hygiene.clone())
        .spawn()
        .expect("sampler");
    let deadline = tokio::time::Instant::now() + LIMIT;
    let tw = loop {
        let snap = sampler.sample_now().await;
        let tw = snap.upstream("nginx-reqwest").map_or(0, |u| u.time_wait);
        if tw >= 1 {
            break tw;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no TIME_WAIT toward nginx attributed to reqwest within {LIMIT:?}: {:?}",
            snap.upstreams
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!("TIME_WAIT toward nginx attributed to the reqwest client: {tw}");
    sampler.stop();
    let dest = &hygiene.destinations()[0];
    assert_eq!(dest.remote_addr, Some(nginx.addr()));
    assert!(dest.connects >= 1);
}
