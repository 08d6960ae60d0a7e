//! What the nodes refuse: callers that are not the host, a wrong passphrase, a tampered
//! shard (only that key fails), and secrets in plaintext anywhere on disk or in logs.

mod common;

use common::{Cluster, all_files, contains};
use custos_coordinator::pki;
use custos_node::store::{Kind, Store};
use custos_wire::rpc::node_client::NodeClient;
use custos_wire::{Algo, HealthRequest};
use std::path::Path;
use std::time::Duration;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

async fn health_with(
    addr: &str,
    name: &str,
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<(), String> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(ca).unwrap()))
        .domain_name(name.to_string());
    if let Some((c, k)) = identity {
        tls = tls.identity(Identity::from_pem(
            std::fs::read(c).unwrap(),
            std::fs::read(k).unwrap(),
        ));
    }
    let ch = Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(3))
        .connect()
        .await
        .map_err(|e| format!("connect: {e}"))?;
    NodeClient::new(ch)
        .health(HealthRequest {})
        .await
        .map(|_| ())
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn callers_passphrases_tampering_and_plaintext() {
    let (mut cluster, coord) = Cluster::start(false).await;
    let certs = cluster.layout.certs.clone();
    let ca = pki::ca_cert(&certs);
    let addr = cluster.address(1).to_string();
    let host = pki::paths(&certs, pki::HOST_NAME);

    // The host itself gets in (control).
    health_with(&addr, "tss1", &ca, Some((&host.cert, &host.key)))
        .await
        .unwrap();
    // No client certificate.
    let e = health_with(&addr, "tss1", &ca, None).await.unwrap_err();
    eprintln!("no certificate: {e}");
    // A certificate from another CA, even one named `gateway`.
    let foreign_dir = cluster.dir.path().join("foreign");
    let (_, foreign) = pki::create_foreign(&foreign_dir, pki::HOST_NAME).unwrap();
    let e = health_with(&addr, "tss1", &ca, Some((&foreign.cert, &foreign.key)))
        .await
        .unwrap_err();
    eprintln!("other CA: {e}");
    // A valid node certificate from our CA: not the host.
    let node2 = pki::paths(&certs, "tss2");
    let e = health_with(&addr, "tss1", &ca, Some((&node2.cert, &node2.key)))
        .await
        .unwrap_err();
    assert!(
        e.contains("PermissionDenied") && e.contains("only the host"),
        "{e}"
    );
    // Plain TCP: no TLS, no answer.
    let plain = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(3));
    let r = match plain.connect().await {
        Ok(ch) => NodeClient::new(ch)
            .health(HealthRequest {})
            .await
            .map(|_| ())
            .map_err(|s| s.to_string()),
        Err(e) => Err(e.to_string()),
    };
    assert!(r.is_err(), "plain TCP must not be served");
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap_or(0);
        assert!(
            !String::from_utf8_lossy(&buf[..n]).contains("HTTP/1.1 200"),
            "plain HTTP answered"
        );
    }

    // Two keys on the same nodes; one byte flipped in one stored shard on node 1.
    let a = common::keygen(&coord, Algo::Dkls23, "key-a", 2, 3).await;
    let b = common::keygen(&coord, Algo::Dkls23, "key-b", 2, 3).await;
    // Keygen spreads keys over the least-loaded nodes; two holders share both keys.
    let common: Vec<u16> = a
        .holders
        .iter()
        .copied()
        .filter(|h| b.holders.contains(h))
        .collect();
    assert!(common.len() >= 2, "{:?} {:?}", a.holders, b.holders);
    let victim = common[0];
    let other = common[1];
    cluster.stop(victim).await;
    let mut raw =
        custos_node::store::raw_value(&cluster.data_dir(victim), Kind::Shard, "key-a").unwrap();
    let mid = raw.len() / 2;
    raw[mid] ^= 0x40;
    custos_node::store::raw_put(&cluster.data_dir(victim), Kind::Shard, "key-a", &raw).unwrap();

    // Wrong passphrase: the node refuses to start and says why.
    let right = cluster.passphrase(victim);
    std::fs::write(cluster.passphrase_file(victim), "not the passphrase").unwrap();
    let err = cluster
        .nodes
        .start_node(victim)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("node {victim} exited while starting")),
        "{err}"
    );
    let log = std::fs::read_to_string(cluster.log(victim)).unwrap();
    assert!(log.contains("wrong passphrase"), "{log}");
    assert!(
        err.contains("wrong passphrase"),
        "the log tail is shown: {err}"
    );

    std::fs::write(cluster.passphrase_file(victim), right).unwrap();
    cluster.restart(victim).await;
    let hash = [7u8; 32];
    let err = coord
        .sign_with(
            Algo::Dkls23,
            "key-a",
            1,
            &[victim, other],
            &hash,
            &common::hash_request(Algo::Dkls23, "key-a", &hash),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`key-a`")
            && err.contains(&format!("node {victim}"))
            && err.contains("fails authentication"),
        "{err}"
    );
    let s = coord
        .sign_with(
            Algo::Dkls23,
            "key-b",
            1,
            &[victim, other],
            &hash,
            &common::hash_request(Algo::Dkls23, "key-b", &hash),
        )
        .await
        .unwrap();
    assert_eq!(s.signature.len(), 64, "the other key keeps working");

    // No shard scalar or DEK bytes in plaintext anywhere: data dirs, key files, logs.
    cluster.stop(other).await;
    let (secret, dek) = {
        let cfg = custos_wire::NodeConfig::load(&cluster.config_file(other)).unwrap();
        let dek =
            custos_node::dek::open(&cfg.dek_file, other, cluster.passphrase(other).as_bytes())
                .unwrap();
        let store = Store::open(&cfg.data_dir, other, &dek).unwrap();
        let rec = store.get_shard("key-b").unwrap().unwrap();
        let party: dkls23::protocols::Party<k256_014::Secp256k1> =
            postcard::from_bytes(&rec.secret).unwrap();
        let scalar: Vec<u8> =
            k256_014::elliptic_curve::PrimeField::to_repr(&party.poly_point).to_vec();
        (scalar, dek.bytes().to_vec())
    };
    assert_eq!(secret.len(), 32);
    let mut reversed = secret.clone();
    reversed.reverse();
    let hex_secret = hex::encode(&secret);
    let hex_dek = hex::encode(&dek);
    let files = all_files(cluster.dir.path());
    assert!(files.len() > 20, "searched {} files", files.len());
    for (path, bytes) in files {
        for (what, needle) in [
            ("shard scalar", &secret[..]),
            ("shard scalar (little-endian)", &reversed[..]),
            ("shard scalar (hex)", hex_secret.as_bytes()),
            ("DEK", &dek[..]),
            ("DEK (hex)", hex_dek.as_bytes()),
        ] {
            assert!(
                !contains(&bytes, needle),
                "{what} in plaintext in {}",
                path.display()
            );
        }
    }
}
