//! Who may speak as a replica: mutual TLS between peers, a replica's id
//! bound to its certificate, and (optionally) TLS for clients.
//!
//! Replicas listen for each other on their own address (`--peers`), apart
//! from the clients' (`--endpoints`), as etcd does. Between peers both sides
//! present a certificate signed by the cluster's CA (`--peer-trusted-ca-file`),
//! and each certificate names exactly one replica of one cluster as a DNS
//! subject alternative name, [`replica_name`]:
//! `replica-<id>.cluster-<cluster id in hex>.paxkv`.
//! - The dialing replica checks that the replica it reached holds the
//!   certificate of the replica it meant to dial (the TLS server name).
//! - The listening replica checks that the certificate of the one that
//!   dialed names the replica its hello claims to be ([`verify_peer`]).
//!
//! So a process without a key the CA signed cannot speak as a replica at
//! all, and a replica's key lets it speak only as itself. Plain TCP between
//! peers exists only when asked for by name (`--insecure-plaintext-peers`),
//! and the server says so in its log.
//!
//! Clients may use TLS too: the server presents `--cert-file` on the client
//! address, and the client checks it against a CA it trusts and the address
//! it dialed (an IP subject alternative name), as etcd's clients do.
//! `paxkv local` and the Jepsen-style harness make a throwaway CA and every
//! certificate with [`generate`] (rcgen).

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// A byte stream a connection's frames travel on: TCP, or TLS over TCP.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}
pub type BoxStream = Box<dyn Stream>;

/// The DNS name a replica's certificate carries: replica `id` of `cluster`.
pub fn replica_name(cluster: u64, id: u8) -> String {
    format!("replica-{id}.cluster-{cluster:x}.paxkv")
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: not a PEM certificate file: {e}", path.display()))?;
    match certs.is_empty() {
        true => Err(format!("{}: holds no certificate", path.display())),
        false => Ok(certs),
    }
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| format!("{}: not a PEM private key file: {e}", path.display()))
}

fn roots(path: &Path) -> Result<Arc<RootCertStore>, String> {
    let mut roots = RootCertStore::empty();
    for c in certs(path)? {
        roots
            .add(c)
            .map_err(|e| format!("{}: not a CA certificate: {e}", path.display()))?;
    }
    Ok(Arc::new(roots))
}

/// Whether `cert` is valid for `name` (a DNS or IP subject alternative
/// name). Its chain is rustls's to check; this checks only the name.
fn names(cert: &CertificateDer<'_>, name: &ServerName<'_>) -> bool {
    webpki::EndEntityCert::try_from(cert)
        .and_then(|ee| ee.verify_is_valid_for_subject_name(name))
        .is_ok()
}

fn dns(name: &str) -> ServerName<'static> {
    ServerName::try_from(name.to_string()).expect("a replica name is a valid DNS name")
}

/// The files of one replica's peer identity (etcd's flag names).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// One replica's side of peer TLS: it accepts replicas of its cluster and
/// dials them, presenting its own certificate both ways.
#[derive(Clone)]
pub struct PeerTls {
    acceptor: TlsAcceptor,
    connector: TlsConnector,
    cluster: u64,
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PeerTls {{ cluster: {:#x} }}", self.cluster)
    }
}

impl PeerTls {
    /// Loads replica `id`'s certificate, key and the cluster's CA; refuses
    /// a certificate that does not name replica `id` of `cluster` (a
    /// mix-up of files would otherwise show only as refused connections).
    pub fn load(files: &PeerFiles, cluster: u64, id: u8) -> Result<PeerTls, String> {
        let chain = certs(&files.cert)?;
        let key = key(&files.key)?;
        let roots = roots(&files.ca)?;
        let me = replica_name(cluster, id);
        if !names(&chain[0], &dns(&me)) {
            return Err(format!(
                "{}: this certificate does not name {me} (replica {id} of cluster {cluster:#x}); \
                 a replica's certificate must carry that DNS name",
                files.cert.display()
            ));
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .build()
            .map_err(|e| format!("{}: {e}", files.ca.display()))?;
        let server = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| format!("{} and {}: {e}", files.cert.display(), files.key.display()))?;
        let client = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("{} and {}: {e}", files.cert.display(), files.key.display()))?;
        Ok(PeerTls {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
            cluster,
        })
    }

    /// Dials replica `to` over `s`: `Err` unless it proves it is replica
    /// `to` of this cluster.
    pub async fn dial<S: Stream + 'static>(&self, s: S, to: u8) -> std::io::Result<BoxStream> {
        let name = dns(&replica_name(self.cluster, to));
        Ok(Box::new(self.connector.connect(name, s).await?))
    }

    /// Accepts a replica's connection: `Err` unless it presents a
    /// certificate of the cluster's CA. Which replica it is, its hello
    /// says and [`verify_peer`] checks.
    pub async fn accept<S: Stream + 'static>(
        &self,
        s: S,
    ) -> std::io::Result<(BoxStream, Option<CertificateDer<'static>>)> {
        let tls = self.acceptor.accept(s).await?;
        let cert = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.clone().into_owned());
        Ok((Box::new(tls), cert))
    }

    /// Whether `cert` (the dialing replica's, as [`PeerTls::accept`]
    /// returned it) names replica `from` of this cluster.
    pub fn verify_peer(&self, cert: Option<&CertificateDer<'_>>, from: u8) -> Result<(), String> {
        let want = replica_name(self.cluster, from);
        match cert {
            Some(c) if names(c, &dns(&want)) => Ok(()),
            Some(_) => Err(format!(
                "it says it is replica {from}, but its certificate does not name {want}"
            )),
            None => Err("it presented no certificate".into()),
        }
    }
}

