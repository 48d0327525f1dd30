//! `https://` chain endpoints: a TLS front (rustls, a certificate made for the test) before a
//! real anvil. Trusted through the extra roots (`COVENANT_CHAIN_CA` in the binaries), the client
//! reads the contract; without them it refuses the endpoint's certificate and says so.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use common::*;
use covenant_evm::{EvmChain, EvmOptions, Patience};
use covenant_net::{Chain, Keypair};
use tokio_rustls::rustls;

/// Serves TLS on a loopback port, forwarding the plain bytes to `target`; the certificate's PEM.
fn tls_front(target: SocketAddr) -> (u16, Vec<u8>) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let pem = made.cert.pem().into_bytes();
    let cert = made.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(made.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
            while let Ok((socket, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(socket).await else {
                        return;
                    };
                    let Ok(mut up) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
                });
            }
        });
    });
    (port, pem)
}

fn client(
    port: u16,
    contract: alloy::primitives::Address,
    roots: Vec<Vec<u8>>,
) -> Result<EvmChain, covenant_evm::EvmError> {
    EvmChain::connect(EvmOptions {
        url: format!("https://localhost:{port}").parse().unwrap(),
        contract,
        key: Keypair::from_seed([4; 32]),
        block_time_ms: 1_000,
        patience: Patience {
            first_backoff_ms: 50,
            max_backoff_ms: 100,
            total_ms: 500,
            request_ms: 2_000,
        },
        tls_roots: roots,
    })
}

/// Every error in a chain of sources, for messages.
fn chain_of(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[test]
fn an_https_endpoint_is_used_when_its_certificate_is_trusted_and_refused_otherwise() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let net = rt.block_on(Net::start(config()));
    let target: SocketAddr = format!("127.0.0.1:{}", net.anvil.port()).parse().unwrap();
    let (port, pem) = tls_front(target);
    let c = client(port, net.address, vec![pem]).unwrap_or_else(|e| panic!("{}", chain_of(&e)));
    assert_eq!(c.genesis().run_id, "evm-test");
    assert!(c.metagraph().unwrap().neurons.is_empty());
    let e = client(port, net.address, Vec::new())
        .err()
        .expect("an untrusted certificate is refused");
    let msg = chain_of(&e).to_lowercase();
    assert!(
        msg.contains("certificate") || msg.contains("issuer"),
        "{msg}"
    );
}