/// The server's side of client TLS: a certificate for the client address.
#[derive(Clone)]
pub struct ServerTls(TlsAcceptor);

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerTls")
    }
}

impl ServerTls {
    pub fn load(cert: &Path, key_file: &Path) -> Result<ServerTls, String> {
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(certs(cert)?, key(key_file)?)
            .map_err(|e| format!("{} and {}: {e}", cert.display(), key_file.display()))?;
        Ok(ServerTls(TlsAcceptor::from(Arc::new(config))))
    }

    pub async fn accept<S: Stream + 'static>(&self, s: S) -> std::io::Result<BoxStream> {
        Ok(Box::new(self.0.accept(s).await?))
    }
}

/// A client's side of TLS: the CA it trusts to sign the servers'
/// certificates, which must name the IP address the client dialed.
#[derive(Clone)]
pub struct ClientTls(TlsConnector);

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientTls")
    }
}

impl ClientTls {
    pub fn load(ca: &Path) -> Result<ClientTls, String> {
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots(ca)?)
            .with_no_client_auth();
        Ok(ClientTls(TlsConnector::from(Arc::new(config))))
    }

    pub async fn connect<S: Stream + 'static>(
        &self,
        s: S,
        ip: IpAddr,
    ) -> std::io::Result<BoxStream> {
        Ok(Box::new(
            self.0.connect(ServerName::IpAddress(ip.into()), s).await?,
        ))
    }
}

/// What [`generate`] wrote, by file.
#[derive(Clone, Debug)]
pub struct Generated {
    pub ca: PathBuf,
    /// Replica i's certificate and key, valid for [`replica_name`] (its
    /// peer identity) and for `ips` (its client address).
    pub replicas: Vec<PeerFiles>,
}

impl Generated {
    /// Where [`generate`] puts the files in `dir` (whether or not they exist).
    pub fn paths(dir: &Path, n: u8) -> Generated {
        let ca = dir.join("ca.pem");
        Generated {
            replicas: (0..n)
                .map(|i| PeerFiles {
                    cert: dir.join(format!("replica-{i}.pem")),
                    key: dir.join(format!("replica-{i}.key")),
                    ca: ca.clone(),
                })
                .collect(),
            ca,
        }
    }
}

/// Makes a throwaway CA for `cluster` and a certificate and key for each of
/// its `n` replicas in `dir` (keys readable by their owner only). Each
/// certificate names its replica ([`replica_name`]) and every address in
/// `ips`, so that it also serves the client address. Test and walk-through
/// material: a deployment signs its replicas' certificates with its own CA.
pub fn generate(dir: &Path, cluster: u64, n: u8, ips: &[IpAddr]) -> Result<Generated, String> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let err = |e: rcgen::Error| format!("cannot make a certificate: {e}");
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let out = Generated::paths(dir, n);
    let ca_key = KeyPair::generate().map_err(err)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(
        DnType::CommonName,
        format!("paxkv cluster {cluster:#x} throwaway CA"),
    );
    let ca_cert = ca.self_signed(&ca_key).map_err(err)?;
    write(&out.ca, ca_cert.pem().as_bytes(), false)?;
    for (i, files) in out.replicas.iter().enumerate() {
        let mut sans = vec![replica_name(cluster, i as u8)];
        sans.extend(ips.iter().map(|ip| ip.to_string()));
        let mut p = CertificateParams::new(sans).map_err(err)?;
        p.distinguished_name
            .push(DnType::CommonName, replica_name(cluster, i as u8));
        let key = KeyPair::generate().map_err(err)?;
        let cert = p.signed_by(&key, &ca_cert, &ca_key).map_err(err)?;
        write(&files.cert, cert.pem().as_bytes(), false)?;
        write(&files.key, key.serialize_pem().as_bytes(), true)?;
    }
    Ok(out)
}

fn write(path: &Path, bytes: &[u8], secret: bool) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    if secret {
        o.mode(0o600);
    }
    o.open(path)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("paxkv-tls-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    /// A replica's certificate names it and no other replica, of its
    /// cluster and no other; loading a replica's files as another replica's
    /// is refused with a message naming the mix-up.
    #[test]
    fn a_certificate_names_one_replica_of_one_cluster() {
        let d = dir("names");
        let g = generate(&d, 0xab, 3, &["127.0.0.1".parse().unwrap()]).unwrap();
        let c = &certs(&g.replicas[1].cert).unwrap()[0];
        assert!(names(c, &dns(&replica_name(0xab, 1))));
        assert!(!names(c, &dns(&replica_name(0xab, 2))));
        assert!(!names(c, &dns(&replica_name(0xac, 1))));
        assert!(names(
            c,
            &ServerName::IpAddress("127.0.0.1".parse::<IpAddr>().unwrap().into())
        ));
        let tls = PeerTls::load(&g.replicas[1], 0xab, 1).unwrap();
        assert_eq!(tls.verify_peer(Some(c), 1), Ok(()));
        assert!(tls
            .verify_peer(Some(c), 0)
            .unwrap_err()
            .contains("replica-0.cluster-ab.paxkv"));
        assert!(tls.verify_peer(None, 1).is_err());
        let e = PeerTls::load(&g.replicas[1], 0xab, 2).unwrap_err();
        assert!(
            e.contains("does not name replica-2.cluster-ab.paxkv"),
            "{e}"
        );
        let e = PeerTls::load(&g.replicas[1], 0xac, 1).unwrap_err();
        assert!(e.contains("cluster 0xac"), "{e}");
        let mut bad = g.replicas[0].clone();
        bad.cert = d.join("missing.pem");
        assert!(PeerTls::load(&bad, 0xab, 0)
            .unwrap_err()
            .contains("missing.pem"));
        let _ = std::fs::remove_dir_all(&d);
    }
}
